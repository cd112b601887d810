"""Checkpoints: a crash never leaves half of one, and loading one executes nothing.

    save_checkpoint(out_dir, step, ...)        # out_dir/checkpoints/step_NNNNNN, then `latest` points at it
    checkpoint = latest_checkpoint(out_dir)    # --resume: the directory `latest` names
    step = load_checkpoint(checkpoint, ...)    # optimiser, critic and RNG state

A checkpoint directory holds the policy as an HF model directory in fp32 (evaluate.py, vLLM and
`from_pretrained` load it as is), `rng_rank{r}.pt` per rank, `trainer_state.json` (step, world size,
the run's config), and the optimiser state:
- DDP (replicated): `optimizer.pt` and, for PPO, `critic.pt` and `critic_optimizer.pt`, written by rank 0;
- FSDP (sharded): `optimizer/` and, for PPO, `critic/` (weights and optimiser) in torch.distributed.checkpoint
  format, each rank writing its own shards; the HF export is gathered one parameter at a time to rank 0.
It is written into `.tmp_step_NNNNNN` and renamed; `latest` is replaced atomically (data.write_atomic).
Loading executes nothing, FSDP included: every torch file is read with `weights_only=True` (tensors and
plain containers only); the sharded files are read as scale/fsdp.py says. A file that names anything else, or is
damaged, or is missing, stops the load with a one-line UsageError naming it.
The run directory around the checkpoints (lock, --overwrite, config.json) is rundir.py's.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

from data import UsageError, write_atomic
from distributed import Dist, all_reduce
from model import is_sharded, local_shard

# Flags that do not change the training trajectory: --resume accepts new values for them (--steps only under a
# constant learning rate without warmup: the schedule's horizon is --steps).
RESUME_MAY_CHANGE = {"steps", "resume", "out_dir", "eval_every", "eval_data", "eval_limit", "save_every", "log_samples",
                     "grader_timeout", "grader_workers", "data_dir", "probe_every", "probe_tolerance", "vllm_sleep",
                     "vllm_kv_cache_gb", "vllm_gpu_memory_utilization", "vllm_cpu_bind",
                     "gradient_checkpointing", "ref_offload", "overwrite", "max_bad_steps", "log_with", "wandb_project",
                     "wandb_mode", "trace"}


class NonFiniteWeights(RuntimeError):
    """The weights hold NaN or inf: the run has diverged and its checkpoint is not written."""


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
        from scale.fsdp import save_sharded

        save_sharded(tmp, model, tokenizer, optimizer, d, critic, critic_optimizer)
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


def read_trainer_state(checkpoint: Path) -> dict:
    """checkpoint/trainer_state.json: {"step", "world_size", "config"}. Raises UsageError naming the file when it is
    missing or damaged (not a JSON object with those fields)."""
    path = checkpoint / "trainer_state.json"
    try:
        state = json.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"{path}: cannot be read ({e.strerror}); the checkpoint is incomplete") from None
    except ValueError as e:
        raise UsageError(f"{path}: not valid JSON ({e}); the checkpoint is damaged: point "
                         f"{checkpoint.parent / 'latest'} at an earlier step_NNNNNN, or start afresh") from None
    if not (isinstance(state, dict) and isinstance(state.get("step"), int) and isinstance(state.get("config"), dict)):
        raise UsageError(f"{path}: not a trainer state (needs an integer step and a config object); the checkpoint "
                         f"is damaged")
    return state


def check_resume_config(saved: dict, current: dict, checkpoint: Path) -> None:
    """Raise UsageError naming every flag that shapes training and differs from the checkpoint's run.

    --steps may change only under a constant learning rate without warmup: --lr-schedule cosine and
    --warmup-ratio measure their course in --steps, so a new horizon would bend the schedule mid-run.
    """
    changed = [f"--{k.replace('_', '-')}: checkpoint {saved[k]!r}, now {current[k]!r}" for k in current
               if k in saved and k not in RESUME_MAY_CHANGE and _jsonable(saved[k]) != _jsonable(current[k])]
    stepwise = saved.get("lr_schedule", "constant") != "constant" or saved.get("warmup_ratio", 0) > 0
    if stepwise and "steps" in saved and saved["steps"] != current.get("steps", saved["steps"]):
        changed.append(f"--steps: checkpoint {saved['steps']!r}, now {current['steps']!r} (the learning-rate schedule "
                       f"--lr-schedule {saved.get('lr_schedule')} --warmup-ratio {saved.get('warmup_ratio')} runs over "
                       f"--steps; a new horizon would bend it: start a new run for more steps)")
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
    Nothing in the checkpoint executes (module docstring). Raises UsageError (a ValueError) for changed flags, and
    one naming the file for a file that is missing, damaged, or would run code on load.
    """
    state = read_trainer_state(checkpoint)
    check_resume_config(state["config"], config, checkpoint)
    if is_sharded(model):
        from scale.fsdp import load_sharded

        load_sharded(checkpoint, model, optimizer, critic, critic_optimizer)
    else:
        _restore(checkpoint / "optimizer.pt", optimizer.load_state_dict)
        if critic is not None:
            _restore(checkpoint / "critic.pt", critic.load_state_dict)
            _restore(checkpoint / "critic_optimizer.pt", critic_optimizer.load_state_dict)
    _restore(checkpoint / f"rng_rank{d.rank}.pt", _set_rng_state)
    return state["step"]


def _set_rng_state(rng: dict) -> None:
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])


# ---------------------------------------------------------------------------------------------
# Reading checkpoint files without running code


@contextmanager
def _reading(path: Path):
    """Make any failure inside the block (loading `path`, or applying what it holds) a one-line UsageError naming
    `path`: "refused" when it names a global that could run code, "cannot be read" when it is missing, else
    "damaged". torch.load alone raises UnpicklingError, RuntimeError, EOFError or ValueError for a damaged file."""
    try:
        yield
    except UsageError:
        raise
    except OSError as e:
        raise UsageError(f"{path}: cannot be read ({e.strerror or e}); the checkpoint is incomplete") from None
    except Exception as e:
        culprit = re.search(r"GLOBAL (\S+)", str(e)) if isinstance(e, pickle.UnpicklingError) else None
        if culprit:
            raise UsageError(f"{path}: refused: it would run code on load (pickled global {culprit[1]})") from None
        raise UsageError(f"{path}: damaged ({_gist(e)}); resume from an earlier checkpoint (point checkpoints/latest "
                         f"at it) or start afresh") from None


def _gist(error: BaseException) -> str:
    """`error` on one line: its type and the first line of its message that is not torch.load's boilerplate."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(error).splitlines() if line.strip() and not line.startswith(boilerplate)]
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def _restore(path: Path, load_state) -> None:
    """load_state(torch.load(path, weights_only=True)); any failure is a UsageError naming `path` (_reading)."""
    with _reading(path):
        load_state(torch.load(path, weights_only=True))
