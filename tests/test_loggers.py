"""--log-with tensorboard|wandb: the same rows as metrics.jsonl, finite numbers only, a resume continues the same
logs; an unknown name or a missing package is a flag error. The library tests skip when the package is absent
(CI installs requirements-loggers.txt, so they run there)."""

import importlib.util
import json
import math
import time

import pytest

import rundir
from data import UsageError
from loggers import ExternalLoggers
from rundir import logger_problems
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
    monkeypatch.setattr(rundir.importlib.util, "find_spec", lambda name: None)
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


def wandb_records(run_file, timeout_s=60.0):
    """The records of an offline W&B run file (wandb's LevelDB-log format: a 7-byte file header, 32 KiB blocks,
    each chunk a 7-byte header of CRC, little-endian length and type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4), read
    once the run's `exit` record is there: wandb's writer may still be flushing when finish() returns."""
    from wandb.proto import wandb_internal_pb2

    deadline = time.monotonic() + timeout_s
    while True:
        data, records, chunk, pos = run_file.read_bytes(), [], b"", 7
        assert data[:4] == b":W&B", f"{run_file}: not a W&B run file"
        while pos + 7 <= len(data):
            if 32768 - pos % 32768 < 7:  # a block's tail too short for a chunk header is padding
                pos += 32768 - pos % 32768
                continue
            length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
            chunk += data[pos + 7:pos + 7 + length]
            pos += 7 + length
            if kind in (1, 4) and pos <= len(data):
                records.append(wandb_internal_pb2.Record.FromString(chunk))
                chunk = b""
        kinds = [r.WhichOneof("record_type") for r in records]
        if "exit" in kinds or time.monotonic() > deadline:
            return records
        time.sleep(0.5)


def wandb_history(run_file):
    """(key, value) pairs of the history records in an offline W&B run file, wandb's own fields (_step,
    _runtime, _timestamp) left out."""
    records = wandb_records(run_file)
    pairs = [(item.key or "/".join(item.nested_key), json.loads(item.value_json))
             for r in records if r.HasField("history") for item in r.history.item]
    assert pairs, f"{run_file}: no history records in {[r.WhichOneof('record_type') for r in records]}"
    return [(key, value) for key, value in pairs if not key.startswith("_")]


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
