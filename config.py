"""Every setting, in one place: train_zero.py's Config, and the groups that sft.py and evaluate.py share with it.

The groups follow the loop: model -> data -> rollout -> reward -> algorithm -> optimiser -> run; then scale and the
upstream protocol, which a first run never touches. Each field is defined once, with its default and the reason
for it; the group's check (problems(): one line per bad flag, found before anything loads) sits beside it. The
command line is generated from the fields (rundir.cli): `max_new_tokens` is `--max-new-tokens`, and --help shows
one heading per group, in this order.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import tyro

from data import range_problems, train_data_problems
from grader_pool import GraderBackend
from learn import ALGORITHMS, AlgoName
from model import model_problem
from reward import EXTRACTIONS, RULES, TEMPLATES
from rundir import logger_problems

# ---------------------------------------------------------------------------------------------
# The loop's groups


@dataclass
class ModelSettings:
    """Model and precision."""

    model: str = "smollm2-135m"  # hub id, local HF directory or checkpoint; default: the embedded 135M (no download)
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # compute dtype; auto: bf16 on GPU, fp32 on CPU
    attn_implementation: Literal["sdpa", "flash_attention_2", "eager"] = "sdpa"  # sdpa: fast everywhere, no package

    def problems(self) -> list[str]:
        out = [problem] if (problem := model_problem(self.model)) else []
        if self.attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
            out.append("--attn-implementation flash_attention_2 needs the flash-attn package (CUDA only): "
                       "pip install flash-attn, or use sdpa")
        return out


@dataclass
class DataSettings:
    """Data directory."""

    data_dir: str = ""  # holds train/ and eval/ (benchmarks, zoo-* presets); "": $ZERO_RL_DATA or ../shared/data

    def problems(self) -> list[str]:
        if self.data_dir and not Path(self.data_dir).is_dir():
            return [f"--data-dir {self.data_dir}: no such directory (it holds train/ and eval/; "
                    "see ../shared/data/README.md)"]
        return []


@dataclass
class TrainDataSettings(DataSettings):
    """Training data."""

    train_data: str = "add_one"  # JSONL (a.jsonl:0.7,b.jsonl:0.3 mixes), add_one / arithmetic, or zoo-easy|medium|hard
    levels: tuple[int, ...] = ()  # keep only these MATH levels (the papers: 3 4 5); empty keeps all

    def problems(self) -> list[str]:
        return train_data_problems(self.train_data, self.levels, self.data_dir or None)


@dataclass
class RolloutSettings:
    """Rollouts: what is sampled each step."""

    group_size: int = 8  # samples per prompt (G): the papers' 8, enough spread for group advantages
    prompts_per_step: int = 0  # prompts per step over all ranks; 0: 4, rounded up to a multiple of the world size
    max_new_tokens: int = 20  # response budget L_max (Dr. GRPO's loss divisor too); add_one needs ~15
    temperature: float = 1.0  # sampling temperature (the papers: 1.0); log-probs are taken at the same one
    top_p: float = 1.0  # nucleus sampling; 1: the full distribution, so the trainer's log-probs match the sampler's
    template: str = "auto"  # prompt (reward.TEMPLATES); auto: chat_oneshot for add_one, else qwen_boxed
    stop: tuple[str, ...] = ()  # stop strings besides EOS and the template's own (r1: </answer>)
    stop_token_ids: tuple[int, ...] = ()  # token ids that also end a response, kept in it (the Zoo's per model)

    def problems(self) -> list[str]:
        out = range_problems(self, [
            ("group_size", self.group_size >= 1, "at least 1"),
            ("max_new_tokens", self.max_new_tokens >= 1, "at least 1"),
            ("prompts_per_step", self.prompts_per_step >= 0, ">= 0 (0: 4, or the world size)"),
            ("top_p", 0 < self.top_p <= 1, "in (0, 1]")])
        if self.temperature <= 0:
            out.append(f"--temperature {self.temperature}: must be > 0 (greedy sampling makes a group's samples "
                       "identical, so every advantage is 0, and log-probs at temperature 0 are undefined; "
                       "the papers: 1.0)")
        if self.template not in (*TEMPLATES, "auto"):
            out.append(f"--template {self.template!r}: use one of {', '.join(sorted([*TEMPLATES, 'auto']))}")
        return out


@dataclass
class GraderSettings:
    """Grader (docs/grader.md)."""

    grader: GraderBackend = "zero_rl"  # zero_rl: our layered check; math_verify: HF math-verify, as SimpleRL-Zoo
    grader_timeout: float = 5.0  # seconds per answer before its worker is killed (verdict timeout); sympy can hang
    grader_workers: int = 2  # grader processes per rank: sympy runs there, killable, beside the trainer

    def problems(self) -> list[str]:
        return range_problems(self, [("grader_timeout", self.grader_timeout > 0, "> 0 seconds"),
                                     ("grader_workers", self.grader_workers >= 1, "at least 1")])


@dataclass
class RewardSettings(GraderSettings):
    """Reward: how an answer is read and scored."""

    reward: str = "correct"  # correct (1 / 0: oat, the Zoo; learns add_one on all ten seeds), simplerl (+1/-0.5/-1)
    extraction: str = "boxed"  # how the answer is read: the last box; others reproduce one upstream (fidelity/)

    def problems(self) -> list[str]:
        out = [] if self.reward in RULES else [f"--reward {self.reward!r}: use one of {', '.join(sorted(RULES))}"]
        if self.extraction not in EXTRACTIONS:
            out.append(f"--extraction {self.extraction!r}: use one of {', '.join(EXTRACTIONS)}")
        return out


@dataclass
class AlgorithmSettings:
    """Algorithm: advantages, loss, KL and PPO's critic (learn.ALGORITHMS)."""

    algo: AlgoName = "drgrpo"  # drgrpo: unbiased GRPO (no std, 1/L_max), the Dr. GRPO paper's; grpo; ppo (critic)
    loss_agg: Literal["algo", "seq_mean_token_mean", "seq_mean_token_sum_norm", "token_mean"] = "algo"  # algo: its own
    clip_eps: Annotated[float, tyro.conf.arg(aliases=("--clip-eps-low",))] = 0.2  # ratio clip range (PPO's 0.2)
    clip_eps_high: float = 0.0  # DAPO's clip-higher upper range, e.g. 0.28; 0: the same as clip_eps
    entropy_coef: float = 0.0  # entropy bonus; 0, as the papers: the reward alone shapes exploration
    logprob_temperature: Literal["sampling", "1"] = "sampling"  # log-probs at the sampling temperature, or 1 (v0)
    truncated: Literal["keep", "drop", "zero_reward"] = "keep"  # responses cut at max_new_tokens: keep, drop, reward 0
    micro_batch_size: int = 8  # responses per forward/backward: memory, not the result
    updates_per_batch: int = 1  # optimiser steps per rollout batch; 1: exactly on-policy (ratio 1)
    shuffle_minibatches: bool = False  # shuffle the batch before cutting mini-batches (oat does), seeded per step
    kl_coef: float = 0.0  # KL-to-reference coefficient beta; 0 (Dr. GRPO): no reference model is even loaded
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"  # per-token KL estimator; k3 is GRPO's low-variance one
    kl_in: Literal["loss", "reward"] = "loss"  # KL as a loss term (GRPO) or a per-token reward penalty (PPO)
    kl_clamp: float = 0.0  # clamp each token's KL estimate to [-c, c] (verl: 10); 0: no clamp
    tis_cap: float = 0.0  # truncated importance sampling cap on pi_trainer / pi_sampler (vLLM only); 0: off
    gamma: float = 1.0  # PPO discount; 1: the reward comes once, at the end, and nothing should shrink it
    gae_lambda: float = 0.95  # PPO GAE lambda (OpenRLHF's default)
    value_clip: float = 0.2  # PPO value clipping range; 0: none
    whiten_advantages: bool = True  # PPO: whiten GAE advantages over the batch (all ranks), as OpenRLHF
    ppo_skip_uniform_batches: bool = True  # PPO: no policy step when every reward is equal (whitened critic noise)
    critic_lr: float = 5e-5  # PPO critic's AdamW lr, on the policy's schedule (SimpleRL-Zero: 18x the actor's)

    def problems(self) -> list[str]:
        out = range_problems(self, [
            ("micro_batch_size", self.micro_batch_size >= 1, "at least 1"),
            ("updates_per_batch", self.updates_per_batch >= 1, "at least 1"), ("clip_eps", self.clip_eps > 0, "> 0"),
            ("clip_eps_high", self.clip_eps_high >= 0, ">= 0 (0: same as --clip-eps)"),
            ("tis_cap", self.tis_cap >= 0, ">= 0 (0: off)"), ("kl_coef", self.kl_coef >= 0, ">= 0 (0: off)"),
            ("gamma", 0 <= self.gamma <= 1, "in [0, 1]"), ("gae_lambda", 0 <= self.gae_lambda <= 1, "in [0, 1]"),
            ("value_clip", self.value_clip >= 0, ">= 0 (0: no clipping)"), ("critic_lr", self.critic_lr > 0, "> 0"),
            ("kl_clamp", self.kl_clamp >= 0, ">= 0 (0: no clamp)")])
        if getattr(self, "group_size", 2) == 1 and ALGORITHMS[self.algo].advantages == "group":
            out.append(f"--group-size 1 with --algo {self.algo}: a group of one sample has advantage r - mean(r) = 0, "
                       "so nothing is learned; use --group-size 2 or more (the papers: 8)")
        return out


