"""Per-step metrics: sums over this rank's batch, summed over ranks, divided into the rows of metrics.jsonl.

    sums = step_sums(batch, results, group_size)                      # StepSums (this rank)
    row = step_metrics(sums, policy_stats, critic_stats, batch.drift)  # one reduction over ranks, then ratios
    append_logs(out_dir, row, problems, samples, results, log_samples, group_size)

Every metric's meaning is in the README's Metrics table. The records that travel here are typed: StepSums
(below), learn.PolicyStats, learn.CriticStats and scale.vllm_engine.DriftSums; `sum_over_ranks` sums all their
fields in one all_reduce, so one process and N ranks log the same numbers for the same batch.
"""

from __future__ import annotations

import json
import math
import resource
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from distributed import Dist, all_reduce
from learn import Batch, CriticStats, PolicyStats
from reward import OUTCOMES, REFLECTION_WORDS, RewardResult, reflection_words

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


def learn_tokens_per_s(samples: list, seconds: float) -> float:
    """metrics.jsonl's learn_tokens_per_s: the rollout batch's prompt and response tokens (all ranks) per second of
    the learn phase."""
    tokens = all_reduce(torch.tensor([float(sum(len(s.prompt_ids) + len(s.response_ids) for s in samples))]))
    return tokens.item() / max(seconds, 1e-9)


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


def step_metrics(sums: StepSums, policy: PolicyStats, critic: CriticStats | None, drift,
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
        dr = reduced[type(drift)]
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


def strict_json(row: dict) -> str:
    """`row` as one line of strict JSON: a NaN or infinite number becomes null and its key is listed in
    row["nonfinite"] (Python's json would write a bare NaN, which strict parsers reject)."""
    bad = [k for k, v in row.items() if isinstance(v, float) and not math.isfinite(v)]
    if bad:
        row = {**{k: None if k in bad else v for k, v in row.items()}, "nonfinite": bad}
    return json.dumps(row, allow_nan=False)


def append_row(path: Path, *rows: dict) -> None:
    """Append rows to a log (metrics.jsonl, samples.jsonl) as strict JSON lines, in one write."""
    with open(path, "a") as f:
        f.write("".join(strict_json(row) + "\n" for row in rows))


def append_logs(out_dir: Path, row: dict, problems: list = (), samples: list = (), results: list[RewardResult] = (),
                log_samples: int = 0, group_size: int = 1) -> None:
    """One metrics.jsonl row, and the first `log_samples` rollouts of rank 0 to samples.jsonl (none for the
    step-0 row, which holds only the eval before training)."""
    append_row(out_dir / "metrics.jsonl", row)
    if not samples:
        return
    logged = list(zip(samples, results))[:log_samples]
    records = [{"step": row["step"], "problem": problems[i // group_size].problem, "response": s.text,
                "answer": r.answer, "gold": problems[i // group_size].answer, "reward": r.score, "reason": r.reason,
                "finish_reason": s.finish_reason} for i, (s, r) in enumerate(logged)]
    append_row(out_dir / "samples.jsonl", *records)


# ---------------------------------------------------------------------------------------------
# The console: a line per evaluation, a summary at the end


def eval_line(row: dict) -> str:
    """One evaluation on one line: "eval @ step 5: add_one 68.8 % (answer rate 1.00)", every set of the row."""
    sets = [key.removeprefix("eval/") for key in row if key.startswith("eval/") and key.count("/") == 1]
    return f"eval @ step {row['step']}: " + ", ".join(
        f"{name} {100 * row[f'eval/{name}']:.1f} % (answer rate {row[f'eval/{name}/answer_rate']:.2f})"
        for name in sets)


def run_summary(out_dir: Path, history: list[dict], seconds: float) -> str:
    """The closing lines: held-out accuracy before -> after (the run's first and last evaluation, read from
    metrics.jsonl, so a resumed run reports from step 0), wall time, where the run, its figure and checkpoint are."""
    from data import read_log

    rows = read_log(out_dir / "metrics.jsonl") if (out_dir / "metrics.jsonl").exists() else history
    evals = [row for row in rows if any(key.startswith("eval/") for key in row)]
    lines = [f"done: {rows[-1]['step'] if rows else 0} steps in {seconds / 60:.1f} min (this process)"]
    if evals:
        first, last = evals[0], evals[-1]
        sets = [key for key in last if key.startswith("eval/") and key.count("/") == 1 and key in first]
        lines.append("held-out accuracy: " + ", ".join(
            f"{key.removeprefix('eval/')} {100 * first[key]:.1f} % (step {first['step']}) -> {100 * last[key]:.1f} % "
            f"(step {last['step']})" for key in sets))
    lines.append(f"run: {out_dir} (metrics.jsonl, samples.jsonl, config.json)")
    if (out_dir / "metrics.png").exists():
        lines.append(f"figure: {out_dir / 'metrics.png'}")
    if (out_dir / "checkpoints" / "latest").exists():
        latest = (out_dir / "checkpoints" / "latest").read_text().strip()
        lines.append(f"checkpoint: {out_dir / 'checkpoints' / latest}")
    return "\n".join(lines)
