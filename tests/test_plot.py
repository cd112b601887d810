"""plot.py: the panels drawn from metrics.jsonl (checked by the figure's axes titles, not pixels)."""

import json
import subprocess
import sys

from plot import PANELS, plot_runs
from test_train import ENV, ROOT

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(path, rows, torn=False):
    path.mkdir(parents=True)
    text = "".join(json.dumps(r) + "\n" for r in rows) + ('{"step": 9, "rew' if torn else "")
    (path / "metrics.jsonl").write_text(text)
    return path


def row(step, **extra):
    base = {"step": step, "reward_mean": -0.5 + 0.1 * step, "accuracy": 0.1 * step, "answer_rate": 0.5,
            "response_length_mean": 30.0, "response_length_correct": 20.0, "response_length_wrong": None,
            "truncation_rate": 0.1, "repetition_rate": 0.0, "reflection_rate": 0.05, "entropy": 0.8,
            "clip_fraction": 0.0, "kl": 0.0, "grad_norm": 1.5, "time_rollout": 3.0, "time_reward": 0.1,
            "time_learn": 2.0, "time_sync": 0.0}
    return {**base, **extra}


def test_one_run_draws_every_panel_it_has_data_for(tmp_path):
    run = write_run(tmp_path / "a", [{"step": 0, "eval/arithmetic": 0.1, "eval/arithmetic/stderr": 0.05,
                                      "eval/arithmetic/length": 12.0}, row(1, **{"reflection/wait": 0.1}),
                                     row(2, **{"eval/arithmetic": 0.3, "reflection/wait": 0.0}),
                                     row(3, grad_norm=None, nonfinite=["grad_norm"])], torn=True)
    drawn = plot_runs([run], tmp_path / "a.png")
    assert drawn == [title for title, _ in PANELS]  # KL is logged (0.0), so every panel has a curve
    assert (tmp_path / "a.png").read_bytes().startswith(PNG)


def test_a_panel_without_data_is_left_out(tmp_path):
    rows = [{k: v for k, v in row(s).items() if k not in ("kl", "clip_fraction")} for s in (1, 2)]
    drawn = plot_runs([write_run(tmp_path / "a", rows)], tmp_path / "a.png")
    assert "KL to the reference" not in drawn and "clip fraction" not in drawn
    assert "held-out accuracy (greedy pass@1)" not in drawn and "reward and accuracy" in drawn


def test_several_runs_overlay_from_the_command_line(tmp_path):
    a = write_run(tmp_path / "grpo", [row(1), row(2)])
    b = write_run(tmp_path / "drgrpo", [row(1, accuracy=0.5), row(2, accuracy=0.6)])
    out = tmp_path / "cmp.png"
    r = subprocess.run([sys.executable, "plot.py", str(a), str(b), "--out", str(out)], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(PNG) and f"{out}: {len(PANELS) - 1} panels" in r.stdout  # no eval rows
    assert "held-out" not in r.stdout


def test_the_eval_panel_draws_each_benchmark_not_its_answer_rate_stderr_or_length():
    from plot import _curves

    rows = [{"step": 0, "eval/add_one": 0.1, "eval/add_one/stderr": 0.04, "eval/add_one/answer_rate": 0.9,
             "eval/add_one/length": 14.0, "eval/gsm8k": 0.0}]
    assert [label for label, _, _ in _curves(rows, [("eval/*", "")])] == ["add_one", "gsm8k"]
