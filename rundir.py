"""A run's scaffold, shared by train_zero.py, sft.py and evaluate.py: its command line, its run directory, its logs.

    cli("train_zero.py", Config, main)       # parse (grouped --help), check, run; errors -> one line each, exit 2
    with run_directory(out_dir, config, d, resume, overwrite, writes) as checkpoint:   # lock, refusals, config.json
        truncate_logs(out_dir, step)                                                   # --resume: rows after it go

A run directory belongs to one run at a time: `run.lock` (the owner's pid and host, made with an atomic
hard link) refuses a second run into it, and a lock whose process is gone (kill -9) is taken over. A run
without --resume refuses a directory that holds an earlier run's files unless --overwrite, which deletes
exactly those: the names in `writes` (what the entry point itself writes). A directory holding anything else
(an HF model, a notebook, another tool's files) or a config.json that is not a run's is refused, also with
--overwrite. Everything that can refuse (the lock, --resume's checkpoint and flags, the overwrite rule) runs
before anything is written, so a refused run changes nothing on disk; the entry points also check their flags,
data and model config before they call run_directory.

The settings every entry point composes (each field has one default, one meaning and one check):
RunSettings (out_dir, seed, overwrite) and TrainRunSettings (resume, eval and checkpoint cadence, loggers).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch.distributed as dist

from checkpoint import check_resume_config, latest_checkpoint, read_trainer_state
from data import UsageError, read_log, write_atomic
from distributed import Dist

LOCK = "run.lock"  # out_dir/run.lock: {"pid", "host", "started"} of the run that owns the directory
# what every run writes besides its own files: its config, and the transient files of the lock and atomic writes
COMMON_FILES = ("config.json", LOCK, f".{LOCK}.*", ".*.tmp")


# ---------------------------------------------------------------------------------------------
# Settings every entry point composes


LOGGERS = ("tensorboard", "wandb")  # --log-with names, each also the package it needs


def settings_problems(cfg) -> list[str]:
    """Every problem of a config composed of settings groups: each group's own problems() (the ranges and names of
    its fields, found without loading anything), base groups first. A config's own problems() adds the checks
    that span groups and calls this for the rest."""
    out = []
    for group in type(cfg).__mro__[::-1]:
        check = group.__dict__.get("problems")
        if check is not None and group is not type(cfg):
            out += check(cfg)
    return out


# ---------------------------------------------------------------------------------------------
# The command line: grouped --help, every problem one line, exit codes


def _groups(config_cls) -> list[type]:
    """The settings groups a config composes: its direct dataclass bases, each with its own fields."""
    return [base for base in config_cls.__bases__ if dataclasses.is_dataclass(base)]


def parse(config_cls, args: list[str] | None = None, prog: str | None = None):
    """config_cls from the command line: its flags are its fields (flat: --out-dir), shown in --help under one
    heading per settings group it composes (its dataclass bases). tyro parses a nested view of the groups, each
    with the config's defaults; the result is one flat config_cls. A config with fields outside its groups (or
    no groups, as plot.py's) gets tyro's plain flat command line."""
    import tyro

    defaults = config_cls()
    groups = _groups(config_cls)
    grouped = {f.name for g in groups for f in dataclasses.fields(g)}
    own = [f for f in dataclasses.fields(config_cls) if f.name not in grouped]
    if not groups or own:  # fields outside any group: the plain flat CLI
        return tyro.cli(config_cls, args=args, prog=prog, description=config_cls.__doc__)
    titles = [re.sub(r"(?<=[a-z])(?=[A-Z])", "_", g.__name__.removesuffix("Settings")).lower() for g in groups]
    view = dataclasses.make_dataclass(config_cls.__name__, [
        (title, tyro.conf.OmitArgPrefixes[g], dataclasses.field(
            default_factory=lambda g=g: g(**{f.name: getattr(defaults, f.name) for f in dataclasses.fields(g)})))
        for title, g in zip(titles, groups)])
    view.__doc__ = config_cls.__doc__
    parsed = tyro.cli(view, args=args, prog=prog, config=(tyro.conf.OmitArgPrefixes,))
    return config_cls(**{f.name: getattr(getattr(parsed, title), f.name)
                         for title, g in zip(titles, groups) for f in dataclasses.fields(g)})


def cli(script: str, config_cls, main, stops: tuple[type[BaseException], ...] = ()) -> None:
    """An entry point's `__main__`: parse config_cls (parse), run main(cfg), and turn the user's errors into one
    line each on stderr (rank 0 only) with no traceback: UsageError -> "<script>: error: ..." and exit 2; an
    exception in `stops` (a run that had to stop: divergence) -> "<script>: stopped: ..." and exit 1."""
    rank0 = int(os.environ.get("RANK", 0)) == 0
    try:
        main(parse(config_cls, prog=script))
    except UsageError as error:  # the user's input: one line per problem
        if rank0:
            print("\n".join(f"{script}: error: {line}" for line in str(error).splitlines()), file=sys.stderr)
        sys.exit(2)
    except stops as error:
        if rank0:
            print(f"{script}: stopped: {error}", file=sys.stderr)
        sys.exit(1)


# ---------------------------------------------------------------------------------------------
# The run directory: one run at a time, refusals before any write


def _owner(lock: Path) -> dict:
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError):
        return {}  # gone meanwhile, or unreadable: nobody's


def _alive(owner: dict) -> bool:
    """Whether the lock's owner may still run: a live pid on this host, or any pid on another (cannot tell)."""
    if owner.get("host") != socket.gethostname():
        return bool(owner)
    try:
        os.kill(int(owner["pid"]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


def acquire_lock(out_dir: Path) -> Path:
    """Make out_dir/run.lock for this process (pid, host, start time); returns its path.

    The lock is published complete, with an atomic hard link. A lock left by a process that is gone (same
    host, pid not running) is taken over with a warning on stderr. Raises UsageError while another run
    holds it (its pid, host and start time in the message).
    """
    lock = out_dir / LOCK
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    tmp = out_dir / f".{LOCK}.{os.getpid()}"
    tmp.write_text(json.dumps(mine))
    try:
        for _ in range(3):
            try:
                os.link(tmp, lock)
                return lock
            except FileExistsError:
                owner = _owner(lock)
                if _alive(owner):
                    raise UsageError(f"{out_dir} is in use by another run (pid {owner.get('pid')} on "
                                     f"{owner.get('host')}, started {owner.get('started')}): wait for it to end, "
                                     f"use another --out-dir, or delete {lock} if that run is gone") from None
                print(f"warning: taking over {lock} from a run that is gone ({owner or 'unreadable lock'})",
                      file=sys.stderr, flush=True)
                lock.unlink(missing_ok=True)
        raise UsageError(f"{lock}: could not take the lock (other runs start in this directory at the same time)")
    finally:
        tmp.unlink(missing_ok=True)


def release_lock(lock: Path) -> None:
    """Delete the lock if this process still owns it."""
    owner = _owner(lock)
    if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        lock.unlink(missing_ok=True)


def _is_run_config(path: Path) -> bool:
    """Whether `path` (a config.json) was written by a run of ours: a JSON object with an out_dir field (an HF
    model's config.json has model_type instead)."""
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "out_dir" in config and "model_type" not in config


def earlier_run(out_dir: Path, writes: tuple[str, ...]) -> list[str]:
    """The names in out_dir an earlier run of ours wrote (`writes` patterns and COMMON_FILES). Raises UsageError
    when out_dir holds anything else, or a config.json that is not a run's: --overwrite never deletes it."""
    names = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else []
    ours = [n for n in names if any(fnmatch.fnmatch(n, pattern) for pattern in (*writes, *COMMON_FILES))]
    foreign = [n for n in names if n not in ours]
    if "config.json" in ours and not _is_run_config(out_dir / "config.json"):
        foreign.insert(0, "config.json (not a run's: an HF model's?)")
    if foreign:
        raise UsageError(f"{out_dir} holds files no run of this script writes ({', '.join(foreign[:5])}"
                         f"{', ...' if len(foreign) > 5 else ''}): it is not a run directory of ours, and --overwrite "
                         f"would not delete them; use another --out-dir")
    return [n for n in ours if n != LOCK and not n.startswith(f".{LOCK}")]


@contextmanager
def run_directory(out_dir: Path, config: dict, d: Dist, resume: bool = False, overwrite: bool = False,
                  writes: tuple[str, ...] = ()):
    """Own `out_dir` for one run; yields the checkpoint to resume from (None for a fresh run). Collective.

    config: the run's resolved config (written to out_dir/config.json). writes: glob patterns of the names the
    entry point writes into out_dir (besides config.json): what --overwrite may delete.
    Rank 0, before writing anything: takes the lock (acquire_lock); with `resume`, finds the checkpoint
    (checkpoint.latest_checkpoint) and checks `config` against its run's (checkpoint.check_resume_config);
    without, refuses a directory holding an earlier run (earlier_run) unless `overwrite`, which deletes it.
    Then it writes config.json. The verdict is broadcast, so every rank raises the same UsageError on a
    refusal (only rank 0 holds the reason; the others say so). The lock is released when the block ends,
    also on any error.
    """
    lock, error, checkpoint = None, None, None
    if d.is_main:
        try:
            if resume and not out_dir.is_dir():
                latest_checkpoint(out_dir)  # raises: nothing to resume (and no directory is made)
            out_dir.mkdir(parents=True, exist_ok=True)
            lock = acquire_lock(out_dir)  # first: another run's files are its own business, even its checkpoints
            checkpoint = latest_checkpoint(out_dir) if resume else None
            if checkpoint is not None:
                check_resume_config(read_trainer_state(checkpoint)["config"], config, checkpoint)
            else:
                held = earlier_run(out_dir, writes)
                if held and not overwrite:
                    raise UsageError(f"{out_dir} holds an earlier run ({', '.join(held)}): pass --resume to continue "
                                     f"it, --overwrite to delete it and start again, or use another --out-dir")
                for name in held:
                    shutil.rmtree(out_dir / name) if (out_dir / name).is_dir() else (out_dir / name).unlink()
            write_atomic(out_dir / "config.json", json.dumps(config, indent=1))
        except Exception as e:  # noqa: BLE001 - every refusal releases the lock and reaches every rank
            error = e
            if lock is not None:
                release_lock(lock)
                lock = None
    verdict = [None if error is None else str(error), None if checkpoint is None else str(checkpoint)]
    dist.broadcast_object_list(verdict, src=0)
    if error is not None:
        raise error
    if verdict[0] is not None:
        raise UsageError(f"rank 0 refused {out_dir}: {verdict[0]}")
    try:
        yield None if verdict[1] is None else Path(verdict[1])
    finally:
        if lock is not None:
            release_lock(lock)


# ---------------------------------------------------------------------------------------------
# Logs: --resume truncates them; the loggers that mirror them (loggers.py) load only with --log-with


def truncate_logs(out_dir: Path, step: int) -> None:
    """Keep only the rows of metrics.jsonl and samples.jsonl up to `step` (a resumed run rewrites the rest).

    A last line cut short by a kill mid-write is dropped with a warning; a bad line elsewhere raises
    UsageError naming file and line (data.read_log).
    """
    for path in (out_dir / "metrics.jsonl", out_dir / "samples.jsonl"):
        if path.exists():
            kept = [row for row in read_log(path) if row.get("step", step + 1) <= step]
            write_atomic(path, "".join(json.dumps(row) + "\n" for row in kept))


def logger_problems(kinds: tuple[str, ...]) -> list[str]:
    """What stops `--log-with kinds`, one line each: an unknown name, or its package not installed."""
    out = [f"--log-with {k}: unknown; use {' or '.join(LOGGERS)}" for k in kinds if k not in LOGGERS]
    missing = [k for k in kinds if k in LOGGERS and importlib.util.find_spec(k) is None]
    if missing:
        out.append(f"--log-with {' '.join(kinds)}: pip install {' '.join(missing)} "
                   "(optional: requirements-loggers.txt)")
    return out


class NoLoggers:
    """What external_loggers gives without --log-with: a context manager whose log() does nothing."""

    def log(self, row: dict) -> None:
        pass

    def __enter__(self) -> "NoLoggers":
        return self

    def __exit__(self, *exc) -> None:
        pass


def external_loggers(kinds: tuple[str, ...], out_dir: Path, config: dict, start_step: int = 0,
                     wandb_project: str = "zero-rl", wandb_mode: str = "offline"):
    """loggers.ExternalLoggers for --log-with kinds (TensorBoard, W&B: imported only then), else NoLoggers."""
    if not kinds:
        return NoLoggers()
    from loggers import ExternalLoggers

    return ExternalLoggers(kinds, out_dir, config, start_step, wandb_project, wandb_mode)
