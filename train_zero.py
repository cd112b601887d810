"""R1-Zero-like training: RL straight from a base model with a rule-based math reward.

One process (CPU or one GPU):
    python train_zero.py                                  # embedded default: SmolLM2-135M, arithmetic
    python train_zero.py --algo grpo --train-data ../shared/data/train/gsm8k_train.jsonl
N processes (DDP; gloo on CPU, nccl on GPU), each rank owning whole prompt groups:
    torchrun --nproc_per_node 8 train_zero.py --algo drgrpo
Resume after a crash (same flags, same --out-dir):  python train_zero.py ... --resume

Every step: rollout (rollout.py) -> reward (reward.py) -> group advantages -> clipped policy loss
over micro-batches with gradient accumulation (losses.py) -> optimiser step -> weight sync -> log.
`--help` lists every knob; each is one field of `Config` below.

Deviations from the papers, one line each:
- No critic yet (PPO is a separate issue); the KL term is GRPO-style, in the loss (off by default, as Dr. GRPO).
- The rollout batch is split into `updates_per_batch` mini-batches, one optimiser step each
  (Oat-Zero: 8); with 1, logp_old is the detached current log-prob (ratio = 1, exactly on-policy).
- Responses with zero advantage are skipped in the learn pass (exactly zero gradient), and a batch
  in which every advantage is zero makes no optimiser step (AdamW momentum does not move then).
- Defaults are tuned for a 2-core CPU and a 135M model, not the papers' 7B runs (REFERENCE §4).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from data import load_train_data
from evaluate import evaluate_problems, load_eval_set
from losses import TokenLogProbs, group_advantages, kl_estimate, policy_loss
from reward import REWARD_RULES, Grader, apply_template, compute_rewards, stop_strings
from rollout import HFEngine, Sample, SamplingParams, load_model

REFLECTION_WORDS = ("recheck", "rethink", "reassess", "reevaluate", "re-evaluate", "re-examine", "reconsider",
                    "double-check", "check again", "think again", "verify", "wait", "try again", "alternatively",
                    "however")  # the "aha moment" keywords of REFERENCE §6


@dataclass
class Config:
    algo: Literal["grpo", "drgrpo"] = "drgrpo"  # advantage + aggregation: GRPO (std, 1/|o|) or Dr. GRPO (no std, 1/L_max)
    model: str = "smollm2-135m"  # HF hub id, local HF directory, or the embedded smollm2-135m
    template: str = "qwen_boxed"  # prompt template (reward.TEMPLATES): qwen_math, qwen_boxed, r1, abel, no
    reward: str = "simplerl"  # reward rule: simplerl (+1/-0.5/-1) or correct (1/0)
    train_data: str = "arithmetic"  # JSONL with problem/answer, or "arithmetic" (built-in procedural set)
    levels: tuple[int, ...] = ()  # keep only these MATH levels (e.g. 3 4 5); empty keeps all
    steps: int = 30  # optimiser rounds (rollout batches)
    prompts_per_step: int = 4  # prompts per rollout batch, over all ranks
    group_size: int = 8  # samples per prompt (G)
    micro_batch_size: int = 8  # responses per forward/backward
    updates_per_batch: int = 1  # optimiser steps per rollout batch (mini-batches)
    max_new_tokens: int = 32  # generation budget L_max (also Dr. GRPO's loss denominator)
    temperature: float = 1.0  # sampling temperature; log-probs are taken at the same temperature
    top_p: float = 1.0  # nucleus sampling
    lr: float = 5e-5  # AdamW learning rate, constant
    weight_decay: float = 0.0  # AdamW weight decay
    max_grad_norm: float = 1.0  # gradient clipping (global L2 norm)
    clip_eps: float = 0.2  # PPO ratio clip range (the lower one when clip_eps_high is set)
    clip_eps_high: float = 0.0  # DAPO clip-higher upper range, e.g. 0.28 (0: same as clip_eps)
    kl_coef: float = 0.0  # KL-to-reference loss coefficient beta (0: no reference model is loaded)
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"  # per-token KL estimator (k3 = "low_var_kl")
    entropy_coef: float = 0.0  # entropy bonus coefficient (subtracted from the loss)
    truncated: Literal["keep", "drop", "zero_reward"] = "keep"  # responses without EOS: learn as usual, drop from the loss, or reward 0
    seed: int = 0  # seeds data order, sampling and everything else
    out_dir: str = "runs/default"  # metrics.jsonl, samples.jsonl, config.json, checkpoints/
    eval_every: int = 15  # greedy eval every N steps and at the end (0: never)
    eval_data: str = "arithmetic"  # comma-separated benchmarks (evaluate.py names) or "arithmetic"
    eval_limit: int = 32  # problems per eval benchmark
    save_every: int = 15  # checkpoint every N steps and at the end (0: never)
    resume: bool = False  # continue from out_dir/checkpoints/latest
    log_samples: int = 4  # rollouts per step written to samples.jsonl
    grader_timeout: float = 5.0  # seconds per sample before the grader's worker is killed
    logprob_chunk_size: int = 1024  # tokens per chunk of the fused log-prob kernel
    data_dir: str = ""  # benchmark data directory (default: $ZERO_RL_DATA or ../shared/data)


# ---------------------------------------------------------------------------------------------
# Distributed: a thin layer; world size 1 takes the same path


@dataclass
class Dist:
    rank: int
    world_size: int
    device: torch.device
    is_main: bool


def setup_distributed() -> Dist:
    """Join the torchrun group (env RANK/WORLD_SIZE), or make a 1-process group in memory."""
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if "RANK" in os.environ:
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL communicates on the current device: one GPU per rank
    return Dist(rank, world_size, device, rank == 0)


def print0(d: Dist, *args):
    if d.is_main:
        print(*args, flush=True)


# ---------------------------------------------------------------------------------------------
# Data order: a pure function of (seed, step), so a resumed run sees the same prompts


def problems_for_step(problems: list, step: int, prompts_per_step: int, seed: int, rank: int, world_size: int) -> list:
    """The rank's share of step `step`'s prompts: a fresh shuffle of the data each epoch."""
    per_rank = prompts_per_step // world_size
    orders: dict[int, list[int]] = {}  # epoch -> its shuffle (a step spans at most a few epochs)
    picked = []
    for position in range(step * prompts_per_step + rank * per_rank, step * prompts_per_step + (rank + 1) * per_rank):
        epoch, index = divmod(position, len(problems))
        if epoch not in orders:
            orders[epoch] = list(range(len(problems)))
            random.Random(seed * 1_000_003 + epoch).shuffle(orders[epoch])
        picked.append(problems[orders[epoch][index]])
    return picked


# ---------------------------------------------------------------------------------------------
# Learning: micro-batches, gradient accumulation, one optimiser step per mini-batch


def collate(samples: list[Sample], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded prompt+response ids (B, T), attention_mask (B, T), response_mask (B, T-1).

    response_mask[b, t] = 1 when token t+1 of row b is a response token (it is scored at position t).
    """
    lengths = [len(s.prompt_ids) + len(s.response_ids) for s in samples]
    T = max(lengths)
    input_ids = torch.full((len(samples), T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(samples), T), dtype=torch.long)
    response_mask = torch.zeros((len(samples), T - 1), dtype=torch.float32)
    for b, s in enumerate(samples):
        P, R = len(s.prompt_ids), len(s.response_ids)
        input_ids[b, : P + R] = torch.tensor(s.prompt_ids + s.response_ids)
        attention_mask[b, : P + R] = 1
        response_mask[b, P - 1 : P + R - 1] = 1
    return input_ids.to(device), attention_mask.to(device), response_mask.to(device)