@dataclass
class OptimSettings:
    """Optimiser (AdamW) and learning-rate schedule."""

    lr: float = 5e-5  # AdamW peak lr: learns add_one in 15 steps on ten seeds of ten (docs/results.md)
    lr_schedule: Literal["constant", "cosine"] = "constant"  # after warmup: constant, or cosine to min_lr_ratio x lr
    warmup_ratio: float = 0.0  # linear warmup over this fraction of --steps (OpenRLHF / SimpleRL-Zero: 0.03)
    min_lr_ratio: float = 0.0  # cosine: the final lr as a fraction of --lr (OpenRLHF: 0.1)
    adam_betas: tuple[float, float] = (0.9, 0.999)  # AdamW betas: PyTorch's and verl's (OpenRLHF, oat: 0.9 0.95)
    adam_eps: float = 1e-8  # AdamW epsilon
    weight_decay: float = 0.0  # AdamW weight decay; 0, as the papers' RL runs
    max_grad_norm: float = 1.0  # clip the global gradient L2 norm to this (the papers: 1.0)
    max_bad_steps: int = 3  # stop after this many steps in a row skipped for a non-finite loss or grad norm

    def problems(self) -> list[str]:
        return range_problems(self, [
            ("lr", self.lr > 0, "> 0"), ("warmup_ratio", 0 <= self.warmup_ratio < 1, "in [0, 1)"),
            ("min_lr_ratio", 0 <= self.min_lr_ratio <= 1, "in [0, 1]"),
            ("adam_betas", len(self.adam_betas) == 2 and all(0 <= b < 1 for b in self.adam_betas),
             "two numbers in [0, 1)"),
            ("adam_eps", self.adam_eps > 0, "> 0"), ("weight_decay", self.weight_decay >= 0, ">= 0"),
            ("max_grad_norm", self.max_grad_norm > 0, "> 0 (a negative clip coefficient would reverse the update)"),
            ("max_bad_steps", self.max_bad_steps >= 1, "at least 1")])


