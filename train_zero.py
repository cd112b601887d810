"""R1-Zero-like training: RL straight from a base model with a rule-based math reward.

One process (CPU or one GPU):
    python train_zero.py                                  # embedded default: SmolLM2-135M, arithmetic
    python train_zero.py --algo grpo --train-data ../shared/data/train/gsm8k_train.jsonl
    python train_zero.py --algo ppo                       # PPO with a critic (SimpleRL-Zero)
    python train_zero.py --algo grpo --kl-coef 1e-3 --kl-estimator k3   # KL loss (SimpleRL-Zoo)
    python train_zero.py --rollout-engine vllm           # vLLM sampling, weights synced and probed every step
N processes (DDP; gloo on CPU, nccl on GPU), each rank owning whole prompt groups:
    torchrun --nproc_per_node 8 train_zero.py --algo drgrpo
Resume after a crash (same flags, same --out-dir):  python train_zero.py ... --resume

Every step: rollout (rollout.py) -> reward (reward.py) -> advantages (group-relative, or GAE from the
critic) -> clipped policy loss (and value loss) over micro-batches with gradient accumulation
(learn.py, losses.py) -> optimiser step -> weight sync -> log.
`--help` lists every knob; each is one field of `Config` below.

Deviations from the papers, one line each:
- KL is off by default (Dr. GRPO); `--kl-in loss` is GRPO's loss term, `--kl-in reward` PPO's per-token penalty.
- PPO's critic is a zero-initialised value head on a copy of the base model; policy and critic learn
  from the same mini-batches, one after the other (SimpleRL-Zero through OpenRLHF: same order).
- PPO makes no policy update from a batch whose rewards are all equal (the critic still learns):
  whitening would turn critic noise into unit-scale advantages (`--no-ppo-skip-uniform-batches` restores it).
- The rollout batch is split into `updates_per_batch` mini-batches, one optimiser step each
  (Oat-Zero: 8); with 1, logp_old is the detached current log-prob (ratio = 1, exactly on-policy).
- Responses with zero advantage are skipped in the learn pass (exactly zero gradient), and a batch
  in which every advantage is zero makes no optimiser step (AdamW momentum does not move then).
- With --rollout-engine vllm, the update uses the trainer's log-probs as logp_old (the sampler's only enter
  through --tis-cap and the drift metrics), as the papers' vLLM-based runs do.
- Defaults are tuned for a 2-core CPU and a 135M model, not the papers' 7B runs (REFERENCE §4).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Literal

import torch
import torch.distributed as dist
import tyro
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from data import load_train_data
from evaluate import evaluate_problems, load_eval_set
from grader import VERDICTS
from learn import advantage_rows, learn, learn_critic, sampler_drift, score, tis_weights
from losses import TokenLogProbs, ValueModel, kl_estimate
from reward import REWARD_RULES, Grader, apply_template, compute_rewards, stop_strings
from rollout import HFEngine, Sample, SamplingParams, VLLMEngine, load_model, resolve_model

REFLECTION_WORDS = ("recheck", "rethink", "reassess", "reevaluate", "re-evaluate", "re-examine", "reconsider",
                    "double-check", "check again", "think again", "verify", "wait", "try again", "alternatively",
                    "however")  # the "aha moment" keywords of REFERENCE §6


@dataclass
class Config:
    algo: Literal["grpo", "drgrpo", "ppo"] = "drgrpo"  # GRPO (std, 1/|o|), Dr. GRPO (no std, 1/L_max), or PPO (critic, GAE)
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
    clip_eps: Annotated[float, tyro.conf.arg(aliases=("--clip-eps-low",))] = 0.2  # ratio clip range (the lower one with clip_eps_high)
    clip_eps_high: float = 0.0  # DAPO clip-higher upper range, e.g. 0.28 (0: same as clip_eps)
    kl_coef: float = 0.0  # KL-to-reference coefficient beta (0: no reference model is loaded)
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"  # per-token KL estimator (k3 = "low_var_kl")
    kl_in: Literal["loss", "reward"] = "loss"  # KL as a loss term (GRPO style) or a per-token reward penalty (PPO style)
    critic_lr: float = 5e-5  # PPO critic AdamW learning rate, constant (SimpleRL-Zero: 9e-6, 18x the actor's)
    gamma: float = 1.0  # PPO discount
    gae_lambda: float = 0.95  # PPO GAE lambda
    value_clip: float = 0.2  # PPO value clipping range (0: no clipping)
    whiten_advantages: bool = True  # PPO: whiten GAE advantages over the batch (all ranks)
    ppo_skip_uniform_batches: bool = True  # PPO: no policy update from a batch whose rewards are all equal
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
    grader_workers: int = 2  # grader worker processes per rank (sympy runs there)
    rollout_engine: Literal["hf", "vllm"] = "hf"  # transformers generate on the live model, or a vLLM engine per rank
    vllm_dtype: str = "float32"  # vLLM weights/activations (bfloat16 on GPU needs --probe-tolerance ~5e-2)
    vllm_gpu_memory_utilization: float = 0.3  # GPU share for vLLM weights + KV cache (the trainer shares the GPU)
    vllm_kv_cache_gb: float = 1.0  # CPU: vLLM's KV cache in GiB (VLLM_CPU_KVCACHE_SPACE); GPU: unused
    vllm_max_model_len: int = 2048  # prompt + response tokens per sequence in the vLLM engine
    vllm_sleep: bool = True  # GPU: vLLM sleep mode (weights and KV cache freed while learning); CPU: no-op
    vllm_cpu_bind: str = ""  # CPU: cores for the engine's worker, e.g. 0-1 (VLLM_CPU_OMP_THREADS_BIND); "": vLLM's auto
    probe_every: int = 1  # vLLM: compare engine and trainer log-probs on a fixed sequence every N syncs (0: never)
    probe_tolerance: float = 1e-3  # vLLM: max |engine - trainer| log-prob (nats) before the run stops
    tis_cap: float = 0.0  # truncated importance sampling: weight min(pi_trainer / pi_sampler, cap) (0: off; vLLM only)
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
# The rollout engine


def make_engine(cfg: Config, model, tokenizer, checkpoint: Path | None, d: Dist):
    """HFEngine on the live model, or one VLLMEngine per rank loaded from the same weights, synced and probed once.

    On GPU each rank's engine is placed on the rank's own device (CUDA_VISIBLE_DEVICES for the engine's
    processes). Raises ImportError without vllm, RuntimeError if the first probe fails.
    """
    if cfg.rollout_engine == "hf":
        return HFEngine(model, tokenizer)
    on_gpu = d.device.type == "cuda"
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    if on_gpu:  # the engine's processes see only this rank's GPU
        visible = saved.split(",") if saved else [str(i) for i in range(torch.cuda.device_count())]
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[d.device.index]
    try:
        engine = VLLMEngine(str(checkpoint) if checkpoint else resolve_model(cfg.model), dtype=cfg.vllm_dtype,
                            gpu_memory_utilization=cfg.vllm_gpu_memory_utilization, enable_sleep_mode=cfg.vllm_sleep,
                            seed=cfg.seed + d.rank, max_model_len=cfg.vllm_max_model_len,
                            kv_cache_gb=None if on_gpu else cfg.vllm_kv_cache_gb, cpu_threads_bind=cfg.vllm_cpu_bind or None)
    finally:  # the trainer's own view of the GPUs is unchanged (CUDA is already initialised in this process)
        if on_gpu and saved is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        elif on_gpu:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    engine.sync_weights(model)  # the trainer's exact tensors (e.g. fp32 after a dequantised GGUF load)
    diff = engine.probe(model, tolerance=cfg.probe_tolerance)
    print0(d, f"vLLM engine ready: probe max |engine - trainer| log-prob {diff:.2e} (tolerance {cfg.probe_tolerance:g})")
    return engine


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
# Checkpoints: written to a temporary directory, then renamed; `latest` replaced atomically


def save_checkpoint(out_dir: Path, step: int, model, tokenizer, optimizer, cfg: Config, d: Dist, critic=None,
                    critic_optimizer=None) -> None:
    """Save everything needed to continue after `step` steps into out_dir/checkpoints/step_NNNNNN.

    The policy is an HF directory (evaluate.py loads it); PPO adds critic.pt and critic_optimizer.pt.
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
        (tmp / "trainer_state.json").write_text(json.dumps({"step": step, "world_size": d.world_size, "config": asdict(cfg)}, indent=1))
    dist.barrier()
    if d.is_main:
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        _write_atomic(root / "latest", final.name)
    dist.barrier()


