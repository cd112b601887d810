"""plot.py: the panels drawn from metrics.jsonl (checked by the figure's axes titles, not pixels), its formats,
and its refusals (one line each on stderr, exit 2, nothing written)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data import UsageError
from plot import PANELS, _curves, plot_runs, write_run_figure

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
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
            "clip_fraction": 0.0, "kl": 0.0, "loss": 0.01, "grad_norm": 1.5, "time_rollout": 3.0, "time_reward": 0.1,
            "time_learn": 2.0, "time_sync": 0.0, "mfu": 0.4}
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
    rows = [{"step": 0, "eval/add_one": 0.1, "eval/add_one/stderr": 0.04, "eval/add_one/answer_rate": 0.9,
             "eval/add_one/length": 14.0, "eval/gsm8k": 0.0}]
    assert [label for label, _, _ in _curves(rows, [("eval/*", "")])] == ["add_one", "gsm8k"]


def plot_cli(*args, cwd):
    """plot.py run as a command from `cwd`: (return code, stderr lines)."""
    r = subprocess.run([sys.executable, str(ROOT / "plot.py"), *map(str, args)], cwd=cwd, env=ENV,
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stderr.splitlines()


def assert_refused(code, lines, *expected):
    """Exit 2, no traceback, one "plot.py: error: " line per problem, each expected text in some line."""
    assert code == 2 and lines and "Traceback" not in "\n".join(lines), lines
    assert all(line.startswith("plot.py: error: ") for line in lines), lines
    for text in expected:
        assert any(text in line for line in lines), (text, lines)


def test_no_run_directory_is_a_one_line_error_and_writes_nothing(tmp_path):
    assert_refused(*plot_cli(cwd=tmp_path), "no run directory")
    assert list(tmp_path.iterdir()) == []  # no empty comparison.png


@pytest.mark.parametrize("suffix, magic", [(".pdf", b"%PDF"), (".svg", b"<?xml"), (".PNG", PNG)])
def test_out_is_written_in_the_format_its_suffix_names(tmp_path, suffix, magic):
    run = write_run(tmp_path / "a", [row(1), row(2)])
    plot_runs([run], tmp_path / f"fig{suffix}")
    assert (tmp_path / f"fig{suffix}").read_bytes().startswith(magic)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", f"fig{suffix}"]  # no temporary file left


def test_an_out_matplotlib_cannot_write_is_refused_before_drawing(tmp_path):
    run = write_run(tmp_path / "a", [row(1)])
    assert_refused(*plot_cli(run, "--out", "fig.foo", cwd=tmp_path), "--out fig.foo: .foo is not a figure format")
    for out, reason in [("fig", "no suffix"), ("no_such_dir/fig.png", "does not exist")]:
        with pytest.raises(UsageError, match=reason):
            plot_runs([run], tmp_path / out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"] and sorted(p.name for p in run.iterdir()) == ["metrics.jsonl"]


def test_runs_without_metrics_rows_are_refused_each_named(tmp_path):
    (tmp_path / "no_log").mkdir()
    empty = write_run(tmp_path / "empty", [])
    good = write_run(tmp_path / "good", [row(1)])
    code, lines = plot_cli(tmp_path / "no_log", empty, good, tmp_path / "missing", "--out", "cmp.png", cwd=tmp_path)
    assert_refused(code, lines, f"{tmp_path / 'no_log'}: no metrics.jsonl", f"{empty / 'metrics.jsonl'}: no rows",
                   f"{tmp_path / 'missing'}: no metrics.jsonl")
    assert len(lines) == 3 and not (tmp_path / "cmp.png").exists()
    with pytest.raises(UsageError, match="no rows"):
        plot_runs([empty], tmp_path / "x.png")
    assert write_run_figure(empty) is None and not (empty / "metrics.png").exists()  # a warning, never an exception


def sft_row(step, **extra):
    """A row as sft.py writes it."""
    return {"step": step, "loss": 2.0 / step, "target_tokens": 900, "tokens_per_s": 450.0, "lr": 1e-5,
            "grad_norm": 3.0, "time_step": 2.0, **extra}


def test_an_sft_run_draws_its_loss_and_eval_loss_and_an_rl_run_its_panels(tmp_path):
    sft = write_run(tmp_path / "sft", [sft_row(1), sft_row(2, eval_loss=1.5), sft_row(3), sft_row(4, eval_loss=1.2)])
    assert plot_runs([sft], tmp_path / "sft.png") == ["loss", "grad norm"]
    loss_keys = dict(PANELS)["loss"]
    curves = _curves([sft_row(1), sft_row(2, eval_loss=1.5)], loss_keys)
    assert [(label, steps) for label, steps, _ in curves] == [("loss", [1, 2]), ("eval loss", [2])]
    rl = write_run(tmp_path / "rl", [row(1), row(2)])
    for run in (sft, rl):  # train_zero.py's call, for either kind of run
        assert write_run_figure(run) == run / "metrics.png" and (run / "metrics.png").read_bytes().startswith(PNG)