def learn(policy, optimizer, samples: list[Sample], advantages: torch.Tensor, in_loss: torch.Tensor, cfg: Config,
          d: Dist, pad_id: int, reference=None) -> dict:
    """Run cfg.updates_per_batch optimiser steps on this rank's samples; returns summed stats.

    Each micro-batch loss is divided by the global number of responses in its optimiser step and
    multiplied by world_size (DDP averages gradients over ranks), so gradients equal those of one
    process holding the whole batch, whatever the micro-batch size or number of ranks.
    in_loss (N,) bool: responses that enter the loss (False drops one, e.g. a truncated response).
    Responses whose gradient is exactly zero (zero advantage, and no KL or entropy term) are not run;
    a mini-batch with nothing to run on any rank makes no optimiser step. Logged entropy, KL and clip
    fraction are over the tokens that were run. `reference` (a TokenLogProbs, frozen) gives logp_ref.
    """
    aggregation = "token_mean" if cfg.algo == "grpo" else "max_tokens"
    parameters = [p for p in policy.parameters() if p.requires_grad]
    mini_size = math.ceil(len(samples) / cfg.updates_per_batch)
    minis = [list(range(i, min(i + mini_size, len(samples)))) for i in range(0, len(samples), mini_size)]
    logp_old = None
    if cfg.updates_per_batch > 1:  # the policy moves between mini-batches: freeze the sampling log-probs first
        logp_old = []
        with torch.no_grad():
            for start in range(0, len(samples), cfg.micro_batch_size):
                ids, attn, rmask = collate(samples[start : start + cfg.micro_batch_size], pad_id, d.device)
                logp_old.extend(policy(ids, attn, rmask)[0].unbind(0))
    zero_grad_if_zero_adv = cfg.kl_coef == 0 and cfg.entropy_coef == 0
    stats = {"loss": 0.0, "clipped_tokens": 0.0, "tokens": 0.0, "entropy_sum": 0.0, "kl_sum": 0.0, "grad_norm": 0.0}
    for mini in minis:
        num_responses = len(mini) * d.world_size
        # Every rank must run the same number of backward passes (DDP all-reduces in each), so ranks
        # pad with responses whose loss mask is zeroed (no gradient).
        active = [i for i in mini if in_loss[i] and (advantages[i] != 0 or not zero_grad_if_zero_adv)]
        count = torch.tensor([len(active)])
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
        if count.item() == 0:
            continue  # no gradient on any rank: no optimiser step
        learned = set(active)
        padding = [i for i in mini if i not in learned][: count.item() - len(active)]
        runs = active + padding
        micros = [runs[i : i + cfg.micro_batch_size] for i in range(0, len(runs), cfg.micro_batch_size)]
        for k, micro in enumerate(micros):
            ids, attn, rmask = collate([samples[i] for i in micro], pad_id, d.device)
            rmask = rmask * torch.tensor([i in learned for i in micro], dtype=rmask.dtype, device=d.device)[:, None]
            sync = contextlib.nullcontext() if k == len(micros) - 1 else policy.no_sync()
            with sync:
                logp, entropy = policy(ids, attn, rmask)  # (b, T-1) each
                old = logp.detach() if logp_old is None else _pad_stack([logp_old[i] for i in micro], logp.shape[1])
                penalty = -cfg.entropy_coef * entropy if cfg.entropy_coef else torch.zeros_like(logp)
                if reference is not None:
                    with torch.no_grad():
                        logp_ref = reference(ids, attn, rmask)[0]
                    kl = kl_estimate(logp, logp_ref, cfg.kl_estimator)
                    penalty = penalty + cfg.kl_coef * kl
                    stats["kl_sum"] += (kl.detach() * rmask).sum().item()
                loss, st = policy_loss(logp, old, advantages[micro].to(d.device), rmask, cfg.clip_eps, aggregation,
                                       num_responses, cfg.max_new_tokens, cfg.clip_eps_high or None, penalty)
                (loss * d.world_size).backward()
            stats["loss"] += loss.item()
            stats["clipped_tokens"] += st["clipped_tokens"].item()
            stats["tokens"] += st["tokens"].item()
            stats["entropy_sum"] += (entropy.detach() * rmask).sum().item()
        stats["grad_norm"] += torch.nn.utils.clip_grad_norm_(parameters, cfg.max_grad_norm).item() / len(minis)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return stats


