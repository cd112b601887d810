"""The grader's case table (tests/grader/cases.py): every row's verdict, through the batched Grader."""

from collections import Counter

import pytest
from cases import CASES

from grader import equivalence
from grader_pool import Grader


@pytest.fixture(scope="module")
def verdicts():
    with Grader(timeout=10.0) as grader:
        return grader.grade_many([(pred, gold) for _, pred, gold, _ in CASES])


def test_case_table_is_large_and_covers_the_topics():
    topics = Counter(topic for topic, *_ in CASES)
    assert len(CASES) >= 300, len(CASES)
    assert len({(pred, gold) for _, pred, gold, _ in CASES}) == len(CASES), "duplicate rows"
    assert sum(not expected for *_, expected in CASES) >= 100  # must-not-match rows
    assert all(n >= 5 for topic, n in topics.items() if topic != "math-verify audit"), topics


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{t}:{p}|{g}" for t, p, g, _ in CASES])
def test_case(verdicts, index):
    topic, pred, gold, expected = CASES[index]
    assert verdicts[index] in ("correct", "wrong", "parse_error"), (pred, gold, verdicts[index])
    assert (verdicts[index] == "correct") is expected, f"{topic}: {pred!r} vs {gold!r} -> {verdicts[index]}"


@pytest.mark.parametrize("pred, gold, verdict", [
    (r"\frac{", "1", "parse_error"),  # the answer could not be parsed beyond strings
    ("x+", "x", "parse_error"),
    (r"\frac{1}{2}", "0.5", "correct"),
    ("3", "4", "wrong"),
    (r"\text{Evelyn}", "Evenly", "wrong"),  # text: compared as strings, a real verdict
    ("x^2", "x^3", "wrong"),
])
def test_parse_error_is_its_own_verdict(pred, gold, verdict):
    assert equivalence(pred, gold) == verdict
