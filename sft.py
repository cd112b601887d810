"""Supervised fine-tuning: SimpleRL's warm start before RL (hkust-nlp/simpleRL-reason), one file for the stage.

    python sft.py --train-data arithmetic --template chat_oneshot --steps 20 --batch-size 16 --lr 3e-5 --out-dir runs/sft
    python train_zero.py --model runs/sft/checkpoints/step_000020 ...            # RL from the warm start
    torchrun --nproc_per_node 8 sft.py --model Qwen/Qwen2.5-Math-7B --train-data ../shared/data/train/math_lvl3to5_rebuilt.jsonl \
        --template qwen_math --shard fsdp --dtype bfloat16 --gradient-checkpointing --max-tokens 4096 ...

The data are (problem, solution) pairs: the prompt is the training template applied to the problem, the target
the solution in the template's answer format plus EOS (sft_target): a MATH solution as it is (it ends in
\\boxed{}); GSM8K's `#### 42` line becomes `The answer is \\boxed{42}.` (its <<calculator>> notes dropped); a
procedural problem ("What is 17 * 4?") gets the worked line `17 * 4 = \\boxed{68}`; for the r1 template the
solution is the thinking, followed by `</think> <answer> 68 </answer>`. A pair whose target's extracted answer
does not grade equal to the gold answer (the training grader) is dropped and counted, as is one longer than
--max-tokens. The loss is the mean negative log-likelihood of the target tokens only (prompt tokens and padding
masked), over all target tokens of the optimiser step on every rank, through the fused log-prob kernel of
training (losses.TokenLogProbs). Each optimiser step takes --batch-size pairs of a per-epoch seeded shuffle
(a pure function of seed and step, so --resume continues exactly), sorted by length into micro-batches so that
padding stays small. --holdout pairs are held out; their loss is logged as eval_loss.

train_zero.py's foundation, not a copy of it: the settings groups (model and precision, sharding, training data,
optimiser and schedule, run directory and loggers, grader) with their checks, the run directory (rundir.py:
lock, --resume, --overwrite, everything checked before anything is written), the seeded step sampler
(data.step_indices), the layout and no-grad pass (learn.collate, learn.score), the clipped optimiser step with
its divergence guard (learn.py) and atomic checkpoints (checkpoint.py). Checkpoints are HF directories that
`train_zero.py --model` and `evaluate.py --model` load, and their trainer_state.json records the template
(evaluate.py's --template auto reads it). metrics.jsonl rows: step, loss, target_tokens, tokens_per_s, lr,
grad_norm, skipped_updates, time_step, and eval_loss at --eval-every and the last step (plot.py draws them).
"""

from __future__ import annotations

import math
import os
import random
import re
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from tqdm import tqdm

from checkpoint import NonFiniteWeights, load_checkpoint, save_checkpoint
from config import (GraderSettings, ModelSettings, OptimSettings, ParallelSettings, ProtocolSettings, TrainDataSettings,
                    TrainRunSettings, apply_protocol)
from data import Problem, UsageError, load_train_data, range_problems, step_indices
from distributed import Dist, all_reduce, print0, setup_distributed
from grader_pool import Grader
from learn import (Diverged, DivergenceGuard, adamw, clipped_step, collate, lr_factor, no_gradient_sync, score,
                   set_lr)
from losses import TokenLogProbs
from metrics import append_row
from model import (distribute, enable_gradient_checkpointing, load_model, load_model_config, resolve_dtype,
                   resolve_model, unwrap)
from plot import write_run_figure
from reward import TEMPLATES, apply_template, compute_rewards
from rundir import cli, external_loggers, run_directory, settings_problems, truncate_logs


@dataclass
class SFTSettings:
    """Pairs and batches of the warm start."""

    template: str = "qwen_boxed"  # prompt template (reward.TEMPLATES); use the one the RL run will use
    max_tokens: int = 1024  # prompt + target tokens; longer pairs are dropped and counted
    holdout: int = 64  # pairs held out for eval_loss
    batch_size: int = 32  # pairs per optimiser step, over all ranks
    micro_batch_size: int = 8  # pairs per forward/backward

    def problems(self) -> list[str]:
        out = range_problems(self, [
            ("max_tokens", self.max_tokens >= 2, "at least 2"), ("holdout", self.holdout >= 0, ">= 0"),
            ("batch_size", self.batch_size >= 1, "at least 1"), ("micro_batch_size", self.micro_batch_size >= 1, "at least 1")])
        if self.template not in TEMPLATES:
            out.append(f"--template {self.template!r}: use one of {', '.join(sorted(TEMPLATES))}")
        return out