def _pad_stack(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width, device=rows[0].device)
    for b, row in enumerate(rows):
        n = min(width, row.shape[0])
        out[b, :n] = row[:n]
    return out


# ---------------------------------------------------------------------------------------------
# Checkpoints: written to a temporary directory, then renamed; `latest` replaced atomically


def save_checkpoint(out_dir: Path, step: int, model, tokenizer, optimizer, cfg: Config, d: Dist) -> None:
    """Save everything needed to continue after `step` steps into out_dir/checkpoints/step_NNNNNN."""
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
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "world_size": d.world_size, "config": asdict(cfg)}, indent=1))
    dist.barrier()
    if d.is_main:
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        _write_atomic(root / "latest", final.name)
    dist.barrier()


def latest_checkpoint(out_dir: Path) -> Path:
    pointer = out_dir / "checkpoints" / "latest"
    if not pointer.exists():
        raise FileNotFoundError(f"--resume: no checkpoint under {out_dir}/checkpoints (run once without --resume)")
    return out_dir / "checkpoints" / pointer.read_text().strip()


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Metrics: sums over ranks, then ratios


def rollout_sums(samples: list[Sample], results, advantages: torch.Tensor, group_size: int) -> dict:
    """Per-rank sums for one rollout batch; train_zero reduces them over ranks and divides."""
    lengths = [len(s.response_ids) for s in samples]
    texts = [s.text.lower() for s in samples]
    zero_groups = (advantages.view(-1, group_size).abs().sum(1) == 0).sum().item()
    return {
        "responses": len(samples),
        "groups": len(samples) // group_size,
        "reward_sum": sum(r.score for r in results),
        "correct": sum(r.reason == "correct" for r in results),
        "extracted": sum(r.reason != "no_answer" for r in results),
        "timeouts": sum(r.reason == "timeout" for r in results),
        "truncated": sum(s.finish_reason == "length" for s in samples),
        "length_sum": sum(lengths),
        "zero_adv_groups": zero_groups,
        "reflection": sum(any(w in t for w in REFLECTION_WORDS) for t in texts),
        "wrong": sum(r.reason == "wrong" for r in results),
    }


