"""Checkpoints: everything needed to continue a run exactly, written so that a crash never leaves half of one.

    save_checkpoint(out_dir, step, ...)        # out_dir/checkpoints/step_NNNNNN, then `latest` points at it
    checkpoint = latest_checkpoint(out_dir)    # --resume: the directory `latest` names
    step = load_checkpoint(checkpoint, ...)    # flags checked first, then optimiser, critic and RNG state

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
from pathlib import Path

import torch
import torch.distributed as dist

from data import write_atomic
from distributed import Dist
from model import full_parameters, is_sharded

# Flags that do not change the training trajectory: --resume accepts new values for them.
RESUME_MAY_CHANGE = {"steps", "resume", "out_dir", "eval_every", "eval_data", "eval_limit", "save_every", "log_samples",
                     "grader_timeout", "grader_workers", "data_dir", "probe_every", "probe_tolerance", "vllm_sleep",
                     "vllm_kv_cache_gb", "vllm_gpu_memory_utilization", "vllm_cpu_bind",
                     "gradient_checkpointing", "ref_offload"}


def save_checkpoint(out_dir: Path, step: int, model, tokenizer, optimizer, config: dict, d: Dist, critic=None,
                    critic_optimizer=None) -> Path:
    """Save everything needed to continue after `step` steps into out_dir/checkpoints/step_NNNNNN; returns it.

    model: the HF model (not a wrapper); config: the run's resolved config (asdict). Every rank writes its
    RNG state; rank 0 writes the rest. Collective: every rank must call it.
    """
    root = out_dir / "checkpoints"
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

    Raises:
        FileNotFoundError: there is no `latest`, or the directory it names does not exist.
        ValueError: `latest` names anything but a step_NNNNNN directory inside out_dir/checkpoints (a path
            such as ../../other/checkpoints/step_000002 would resume another run).
    """
    root = out_dir / "checkpoints"
    pointer = root / "latest"
    if not pointer.exists():
        raise FileNotFoundError(f"--resume: no checkpoint under {root} (run once without --resume)")
    name = pointer.read_text().strip()
    if re.fullmatch(r"step_\d{6,}", name) is None:
        raise ValueError(f"--resume: {pointer} names {name!r}, not a step_NNNNNN directory of this run's checkpoints")
    if not (root / name).is_dir():
        raise FileNotFoundError(f"--resume: {pointer} names {name}, which is not a directory under {root}")
    return root / name


def check_resume_config(saved: dict, current: dict, checkpoint: Path) -> None:
    """Raise ValueError naming every flag that shapes training and differs from the checkpoint's run."""
    changed = [f"--{k.replace('_', '-')}: checkpoint {saved[k]!r}, now {current[k]!r}" for k in current
               if k in saved and k not in RESUME_MAY_CHANGE and _jsonable(saved[k]) != _jsonable(current[k])]
    if changed:
        raise ValueError(f"--resume from {checkpoint}: these flags differ from the run that wrote it "
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
    """Keep only the rows of metrics.jsonl and samples.jsonl up to `step` (a resumed run rewrites the rest)."""
    for path in (out_dir / "metrics.jsonl", out_dir / "samples.jsonl"):
        if path.exists():
            rows = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
            write_atomic(path, "".join(row + "\n" for row in rows))
