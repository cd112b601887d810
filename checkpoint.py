"""The run directory and its checkpoints: one run per directory, and a crash never leaves half a checkpoint.

    with run_directory(out_dir, config, d, resume, overwrite) as checkpoint:  # lock; flags checked; config.json
        save_checkpoint(out_dir, step, ...)    # out_dir/checkpoints/step_NNNNNN, then `latest` points at it
        step = load_checkpoint(checkpoint, ...)    # --resume: optimiser, critic and RNG state
        truncate_logs(out_dir, step)           # metrics.jsonl / samples.jsonl cut back to the checkpoint

A run directory belongs to one run at a time: `run.lock` (the owner's pid and host, made with an atomic
hard link) refuses a second run into it, and a lock whose process is gone (kill -9) is taken over. A run
without --resume refuses a directory that holds an earlier run's files unless --overwrite (which deletes
them). Everything that can refuse (the lock, --resume's checkpoint and flags, the overwrite rule) runs
before anything is written, so a refused run changes nothing on disk.

A checkpoint directory holds the policy as an HF model directory in fp32 (evaluate.py, vLLM and
`from_pretrained` load it as is), `rng_rank{r}.pt` per rank, `trainer_state.json` (step, world size,
the run's config), and the optimiser state:
- DDP (replicated): `optimizer.pt` and, for PPO, `critic.pt` and `critic_optimizer.pt`, written by rank 0;
- FSDP (sharded): `optimizer/` and, for PPO, `critic/` (weights and optimiser) in torch.distributed.checkpoint
  format, each rank writing its own shards; the HF export is gathered one parameter at a time to rank 0.
It is written into `.tmp_step_NNNNNN` and renamed; `latest` is replaced atomically (data.write_atomic).
Every torch file is read with `weights_only=True` (tensors and plain containers only, no code).
Deviation: a torch.distributed.checkpoint directory's `.metadata` is read by PyTorch's own loader (pickle).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

from data import UsageError, read_log, write_atomic
from distributed import Dist, all_reduce
from model import full_parameters, is_sharded, local_shard

# Flags that do not change the training trajectory: --resume accepts new values for them.
RESUME_MAY_CHANGE = {"steps", "resume", "out_dir", "eval_every", "eval_data", "eval_limit", "save_every", "log_samples",
                     "grader_timeout", "grader_workers", "data_dir", "probe_every", "probe_tolerance", "vllm_sleep",
                     "vllm_kv_cache_gb", "vllm_gpu_memory_utilization", "vllm_cpu_bind",
                     "gradient_checkpointing", "ref_offload", "overwrite", "max_bad_steps", "log_with", "wandb_project",
                     "wandb_mode"}
LOCK = "run.lock"  # out_dir/run.lock: {"pid", "host", "started"} of the run that owns the directory
# what a run writes (--overwrite deletes them)
RUN_FILES = ("config.json", "metrics.jsonl", "samples.jsonl", "checkpoints", "tensorboard", "wandb")


class NonFiniteWeights(RuntimeError):
    """The weights hold NaN or inf: the run has diverged and its checkpoint is not written."""


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


@contextmanager
def run_directory(out_dir: Path, config: dict, d: Dist, resume: bool, overwrite: bool):
    """Own `out_dir` for one run; yields the checkpoint to resume from (None for a fresh run). Collective.

    Rank 0, before writing anything: takes the lock (acquire_lock); with `resume`, finds the checkpoint
    (latest_checkpoint) and checks `config` against its run's (check_resume_config); without, refuses a
    directory holding RUN_FILES of an earlier run unless `overwrite`, which deletes them. Then it writes
    config.json. The verdict is broadcast, so every rank raises the same UsageError on a refusal (only
    rank 0 holds the reason; the others say so). The lock is released when the block ends, also on error.
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
                state = json.loads((checkpoint / "trainer_state.json").read_text())
                check_resume_config(state["config"], config, checkpoint)
            else:
                held = [name for name in RUN_FILES if (out_dir / name).exists()]
                if held and not overwrite:
                    raise UsageError(f"{out_dir} holds an earlier run ({', '.join(held)}): pass --resume to continue "
                                     f"it, --overwrite to delete it and start again, or use another --out-dir")
                for name in held:
                    shutil.rmtree(out_dir / name) if (out_dir / name).is_dir() else (out_dir / name).unlink()
            write_atomic(out_dir / "config.json", json.dumps(config, indent=1))
        except UsageError as e:
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
# Checkpoints


