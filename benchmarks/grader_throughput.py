"""Responses graded per second by reward.compute_rewards over the grader's process pool.

    python benchmarks/grader_throughput.py                 # 1,024 responses, 2 workers, timeout 5 s
    python benchmarks/grader_throughput.py --workers 4 --n 4096

The batch is built deterministically from the real gold answers of MATH-500 (../shared/data, or --data-dir):
per problem one of four kinds in turn, each a short chain of thought ending in
- correct: "\\boxed{gold}" exactly;
- rewritten: an equal form (integers as "gold.0", \\frac -> \\dfrac, lists reversed, "x = gold", and for other
  expressions \\frac{2(gold)}{2}, which only sympy decides);
- wrong: a near-miss (integers +1, a sign flip, \\frac{a}{b} -> \\frac{b}{a}, a tuple's elements swapped);
- unboxed: the gold without \\boxed{} (no answer: graded -1 without reaching the grader).
The pool is started and warmed on one symbolic pair before the clock starts (a worker imports sympy once,
about a second); the timed part is one compute_rewards call on the whole batch. Prints the verdict counts,
the seconds, the responses per second, and how many answers needed the sympy workers (layers 1-3 decide the
rest in the calling process); run it on an otherwise idle machine.

Measured (python benchmarks/grader_throughput.py, 2 CPU cores shared with other jobs, load average ~3):
363-481 responses/s over three runs (2.1-2.8 s for 1,024; 94 answers needed sympy). Target: >= 200/s.
"""

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rewrite(gold: str, i_odd: bool) -> str:
    """An equal form of gold: cheap ones (decided by string or number) and ones only sympy can decide."""
    if re.fullmatch(r"-?\d+", gold):
        return f"{gold}.0"
    if "\\frac" in gold and i_odd:
        return gold.replace("\\frac", "\\dfrac")
    if not re.search(r"[,=_]|\\text|\\mbox|\\begin", gold):
        return f"\\frac{{2({gold})}}{{2}}"  # equal only after sympy simplifies it
    if "," in gold and not re.search(r"[()\[\]\\{}]", gold):
        return ", ".join(reversed(gold.split(",")))
    return f"x = {gold}" if "=" not in gold else gold.replace(" ", "")


def near_miss(gold: str) -> str:
    """A wrong answer close to gold."""
    if re.fullmatch(r"-?\d+", gold):
        return str(int(gold) + 1)
    if m := re.fullmatch(r"\\frac\{([^{}]+)\}\{([^{}]+)\}", gold):
        return f"\\frac{{{m.group(2)}}}{{{m.group(1)}}}"
    if m := re.fullmatch(r"\(([^,()]+),([^,()]+)\)", gold):
        return f"({m.group(2)},{m.group(1)})"
    return gold[1:] if gold.startswith("-") else f"-{gold}"


def build_batch(golds: list[str], n: int) -> tuple[list[str], list[str]]:
    """(responses, golds) of length n, cycling through golds and the four kinds."""
    responses, batch_golds = [], []
    for i in range(n):
        gold = golds[i % len(golds)]
        answer = (gold, rewrite(gold, i % 8 == 1), near_miss(gold), gold)[i % 4]
        final = f"the answer is {answer}." if i % 4 == 3 else f"the answer is $\\boxed{{{answer}}}$."
        responses.append(f"Let me work through this step by step.\nAfter simplifying, {final}")
        batch_golds.append(gold)
    return responses, batch_golds


def main() -> None:
    from data import default_data_dir, load_benchmark
    from grader import cheap_verdict
    from grader_pool import Grader
    from reward import compute_rewards, extract_answer

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1024, help="responses in the batch")
    parser.add_argument("--workers", type=int, default=2, help="grader worker processes")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per sample before its worker is killed")
    parser.add_argument("--data-dir", default="", help="directory holding eval/math500.jsonl (default ../shared/data)")
    args = parser.parse_args()

    golds = [p.answer for p in load_benchmark("math500", args.data_dir or default_data_dir()).problems]
    responses, batch_golds = build_batch(golds, args.n)
    with Grader(timeout=args.timeout, workers=args.workers) as grader:
        grader.grade_many([("2x+2", "2(x+1)")] * args.workers)  # start and warm the pool outside the clock
        start = time.perf_counter()
        results = compute_rewards(responses, batch_golds, "qwen_math", "simplerl", grader)
        seconds = time.perf_counter() - start
    counts = Counter(r.reason for r in results)
    answers = [extract_answer(r, "qwen_math") for r in responses]
    symbolic = sum(a is not None and cheap_verdict(a, g) is None for a, g in zip(answers, batch_golds))
    print(json.dumps({"responses": args.n, "workers": args.workers, "seconds": round(seconds, 2),
                      "responses_per_second": round(args.n / seconds, 1), "verdicts": dict(sorted(counts.items())),
                      "sent_to_sympy_workers": symbolic}))


if __name__ == "__main__":
    main()
