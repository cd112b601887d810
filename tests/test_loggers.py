"""--log-with tensorboard|wandb: the same rows as metrics.jsonl, finite numbers only, a resume continues the same
logs; an unknown name or a missing package is a flag error. The library tests skip when the package is absent
(CI installs requirements-loggers.txt, so they run there)."""

import importlib.util
import json
import math
import re

import pytest

import metrics
from data import UsageError
from metrics import ExternalLoggers, logger_problems
from test_train import tiny_config
from train_zero import main

HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
HAS_WANDB = importlib.util.find_spec("wandb") is not None
ROWS = [
    {"step": 0, "eval/arithmetic": 0.25, "eval/arithmetic/answer_rate": 0.5},
    {"step": 1, "reward_mean": -1.0, "accuracy": 0.0, "response_length_correct": None, "skipped_updates": 0,
     "grad_norm": float("nan"), "nonfinite": ["grad_norm"], "collapsed": True},
    {"step": 2, "reward_mean": -0.5, "accuracy": 0.25, "response_length_correct": 12.0, "skipped_updates": 1,
     "grad_norm": 3.5},
]


def test_unknown_logger_and_missing_package_are_flag_problems(monkeypatch):
    assert logger_problems(()) == []
    assert logger_problems(("mlflow",)) == ["--log-with mlflow: unknown; use tensorboard or wandb"]
    monkeypatch.setattr(metrics.importlib.util, "find_spec", lambda name: None)
    assert logger_problems(("tensorboard", "wandb")) == [
        "--log-with tensorboard wandb: pip install tensorboard wandb (optional: requirements-loggers.txt)"]
    with pytest.raises(UsageError, match="pip install wandb"):
        ExternalLoggers(("wandb",), None, {})


def test_without_loggers_nothing_is_written(tmp_path):
    with ExternalLoggers((), tmp_path, {}) as loggers:
        for row in ROWS:
            loggers.log(row)
    assert list(tmp_path.iterdir()) == []


def tensorboard_scalars(log_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard not installed (requirements-loggers.txt)")
def test_tensorboard_gets_every_finite_number_at_its_step_and_a_resume_replaces_the_rows_after_it(tmp_path):
    with ExternalLoggers(("tensorboard",), tmp_path, {}) as loggers:
        for row in ROWS:
            loggers.log(row)
    scalars = tensorboard_scalars(tmp_path / "tensorboard")
    assert scalars == {
        "eval/arithmetic": [(0, 0.25)], "eval/arithmetic/answer_rate": [(0, 0.5)],
        "reward_mean": [(1, -1.0), (2, -0.5)], "accuracy": [(1, 0.0), (2, 0.25)],
        "response_length_correct": [(2, 12.0)], "skipped_updates": [(1, 0.0), (2, 1.0)], "grad_norm": [(2, 3.5)]}
    # resumed from a step-1 checkpoint: step 2 is run again and its new row replaces the old one
    with ExternalLoggers(("tensorboard",), tmp_path, {}, start_step=1) as loggers:
        loggers.log({"step": 2, "reward_mean": 0.75})
    assert tensorboard_scalars(tmp_path / "tensorboard")["reward_mean"] == [(1, -1.0), (2, 0.75)]


def wandb_history(run_file):
    """(key, value) pairs of the history records in an offline W&B run file: each item's key, then its value_json
    (protobuf field 16, tag bytes 0x82 0x01, then a one-byte length)."""
    data = run_file.read_bytes()
    pairs = re.findall(rb"\x12.([a-z_/]+)\x82\x01(.)", data, re.DOTALL)
    out = []
    for key, length in pairs:
        start = data.index(key + b"\x82\x01" + length) + len(key) + 3
        out.append((key.decode(), json.loads(data[start:start + length[0]])))
    return out


@pytest.mark.skipif(not HAS_WANDB, reason="wandb not installed (requirements-loggers.txt)")
def test_wandb_offline_run_holds_the_rows_and_a_resume_continues_the_same_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    with ExternalLoggers(("wandb",), tmp_path, {"lr": 5e-5}, wandb_mode="offline") as loggers:
        for row in ROWS:
            loggers.log(row)
    run_id = (tmp_path / "wandb" / "run_id").read_text().strip()
    [run_file] = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    history = wandb_history(run_file)
    assert ("reward_mean", -0.5) in history and ("eval/arithmetic", 0.25) in history
    assert ("grad_norm", 3.5) in history and not any(k == "grad_norm" and not math.isfinite(v) for k, v in history)
    assert not any(k in ("nonfinite", "collapsed", "response_length_correct") and v is None for k, v in history)
    with ExternalLoggers(("wandb",), tmp_path, {"lr": 5e-5}, start_step=2, wandb_mode="offline") as loggers:
        loggers.log({"step": 3, "reward_mean": 0.25})
    assert (tmp_path / "wandb" / "run_id").read_text().strip() == run_id
    runs = list((tmp_path / "wandb").glob(f"offline-run-*-{run_id}"))
    assert ("reward_mean", 0.25) in [pair for run in runs for f in run.glob("run-*.wandb") for pair in wandb_history(f)]


@pytest.mark.skipif(not HAS_TENSORBOARD, reason="tensorboard not installed (requirements-loggers.txt)")
def test_a_training_run_mirrors_metrics_jsonl_into_tensorboard(tiny_model_dir, tmp_path, parity_reward):
    main(tiny_config(tiny_model_dir, tmp_path, steps=2, eval_every=2, save_every=0, log_with=("tensorboard",)))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    scalars = tensorboard_scalars(tmp_path / "tensorboard")
    assert [r["step"] for r in rows] == [0, 1, 2]
    for key in ("reward_mean", "loss", "grad_norm", "eval/arithmetic"):
        assert scalars[key] == [(r["step"], pytest.approx(r[key])) for r in rows if r.get(key) is not None], key