def all_finite(*modules) -> bool:
    """Whether every parameter of `modules` (None entries skipped) is finite on every rank. Collective."""
    bad = any(not torch.isfinite(local_shard(p)).all() for m in modules if m is not None for p in m.parameters())
    return not all_reduce(torch.tensor([float(bad)]), op="max").item()


def save_checkpoint(out_dir: Path, step: int, model, tokenizer, optimizer, config: dict, d: Dist, critic=None,
                    critic_optimizer=None) -> Path:
    """Save everything needed to continue after `step` steps into out_dir/checkpoints/step_NNNNNN; returns it.

    model: the HF model (not a wrapper); config: the run's resolved config (asdict). Every rank writes its
    RNG state; rank 0 writes the rest. Collective: every rank must call it.
    Raises NonFiniteWeights (and writes nothing) when a weight of the policy or critic is NaN or inf.
    """
    root = out_dir / "checkpoints"
    if not all_finite(model, critic):
        raise NonFiniteWeights(f"step {step}: the weights hold NaN or inf (the run diverged); no checkpoint "
                               f"written, {root / 'latest'} still names the last finite one")
    final, tmp = root / f"step_{step:06d}", root / f".tmp_step_{step:06d}"
    if d.is_main:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    dist.barrier()
    torch.save({"torch": torch.get_rng_state(), "python": random.getstate()}, tmp / f"rng_rank{d.rank}.pt")
    if is_sharded(model):  # every rank takes part: gathers for the HF export, its own shards for the rest
        export_hf(model, tokenizer, tmp, d)
        _save_sharded(tmp / "optimizer", model, optimizer)
        if critic is not None:
            _save_sharded(tmp / "critic", critic, critic_optimizer, with_weights=True)
    elif d.is_main:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if critic is not None:
            torch.save(critic.state_dict(), tmp / "critic.pt")
            torch.save(critic_optimizer.state_dict(), tmp / "critic_optimizer.pt")
    if d.is_main:
        state = {"step": step, "world_size": d.world_size, "config": config}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
    dist.barrier()
    if d.is_main:
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        write_atomic(root / "latest", final.name)
    dist.barrier()
    return final


def export_hf(model, tokenizer, path: Path, d: Dist) -> None:
    """Write `model` as an HF directory at `path` (safetensors, fp32 master weights) from rank 0.

    FSDP-sharded parameters are gathered one at a time (model.full_parameters; a collective, every rank
    calls) and only rank 0 keeps them, on the CPU. The result loads with `from_pretrained`.
    """
    state = {}
    for name, tensor in full_parameters(model):
        if d.is_main:
            state[name] = tensor.to("cpu", copy=True)
    if d.is_main:
        model.save_pretrained(path, state_dict=state)
        tokenizer.save_pretrained(path)


def _sharded_state(module, optimizer, with_weights: bool) -> dict:
    """This rank's shards of the optimiser state (and the weights), as torch.distributed.checkpoint saves them."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    state = {"optimizer": get_optimizer_state_dict(module, optimizer)}
    if with_weights:
        state["model"] = get_model_state_dict(module)
    return state


def _save_sharded(path: Path, module, optimizer, with_weights: bool = False) -> None:
    """Each rank writes its shards of the optimiser state (and the weights) with torch.distributed.checkpoint."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_sharded_state(module, optimizer, with_weights), checkpoint_id=str(path))


