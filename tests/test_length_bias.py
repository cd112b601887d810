"""benchmarks/length_bias.py: the runs it makes are train_zero runs that differ only in --algo, its summary holds
their logged per-step lengths, the figure is written, and a finished run is read back rather than re-run."""

import json
import sys
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import length_bias  # noqa: E402


def test_runs_differ_only_in_algo_and_seed():
    s = length_bias.LengthBiasSettings()
    grpo, drgrpo = asdict(length_bias.run_config(s, "grpo", 0)), asdict(length_bias.run_config(s, "drgrpo", 0))
    assert {k for k in grpo if grpo[k] != drgrpo[k]} == {"algo", "out_dir"}
    assert grpo["reward"] == "simplerl" and grpo["template"] == "chat_oneshot" and grpo["max_new_tokens"] == 64


def test_sweep_writes_summary_and_figure_and_reads_finished_runs_back(tiny_model_dir, tmp_path):
    s = length_bias.LengthBiasSettings(seeds=(0,), steps=2, out_dir=str(tmp_path / "lb"),
                                       figure=str(tmp_path / "lb.png"), model=tiny_model_dir, max_new_tokens=4)
    summary = length_bias.run(s)
    assert set(summary) == {"grpo", "drgrpo"} and (tmp_path / "lb.png").stat().st_size > 0
    for algo in ("grpo", "drgrpo"):
        rows = [json.loads(line) for line in (tmp_path / "lb" / f"{algo}_seed0" / "metrics.jsonl").read_text().splitlines()]
        assert summary[algo]["0"]["mean"] == [r["response_length_mean"] for r in rows] and len(rows) == 2
        assert summary[algo]["0"]["wrong"] == [r["response_length_wrong"] for r in rows]
    assert json.loads((tmp_path / "lb" / "summary.json").read_text()) == summary
    metrics = tmp_path / "lb" / "grpo_seed0" / "metrics.jsonl"
    before = metrics.stat().st_mtime_ns
    assert length_bias.run(s) == summary and metrics.stat().st_mtime_ns == before  # read back, not re-run