@dataclass
class SFTConfig(ModelSettings, TrainDataSettings, SFTSettings, OptimSettings, TrainRunSettings, GraderSettings,
                ParallelSettings, ProtocolSettings):
    """Every knob of an SFT run, by settings group; the defaults that differ from train_zero's are set here."""

    train_data: str = "arithmetic"
    steps: int = 30
    lr: float = 1e-5
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_ratio: float = 0.1
    adam_betas: tuple[float, float] = (0.9, 0.95)
    out_dir: str = "runs/sft"
    eval_every: int = 10
    save_every: int = 30


def sft_protocol_fields(name: str) -> tuple[str, ...]:
    """What --protocol sets in sft.py: the template (unless the protocol's is train_zero's "auto", which picks one
    from the RL data) and the grader that checks the targets."""
    from fidelity.protocols import PROTOCOLS

    return ("grader", "grader_timeout") + (("template",) if PROTOCOLS[name].template != "auto" else ())


SFT_WRITES = ("metrics.jsonl", "metrics.png", "checkpoints", "tensorboard", "wandb")  # what an SFT run writes in out_dir


# ---------------------------------------------------------------------------------------------
# Data: (prompt, target) pairs


def sft_target(problem: Problem, template: str) -> str | None:
    """The solution of `problem` written in `template`'s answer format (see the module docstring); None when the
    problem has no solution to learn from (no `solution` field and no procedural expression)."""
    if "expression" in problem.meta:  # the built-in procedural sets
        answer = problem.answer
        solution = f"{problem.meta['expression']} = \\boxed{{{answer}}}"
    elif problem.meta.get("solution"):
        solution = problem.meta["solution"].strip()
        gsm8k = re.search(r"\n?####\s*(.+?)\s*$", solution)
        if gsm8k:
            body = re.sub(r"<<[^>]*>>", "", solution[: gsm8k.start()]).strip()
            solution = f"{body}\nThe answer is \\boxed{{{gsm8k.group(1).replace(',', '')}}}."
        answer = problem.answer
    else:
        return None
    if template == "r1":  # the prompt ends in "<think>": think, then answer in tags
        return f" {solution} </think> <answer> {answer} </answer>"
    return solution


