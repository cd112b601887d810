"""checkpoint.py at its seams: flags are checked before anything is loaded, and loading executes nothing (every
file of real single-process and FSDP checkpoints: test_checkpoint_safety.py)."""

import json
import os
import re

import pytest
import torch

from checkpoint import check_resume_config, latest_checkpoint, load_checkpoint
from rundir import truncate_logs
from data import UsageError
from distributed import Dist

CPU = Dist(rank=0, world_size=1, device=torch.device("cpu"), is_main=True)


class RunsCode:
    """A pickled object whose loading would run code (what a crafted checkpoint file carries)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def write_checkpoint(path, config, optimizer_payload):
    path.mkdir(parents=True)
    (path / "trainer_state.json").write_text(json.dumps({"step": 3, "world_size": 1, "config": config}))
    torch.save(optimizer_payload, path / "optimizer.pt")


def test_changed_flags_are_refused_before_any_file_is_loaded(tmp_path):
    checkpoint = tmp_path / "checkpoints" / "step_000003"
    write_checkpoint(checkpoint, {"lr": 1e-3, "steps": 3}, RunsCode(str(tmp_path / "ran")))
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(ValueError, match=r"--lr: checkpoint 0.001, now 0.002"):
        load_checkpoint(checkpoint, {"lr": 2e-3, "steps": 9}, CPU, torch.nn.Linear(2, 2), optimizer)
    assert not (tmp_path / "ran").exists()


def test_a_checkpoint_file_that_would_run_code_is_refused(tmp_path):
    checkpoint = tmp_path / "checkpoints" / "step_000003"
    write_checkpoint(checkpoint, {"lr": 1e-3}, RunsCode(str(tmp_path / "ran")))
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(UsageError, match=re.escape(f"{checkpoint / 'optimizer.pt'}: refused: it would run code on "
                                                   f"load (pickled global posix.mkdir)")):
        load_checkpoint(checkpoint, {"lr": 1e-3}, CPU, torch.nn.Linear(2, 2), optimizer)
    assert not (tmp_path / "ran").exists()


def test_resume_may_change_only_flags_that_keep_the_trajectory(tmp_path):
    check_resume_config({"lr": 1e-3, "steps": 3, "levels": [3, 4]}, {"lr": 1e-3, "steps": 30, "levels": (3, 4)}, tmp_path)
    with pytest.raises(ValueError, match="--group-size: checkpoint 8, now 4"):
        check_resume_config({"group_size": 8}, {"group_size": 4}, tmp_path)


def test_latest_pointer_and_log_truncation(tmp_path):
    with pytest.raises(UsageError, match="no checkpoint"):
        latest_checkpoint(tmp_path)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "latest").write_text("step_000002\n")
    with pytest.raises(UsageError, match="names step_000002, which is not a directory"):
        latest_checkpoint(tmp_path)
    (tmp_path / "checkpoints" / "step_000002").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step_000002"
    for hostile in ("../../other/checkpoints/step_000002", "/tmp/step_000002", "step_000002/..", ""):
        (tmp_path / "checkpoints" / "latest").write_text(hostile)
        with pytest.raises(ValueError, match="not a step_NNNNNN directory of this run"):
            latest_checkpoint(tmp_path)
    (tmp_path / "checkpoints" / "latest").write_text("step_000002\n")
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3)))
    truncate_logs(tmp_path, 2)
    assert [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [1, 2]