def reduce_metrics(sums: dict, max_length: int, d: Dist) -> dict:
    keys = sorted(sums)
    totals = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(totals)
    longest = torch.tensor([float(max_length)])
    dist.all_reduce(longest, op=dist.ReduceOp.MAX)
    s = dict(zip(keys, totals.tolist()))
    n = max(s["responses"], 1)
    return {
        "reward_mean": s["reward_sum"] / n,
        "accuracy": s["correct"] / n,
        "answer_rate": s["extracted"] / n,
        "response_length_mean": s["length_sum"] / n,
        "response_length_max": longest.item(),
        "truncation_rate": s["truncated"] / n,
        "clip_fraction": s["clipped_tokens"] / max(s["tokens"], 1),
        "entropy": s["entropy_sum"] / max(s["tokens"], 1),
        "kl": s["kl_sum"] / max(s["tokens"], 1),
        "loss": s["loss"] / d.world_size,
        "grad_norm": s["grad_norm"] / d.world_size,
        "zero_adv_group_frac": s["zero_adv_groups"] / max(s["groups"], 1),
        "grader_timeouts": s["timeouts"],
        "outcome_counts": {"correct": s["correct"], "wrong": s["wrong"], "no_answer": s["responses"] - s["extracted"],
                           "timeout": s["timeouts"]},
        "reflection_rate": s["reflection"] / n,
        "generated_tokens": s["length_sum"],
    }