def build_pairs(problems: list[Problem], template: str, tokenizer, max_tokens: int, grader: Grader):
    """Tokenised (prompt_ids, target_ids) pairs; target_ids end with EOS. Returns (pairs, dropped counts by reason:
    no_solution, answer_mismatch (the target's extracted answer does not grade equal to the gold), too_long)."""
    targets = [sft_target(p, template) for p in problems]
    kept = [(p, t) for p, t in zip(problems, targets) if t is not None]
    dropped = {"no_solution": len(problems) - len(kept), "answer_mismatch": 0, "too_long": 0}
    verdicts = compute_rewards([t for _, t in kept], [p.answer for p, _ in kept], template, "correct", grader)
    pairs = []
    for (problem, target), verdict in zip(kept, verdicts):
        if verdict.reason != "correct":
            dropped["answer_mismatch"] += 1
            continue
        prompt_ids = tokenizer(apply_template(template, problem.problem), add_special_tokens=False).input_ids
        target_ids = tokenizer(target, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        if len(prompt_ids) + len(target_ids) > max_tokens:
            dropped["too_long"] += 1
            continue
        pairs.append((prompt_ids, target_ids))
    return pairs, dropped


def target_nll(policy, pairs, pad_id: int, device: torch.device) -> torch.Tensor:
    """Summed negative log-likelihood (nats, fp32 scalar) of the pairs' target tokens under `policy` (a
    TokenLogProbs); the prompt tokens and the padding are masked (learn.collate's response_mask)."""
    ids, attention, target_mask = collate(pairs, pad_id, device)
    logp, _ = policy(ids, attention, target_mask)
    return -(logp * target_mask).sum()


# ---------------------------------------------------------------------------------------------
# The loop


def config_problems(cfg: SFTConfig, world_size: int) -> list[str]:
    """Everything wrong with the flags, one line each, before anything loads: every settings group's own checks
    (rundir.settings_problems), then the ones that span groups."""
    out = settings_problems(cfg)
    for name in ("batch_size", "holdout"):  # every rank runs the same number of forwards (DDP / FSDP collectives)
        if getattr(cfg, name) % world_size:
            out.append(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be a multiple of the world size {world_size}")
    if cfg.dtype == "float16":
        out.append("--dtype float16: training in fp16 needs loss scaling, which this trainer does not do; use bfloat16")
    return out


def main(cfg: SFTConfig) -> list[dict]:
    """Fine-tune cfg.model on (problem, solution) pairs; returns the metrics rows.

    Raises UsageError, with nothing written and no weights loaded, for bad flags, data or model config, data
    without more learnable pairs than --holdout, or a run directory that is refused (rundir.run_directory);
    Diverged when --max-bad-steps steps in a row were skipped for a non-finite loss or gradient norm.
    """
    if cfg.protocol and not ProtocolSettings.problems(cfg):  # its prompt and target check (the rest is RL's)
        cfg = apply_protocol(cfg, fields=sft_protocol_fields(cfg.protocol))
    cfg = replace(cfg, dtype=str(resolve_dtype(cfg.dtype)).removeprefix("torch."))
    if problems := config_problems(cfg, int(os.environ.get("WORLD_SIZE", 1))):
        raise UsageError("\n".join(problems))
    d = setup_distributed()
    try:
        from transformers import AutoTokenizer

        load_model_config(cfg.model)
        tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model))
        problem_set = load_train_data(cfg.train_data, cfg.levels or None, cfg.seed, cfg.data_dir or None)
        with Grader(cfg.grader_timeout, cfg.grader_workers, cfg.grader) as grader:
            pairs, dropped = build_pairs(problem_set.problems, cfg.template, tokenizer, cfg.max_tokens, grader)
        if len(pairs) <= cfg.holdout:
            raise UsageError(f"--train-data {cfg.train_data}: {len(pairs)} usable pairs (dropped: {dropped}), not more "
                             f"than --holdout {cfg.holdout}")
        order = list(range(len(pairs)))
        random.Random(cfg.seed).shuffle(order)
        held_out, train_pairs = [pairs[i] for i in order[: cfg.holdout]], [pairs[i] for i in order[cfg.holdout :]]
        print0(d, f"sft data {problem_set.path}: {len(train_pairs)} pairs, {len(held_out)} held out, dropped {dropped}")
        config = {**asdict(cfg), "world_size": d.world_size,
                  "data": {"train_pairs": len(train_pairs), "held_out": len(held_out), "dropped": dropped}}
        with run_directory(Path(cfg.out_dir), config, d, cfg.resume, cfg.overwrite, SFT_WRITES) as checkpoint:
            rows = train(cfg, d, checkpoint, config, train_pairs, held_out)
            dist.barrier()  # no rank tears down the group while another still communicates
        return rows
    finally:
        dist.destroy_process_group()


