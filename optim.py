"""The optimiser and its schedule, shared by train_zero.py and sft.py: AdamW, the learning rate of each step, the
clipped step with its divergence guard.

    optimizer = adamw(module, settings.lr, settings)       # torch.optim.AdamW, fused
    set_lr(optimizer, settings.lr * lr_factor(step, settings))
    ... backward over the micro-batches ...
    norm, skipped = clipped_step(parameters, optimizer, settings.max_grad_norm, loss_finite)
    guard.check(step, skipped)                             # Diverged after --max-bad-steps skipped steps in a row

Deviations, one line each:
- A step whose loss (on any rank) or global gradient norm is not finite is skipped (no weight or AdamW change),
  not taken: one bad batch would otherwise write NaN into every weight.
- train_zero counts the schedule in rollout batches (every optimiser step of a batch shares its lr), where
  OpenRLHF and HF count optimiser steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from distributed import all_reduce
from model import total_norm
from data import range_problems


@dataclass
class OptimSettings:
    """Optimiser (AdamW) and learning-rate schedule."""

    steps: int = 15  # optimiser rounds: rollout batches (train_zero) or optimiser steps (sft); the schedule's horizon
    lr: float = 5e-5  # AdamW learning rate (the peak of --lr-schedule)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # after warmup: constant, or cosine down to --min-lr-ratio x lr at --steps
    warmup_ratio: float = 0.0  # linear warmup over this fraction of --steps (OpenRLHF / SimpleRL-Zero: 0.03)
    min_lr_ratio: float = 0.0  # cosine: the final lr as a fraction of --lr (OpenRLHF: 0.1)
    adam_betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas (OpenRLHF and oat: 0.9 0.95; verl: 0.9 0.999)
    adam_eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping: the global L2 norm is scaled down to at most this
    max_bad_steps: int = 3  # stop after this many steps in a row with a non-finite loss or grad norm (skipped)

    def problems(self) -> list[str]:
        return range_problems(self, [
            ("steps", self.steps >= 1, "at least 1"), ("lr", self.lr > 0, "> 0"),
            ("warmup_ratio", 0 <= self.warmup_ratio < 1, "in [0, 1)"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("adam_betas", len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas), "two numbers in [0, 1)"),
            ("adam_eps", self.adam_eps > 0, "> 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("max_grad_norm", self.max_grad_norm > 0, "> 0 (a negative clip coefficient would reverse the update)"),
            ("max_bad_steps", self.max_bad_steps >= 1, "at least 1")])


def lr_factor(step: int, settings: OptimSettings) -> float:
    """The learning-rate multiplier of step `step` (0-based) for the settings' steps, warmup_ratio, lr_schedule and
    min_lr_ratio: linear warmup over round(warmup_ratio x steps) steps ((step + 1) / warmup), then 1 (constant) or
    a cosine from 1 down to min_lr_ratio at the last step, as OpenRLHF's cosine_with_min_lr (SimpleRL-Zero) and HF's
    get_cosine_with_min_lr_schedule_with_warmup. A pure function of the step, so --resume continues it exactly
    (checkpoint.check_resume_config refuses a new --steps when the schedule depends on it)."""
    warmup = round(settings.warmup_ratio * settings.steps)
    if step < warmup:
        return (step + 1) / warmup
    if settings.lr_schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, settings.steps - warmup - 1)
    return settings.min_lr_ratio + (1 - settings.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def adamw(module: torch.nn.Module, lr: float, settings: OptimSettings) -> torch.optim.AdamW:
    """torch.optim.AdamW over `module`'s parameters (plain, DDP- or FSDP2-wrapped) with the settings' adam_betas,
    adam_eps and weight_decay. fused=True: one kernel per parameter, so no multi-tensor temporaries (2.5 GB less
    peak at 1.5B on an H200: docs/scaling.md); also on CPU and DTensor."""
    return torch.optim.AdamW(module.parameters(), lr=lr, betas=settings.adam_betas, eps=settings.adam_eps,
                             weight_decay=settings.weight_decay, fused=True)


def set_lr(optimizer: torch.optim.Optimizer | None, lr: float) -> None:
    """Set every parameter group's learning rate (a None optimiser is skipped)."""
    for group in optimizer.param_groups if optimizer else ():
        group["lr"] = lr


def clipped_step(parameters: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, max_grad_norm: float,
                 loss_finite: bool = True) -> tuple[float, bool]:
    """Clip the accumulated gradients to max_grad_norm (global L2 norm over all ranks) and take the optimiser step,
    unless the loss on any rank (loss_finite False) or the norm is not finite: then the step is skipped (weights and
    AdamW state unchanged). Gradients are zeroed either way. Collective: every rank calls it.

    Returns (the norm before clipping, equal on every rank; whether the step was skipped). Raises ValueError for
    max_grad_norm <= 0 (clip_grad_norm_ would scale the gradients by a negative or infinite coefficient).
    """
    if not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm {max_grad_norm}: must be > 0")
    norm = total_norm(torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm))
    skipped = bool(all_reduce(torch.tensor([float(not (loss_finite and math.isfinite(norm)))]), op="max").item())
    if not skipped:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm, skipped


class Diverged(RuntimeError):
    """--max-bad-steps steps in a row had a non-finite loss or gradient norm: the run stops (no checkpoint of them)."""


class DivergenceGuard:
    """Counts steps in a row with a skipped optimiser step; check() raises Diverged at max_bad_steps of them."""

    def __init__(self, max_bad_steps: int):
        self.max_bad_steps, self.in_a_row = max_bad_steps, 0

    def check(self, step: int, skipped: bool) -> None:
        """step: 0-based; skipped: this step skipped an update (clipped_step). Raises Diverged naming the steps."""
        self.in_a_row = self.in_a_row + 1 if skipped else 0
        if self.in_a_row >= self.max_bad_steps:
            raise Diverged(f"step {step + 1}: {self.in_a_row} steps in a row (since step {step + 2 - self.in_a_row}) "
                           f"with a non-finite loss or gradient norm (--max-bad-steps {self.max_bad_steps}); their "
                           f"optimiser steps were skipped, so every checkpoint holds finite weights; start again with a "
                           f"lower --lr (into another --out-dir, or --overwrite)")
