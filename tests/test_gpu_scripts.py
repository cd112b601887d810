"""The prepared GPU scripts run end to end on CPU at a toy size (their logic, not their numbers): a lent GPU's
minutes go to measuring, not to fixing a script (benchmarks/device_carry.sh, then benchmarks/gpu_decode.sh, which
calls benchmarks/gpu_check.sh), with only what device_carry.sh packs."""

import os
import subprocess
from pathlib import Path

import pytest

from data import default_data_dir

ROOT = Path(__file__).resolve().parents[1]
TOY = "num_hidden_layers=2 hidden_size=64 intermediate_size=128 num_attention_heads=4 num_key_value_heads=2"


@pytest.mark.skipif(not (default_data_dir() / "eval" / "math500.jsonl").is_file(), reason="needs ../shared/data")
def test_gpu_decode_script_dry_run_on_cpu(tmp_path):
    carry = tmp_path / "carry"  # what benchmarks/device_carry.sh prepares for the device: tokenizer, MATH500
    prep = subprocess.run(["bash", "benchmarks/device_carry.sh", str(carry)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "ZERO_RL_DATA": str(default_data_dir())})
    assert prep.returncode == 0 and "gpu_decode.sh" in prep.stdout, prep.stderr[-2000:]
    env = {**os.environ, "DEVICE": "cpu", "SET": TOY, "PROMPTS": "2", "GROUP": "2", "NEW_TOKENS": "8", "LIMIT": "2",
           "EVAL_TOKENS": "8", "STEPS": "1", "MICRO": "2", "TOKENIZER": str(carry / "tokenizer"),
           "DATA_DIR": str(carry / "data")}
    r = subprocess.run(["bash", "benchmarks/gpu_decode.sh", str(tmp_path / "run")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, (r.stdout[-3000:], r.stderr[-3000:])
    rows = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.startswith("hf")}
    assert set(rows) == {"hf", "hf:static"}
    assert all(float(row[4]) > 0 and row[5] != "-" for row in rows.values())  # ms/step, and its bound printed
    assert r.stdout.count("evaluate --engine hf (") == 2
    assert "greedy, dynamic vs static cache: 2/2 responses identical" in r.stdout
    steps = [line for line in r.stdout.splitlines() if line.startswith("| 1 |")]
    assert steps and steps[0].split("|")[9].strip() == "-"  # learn MFU: no known peak on CPU
