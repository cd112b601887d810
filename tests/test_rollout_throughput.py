"""benchmarks/rollout_throughput.py: its config names, decoding-step count and bandwidth bound, by hand; one tiny run."""

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from rollout_throughput import decode_steps, parse_config, step_bound_ms  # noqa: E402


def test_configs_parse_or_are_refused():
    assert parse_config("hf") == ("hf", {}) and parse_config("hf:static") == ("hf", {"static": "1"})
    assert parse_config("vllm:bind=0-1,max_num_seqs=16") == ("vllm", {"bind": "0-1", "max_num_seqs": "16"})
    for bad in ("hf:graphs", "vllm:bind", "vllm:colour=red", "trl"):
        with pytest.raises(SystemExit):
            parse_config(bad)


def test_decoding_steps_per_engine():
    lengths = [3, 9, 4, 2, 7]
    assert decode_steps(lengths, 2) == 9 + 4 + 7  # hf: batches [3, 9] [4, 2] [7], each to its longest
    assert decode_steps(lengths, None) == 9  # vLLM: one continuous batch


def test_the_bound_reads_weights_and_kv_once():
    config = SimpleNamespace(hidden_size=1536, num_attention_heads=12, num_key_value_heads=2, num_hidden_layers=28)
    # Qwen2.5-Math-1.5B in bf16: 3.09 GB of weights; KV per token 28 x 2 x 2 x 128 x 2 B = 28,672 B
    bound = step_bound_ms(config, rows=64, context=600, bandwidth_gbs=4300, weight_bytes=3_087_467_520, dtype_bytes=2)
    assert bound == pytest.approx((3_087_467_520 + 28_672 * 64 * 600) / 4300e9 * 1e3)
    assert 0.9 < bound < 1.0  # the issue's ~1 ms per step


def test_a_tiny_run_prints_both_hf_paths():
    r = subprocess.run([sys.executable, "benchmarks/rollout_throughput.py", "--configs", "hf", "hf:static", "--prompts",
                        "2", "--n", "2", "--max-new-tokens", "4", "--train-data", "arithmetic", "--bandwidth-gbs", "20"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("hf")]
    assert [row[0] for row in rows] == ["hf", "hf:static"] and all(int(row[1]) > 0 and float(row[5]) > 0 for row in rows)
