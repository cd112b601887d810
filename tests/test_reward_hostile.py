"""Hostile answers: each gets a verdict within the grading timeout, never a crash or a hang."""

import time

import pytest

from grader_pool import Grader
from reward import compute_rewards

TIMEOUT = 2.0
SLACK = 4.0  # killing and restarting the worker process

HOSTILE = [
    ("10^{10^{10^{10}}}", "1"),  # sympy would try to build the number
    ("\\frac{1}{0}", "1"),
    ("100000!", "5"),
    ("1" * 100_000, "1"),  # 100k characters
    ("x+" * 50_000 + "1", "x"),
    ("{" * 5000 + "1" + "}" * 5000, "2"),  # 5,000 levels of nested braces
    ("\\frac{1}{2", "0.5"),  # unbalanced
    ("\\frac\\sqrt{}{", "2"),  # invalid LaTeX
    ("1\x002", "12"),  # NUL byte
    ("\ufffd\ufffd3", "4"),  # U+FFFD replacement characters
]


@pytest.fixture(scope="module")
def grader():
    with Grader(timeout=TIMEOUT) as g:
        yield g


@pytest.mark.parametrize("pred, gold", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_answer_gets_a_verdict_in_time(grader, pred, gold):
    start = time.perf_counter()
    verdict = grader.grade(pred, gold)
    assert verdict in ("wrong", "parse_error", "timeout")
    assert time.perf_counter() - start < TIMEOUT + SLACK
    assert grader.grade("\\frac{1}{2}", "0.5") == "correct"  # and the grader still works afterwards


def test_hostile_response_through_the_reward(grader):
    response = "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}" + "\x00" * 10
    start = time.perf_counter()
    (result,) = compute_rewards([response], ["2"], "qwen_math", "simplerl", grader)
    assert result.reason in ("wrong", "parse_error", "timeout") and result.score == -0.5
    assert time.perf_counter() - start < TIMEOUT + SLACK
