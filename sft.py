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
training (model.TokenLogProbs). Each optimiser step takes --batch-size pairs of a per-epoch seeded shuffle
(a pure function of seed and step, so --resume continues exactly), sorted by length into micro-batches so that
padding stays small. --holdout pairs are held out; their loss is logged as eval_loss.

Same loading (--model), distributed setup (DDP or FSDP2 through model.distribute), run directory (lock,
--resume, --overwrite) and atomic checkpoints as train_zero.py; checkpoints are HF directories that
`train_zero.py --model` and `evaluate.py --model` load, and their trainer_state.json records the template
(evaluate.py's --template auto reads it). metrics.jsonl rows: step, loss, target_tokens, tokens_per_s, lr,
grad_norm, time_step, and eval_loss at --eval-every and the last step.
"""

from __future__ import annotations

import os
import random
import re
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
import tyro
from tqdm import tqdm

from checkpoint import load_checkpoint, run_directory, save_checkpoint, truncate_logs
from data import Problem, UsageError, load_train_data, train_data_files
from distributed import Dist, all_reduce, print0, setup_distributed
from grader_pool import Grader
from metrics import strict_json
from model import (TokenLogProbs, adamw, distribute, enable_gradient_checkpointing, load_model, no_gradient_sync,
                   reshard, resolve_model, total_norm)
from learn import lr_factor  # train_zero's warmup / constant / cosine schedule, a pure function of the step
from reward import TEMPLATES, apply_template, compute_rewards


@dataclass
class SFTConfig:
    model: str = "smollm2-135m"  # HF hub id, local HF directory, checkpoint directory, or smollm2-135m
    train_data: str = "arithmetic"  # JSONL with problem, answer and solution (MATH, GSM8K; several: a.jsonl:0.7,b.jsonl:0.3), a built-in set, or zoo-*
    levels: tuple[int, ...] = ()  # keep only these MATH levels
    data_dir: str = ""  # the zoo-* presets' data directory (default: $ZERO_RL_DATA or ../shared/data)
    template: str = "qwen_boxed"  # prompt template (reward.TEMPLATES); use the one the RL run will use
    max_tokens: int = 1024  # prompt + target tokens; longer pairs are dropped and counted
    holdout: int = 64  # pairs held out for eval_loss
    steps: int = 30  # optimiser steps
    batch_size: int = 32  # pairs per optimiser step, over all ranks
    micro_batch_size: int = 8  # pairs per forward/backward
    lr: float = 1e-5  # AdamW peak learning rate
    lr_schedule: Literal["constant", "cosine"] = "cosine"  # after warmup: constant, or cosine to --min-lr-ratio x lr
    warmup_ratio: float = 0.1  # linear warmup over this fraction of --steps
    min_lr_ratio: float = 0.0  # cosine floor
    adam_betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    logprob_chunk_size: int = 1024  # tokens per chunk of the fused log-prob kernel
    dtype: Literal["float32", "bfloat16"] = "float32"  # compute dtype (master weights and AdamW stay fp32)
    shard: Literal["ddp", "fsdp"] = "ddp"
    gradient_checkpointing: bool = False
    seed: int = 0
    out_dir: str = "runs/sft"
    eval_every: int = 10  # eval_loss every N steps and at the last (0: never)
    save_every: int = 30  # checkpoint every N steps and at the last (0: never)
    resume: bool = False
    overwrite: bool = False
    grader_timeout: float = 5.0  # the target-vs-gold check
    grader_workers: int = 2


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


def pairs_for_step(n: int, step: int, batch_size: int, seed: int, rank: int, world_size: int) -> list[int]:
    """Indices of the rank's share of step `step`'s pairs: a fresh seeded shuffle of range(n) each epoch."""
    per_rank, picked, orders = batch_size // world_size, [], {}
    for position in range(step * batch_size + rank * per_rank, step * batch_size + (rank + 1) * per_rank):
        epoch, index = divmod(position, n)
        if epoch not in orders:
            orders[epoch] = list(range(n))
            random.Random(seed * 1_000_003 + epoch).shuffle(orders[epoch])
        picked.append(orders[epoch][index])
    return picked


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device):
    """Right-padded input_ids, attention_mask (B, T) and score_mask (B, T-1): true where position t predicts a
    target token t+1 (the prompt and the padding are masked)."""
    width = max(len(p) + len(t) for p, t in pairs)
    ids = torch.full((len(pairs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(pairs), width), dtype=torch.long)
    score = torch.zeros((len(pairs), width - 1), dtype=torch.bool)
    for row, (prompt, target) in enumerate(pairs):
        n = len(prompt) + len(target)
        ids[row, :n] = torch.tensor(prompt + target)
        attention[row, :n] = 1
        score[row, len(prompt) - 1 : n - 1] = True
    return ids.to(device), attention.to(device), score.to(device)


def target_nll(policy, pairs, pad_id: int, device: torch.device) -> torch.Tensor:
    """Summed negative log-likelihood (nats, fp32 scalar) of the pairs' target tokens under `policy`."""
    ids, attention, score = collate(pairs, pad_id, device)
    logp, _ = policy(ids, attention, score)
    return -(logp * score).sum()


# ---------------------------------------------------------------------------------------------
# The loop


def config_problems(cfg: SFTConfig, world_size: int) -> list[str]:
    """Everything wrong with the flags, one line each, before anything loads."""
    out = []
    for name, ok, rule in [("steps", cfg.steps >= 1, "at least 1"), ("batch_size", cfg.batch_size >= 1, "at least 1"),
                           ("micro_batch_size", cfg.micro_batch_size >= 1, "at least 1"),
                           ("max_tokens", cfg.max_tokens >= 2, "at least 2"), ("holdout", cfg.holdout >= 0, ">= 0"),
                           ("lr", cfg.lr > 0, "> 0"), ("warmup_ratio", 0 <= cfg.warmup_ratio < 1, "in [0, 1)"),
                           ("min_lr_ratio", 0 <= cfg.min_lr_ratio <= 1, "in [0, 1]")]:
        if not ok:
            out.append(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be {rule}")
    for name in ("batch_size", "holdout"):  # every rank runs the same number of forwards (DDP / FSDP collectives)
        if getattr(cfg, name) % world_size:
            out.append(f"--{name.replace('_', '-')} {getattr(cfg, name)}: must be a multiple of the world size {world_size}")
    if cfg.template not in TEMPLATES:
        out.append(f"--template {cfg.template!r}: use one of {', '.join(sorted(TEMPLATES))}")
    for path in train_data_files(cfg.train_data, cfg.data_dir or None):
        if not path.is_file():
            out.append(f"--train-data {cfg.train_data}: no such file {path}")
    return out


def main(cfg: SFTConfig) -> list[dict]:
    """Fine-tune cfg.model on (problem, solution) pairs; returns the metrics rows. Raises UsageError for bad flags
    or data without a learnable pair."""
    if problems := config_problems(cfg, int(os.environ.get("WORLD_SIZE", 1))):
        raise UsageError("\n".join(problems))
    d = setup_distributed()
    try:
        rows = train(cfg, d)
        dist.barrier()  # no rank tears down the group while another still communicates
        return rows
    finally:
        dist.destroy_process_group()


def train(cfg: SFTConfig, d: Dist) -> list[dict]:
    """The SFT loop of one rank (main sets up and tears down the process group)."""
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    compute = getattr(torch, cfg.dtype)
    out_dir = Path(cfg.out_dir)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(cfg.model))
    problem_set = load_train_data(cfg.train_data, cfg.levels or None, cfg.seed, cfg.data_dir or None)
    with Grader(cfg.grader_timeout, cfg.grader_workers) as grader:
        pairs, dropped = build_pairs(problem_set.problems, cfg.template, tokenizer, cfg.max_tokens, grader)
    if len(pairs) <= cfg.holdout:
        raise UsageError(f"--train-data {cfg.train_data}: {len(pairs)} usable pairs (dropped: {dropped}), not more "
                         f"than --holdout {cfg.holdout}")
    order = list(range(len(pairs)))
    random.Random(cfg.seed).shuffle(order)
    held_out, train = [pairs[i] for i in order[: cfg.holdout]], [pairs[i] for i in order[cfg.holdout :]]
    print0(d, f"sft data {problem_set.path}: {len(train)} pairs, {len(held_out)} held out, dropped {dropped}")
    config = {**asdict(cfg), "world_size": d.world_size, "data": {"train_pairs": len(train), "held_out": len(held_out), "dropped": dropped}}
    with run_directory(out_dir, config, d, cfg.resume, cfg.overwrite) as checkpoint:
        lm, tokenizer = load_model(str(checkpoint) if checkpoint is not None else cfg.model)
        pad = tokenizer.pad_token_id
        if cfg.gradient_checkpointing:
            enable_gradient_checkpointing(lm)
        lm = lm.to(d.device).train()
        policy = distribute(TokenLogProbs(lm, 1.0, cfg.logprob_chunk_size, compute), cfg.shard, compute)
        optimizer = adamw(lm, cfg.lr, cfg)
        start = load_checkpoint(checkpoint, config, d, lm, optimizer) if checkpoint is not None else 0
        if checkpoint is not None and d.is_main:
            truncate_logs(out_dir, start)
        rows = []
        bar = tqdm(range(start, cfg.steps), desc="sft", disable=not d.is_main, initial=start, total=cfg.steps)
        for step in bar:
            t0 = time.perf_counter()
            for group in optimizer.param_groups:
                group["lr"] = cfg.lr * lr_factor(step, cfg)
            mine = sorted((train[i] for i in pairs_for_step(len(train), step, cfg.batch_size, cfg.seed, d.rank,
                                                              d.world_size)), key=lambda p: len(p[0]) + len(p[1]))
            tokens = all_reduce(torch.tensor([float(sum(len(t) for _, t in mine))])).item()
            micros = [mine[i : i + cfg.micro_batch_size] for i in range(0, len(mine), cfg.micro_batch_size)]
            total = 0.0
            for k, micro in enumerate(micros):  # every rank holds batch_size / world pairs: the same micro count
                with no_gradient_sync(policy, skip=k < len(micros) - 1):
                    nll = target_nll(policy, micro, pad, d.device)
                    (nll / tokens * d.world_size).backward()  # DDP / FSDP average over ranks: undo it
                    total += nll.item()
            norm = total_norm(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loss = all_reduce(torch.tensor([total])).item() / tokens
            seconds = time.perf_counter() - t0
            row = {"step": step + 1, "loss": loss, "target_tokens": tokens, "tokens_per_s": tokens / seconds,
                   "lr": cfg.lr * lr_factor(step, cfg), "grad_norm": norm, "time_step": seconds}
            last = step + 1 == cfg.steps
            if held_out and cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last):
                row["eval_loss"] = eval_loss(policy, held_out, pad, d, cfg.micro_batch_size)
            rows.append(row)
            if d.is_main:
                with open(out_dir / "metrics.jsonl", "a") as f:
                    f.write(strict_json(row) + "\n")
                bar.set_postfix(loss=f"{loss:.3f}")
            if cfg.save_every and ((step + 1) % cfg.save_every == 0 or last):
                save_checkpoint(out_dir, step + 1, lm, tokenizer, optimizer, config, d)
    return rows


@torch.no_grad()
def eval_loss(policy, held_out: list, pad_id: int, d: Dist, micro_batch_size: int) -> float:
    """Mean NLL per target token of the held-out pairs (each rank scores its share; summed over ranks)."""
    mine = held_out[d.rank :: d.world_size]
    nll = sum((target_nll(policy, mine[i : i + micro_batch_size], pad_id, d.device).item()
               for i in range(0, len(mine), micro_batch_size)), 0.0)
    reshard(policy)  # FSDP2 keeps the root gathered after a forward without backward
    sums = all_reduce(torch.tensor([nll, float(sum(len(t) for _, t in mine))]))
    return sums[0].item() / max(sums[1].item(), 1.0)


if __name__ == "__main__":
    try:
        main(tyro.cli(SFTConfig))
    except UsageError as error:
        if int(os.environ.get("RANK", 0)) == 0:
            print("\n".join(f"sft.py: error: {line}" for line in str(error).splitlines()), file=sys.stderr)
        sys.exit(2)
