"""The README's first command (the embedded default), cut to 2 steps with a 16-problem eval: its metrics.jsonl and
samples.jsonl equal, field for field, a recording (tests/golden/), so no change of code moves the default's numbers
unnoticed. Recorded on 2026-12-03 when the default reward became `correct` (issue 25); the recording before it
(SimpleRL reward) was main's at 11edab4, which the shared foundation of issue 22 reproduced. Timings and memory differ between runs and are left out; floats are
compared to 1e-6 relative (float rounding), everything else exactly.

    python train_zero.py --steps 2 --eval-every 2 --eval-limit 16 --save-every 0 --out-dir <dir>

Under the default 1 / 0 reward those two steps score 0 everywhere, so nothing is learned in them. The second test
records steps that learn (loss_tokens > 0): the SimpleRL reward (+1 / -0.5 / -1) tells a missing answer from a
wrong one at once, so every algorithm takes real gradient steps in both recorded steps, and any change to the
losses, the log-probs, the advantages or the optimiser step moves their loss, grad_norm, entropy and the second
step's samples. Recorded on 2026-12-07 at 37d4669, before issue 30 moved code:

    python train_zero.py --algo {grpo,drgrpo,ppo} --reward simplerl --steps 2 --eval-every 0 --save-every 0 --out-dir <dir>
"""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

GOLDEN = Path(__file__).parent / "golden"
TIMINGS = ("tokens_per_s", "peak_memory_gb", "learn_tokens_per_s", "mfu")


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return a == b and type(a) is type(b)


def run(tmp_path, *flags: str) -> Path:
    out = tmp_path / "run"
    result = subprocess.run([sys.executable, "train_zero.py", *flags, "--save-every", "0", "--out-dir", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=900)  # the README's environment: no thread-count override
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def assert_same_logs(out: Path, prefix: str) -> None:
    for name in ("metrics", "samples"):
        got, want = rows(out / f"{name}.jsonl"), rows(GOLDEN / f"{prefix}_{name}.jsonl")
        assert len(got) == len(want), name
        for got_row, want_row in zip(got, want):
            assert got_row.keys() == want_row.keys(), (name, got_row.keys() ^ want_row.keys())
            assert [k for k in want_row if not same(got_row[k], want_row[k])] == [], (name, got_row["step"])


def rows(path: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if not k.startswith("time_") and k not in TIMINGS}
            for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_the_default_run_logs_what_it_logged_before(tmp_path):
    assert_same_logs(run(tmp_path, "--steps", "2", "--eval-every", "2", "--eval-limit", "16"), "default_run")


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["grpo", "drgrpo", "ppo"])
def test_steps_that_learn_log_what_they_logged_before(tmp_path, algo):
    out = run(tmp_path, "--algo", algo, "--reward", "simplerl", "--steps", "2", "--eval-every", "0")
    assert all(row["loss_tokens"] > 0 and row["grad_norm"] > 0 for row in rows(GOLDEN / f"learn_{algo}_metrics.jsonl"))
    assert_same_logs(out, f"learn_{algo}")
