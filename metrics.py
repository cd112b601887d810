"""Per-step metrics: sums over this rank's batch, summed over ranks, divided into the rows of metrics.jsonl.

    sums = step_sums(batch, results, group_size)                      # StepSums (this rank)
    row = step_metrics(sums, policy_stats, critic_stats, batch.drift)  # one reduction over ranks, then ratios
    append_logs(out_dir, row, problems, samples, results, log_samples, group_size)

Every metric's meaning is in the README's Metrics table. The records that travel here are typed: StepSums
(below), learn.PolicyStats, learn.CriticStats and learn.DriftSums; `sum_over_ranks` sums all their
fields in one all_reduce, so one process and N ranks log the same numbers for the same batch.
"""

from __future__ import annotations

import resource
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from distributed import Dist, all_reduce
from learn import Batch, CriticStats, DriftSums, PolicyStats
from reward import OUTCOMES, REFLECTION_WORDS, RewardResult, reflection_words
from rundir import append_row

def repeats_until_truncated(response_ids: list[int], finish_reason: str) -> bool:
    """Whether a response ran to the token budget repeating itself: it was truncated, and its last quarter
    (at least 16 tokens) is periodic with a period of at most half that window (two or more full copies)."""
    if finish_reason != "length" or len(response_ids) < 16:
        return False
    tail = response_ids[-max(16, len(response_ids) // 4):]
    return any(tail[-1] == tail[-1 - p] and tail[p:] == tail[:-p] for p in range(1, len(tail) // 2 + 1))


@dataclass
class StepSums:
    """Sums over one rank's rollout batch (float after the reduction over ranks)."""

    responses: float
    groups: float
    reward_sum: float  # rewards as graded (before --truncated zero_reward)
    truncated: float  # responses that hit max_new_tokens
    length_sum: float  # response tokens, EOS included
    length_max: float  # the longest response (step_metrics reduces it with max; its sum over ranks is unused)
    zero_adv_groups: float  # groups whose rewards are all equal
    identical_groups: float  # groups whose responses are all the same token ids (no diversity left to learn from)
    reflection: float  # responses with a REFLECTION_WORDS keyword
    reflection_words: dict[str, float]  # responses with each REFLECTION_WORDS keyword
    correct_length_sum: float  # response tokens of the responses graded correct
    repeating: float  # responses that repeat themselves until truncation (repeats_until_truncated)
    kl_sum: float  # per-token KL estimate to the reference, summed (0 without one)
    kl_tokens: float  # response tokens
    outcomes: dict[str, float]  # responses per OUTCOMES entry


def peak_memory_gb(device: torch.device) -> float:
    """This rank's peak memory in GB (1e9 bytes). CUDA: the most torch's allocator held since the last call
    (torch.cuda.max_memory_allocated, then reset, so each row reports its own window's peak; the CUDA context and the
    allocator's cached slack are not counted). CPU: the process's peak resident set so far (ru_maxrss; it
    never goes down, so it is the run's peak up to this step)."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        return peak / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9  # Linux: KiB


def step_sums(batch: Batch, results: list[RewardResult], group_size: int) -> StepSums:
    """StepSums of one rank's batch; results are its rewards' records, in sample order."""
    samples = batch.samples
    lengths = [len(s.response_ids) for s in samples]
    found = [reflection_words(s.text) for s in samples]
    grouped = batch.rewards.view(-1, group_size)
    return StepSums(
        responses=len(samples),
        groups=len(samples) // group_size,
        reward_sum=sum(r.score for r in results),
        truncated=sum(s.finish_reason == "length" for s in samples),
        length_sum=sum(lengths),
        length_max=max(lengths),
        zero_adv_groups=(grouped.max(1).values == grouped.min(1).values).sum().item(),
        identical_groups=sum(len({tuple(s.response_ids) for s in samples[i : i + group_size]}) == 1
                             for i in range(0, len(samples), group_size)),
        reflection=sum(bool(words) for words in found),
        reflection_words={w: sum(w in words for words in found) for w in REFLECTION_WORDS},
        correct_length_sum=sum(n for n, r in zip(lengths, results) if r.reason == "correct"),
        repeating=sum(repeats_until_truncated(s.response_ids, s.finish_reason) for s in samples),
        kl_sum=sum(row.sum().item() for row in batch.kl_rows) if batch.kl_rows is not None else 0.0,
        kl_tokens=sum(lengths),
        outcomes={o: sum(r.reason == o for r in results) for o in OUTCOMES},
    )


# ---------------------------------------------------------------------------------------------
# Learn-phase efficiency: model FLOPs per step and MFU

# Dense bf16 peak TFLOP/s per GPU (NVIDIA's datasheets, without sparsity), matched against the device name in order
PEAK_BF16_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H200", 989.4), ("H100", 989.4), ("GH200", 989.4),
                    ("A100", 312.0), ("L40S", 362.1), ("L40", 181.0), ("L4", 121.0), ("A10", 125.0))


def peak_tflops(device: torch.device, given: float = 0.0) -> float | None:
    """The device's peak (dense bf16) TFLOP/s for the mfu column: `given` when > 0 (--peak-tflops), else the
    PEAK_BF16_TFLOPS entry whose name occurs in the CUDA device's name; None on CPU or for a GPU not listed."""
    if given > 0:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((tflops for key, tflops in PEAK_BF16_TFLOPS if key in name), None)


class LearnFlops:
    """Model FLOPs of the passes a module runs (nanoGPT's estimate_mfu, PaLM's model FLOPs; not recomputation).

    A forward over a sequence of T tokens, S of them scored (their logits computed), costs
    2 * body_params * T + 2 * V * H * S + 4 * layers * H * T^2: every parameter a token passes through once
    (decoder layers and norms; the embedding lookup is free), the output projection for the scored tokens only
    (TokenLogProbs projects no prompt token), and attention's QK^T and AV (nanoGPT's 12 L H T per token for forward
    and backward, ignoring the causal mask). A pass with gradients (forward and backward) counts 3x, a no-grad pass
    1x. Gradient checkpointing's recomputed forwards are not counted, so this is MFU, not hardware FLOPs.

    watch(module) hooks a TokenLogProbs or ValueModel (called as module(input_ids, attention_mask, score_mask));
    take() returns the FLOPs counted since the last take (this rank) and resets the count.
    """

    def __init__(self, lm):
        config = lm.config
        embeddings = lm.get_input_embeddings().weight
        output = lm.get_output_embeddings().weight
        total = sum(p.numel() for p in lm.parameters())  # the global count (an FSDP2 DTensor's numel is global)
        tied = output is embeddings or bool(getattr(config, "tie_word_embeddings", False))
        self.body_params = total - embeddings.numel() - (0 if tied else output.numel())
        self.output_params = output.numel()  # V * H
        self.layers, self.hidden = config.num_hidden_layers, config.hidden_size
        self.pending: list[torch.Tensor] = []  # each forward's FLOPs, on its device, summed by take()

    def forward_flops(self, lengths: torch.Tensor, scored: torch.Tensor | float) -> torch.Tensor:
        """FLOPs of one forward over sequences of `lengths` tokens (real, unpadded) with `scored` projected tokens, a
        0-d float64 tensor on the lengths' device (no host sync in the training loop's forwards)."""
        lengths = lengths.double()
        return (2 * self.body_params * lengths.sum() + 2 * self.output_params * scored
                + 4 * self.layers * self.hidden * (lengths**2).sum())

    def watch(self, module: torch.nn.Module, projects: bool = True) -> None:
        """Count every forward of `module` from here on; projects: whether it computes the output projection for the
        score_mask tokens (TokenLogProbs) or not (ValueModel)."""

        def count(_, args, kwargs):
            inputs = [*args, *kwargs.values()]
            attention_mask, score_mask = inputs[1], inputs[2] if len(inputs) > 2 else None
            scored = score_mask.bool().sum() if projects and score_mask is not None else 0.0
            flops = self.forward_flops(attention_mask.sum(dim=1), scored)
            self.pending.append(3 * flops if torch.is_grad_enabled() else flops)

        module.register_forward_pre_hook(count, with_kwargs=True)

    def take(self) -> float:
        """The FLOPs counted since the last take, as a float (one host sync), and a fresh count."""
        pending, self.pending = self.pending, []
        return float(sum(flops.item() for flops in pending)) if pending else 0.0


def learn_efficiency(flops: float, tokens: int, seconds: float, peak: float | None, d: Dist) -> dict:
    """metrics.jsonl's learn_tokens_per_s (the rollout batch's prompt and response tokens, all ranks, per second of
    the learn phase) and, when the peak is known, mfu (the model FLOPs of all ranks over world_size x seconds x the
    per-device peak, in [0, 1])."""
    flops, tokens = all_reduce(torch.tensor([flops, float(tokens)], dtype=torch.float64)).tolist()
    row = {"learn_tokens_per_s": tokens / max(seconds, 1e-9)}
    if peak:
        row["mfu"] = flops / (d.world_size * max(seconds, 1e-9) * peak * 1e12)
    return row


def sum_over_ranks(*records):
    """The dataclass records with every field (and every value of a dict field) summed over ranks, as floats.

    One all_reduce of a float64 vector; every rank must pass records of the same types in the same order.
    """
    flat = []
    for record in records:
        for f in fields(record):
            value = getattr(record, f.name)
            flat.extend(value.values() if isinstance(value, dict) else [value])
    totals = iter(all_reduce(torch.tensor([float(x) for x in flat], dtype=torch.float64)).tolist())
    out = []
    for record in records:
        changes = {}
        for f in fields(record):
            value = getattr(record, f.name)
            changes[f.name] = {k: next(totals) for k in value} if isinstance(value, dict) else next(totals)
        out.append(replace(record, **changes))
    return out


def step_metrics(sums: StepSums, policy: PolicyStats, critic: CriticStats | None, drift: DriftSums | None,
                 d: Dist) -> dict:
    """The metrics.jsonl fields of one step (all ranks): ratios of the summed records.

    Losses: each rank's share is already divided by the global response count, so the sum over ranks is
    the loss; grad norms are equal on every rank, so their sum is divided by the world size.
    """
    records = [r for r in (sums, policy, critic, drift) if r is not None]
    reduced = dict(zip([type(r) for r in records], sum_over_ranks(*records)))
    s, p = reduced[StepSums], reduced[PolicyStats]
    longest = all_reduce(torch.tensor([float(sums.length_max)]), op="max").item()
    n = max(s.responses, 1)
    correct = s.outcomes["correct"]
    wrong = s.responses - correct  # every response not graded correct (wrong, no answer, parse error, timeout)
    row = {
        "reward_mean": s.reward_sum / n,
        "accuracy": s.outcomes["correct"] / n,
        "answer_rate": 1 - s.outcomes["no_answer"] / n,
        "response_length_mean": s.length_sum / n,
        "response_length_max": longest,
        "truncation_rate": s.truncated / n,
        "clip_fraction": p.clipped_tokens / max(p.tokens, 1),
        "entropy": p.entropy_sum / max(p.tokens, 1),
        "kl": s.kl_sum / max(s.kl_tokens, 1),  # 0 without a reference model
        "loss": p.loss,
        "loss_tokens": p.tokens,
        "grad_norm": p.grad_norm / d.world_size,
        "skipped_updates": p.skipped_updates / d.world_size,
        "zero_adv_group_frac": s.zero_adv_groups / max(s.groups, 1),
        "identical_group_frac": s.identical_groups / max(s.groups, 1),
        "grader_timeouts": s.outcomes["timeout"],
        "grader_parse_errors": s.outcomes["parse_error"],
        "outcome_counts": dict(s.outcomes),
        "reflection_rate": s.reflection / n,
        **{f"reflection/{w}": count / n for w, count in s.reflection_words.items()},
        "response_length_correct": s.correct_length_sum / correct if correct else None,  # null: no such response
        "response_length_wrong": (s.length_sum - s.correct_length_sum) / wrong if wrong else None,
        "repetition_rate": s.repeating / n,
        "generated_tokens": s.length_sum,
    }
    if drift is not None:  # an engine that returns the sampler's log-probs (vLLM)
        dr = reduced[DriftSums]
        row.update({"sampler_drift_abs": dr.abs_sum / max(dr.tokens, 1),
                    "sampler_drift_kl": dr.kl_sum / max(dr.tokens, 1)})
    if critic is not None:  # PPO's critic
        c = reduced[CriticStats]
        row.update({"value_loss": c.loss, "critic_grad_norm": c.grad_norm / d.world_size,
                    "critic_skipped_updates": c.skipped_updates / d.world_size,
                    "value_clip_fraction": c.clipped_tokens / max(c.tokens, 1),
                    "value_mse": c.error_sum / max(c.tokens, 1)})
    return row


ENTROPY_COLLAPSE = 1e-3  # nats per token: below this the policy samples (almost) one response per prompt


def collapse_warning(row: dict, group_size: int) -> str | None:
    """A one-line warning when the policy has collapsed (it then has nothing left to learn from), else None:
    the entropy over the tokens it learned from is below ENTROPY_COLLAPSE, or every group's group_size
    responses are identical (then no token is learned from and the logged entropy means nothing). Identical
    groups that are all correct (accuracy 1) are said to be solved prompts, not a collapse."""
    if row["loss_tokens"] and row["entropy"] < ENTROPY_COLLAPSE:
        return (f"step {row['step']}: policy entropy {row['entropy']:.1e} nats/token (< {ENTROPY_COLLAPSE:g}): the "
                "policy has collapsed to near-greedy sampling; a too-high --lr is the usual cause")
    if group_size > 1 and row["identical_group_frac"] == 1 and row.get("accuracy") == 1:
        return (f"step {row['step']}: every group's {group_size} responses are identical and correct: the policy has "
                "solved these prompts (no advantage is non-zero, nothing is learned); harder --train-data gives signal")
    if group_size > 1 and row["identical_group_frac"] == 1:
        return (f"step {row['step']}: every group's {group_size} responses are identical: the policy has collapsed "
                "(no advantage is non-zero, nothing is learned); a too-high --lr is the usual cause")
    return None


def append_logs(out_dir: Path, row: dict, problems: list = (), samples: list = (), results: list[RewardResult] = (),
                log_samples: int = 0, group_size: int = 1) -> None:
    """One metrics.jsonl row, and the first `log_samples` rollouts of rank 0 to samples.jsonl (none for the
    step-0 row, which holds only the eval before training)."""
    append_row(out_dir / "metrics.jsonl", row)
    if not samples:
        return
    records = [{"step": row["step"], "problem": problems[i // group_size].problem, "response": s.text, "answer": r.answer,
                "gold": problems[i // group_size].answer, "reward": r.score, "reason": r.reason,
                "finish_reason": s.finish_reason} for i, (s, r) in enumerate(list(zip(samples, results))[:log_samples])]
    append_row(out_dir / "samples.jsonl", *records)
