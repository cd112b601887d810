"""Generation: sample n responses per prompt and return them as token ids, masks and text.

An engine turns prompt strings into `Sample` records grouped by prompt. The transformers engine
(`HFEngine`) runs `model.generate` on the training model itself, so it always samples from the
current weights; the vLLM engine (scale/vllm_engine.py) plugs in behind the same `generate` /
`sync_weights` interface.
`--model` is resolved and loaded in model.py.

How a response ends (the record every engine returns):
- finish_reason "stop": the model produced an end-of-sequence token (kept as the last response
  token, so the policy learns to stop) or a template stop string such as r1's `</answer>` (kept,
  the response ends with the token that completed it).
- finish_reason "length": max_new_tokens were generated without either.

Deviations, one line each:
- Sampling is seeded per call (torch.manual_seed(params.seed)), so a step is reproducible and a
  resumed run draws the same samples; batched CPU sampling is deterministic for a given batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from reward import STOP_TOKENS

# ---------------------------------------------------------------------------------------------
# Records


def eos_token_ids(tokenizer) -> list[int]:
    """The tokenizer's EOS plus any of reward.STOP_TOKENS in its vocabulary (sorted, unique)."""
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in STOP_TOKENS if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)


@dataclass
class SamplingParams:
    """What to sample. temperature 0 means greedy."""

    n: int = 1  # samples per prompt (group_size)
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop: list[str] = field(default_factory=list)  # stop strings, kept in the response
    stop_token_ids: list[int] = field(default_factory=list)  # token ids that end a response as EOS does (kept)
    seed: int = 0


def end_ids(eos_ids: list[int], params: SamplingParams) -> list[int]:
    """Every token id that ends a response, kept as its last token: the tokenizer's EOS ids, then
    params.stop_token_ids (vLLM's stop_token_ids; the Zoo stops each base model at its own), without repeats."""
    return list(dict.fromkeys([*eos_ids, *params.stop_token_ids]))


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

STATIC_BUCKET = 64  # static_cache: prompts are left-padded to a multiple of this many tokens


class NonFiniteLogits(RuntimeError):
    """The policy's next-token logits hold NaN or +inf, or a row is all -inf: its weights diverged. Sampling them
    would draw garbage (CPU) or stop the process with a device-side assert (CUDA), so HFEngine stops first."""


class FiniteLogitsCheck(LogitsProcessor):
    """The last logits processor of HFEngine's generate: raise NonFiniteLogits unless every row of the step's
    scores [batch, vocab] has a finite maximum (a NaN or +inf makes the maximum non-finite; -inf entries, as top-p
    leaves them, are fine while a row keeps a finite one)."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not torch.isfinite(scores.amax(dim=-1)).all():
            raise NonFiniteLogits("the policy's next-token logits hold NaN or inf: its weights diverged")
        return scores


class HFEngine:
    """Batched sampling with `transformers` `generate` on a live model (left padding).

    generate(prompts, params) -> list (one per prompt) of lists (params.n Samples each).
    sync_weights() and probe() are no-ops when the engine holds the training model itself; with own_copy
    (sharded training), sync_weights copies the trainer's gathered weights into the engine's copy.

    static_cache: the fast decode path for a GPU. The KV cache is preallocated (transformers' static cache), so
    every decoding step has the same shapes, and on CUDA transformers compiles the step with
    torch.compile(mode="reduce-overhead"): CUDA graphs replay it with one launch instead of hundreds. To reuse a
    graph across calls, prompts are left-padded to a multiple of STATIC_BUCKET tokens and a batch is filled up to
    a power of two (at most batch_size) with copies of its last prompt, whose samples are dropped. Sampling, the
    finite-logits check and the stop rules run on each step's logits as on the dynamic path; greedy decoding gives
    the same tokens (tests/test_rollout.py), sampling the same distribution but other draws (the fill rows take
    their share of the random stream). On CPU nothing is compiled: the static cache only.
    """

    def __init__(self, model, tokenizer, batch_size: int = 64, own_copy: bool = False, static_cache: bool = False):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_size = batch_size  # sequences per generate call
        self.own_copy = own_copy  # `model` is the engine's own copy (sharded training), refreshed by sync_weights
        self.static_cache = static_cache  # see the class docstring
        self.eos_ids = eos_token_ids(tokenizer)
        from transformers import GenerationConfig

        # A hub model's generation_config may carry top_k / repetition_penalty defaults; any of them
        # would make the sampler differ from the policy whose log-probs we train on. Start neutral.
        model.generation_config = GenerationConfig(eos_token_id=self.eos_ids, pad_token_id=tokenizer.pad_token_id,
                                                   bos_token_id=tokenizer.bos_token_id)

    def sync_weights(self, model=None) -> float:
        """Copy the trainer's weights into the engine's own copy (own_copy), gathered one parameter at a time
        from FSDP shards (scale.fsdp.full_parameters, a collective); returns the seconds it took. A no-op (0.0) when
        the engine samples from the training model itself. Raises RuntimeError when the names differ."""
        if not self.own_copy:
            return 0.0
        from scale.fsdp import full_parameters  # an own copy exists only under --shard fsdp

        start = time.perf_counter()
        engine_parameters = dict(self.model.named_parameters())
        received = set()
        with torch.no_grad():
            for name, tensor in full_parameters(model):
                if name not in engine_parameters:
                    raise RuntimeError(f"weight sync: the engine's copy has no parameter {name!r}; pass the HF model")
                engine_parameters[name].copy_(tensor)
                received.add(name)
        if received != set(engine_parameters):
            missing = sorted(set(engine_parameters) - received)
            raise RuntimeError(f"weight sync: the engine's copy received nothing for {len(missing)} parameters, "
                               f"e.g. {missing[:3]}")
        return time.perf_counter() - start

    def probe(self, model=None, tolerance: float | None = None) -> None:
        """Nothing to probe: the engine samples from the training model itself. Returns None (no measurement)."""
        return None

    def sleep(self, level: int = 1) -> None:  # the engine is the training model: nothing to free
        pass

    def wake_up(self, tags: list[str] | None = None) -> None:
        pass

    def close(self) -> None:
        pass

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
            enc = tokenizer(batch, return_tensors="pt", padding=True, add_special_tokens=False,
                            pad_to_multiple_of=STATIC_BUCKET if self.static_cache else None).to(model.device)
            sampling = params.temperature > 0
            kwargs = dict(temperature=params.temperature, top_p=params.top_p, top_k=0) if sampling else {}
            if self.static_cache:  # one graph per (bucket, batch shape): fill the batch up to a power of two
                rows = min(self.batch_size, 1 << (len(batch) - 1).bit_length())
                enc = {key: torch.cat([value, value[-1:].expand(rows - len(batch), -1)]) for key, value in enc.items()}
                kwargs["cache_implementation"] = "static"
            out = model.generate(
                logits_processor=LogitsProcessorList([FiniteLogitsCheck()]),
                **enc,
                do_sample=sampling,
                max_new_tokens=params.max_new_tokens,
                eos_token_id=end_ids(self.eos_ids, params),
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
        """Cut the padded generation at EOS or a stop token id (kept), or at the end of a stop string (kept)."""
        response, reason = generated, "length"
        stop_ids = set(end_ids(self.eos_ids, params))
        for i, token in enumerate(generated):
            if token in stop_ids:
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