def train(cfg: SFTConfig, d: Dist, checkpoint: Path | None, config: dict, pairs: list, held_out: list) -> list[dict]:
    """The SFT loop of one rank in cfg.out_dir (claimed by main), from `checkpoint` when resuming."""
    # --- 1. setup: the model (or the checkpoint's), its optimiser state
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    out_dir, compute = Path(cfg.out_dir), resolve_dtype(cfg.dtype, d.device)
    lm, tokenizer = load_model(str(checkpoint) if checkpoint is not None else cfg.model,
                               attn_implementation=cfg.attn_implementation)
    pad = tokenizer.pad_token_id
    if cfg.gradient_checkpointing:
        enable_gradient_checkpointing(lm)
    lm = lm.to(d.device).train()
    policy = distribute(TokenLogProbs(lm, 1.0, cfg.logprob_chunk_size, compute), cfg.shard, compute)
    optimizer = adamw(lm, cfg)
    start = load_checkpoint(checkpoint, config, d, lm, optimizer) if checkpoint is not None else 0
    if checkpoint is not None and d.is_main:
        truncate_logs(out_dir, start)
    guard, rows = DivergenceGuard(cfg.max_bad_steps), []
    mfu = None  # with a known peak (a GPU, --peak-tflops)
    if d.device.type == "cuda" or cfg.peak_tflops > 0:
        from scale.mfu import learn_flops

        mfu = learn_flops(lm, unwrap(policy), None, None, d.device, cfg.peak_tflops)
    # --- 2. the loop: one optimiser step over batch_size pairs, length-sorted micro-batches
    with external_loggers(cfg.log_with if d.is_main else (), out_dir, config, start, cfg.wandb_project,
                         cfg.wandb_mode) as loggers:
        bar = tqdm(range(start, cfg.steps), desc="sft", disable=not d.is_main, initial=start, total=cfg.steps)
        for step in bar:
            t0 = time.perf_counter()
            if mfu:
                mfu.take()  # from here on: the step's passes (not the held-out eval's)
            set_lr(optimizer, cfg.lr * lr_factor(step, cfg))
            mine = sorted((pairs[i] for i in step_indices(len(pairs), step, cfg.batch_size, cfg.seed, d.rank,
                                                            d.world_size)), key=lambda p: len(p[0]) + len(p[1]))
            tokens = all_reduce(torch.tensor([float(sum(len(t) for _, t in mine))])).item()
            micros = [mine[i : i + cfg.micro_batch_size] for i in range(0, len(mine), cfg.micro_batch_size)]
            total = 0.0
            for k, micro in enumerate(micros):  # every rank holds batch_size / world pairs: the same micro count
                with no_gradient_sync(policy, skip=k < len(micros) - 1):
                    nll = target_nll(policy, micro, pad, d.device)
                    (nll / tokens * d.world_size).backward()  # DDP / FSDP average over ranks: undo it
                    total += nll.item()
            norm, skipped = clipped_step(list(policy.parameters()), optimizer, cfg.max_grad_norm, math.isfinite(total))
            loss = all_reduce(torch.tensor([total])).item() / tokens
            seconds = time.perf_counter() - t0
            row = {"step": step + 1, "loss": loss, "target_tokens": tokens, "tokens_per_s": tokens / seconds,
                   "lr": cfg.lr * lr_factor(step, cfg), "grad_norm": norm, "skipped_updates": float(skipped),
                   "time_step": seconds}
            if mfu:
                row["mfu"] = mfu.utilisation(seconds, d)
            last = step + 1 == cfg.steps
            if held_out and cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last):
                row["eval_loss"] = eval_loss(policy, held_out, pad, d, cfg.micro_batch_size)
            rows.append(row)
            if d.is_main:
                append_row(out_dir / "metrics.jsonl", row)
                loggers.log(row)
                bar.set_postfix(loss=f"{loss:.3f}")
                if "eval_loss" in row or last:
                    write_run_figure(out_dir)  # out_dir/metrics.png: loss and eval_loss (plot.py)
            guard.check(step, skipped)  # Diverged after --max-bad-steps skipped steps in a row
            if cfg.save_every and ((step + 1) % cfg.save_every == 0 or last):
                save_checkpoint(out_dir, step + 1, lm, tokenizer, optimizer, config, d)
    return rows


def eval_loss(policy, held_out: list, pad_id: int, d: Dist, micro_batch_size: int) -> float:
    """Mean NLL per target token of the held-out pairs: each rank scores its share (learn.score, the no-grad pass
    of training's logp_old), summed over ranks."""
    mine = held_out[d.rank :: d.world_size]
    nll = -sum(row.sum().item() for row in score(policy, mine, pad_id, d.device, micro_batch_size))
    sums = all_reduce(torch.tensor([nll, float(sum(len(t) for _, t in mine))]))
    return sums[0].item() / max(sums[1].item(), 1.0)


if __name__ == "__main__":
    cli("sft.py", SFTConfig, main, stops=(Diverged, NonFiniteWeights))