@dataclass
class RunSettings:
    """Run directory and seed."""

    out_dir: str = "runs/default"  # the run directory: config.json, metrics, samples, checkpoints
    seed: int = 0  # seeds data order, sampling and everything else: a run is reproducible
    overwrite: bool = False  # start afresh in an out_dir holding an earlier run of ours (deletes only its files)

    def problems(self) -> list[str]:
        """What is wrong before anything is written: an empty --out-dir, or one that cannot be made or written."""
        if not self.out_dir.strip():
            return ["--out-dir '': name a directory (the run writes config.json, logs and checkpoints there)"]
        path = Path(self.out_dir).expanduser().absolute()
        if path.exists() and not path.is_dir():
            return [f"--out-dir {self.out_dir}: is a file, not a directory"]
        existing = next(p for p in (path, *path.parents) if p.exists())
        if not existing.is_dir():
            return [f"--out-dir {self.out_dir}: {existing} is a file, so the directory cannot be made"]
        if not os.access(existing, os.W_OK | os.X_OK):
            return [f"--out-dir {self.out_dir}: {existing} is not writable"]
        return []


@dataclass
class TrainRunSettings(RunSettings):
    """Run: steps, evaluation, checkpoints, logs (train_zero.py, sft.py)."""

    steps: int = 15  # rollout batches (sft: optimiser steps), the lr schedule's horizon; add_one learns in 15
    eval_every: int = 5  # evaluate every N steps and at the end (0: never); step 0 is the "before"
    save_every: int = 15  # checkpoint every N steps and at the end (0: never)
    resume: bool = False  # continue exactly from out_dir/checkpoints/latest (the same flags)
    log_with: tuple[Literal["tensorboard", "wandb"], ...] = ()  # also send each row to TensorBoard and/or W&B
    wandb_project: str = "zero-rl"  # W&B project (--log-with wandb)
    wandb_mode: Literal["offline", "online"] = "offline"  # offline writes out_dir/wandb only; `wandb sync` uploads

    def problems(self) -> list[str]:
        return range_problems(self, [
            ("steps", self.steps >= 1, "at least 1"), ("eval_every", self.eval_every >= 0, ">= 0 (0: never)"),
            ("save_every", self.save_every >= 0, ">= 0 (0: never)")]) + logger_problems(self.log_with)