def _load_sharded(path: Path, module, optimizer, with_weights: bool = False) -> None:
    """Inverse of _save_sharded, into the (already sharded) module and its optimiser, in place."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    state = _sharded_state(module, optimizer, with_weights)  # the layout to load into
    dcp.load(state, checkpoint_id=str(path))
    if with_weights:
        set_model_state_dict(module, state["model"])
    set_optimizer_state_dict(module, optimizer, state["optimizer"])


def latest_checkpoint(out_dir: Path) -> Path:
    """The checkpoint directory out_dir/checkpoints/latest names: one step_NNNNNN directory of this run.

    Raises UsageError: there is no `latest`; the directory it names does not exist; or it names anything
    but a step_NNNNNN directory inside out_dir/checkpoints (../../other/checkpoints/step_000002 would resume
    another run).
    """
    root = out_dir / "checkpoints"
    pointer = root / "latest"
    if not pointer.exists():
        raise UsageError(f"--resume: no checkpoint under {root} (run once without --resume)")
    name = pointer.read_text().strip()
    if re.fullmatch(r"step_\d{6,}", name) is None:
        raise UsageError(f"--resume: {pointer} names {name!r}, not a step_NNNNNN directory of this run's checkpoints")
    if not (root / name).is_dir():
        raise UsageError(f"--resume: {pointer} names {name}, which is not a directory under {root}")
    return root / name


def check_resume_config(saved: dict, current: dict, checkpoint: Path) -> None:
    """Raise UsageError naming every flag that shapes training and differs from the checkpoint's run."""
    changed = [f"--{k.replace('_', '-')}: checkpoint {saved[k]!r}, now {current[k]!r}" for k in current
               if k in saved and k not in RESUME_MAY_CHANGE and _jsonable(saved[k]) != _jsonable(current[k])]
    if changed:
        raise UsageError(f"--resume from {checkpoint}: these flags differ from the run that wrote it "
                         f"(pass the same values to continue exactly): " + "; ".join(changed))


def _jsonable(value):
    return json.loads(json.dumps(value))  # tuples and lists compare equal, as they are stored


def load_checkpoint(checkpoint: Path, config: dict, d: Dist, model, optimizer, critic=None,
                    critic_optimizer=None) -> int:
    """Restore a run's state from `checkpoint` (the policy weights are loaded from it by model.load_model).

    Checks `config` against the checkpoint's run first (check_resume_config), then loads the optimiser
    of `model` (the policy's HF module), the critic and its optimiser (PPO), and this rank's RNG state;
    sharded (FSDP) state with torch.distributed.checkpoint, a collective. Returns the number of steps done.
    Raises ValueError for changed flags; FileNotFoundError for a missing file.
    """
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    check_resume_config(state["config"], config, checkpoint)
    if is_sharded(model):
        _load_sharded(checkpoint / "optimizer", model, optimizer)
        if critic is not None:
            _load_sharded(checkpoint / "critic", critic, critic_optimizer, with_weights=True)
    else:
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=True))
        if critic is not None:
            critic.load_state_dict(torch.load(checkpoint / "critic.pt", weights_only=True))
            critic_optimizer.load_state_dict(torch.load(checkpoint / "critic_optimizer.pt", weights_only=True))
    rng = torch.load(checkpoint / f"rng_rank{d.rank}.pt", weights_only=True)
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    return state["step"]


def truncate_logs(out_dir: Path, step: int) -> None:
    """Keep only the rows of metrics.jsonl and samples.jsonl up to `step` (a resumed run rewrites the rest).

    A last line cut short by a kill mid-write is dropped with a warning; a bad line elsewhere raises
    UsageError naming file and line (data.read_log).
    """
    for path in (out_dir / "metrics.jsonl", out_dir / "samples.jsonl"):
        if path.exists():
            kept = [row for row in read_log(path) if row.get("step", step + 1) <= step]
            write_atomic(path, "".join(json.dumps(row) + "\n" for row in kept))
