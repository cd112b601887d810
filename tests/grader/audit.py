r"""Audit of our grader against math-verify (HuggingFace, pinned in requirements.txt): where do verdicts differ?

    python tests/grader/audit.py          # prints the counts and every disagreement (about a minute on 2 cores)

Pairs compared: every row of the case table (tests/grader/cases.py), and deterministic perturbations of the
real gold answers of MATH-500, AIME24 and AMC23: equivalent rewrites (\dfrac, a/b, decimals, "x = ", spaces,
\left( \right), reordered lists, leading zeros) and near-misses (sign flips, off by one, swapped tuples, open vs
closed intervals, coarser rounding, a dropped list element). Each disagreement must be a row of the case table,
decided by the mathematics; the test (test_grader_audit.py) checks the counts in AUDIT_COUNTS below.
"""

import re
from collections import Counter
from fractions import Fraction
from pathlib import Path

# Counts from the last audit run (update them, with a case-table row per new disagreement, when the grader changes).
AUDIT_COUNTS = {"pairs": 2025, "agree": 1957, "ours_right": 40, "tolerance": 23, "policy": 5, "math_verify_right": 0,
                "undecided": 0}

_INTEGER = re.compile(r"-?\d+")
_FRACTION = re.compile(r"(-?)\\[dt]?frac\{(\d+)\}\{(\d+)\}")


def perturbations(gold: str) -> list[str]:
    """Deterministic rewrites of one gold answer: some equal to it, some near-misses (decided in the audit)."""
    out = [f"x = {gold}" if "=" not in gold else gold, gold.replace(" ", "")]
    if gold[:1] == "(" and gold[-1:] == ")":
        out.append("\\left(" + gold[1:-1] + "\\right)")
    if _INTEGER.fullmatch(gold):
        n = int(gold)
        out += [str(n + 1), str(-n), f"{n}.0", f"\\frac{{{2 * n}}}{{2}}", f"0{n}" if n > 0 else str(n), str(10 * n)]
        if abs(n) >= 1000:
            out.append(f"{n:,}")
    if m := _FRACTION.fullmatch(gold):
        sign, a, b = m.group(1), int(m.group(2)), int(m.group(3))
        value = Fraction(int(sign + "1") * a, b)
        out += [f"{sign}{a}/{b}", f"{sign}\\dfrac{{{a}}}{{{b}}}", f"{sign}\\frac{{{b}}}{{{a}}}",
                f"{float(value):.4f}", f"{float(value):.2f}", ("" if sign else "-") + f"\\frac{{{a}}}{{{b}}}"]
    parts = [p.strip() for p in gold.strip("()[]").split(",")]
    if gold[:1] in "([" and gold[-1:] in ")]" and len(parts) == 2:
        out += [gold[0] + parts[1] + ", " + parts[0] + gold[-1], ("[" if gold[0] == "(" else "(") + gold[1:],
                gold[:-1] + ("]" if gold[-1] == ")" else ")")]
    elif len(parts) > 1 and not re.search(r"[()\[\]{}\\]", gold):
        out += [", ".join(reversed(parts)), ", ".join(parts[:-1])]
    if "\\sqrt" in gold or "\\pi" in gold:
        out += [gold.replace("\\sqrt", "\\sqrt ").replace("\\pi", "\\pi "), "-" + gold if gold[0] != "-" else gold[1:]]
    return [p for p in dict.fromkeys(out) if p != gold and p.strip()]


def audit_pairs(data_dir: Path | None) -> list[tuple[str, str]]:
    """The (pred, gold) pairs of the audit: the case table, then perturbations of the real golds (if present)."""
    from cases import CASES
    from real_data import gold_of, read_rows

    pairs = [(pred, gold) for _, pred, gold, _ in CASES]
    if data_dir is not None and (Path(data_dir) / "eval" / "math500.jsonl").exists():
        golds = [gold_of(row) for stem, _, row in read_rows(data_dir) if stem in ("math500", "aime24", "amc23")]
        pairs += [(pred, gold) for gold in dict.fromkeys(golds) for pred in perturbations(gold)]
    return list(dict.fromkeys(pairs))


def math_verify_verdicts(pairs: list[tuple[str, str]]) -> list[bool]:
    """math-verify's verdict per pair: verify(parse(gold), parse(pred)), each side written as \\boxed{...}."""
    from math_verify import parse, verify

    verdicts = []
    for pred, gold in pairs:
        try:
            verdicts.append(bool(verify(parse(f"\\boxed{{{gold}}}"), parse(f"\\boxed{{{pred}}}"))))
        except Exception:  # math-verify raising is its "not equal"
            verdicts.append(False)
    return verdicts


def run_audit(data_dir: Path | None) -> tuple[Counter, list[tuple[str, str, bool, bool, bool | None]]]:
    """(counts, disagreements) of our grader against math-verify on audit_pairs(data_dir).

    counts: pairs, agree, and per disagreement one of: ours_right (the mathematics, per the case table),
    tolerance (ours right only through the 1e-4 rule: a 4-decimal rounding that math-verify rejects),
    policy (a case-table "policy:" row: math-verify is right as mathematics, we refuse by design),
    math_verify_right (a grader bug to fix), undecided (not in the case table yet: add it).
    A disagreement is (pred, gold, ours, math_verify, truth); truth from the case table, None if absent."""
    from cases import CASES

    import grader
    import grader_pool

    truth = {(pred, gold): expected for _, pred, gold, expected in CASES}
    policy = {(pred, gold) for topic, pred, gold, _ in CASES if topic.startswith("policy")}
    pairs = audit_pairs(data_dir)
    with grader_pool.Grader(timeout=10.0) as pool:
        ours = [v == "correct" for v in pool.grade_many(pairs)]
    theirs = math_verify_verdicts(pairs)
    counts, disagreements = Counter(pairs=len(pairs), agree=0), []
    for pair, a, b in zip(pairs, ours, theirs):
        if a == b:
            counts["agree"] += 1
            continue
        t = truth.get(pair)
        if pair in policy:
            kind = "policy"
        elif t is None:
            kind = "undecided"
        elif t != a:
            kind = "math_verify_right"
        else:
            tolerance, grader.NUMERIC_REL_TOL = grader.NUMERIC_REL_TOL, 1e-9  # in-process re-check, exact numbers
            try:
                kind = "tolerance" if a and not grader.is_equiv(*pair) else "ours_right"
            finally:
                grader.NUMERIC_REL_TOL = tolerance
        counts[kind] += 1
        disagreements.append((*pair, a, b, t))
    return counts, disagreements


if __name__ == "__main__":
    import sys

    sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[2])]
    from data import default_data_dir

    counts, disagreements = run_audit(default_data_dir())
    for pred, gold, ours, theirs, truth in disagreements:
        print(f"ours={ours!s:5} math_verify={theirs!s:5} truth={truth!s:5}  ({pred!r}, {gold!r})")
    print(dict(counts))
