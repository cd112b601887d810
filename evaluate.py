"""Benchmark a model with the training template and grader: greedy pass@1 per benchmark.

    python evaluate.py --model <hub id | HF dir | runs/x/checkpoints/step_000040> \
        --benchmarks math500,gsm8k --limit 50 --template qwen_math

Benchmarks (files under --data-dir, default $ZERO_RL_DATA or ../shared/data): aime24, amc23,
math500, minerva_math, olympiadbench, gsm8k (REFERENCE §5), plus "arithmetic" and "add_one", held-out
draws of the built-in procedural sets. Prints a table (per benchmark and the average) and writes one JSONL
per benchmark with every sample, its extracted answer, verdict and reward.

Deviations, one line each:
- Generation uses the transformers engine (rollout.HFEngine) only; rollout.VLLMEngine is not wired in here yet.
- The average is the unweighted mean over the benchmarks asked for, as the papers' tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from data import PROCEDURAL_SETS, ProblemSet, load_benchmark, write_jsonl
from grader import Grader
from reward import apply_template, compute_rewards, stop_strings
from model import load_model
from rollout import HFEngine, SamplingParams

ARITHMETIC_EVAL_SEED = 1_000_000  # the procedural sets' eval draw: not training's seed-0 (or any small-seed) draw


@dataclass
class EvalConfig:
    model: str = "smollm2-135m"  # HF hub id, local HF directory, checkpoint directory, or smollm2-135m
    benchmarks: str = "math500,gsm8k"  # comma-separated: aime24, amc23, math500, minerva_math, olympiadbench, gsm8k, arithmetic, add_one
    limit: int = 0  # first N problems of each benchmark (0: all)
    template: str = "qwen_math"  # prompt template, as in training
    max_new_tokens: int = 3000  # generation budget (REFERENCE §5: 3,000)
    batch_size: int = 32  # sequences per generate call
    data_dir: str = ""  # benchmark files (default: $ZERO_RL_DATA or ../shared/data)
    out_dir: str = "runs/eval"  # per-sample JSONL, one file per benchmark
    grader_timeout: float = 5.0  # seconds per sample before the grader's worker is killed
    grader_workers: int = 2  # grader worker processes (sympy runs there)


def load_eval_set(name: str, data_dir: str | None, limit: int | None) -> ProblemSet:
    """A benchmark by name (data.load_benchmark), or a procedural set ("arithmetic", "add_one": a held-out draw)."""
    if name in PROCEDURAL_SETS:
        return ProblemSet(PROCEDURAL_SETS[name](limit or 500, seed=ARITHMETIC_EVAL_SEED), name, 0, 0)
    return load_benchmark(name, data_dir, limit or None)


def evaluate_problems(engine, problems: list, template: str, grader: Grader, max_new_tokens: int) -> list[dict]:
    """Greedy-decode every problem once and grade it; returns one record per problem.

    Each record: problem, gold, response, answer (extracted or None), reason (the verdict: "correct" | "wrong" |
    "parse_error" (the answer could not be parsed to compare beyond strings) | "timeout" | "no_answer"),
    finish_reason, length (response tokens, EOS included). Same template and grader as training.
    """
    if not problems:
        return []
    prompts = [apply_template(template, p.problem) for p in problems]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=max_new_tokens, stop=stop_strings(template))
    samples = [group[0] for group in engine.generate(prompts, params)]
    results = compute_rewards([s.text for s in samples], [p.answer for p in problems], template, "correct", grader)
    return [
        {"problem": p.problem, "gold": p.answer, "response": s.text, "answer": r.answer, "reason": r.reason,
         "finish_reason": s.finish_reason, "length": len(s.response_ids)}
        for p, s, r in zip(problems, samples, results)
    ]


def format_table(scores: dict[str, tuple[int, int]]) -> str:
    """Markdown table of pass@1 (%) per benchmark and their unweighted average."""
    lines = ["| benchmark | n | pass@1 (%) |", "| --- | --- | --- |"]
    for name, (correct, n) in scores.items():
        lines.append(f"| {name} | {n} | {100 * correct / max(n, 1):.1f} |")
    if scores:
        average = sum(100 * c / max(n, 1) for c, n in scores.values()) / len(scores)
        lines.append(f"| average | | {average:.1f} |")
    return "\n".join(lines)


def main(cfg: EvalConfig) -> dict[str, tuple[int, int]]:
    """Evaluate cfg.model on each benchmark; returns {name: (correct, n)}."""
    names = [n.strip() for n in cfg.benchmarks.split(",") if n.strip()]
    problem_sets = {name: load_eval_set(name, cfg.data_dir or None, cfg.limit or None) for name in names}  # fail early
    model, tokenizer = load_model(cfg.model)
    engine = HFEngine(model, tokenizer, batch_size=cfg.batch_size)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scores = {}
    with Grader(cfg.grader_timeout, cfg.grader_workers) as grader:
        for name in names:
            records = evaluate_problems(engine, problem_sets[name].problems, cfg.template, grader, cfg.max_new_tokens)
            scores[name] = (sum(r["reason"] == "correct" for r in records), len(records))
            path = out_dir / f"{name}.jsonl"
            write_jsonl(path, records)
            answered = sum(r["answer"] is not None for r in records)
            print(f"{name}: {scores[name][0]}/{scores[name][1]} correct, {answered} with an extracted answer, "
                  f"samples in {path}", flush=True)
    print(format_table(scores))
    return scores


if __name__ == "__main__":
    import tyro

    main(tyro.cli(EvalConfig))
