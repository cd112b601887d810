"""--grader math_verify: the pool's verdicts are math-verify's, called as SimpleRL-Zoo's reward calls it, under our
hard timeout. The expected verdicts come from math-verify itself, called here in-process the upstream way
(hkust-nlp/simpleRL-reason v1, verl/utils/reward_score/hf_math_verify.py), so the table checks the plumbing."""

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest

from config import GraderSettings
from grader_pool import Grader

ROOT = Path(__file__).resolve().parents[2]

# (pred, gold): numbers, fractions, percent, sets, intervals, tuples, matrices, equations, letters, units, an already
# boxed side, pairs where math-verify and our grader disagree, and sides that parse to nothing.
MATRIX = r"\begin{pmatrix}1\\2\end{pmatrix}"
TABLE = [
    (r"\frac{1}{2}", "0.5"), ("5", "6"), ("3+4", "7"), ("0.6667", r"\frac{2}{3}"), ("", "5"), ("5", ""),
    (r"\boxed{7}", "7"), ("}{", "1"), (r"\frac{", "1"), ("x=3", "3"), (r"\{1,2\}", r"\{2,1\}"), ("(1,2)", "(2,1)"),
    ("[0,1)", "[0,1]"), (r"\dfrac{\pi}{2}", r"\frac{\pi}{2}"), ("i^2", "-1"), (r"50\%", "0.5"), (r"\text{(B)}", "B"),
    ("B", "C"), ("x^2+2x+1", "(x+1)^2"), (r"\sqrt{8}", r"2\sqrt{2}"), ("1,000", "1000"), ("R", "r"),
    (r"3.83\times10^{35}", "3.83e35"), (MATRIX, MATRIX), (MATRIX, r"\begin{pmatrix}1&2\end{pmatrix}"),
    ("2x+2", "2(x+1)"), ("y=2x+1", "2x+1"), ("10", "10.0"), (r"\boxed{1} and \boxed{2}", "2"), (r"\$5", "5"),
    (r"(-\infty, 3]", r"x \le 3"), ("1/3", "0.3333"), (r"\sqrt{-1}", "i"),
]
# Fixed by hand, so that a wrong reference function cannot hide a wrong pool.
HAND = {(r"\frac{1}{2}", "0.5"): "correct", ("5", "6"): "wrong", (r"\boxed{7}", "7"): "correct",
        ("3+4", "7"): "correct",  # our grader says "wrong" (unevaluated arithmetic): no cheap layer ran
        ("0.6667", r"\frac{2}{3}"): "wrong",  # our grader says "correct" (1e-4 tolerance)
        ("i^2", "-1"): "wrong", ("", "5"): "parse_error", ("}{", "1"): "parse_error"}
HANG = ("10^{10^{10}}", "1")  # math-verify spends its own 5 s alarm on it; our timeout below is shorter
TIMEOUT = 2.0  # seconds: under math-verify's own 5 s alarm, so the kill decides


def upstream_verdict(pred: str, gold: str) -> str:
    """SimpleRL-Zoo's call: box each side unless it holds \\boxed, parse(target), parse(gold), verify(gold, target)."""
    from math_verify import parse, verify

    target = parse(pred if "\\boxed" in pred else "\\boxed{" + pred + "}")
    reference = parse(gold if "\\boxed" in gold else "\\boxed{" + gold + "}")
    if not target or not reference:
        return "parse_error"
    return "correct" if verify(gold=reference, target=target) else "wrong"


@pytest.fixture(scope="module")
def grader():
    with Grader(timeout=TIMEOUT, workers=2, backend="math_verify") as g:
        yield g


def test_table_has_enough_pairs_and_hand_checks_hold_upstream():
    assert len(TABLE) >= 25 and set(HAND) <= set(TABLE)
    assert {pair: upstream_verdict(*pair) for pair in HAND} == HAND


def test_pool_verdicts_are_math_verify_verdicts(grader):
    expected = [upstream_verdict(*pair) for pair in TABLE]
    assert set(expected) == {"correct", "wrong", "parse_error"}  # the table reaches every verdict
    assert grader.grade_many(TABLE) == expected
    assert [grader.grade(*pair) for pair in HAND] == list(HAND.values())


def test_none_is_wrong_without_a_worker():
    with Grader(backend="math_verify") as g:
        assert g.grade_many([(None, "1")]) == ["wrong"]
        assert g._workers == []


def test_hang_times_out_and_the_rest_of_the_batch_is_graded(grader):
    grader.grade_many(TABLE[:2])  # both workers started outside the timed part
    before = {w.process.pid for w in grader._workers}
    start = time.monotonic()
    verdicts = grader.grade_many([HANG] + TABLE[:6])
    assert time.monotonic() - start < TIMEOUT + 3.0
    assert verdicts == ["timeout"] + [upstream_verdict(*pair) for pair in TABLE[:6]]
    assert len(grader._workers) == 2 and len(before & {w.process.pid for w in grader._workers}) == 1  # one replaced


def test_settings_and_flag():
    assert GraderSettings().grader == "zero_rl" and GraderSettings(grader="math_verify").problems() == []
    with pytest.raises(ValueError, match="zero_rl, math_verify"):
        Grader(backend="sympy")
    import rundir

    @dataclasses.dataclass
    class Config(GraderSettings):
        """A config made of the grader group only."""

    assert rundir.parse(Config, ["--grader", "math_verify"]).grader == "math_verify"


def test_import_stays_light():
    code = "import sys, grader_pool; print('math_verify' in sys.modules, 'sympy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout == "False False\n"