@dataclass
class LoopSettings(TrainRunSettings):
    """Run: steps, evaluation, checkpoints, logs."""

    eval_data: str = "auto"  # benchmarks, papers' groups (oat, simplerl, zoo, all) or sets; auto: --train-data's set
    eval_limit: int = 64  # problems per eval set (0: all): 64 resolve a 15-point change on a CPU in seconds
    log_samples: int = 4  # rollouts per step written to samples.jsonl
    trace: bool = False  # print the first step's first group through every stage, a lesson (docs/trace.md)

    def problems(self) -> list[str]:
        return range_problems(self, [("log_samples", self.log_samples >= 0, ">= 0"),
                                     ("eval_limit", self.eval_limit >= 0, ">= 0 (0: all)")])


# ---------------------------------------------------------------------------------------------
# Scale (GPUs, several ranks, vLLM) and upstream fidelity: flags a first run never needs


@dataclass
class ParallelSettings:
    """Sharding and memory (docs/scaling.md)."""

    shard: Literal["ddp", "fsdp"] = "ddp"  # ddp: a full replica per rank; fsdp: weights, grads, AdamW sharded
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~1.3x compute
    logprob_chunk_size: int = 1024  # tokens per chunk of the fused log-prob kernel: bounds the logits' memory
    peak_tflops: float = 0.0  # the device's bf16 peak for the mfu column; 0: known NVIDIA GPUs by name, none on CPU

    def problems(self) -> list[str]:
        return range_problems(self, [("logprob_chunk_size", self.logprob_chunk_size >= 1, "at least 1"),
                                     ("peak_tflops", self.peak_tflops >= 0, ">= 0 (0: detect)")])


