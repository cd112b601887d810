"""Our grader against math-verify: the counts of agreements and of disagreements (by who is right) are recorded.

Re-runs tests/grader/audit.py (the case table plus perturbations of the real golds) and compares with
AUDIT_COUNTS there. On a mismatch: run `python tests/grader/audit.py`, add each new disagreement to the case
table (tests/grader/cases.py) decided by the mathematics, fix the grader where math-verify is right, and
update AUDIT_COUNTS.
"""

import pytest
from audit import AUDIT_COUNTS, perturbations, run_audit

from data import default_data_dir

DATA_DIR = default_data_dir()


@pytest.mark.skipif(not (DATA_DIR / "eval" / "math500.jsonl").exists(), reason="no ../shared/data")
def test_agreement_with_math_verify_is_as_recorded():
    pytest.importorskip("math_verify")
    counts, disagreements = run_audit(DATA_DIR)
    print("math-verify audit:", dict(counts))
    undecided = [d for d in disagreements if d[4] is None]
    assert not undecided, f"disagreements missing from the case table (decide them there): {undecided}"
    assert counts["math_verify_right"] == 0, [d for d in disagreements if d[4] == d[3]]
    assert {key: counts[key] for key in AUDIT_COUNTS} == AUDIT_COUNTS


def test_perturbations_are_deterministic_and_never_the_gold():
    assert perturbations(r"\frac{3}{4}") == perturbations(r"\frac{3}{4}")
    assert {"3/4", r"\dfrac{3}{4}", r"\frac{4}{3}", "0.7500", "0.75", r"-\frac{3}{4}"} <= set(perturbations(r"\frac{3}{4}"))
    assert {"26", "-25", "025", "x = 25"} <= set(perturbations("25"))
    assert {"(2, 1)", "[1,2)", "(1,2]"} <= set(perturbations("(1,2)"))
    assert all(p != "7" for p in perturbations("7"))