def eval_metrics(engine, eval_sets: dict, cfg: Config, grader: Grader, d: Dist) -> dict:
    """Greedy pass@1 and answer rate per eval set; each rank decodes its share, counts are summed."""
    row = {}
    for name, problem_set in eval_sets.items():
        records = evaluate_problems(engine, problem_set.problems[d.rank :: d.world_size], cfg.template, grader,
                                    cfg.max_new_tokens)
        counts = torch.tensor([sum(r["reason"] == "correct" for r in records),
                               sum(r["reason"] != "no_answer" for r in records), len(records)], dtype=torch.float64)
        dist.all_reduce(counts)
        row[f"eval/{name}"] = counts[0].item() / max(counts[2].item(), 1)
        row[f"eval/{name}/answer_rate"] = counts[1].item() / max(counts[2].item(), 1)
    return row


def append_logs(out_dir: Path, row: dict, problems: list, samples: list[Sample], results, cfg: Config) -> None:
    """One metrics.jsonl row, and the first cfg.log_samples rollouts of rank 0 to samples.jsonl."""
    with open(out_dir / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")
    with open(out_dir / "samples.jsonl", "a") as f:
        for i, (s, r) in enumerate(list(zip(samples, results))[: cfg.log_samples]):
            problem = problems[i // cfg.group_size]
            record = {"step": row["step"], "problem": problem.problem, "response": s.text, "answer": r.answer,
                      "gold": problem.answer, "reward": r.score, "reason": r.reason, "finish_reason": s.finish_reason}
            f.write(json.dumps(record) + "\n")


# ---------------------------------------------------------------------------------------------
# The loop


def main(cfg: Config) -> list[dict]:
    """Train; returns the metrics rows of this run (rank 0's view, identical on every rank)."""
    # --- 1. setup
    if cfg.algo not in ("grpo", "drgrpo"):
        raise ValueError(f"--algo {cfg.algo!r}: use grpo or drgrpo")
    if cfg.reward not in REWARD_RULES:
        raise ValueError(f"--reward {cfg.reward!r}: use one of {sorted(REWARD_RULES)}")
    d = setup_distributed()
    try:
        history = _train(cfg, d)  # the DDP module and its gloo work are freed when _train returns
        dist.barrier()  # no rank tears down the group while another still communicates
        return history
    finally:
        dist.destroy_process_group()


def _train(cfg: Config, d: Dist) -> list[dict]:
    if cfg.prompts_per_step % d.world_size:
        raise ValueError(f"--prompts-per-step {cfg.prompts_per_step} must be a multiple of the world size {d.world_size}")
    out_dir = Path(cfg.out_dir)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    print0(d, json.dumps(asdict(cfg), indent=1))
    if d.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(out_dir / "config.json", json.dumps({**asdict(cfg), "world_size": d.world_size}, indent=1))

    # --- 2. data
    train = load_train_data(cfg.train_data, cfg.levels or None, cfg.seed)
    print0(d, f"train data {train.path}: {len(train.problems)} problems ({train.skipped_empty} empty answers skipped)")
    eval_sets = {name: load_eval_set(name, cfg.data_dir or None, cfg.eval_limit) for name in cfg.eval_data.split(",")} \
        if cfg.eval_every else {}

    # --- 3. model, optimiser, engine, grader (or all of them from the last checkpoint)
    start_step = 0
    checkpoint = latest_checkpoint(out_dir) if cfg.resume else None
    model, tokenizer = load_model(str(checkpoint) if checkpoint else cfg.model)
    model.to(d.device).train()
    policy = DistributedDataParallel(TokenLogProbs(model, cfg.temperature, cfg.logprob_chunk_size))
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    if checkpoint:
        optimizer.load_state_dict(torch.load(checkpoint / "optimizer.pt", weights_only=False))
        start_step = json.loads((checkpoint / "trainer_state.json").read_text())["step"]
        rng = torch.load(checkpoint / f"rng_rank{d.rank}.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        print0(d, f"resumed from {checkpoint} at step {start_step}")
    reference = None
    if cfg.kl_coef > 0:  # a frozen copy of the starting policy (the base model, also after a resume)
        reference = TokenLogProbs(load_model(cfg.model)[0].to(d.device).eval().requires_grad_(False),
                                  cfg.temperature, cfg.logprob_chunk_size)
    engine = HFEngine(model, tokenizer)
    grader = Grader(cfg.grader_timeout)
    params = SamplingParams(cfg.group_size, cfg.temperature, cfg.top_p, cfg.max_new_tokens, stop_strings(cfg.template))
    if d.is_main:  # a resumed run rewrites the rows after its checkpoint
        for path in (out_dir / "metrics.jsonl", out_dir / "samples.jsonl"):
            if path.exists():
                rows = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= start_step]
                _write_atomic(path, "".join(row + "\n" for row in rows))

    from tqdm import tqdm

    history = []
    bar = tqdm(range(start_step, cfg.steps), initial=start_step, total=cfg.steps, disable=not d.is_main, desc="train")
    for step in bar:
        # --- rollout
        t0 = time.perf_counter()
        problems = problems_for_step(train.problems, step, cfg.prompts_per_step, cfg.seed, d.rank, d.world_size)
        prompts = [apply_template(cfg.template, p.problem) for p in problems]
        params.seed = cfg.seed * 1_000_003 + step * 1_009 + d.rank
        samples = [s for group in engine.generate(prompts, params) for s in group]
        t1 = time.perf_counter()
        # --- reward
        golds = [p.answer for p in problems for _ in range(cfg.group_size)]
        results = compute_rewards([s.text for s in samples], golds, cfg.template, cfg.reward, grader)
        t2 = time.perf_counter()
        # --- advantages
        rewards = torch.tensor([r.score for r in results])
        truncated = torch.tensor([s.finish_reason == "length" for s in samples])
        if cfg.truncated == "zero_reward":
            rewards[truncated] = 0.0
        advantages = group_advantages(rewards, cfg.group_size, scale_by_std=cfg.algo == "grpo")
        in_loss = ~truncated if cfg.truncated == "drop" else torch.ones_like(truncated)
        # --- learn
        stats = learn(policy, optimizer, samples, advantages, in_loss, cfg, d, tokenizer.pad_token_id, reference)
        t3 = time.perf_counter()
        # --- sync (no-op for the transformers engine, which samples from the live model)
        sync_seconds = engine.sync_weights(model)
        # --- log
        sums = {**rollout_sums(samples, results, advantages, cfg.group_size), **stats}
        row = {"step": step + 1, **reduce_metrics(sums, max(len(s.response_ids) for s in samples), d)}
        row.update({"time_rollout": t1 - t0, "time_reward": t2 - t1, "time_learn": t3 - t2, "time_sync": sync_seconds,
                    "tokens_per_s": row["generated_tokens"] / max(t1 - t0, 1e-9)})
        # --- eval
        last = step + 1 == cfg.steps
        if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or last):
            row.update(eval_metrics(engine, eval_sets, cfg, grader, d))
        history.append(row)
        if d.is_main:
            append_logs(out_dir, row, problems, samples, results, cfg)
            bar.set_postfix(reward=f"{row['reward_mean']:.2f}", acc=f"{row['accuracy']:.2f}",
                            len=f"{row['response_length_mean']:.0f}")
        # --- save
        if cfg.save_every and ((step + 1) % cfg.save_every == 0 or last):
            save_checkpoint(out_dir, step + 1, model, tokenizer, optimizer, cfg, d)
    grader.close()
    return history


if __name__ == "__main__":
    import tyro

    main(tyro.cli(Config))