RESUME_MAY_CHANGE = {"steps", "resume", "out_dir", "eval_every", "eval_data", "eval_limit", "save_every", "log_samples",
                     "grader_timeout", "grader_workers", "data_dir", "probe_every", "probe_tolerance", "vllm_sleep",
                     "vllm_kv_cache_gb", "vllm_gpu_memory_utilization", "vllm_cpu_bind"}  # flags that do not change the training trajectory


def check_resume_config(saved: dict, cfg: Config, checkpoint: Path) -> None:
    """Raise ValueError if a flag that shapes training differs from the checkpoint's run (resume would not be exact)."""
    current = asdict(cfg)
    changed = [f"--{k.replace('_', '-')}: checkpoint {saved[k]!r}, now {current[k]!r}" for k in current
               if k in saved and k not in RESUME_MAY_CHANGE and _jsonable(saved[k]) != _jsonable(current[k])]
    if changed:
        raise ValueError(f"--resume from {checkpoint}: these flags differ from the run that wrote it "
                         f"(pass the same values to continue exactly): " + "; ".join(changed))


def _jsonable(value):
    return json.loads(json.dumps(value))  # tuples and lists compare equal, as they are stored


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


OUTCOMES = (*VERDICTS, "no_answer")  # RewardResult.reason: the grader's verdicts, or no extracted answer


