"""The Grader's process pool: batched verdicts in order, a timeout kills only its own worker, which is replaced."""

import time

import pytest

from grader import cheap_verdict
from grader_pool import Grader

PAIRS = [("2x+2", "2(x+1)"), ("x^2", "x^3"), (r"\frac{1}{2}", "0.5"), ("(1,2)", "(2,1)"), (r"\sqrt{8}", r"2\sqrt{2}"),
         (r"\frac{", "1"), (None, "1"), ("7", "7")]
EXPECTED = ["correct", "wrong", "correct", "wrong", "correct", "parse_error", "wrong", "correct"]


@pytest.mark.parametrize("workers", [1, 3])
def test_grade_many_keeps_order_for_any_pool_size(workers):
    with Grader(timeout=10.0, workers=workers) as g:
        assert g.grade_many(PAIRS * 3) == EXPECTED * 3
        assert len(g._workers) == workers
        assert g.grade_many([]) == []


def test_timeout_in_a_batch_kills_one_worker_and_the_rest_is_graded():
    timeout = 3.0  # seconds: 10^{10^{10}} never finishes; the sympy pairs take well under a second, also on a loaded machine
    with Grader(timeout=timeout, workers=2) as g:
        g.grade_many([("2x+2", "2(x+1)")] * 2)  # start the pool outside the timed part
        before = {w.process.pid for w in g._workers}
        start = time.monotonic()
        verdicts = g.grade_many([("10^{10^{10}}", "1")] + PAIRS)
        assert time.monotonic() - start < timeout + 5.0
        assert verdicts == ["timeout"] + EXPECTED
        assert len(g._workers) == 2 and len(before & {w.process.pid for w in g._workers}) == 1  # one replaced
        assert g.grade_many(PAIRS) == EXPECTED


def test_cheap_layers_decide_without_a_worker():
    assert cheap_verdict("1,000", "1000") == "correct"
    assert cheap_verdict("3", "4") == "wrong"
    assert cheap_verdict("(1,2)", "(1,2,3)") == "wrong"  # structure mismatch: no sympy needed
    assert cheap_verdict("2x+2", "2(x+1)") is None  # needs sympy
    with Grader() as g:
        assert g.grade_many([("1,000", "1000"), ("3", "4")]) == ["correct", "wrong"]
        assert g._workers == []


def test_pool_size_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        Grader(workers=0)