@dataclass
class VLLMSettings:
    """vLLM engine (--rollout-engine vllm, evaluate.py --engine vllm; docs/vllm.md)."""

    vllm_gpu_memory_utilization: Annotated[float, tyro.conf.arg(aliases=("--gpu-memory-utilization",))] = 0.0  # 0: auto
    vllm_kv_cache_gb: float = 1.0  # CPU: the engine's KV cache in GiB (VLLM_CPU_KVCACHE_SPACE); GPU: unused
    vllm_cpu_bind: str = ""  # CPU: cores for the engine's worker, e.g. 0-1; "": vLLM's choice

    def problems(self) -> list[str]:
        return range_problems(self, [
            ("vllm_gpu_memory_utilization", 0 <= self.vllm_gpu_memory_utilization < 1,
             "in [0, 1) (0: the default share)"),
            ("vllm_kv_cache_gb", self.vllm_kv_cache_gb > 0, "> 0")])


@dataclass
class ScaleSettings(ParallelSettings, VLLMSettings):
    """Scale: sharding, memory and the rollout engine (docs/scaling.md, docs/vllm.md)."""

    ref_offload: bool = False  # FSDP: keep the KL reference's weights on the CPU, copied to the GPU per layer
    rollout_engine: Literal["hf", "vllm"] = "hf"  # hf: generate on the live model (no sync); vllm: an engine per rank
    hf_static_cache: bool = False  # hf on a GPU: static KV cache, decode steps replayed as CUDA graphs
    vllm_dtype: str = ""  # the vLLM engine's dtype; "": --dtype (bf16 needs --probe-tolerance ~5e-2)
    vllm_max_model_len: int = 2048  # prompt + response tokens per sequence in the vLLM engine
    vllm_sleep: bool = True  # GPU: free vLLM's weights and KV cache while learning; CPU: no-op
    probe_every: int = 1  # vLLM: compare engine and trainer log-probs every N syncs (0: never)
    probe_tolerance: float = 1e-3  # vLLM: max |engine - trainer| log-prob (nats) before the run stops; fp32 ~1e-5

    def problems(self) -> list[str]:
        out = range_problems(self, [
            ("vllm_max_model_len", self.vllm_max_model_len >= 1, "at least 1"),
            ("probe_every", self.probe_every >= 0, ">= 0 (0: never)"),
            ("probe_tolerance", self.probe_tolerance > 0, "> 0")])
        if self.vllm_dtype not in ("", "auto", "float32", "bfloat16", "float16"):
            out.append(f"--vllm-dtype {self.vllm_dtype!r}: use float32, bfloat16, float16, auto or \"\" (--dtype)")
        if self.rollout_engine == "vllm" and importlib.util.find_spec("vllm") is None:
            out.append("--rollout-engine vllm needs vllm: pip install -r requirements-vllm.txt (CPU) or "
                       "requirements-gpu.txt (GPU)")
        return out


@dataclass
class ProtocolSettings:
    """Upstream protocol (docs/protocols.md: the table of what each one fixes)."""

    protocol: str = ""  # ours, simplerl_zero, simplerl_zoo or oat_zero: an upstream's settings; typed flags win

    def problems(self) -> list[str]:
        if not self.protocol:
            return []
        from fidelity.protocols import PROTOCOLS

        if self.protocol in PROTOCOLS:
            return []
        return [f"--protocol {self.protocol!r}: use one of {', '.join(PROTOCOLS)}"]


def apply_protocol(cfg, **options):
    """cfg with its --protocol's settings (fidelity.protocols.apply; a flag given its own value wins); cfg itself
    without one, or with an unknown name (the settings check reports it)."""
    if not cfg.protocol:
        return cfg
    from fidelity.protocols import PROTOCOLS, apply

    return apply(cfg, cfg.protocol, **options) if cfg.protocol in PROTOCOLS else cfg


# ---------------------------------------------------------------------------------------------
# train_zero.py's Config


@dataclass
class Config(ModelSettings, TrainDataSettings, RolloutSettings, RewardSettings, AlgorithmSettings, OptimSettings,
             LoopSettings, ScaleSettings, ProtocolSettings):
    """Every setting of an RL run (config.py), one heading per stage of the loop. The flags to start with:
    --model, --train-data, --algo, --steps, --lr, --group-size, --max-new-tokens, --reward, --template, --out-dir.
    --protocol NAME sets what an upstream fixed (docs/protocols.md)."""