def rollout_sums(samples: list[Sample], results, rewards: torch.Tensor, group_size: int) -> dict:
    """Per-rank sums for one rollout batch; train_zero reduces them over ranks and divides."""
    lengths = [len(s.response_ids) for s in samples]
    texts = [s.text.lower() for s in samples]
    grouped = rewards.view(-1, group_size)
    return {
        "responses": len(samples),
        "groups": len(samples) // group_size,
        "reward_sum": sum(r.score for r in results),
        "truncated": sum(s.finish_reason == "length" for s in samples),
        "length_sum": sum(lengths),
        "zero_adv_groups": (grouped.max(1).values == grouped.min(1).values).sum().item(),  # all-equal rewards
        "reflection": sum(any(w in t for w in REFLECTION_WORDS) for t in texts),
        **{f"outcome_{o}": sum(r.reason == o for r in results) for o in OUTCOMES},
    }


def reduce_metrics(sums: dict, max_length: int, d: Dist) -> dict:
    keys = sorted(sums)
    totals = torch.tensor([float(sums[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(totals)
    longest = torch.tensor([float(max_length)])
    dist.all_reduce(longest, op=dist.ReduceOp.MAX)
    s = dict(zip(keys, totals.tolist()))
    n = max(s["responses"], 1)
    row = {
        "reward_mean": s["reward_sum"] / n,
        "accuracy": s["outcome_correct"] / n,
        "answer_rate": 1 - s["outcome_no_answer"] / n,
        "response_length_mean": s["length_sum"] / n,
        "response_length_max": longest.item(),
        "truncation_rate": s["truncated"] / n,
        "clip_fraction": s["clipped_tokens"] / max(s["tokens"], 1),
        "entropy": s["entropy_sum"] / max(s["tokens"], 1),
        "kl": s["kl_sum"] / max(s["kl_tokens"], 1),  # 0 without a reference model
        "loss": s["loss"] / d.world_size,
        "grad_norm": s["grad_norm"] / d.world_size,
        "zero_adv_group_frac": s["zero_adv_groups"] / max(s["groups"], 1),
        "grader_timeouts": s["outcome_timeout"],
        "grader_parse_errors": s["outcome_parse_error"],
        "outcome_counts": {o: s[f"outcome_{o}"] for o in OUTCOMES},
        "reflection_rate": s["reflection"] / n,
        "generated_tokens": s["length_sum"],
    }
    if "drift_tokens" in s:  # an engine that returns the sampler's log-probs (vLLM)
        row.update({"sampler_drift_abs": s["drift_abs_sum"] / max(s["drift_tokens"], 1),
                    "sampler_drift_kl": s["drift_kl_sum"] / max(s["drift_tokens"], 1)})
    if "value_loss" in s:  # PPO's critic
        row.update({"value_loss": s["value_loss"] / d.world_size, "critic_grad_norm": s["critic_grad_norm"] / d.world_size,
                    "value_clip_fraction": s["value_clipped_tokens"] / max(s["value_tokens"], 1),
                    "value_mse": s["value_error_sum"] / max(s["value_tokens"], 1)})
    return row


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
    if cfg.algo not in ("grpo", "drgrpo", "ppo"):
        raise ValueError(f"--algo {cfg.algo!r}: use grpo, drgrpo or ppo")
    if cfg.reward not in REWARD_RULES:
        raise ValueError(f"--reward {cfg.reward!r}: use one of {sorted(REWARD_RULES)}")
    if cfg.tis_cap > 0 and cfg.rollout_engine != "vllm":
        raise ValueError(f"--tis-cap {cfg.tis_cap}: needs the sampler's log-probs; use --rollout-engine vllm")
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
        state = json.loads((checkpoint / "trainer_state.json").read_text())
        check_resume_config(state["config"], cfg, checkpoint)
        start_step = state["step"]
        rng = torch.load(checkpoint / f"rng_rank{d.rank}.pt", weights_only=False)
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        print0(d, f"resumed from {checkpoint} at step {start_step}")
    critic = critic_optimizer = None
    if cfg.algo == "ppo":  # a value head on a copy of the base model (SimpleRL-Zero), with its own optimiser
        value_model = ValueModel(load_model(cfg.model)[0]).to(d.device).train()
        critic_optimizer = torch.optim.AdamW(value_model.parameters(), lr=cfg.critic_lr, weight_decay=cfg.weight_decay)
        if checkpoint:
            value_model.load_state_dict(torch.load(checkpoint / "critic.pt", weights_only=True))
            critic_optimizer.load_state_dict(torch.load(checkpoint / "critic_optimizer.pt", weights_only=False))
        critic = DistributedDataParallel(value_model)
    reference = None
    if cfg.kl_coef > 0:  # a frozen copy of the starting policy (the base model, also after a resume)
        reference = TokenLogProbs(load_model(cfg.model)[0].to(d.device).eval().requires_grad_(False),
                                  cfg.temperature, cfg.logprob_chunk_size)
    engine = make_engine(cfg, model, tokenizer, checkpoint, d)
    grader = Grader(cfg.grader_timeout, cfg.grader_workers)
    params = SamplingParams(cfg.group_size, cfg.temperature, cfg.top_p, cfg.max_new_tokens, stop_strings(cfg.template))
    if d.is_main:  # a resumed run rewrites the rows after its checkpoint
        for path in (out_dir / "metrics.jsonl", out_dir / "samples.jsonl"):
            if path.exists():
                rows = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= start_step]
                _write_atomic(path, "".join(row + "\n" for row in rows))

    history = []
    bar = tqdm(range(start_step, cfg.steps), initial=start_step, total=cfg.steps, disable=not d.is_main, desc="train")
    for step in bar:
        # --- rollout
        t0 = time.perf_counter()
        problems = problems_for_step(train.problems, step, cfg.prompts_per_step, cfg.seed, d.rank, d.world_size)
        prompts = [apply_template(cfg.template, p.problem) for p in problems]
        params.seed = cfg.seed * 1_000_003 + step * 1_009 + d.rank
        samples = [s for group in engine.generate(prompts, params) for s in group]
        engine.sleep()  # GPU sleep mode: free the engine's memory while the trainer learns (else no-op)
        t1 = time.perf_counter()
        # --- reward
        golds = [p.answer for p in problems for _ in range(cfg.group_size)]
        results = compute_rewards([s.text for s in samples], golds, cfg.template, cfg.reward, grader)
        t2 = time.perf_counter()
        # --- advantages (after no-grad passes for what the batch needs: logp_old, logp_ref, values)
        rewards = torch.tensor([r.score for r in results])
        truncated = torch.tensor([s.finish_reason == "length" for s in samples])
        if cfg.truncated == "zero_reward":
            rewards[truncated] = 0.0
        in_loss = ~truncated if cfg.truncated == "drop" else torch.ones_like(truncated)
        pad, mb = tokenizer.pad_token_id, cfg.micro_batch_size
        need_old, from_sampler = cfg.updates_per_batch > 1 or reference is not None, samples[0].logprobs is not None
        logp_old = score(policy.module, samples, pad, d.device, mb) if need_old or from_sampler else None
        drift = sampler_drift(logp_old, samples) if from_sampler else {}  # trainer vs sampler on the same tokens
        importance = tis_weights(logp_old, samples, cfg.tis_cap) if cfg.tis_cap > 0 else None
        logp_ref = score(reference, samples, pad, d.device, mb) if reference else None
        kl_rows = [kl_estimate(a, b, cfg.kl_estimator) for a, b in zip(logp_old, logp_ref)] if reference else None
        values = score(critic.module, samples, pad, d.device, mb) if critic else None
        advantages, returns = advantage_rows(samples, rewards, cfg, kl_rows, values, dist.all_reduce)
        # --- learn
        stats = learn(policy, optimizer, samples, advantages, in_loss, cfg, d, pad, logp_old if need_old else None,
                      logp_ref, importance)
        if critic:
            stats.update(learn_critic(critic, critic_optimizer, samples, returns, values, in_loss, cfg, d, pad))
        t3 = time.perf_counter()
        # --- sync (no-op for the transformers engine, which samples from the live model), then the probe
        engine.wake_up()
        sync_seconds = engine.sync_weights(model)
        probe = {}
        if isinstance(engine, VLLMEngine) and cfg.probe_every and (step + 1) % cfg.probe_every == 0:
            t_probe = time.perf_counter()
            probe = {"probe_max_abs_diff": engine.probe(model, tolerance=cfg.probe_tolerance),  # raises if out of sync
                     "time_probe": time.perf_counter() - t_probe}
        # --- log
        sums = {**rollout_sums(samples, results, rewards, cfg.group_size), **stats, **drift,
                "kl_sum": sum(row.sum().item() for row in kl_rows) if reference else 0.0,
                "kl_tokens": sum(len(s.response_ids) for s in samples)}
        row = {"step": step + 1, **reduce_metrics(sums, max(len(s.response_ids) for s in samples), d)}
        row.update({"time_rollout": t1 - t0, "time_reward": t2 - t1, "time_learn": t3 - t2, "time_sync": sync_seconds,
                    "tokens_per_s": row["generated_tokens"] / max(t1 - t0, 1e-9), **probe})
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
            save_checkpoint(out_dir, step + 1, model, tokenizer, optimizer, cfg, d,
                            critic.module if critic else None, critic_optimizer)
    grader.close()
    engine.close()
    return history


if __name__ == "__main__":
    main(tyro.cli(Config))
