"""Checkpoints: everything needed to continue a run exactly, written so that a crash never leaves half of one.

    save_checkpoint(out_dir, step, ...)        # out_dir/checkpoints/step_NNNNNN, then `latest` points at it
    checkpoint = latest_checkpoint(out_dir)    # --resume: the directory `latest` names
    step = load_checkpoint(checkpoint, ...)    # flags checked first, then optimiser, critic and RNG state

A checkpoint directory holds the policy as an HF model directory (evaluate.py, vLLM and
`from_pretrained` load it as is), `optimizer.pt`, `rng_rank{r}.pt` per rank, `trainer_state.json`
(step, world size, the run's config) and, for PPO, `critic.pt` and `critic_optimizer.pt`. It is
written into `.tmp_step_NNNNNN` and renamed; `latest` is replaced atomically (data.write_atomic).
Every torch file is read with `weights_only=True` (tensors and plain containers only, no code).
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import torch
import torch.distributed as dist

from data import write_atomic
from distributed import Dist

# Flags that do not change the training trajectory: --resume accepts new values for them.
RESUME_MAY_CHANGE = {"steps", "resume", "out_dir", "eval_every", "eval_data", "eval_limit", "save_every", "log_samples",
                     "grader_timeout", "grader_workers", "data_dir", "probe_every", "probe_tolerance", "vllm_sleep",
                     "vllm_kv_cache_gb", "vllm_gpu_memory_utilization", "vllm_cpu_bind"}


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
    if d.is_main:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        if critic is not None:
            torch.save(critic.state_dict(), tmp / "critic.pt")
            torch.save(critic_optimizer.state_dict(), tmp / "critic_optimizer.pt")
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
    """The checkpoint directory out_dir/checkpoints/latest names. Raises FileNotFoundError if there is none."""
    pointer = out_dir / "checkpoints" / "latest"
    if not pointer.exists():
        raise FileNotFoundError(f"--resume: no checkpoint under {out_dir}/checkpoints (run once without --resume)")
    return out_dir / "checkpoints" / pointer.read_text().strip()


def check_resume_config(saved: dict, current: dict, checkpoint: Path) -> None:
    """Raise ValueError naming every flag that shapes training and differs from the checkpoint's run."""
    changed = [f"--{k.replace('_', '-')}: checkpoint {saved[k]!r}, now {current[k]!r}" for k in current
               if k in saved and k not in RESUME_MAY_CHANGE and _jsonable(saved[k]) != _jsonable(current[k])]
    if changed:
        raise ValueError(f"--resume from {checkpoint}: these flags differ from the run that wrote it "
                         f"(pass the same values to continue exactly): " + "; ".join(changed))


def _jsonable(value):
    return json.loads(json.dumps(value))  # tuples and lists compare equal, as they are stored


def load_checkpoint(checkpoint: Path, config: dict, d: Dist, optimizer, critic=None, critic_optimizer=None) -> int:
    """Restore a run's state from `checkpoint` (the policy weights are loaded from it by model.load_model).

    Checks `config` against the checkpoint's run first (check_resume_config), then loads the optimiser,
    the critic and its optimiser (PPO), and this rank's RNG state. Returns the number of steps done.
    Raises ValueError for changed flags; FileNotFoundError for a missing file.
    """
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    check_resume_config(state["config"], config, checkpoint)
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
