"""Table-driven tests of reward.py: templates, extraction, equivalence, reward rules, the Grader's timeout."""

import os
import signal
import time

import pytest

from grader import is_equiv
from grader_pool import Grader
from reward import (REWARD_RULES, STOP_TOKENS, TEMPLATES, RewardResult, apply_template, compute_rewards, extract_answer,
                    stop_strings)


@pytest.fixture(scope="module")
def grader():
    with Grader(timeout=5.0) as g:
        yield g


# ---------------------------------------------------------------------------------------------
# Templates: literal strings from docs/papers.md §1, typed out independently of reward.py


def test_templates_match_reference_text():
    assert set(TEMPLATES) == {"qwen_math", "qwen_boxed", "r1", "abel", "o1_cot", "no", "chat_oneshot"}
    assert TEMPLATES["o1_cot"] == ("[Round 0] USER:\n{q}\nPlease reason step by step, and put your final answer "
                                   "within \\boxed{}. ASSISTANT:\n")
    assert TEMPLATES["qwen_math"] == (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n")
    assert TEMPLATES["abel"] == "Question:\n{q}\nAnswer:\nLet's think step by step.\n"
    assert TEMPLATES["no"] == "{q}"
    assert TEMPLATES["r1"].startswith("A conversation between User and Assistant. The User asks a question,")
    assert TEMPLATES["r1"].endswith("<answer> answer here </answer>.\nUser: {q}\nAssistant: <think>")
    assert TEMPLATES["qwen_boxed"].endswith(
        "<|im_start|>user\n{q}\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>assistant\n")


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_apply_template_keeps_braces_in_problem(template):
    problem = "Find $x$ if $\\frac{x}{2} = {3}$ and {q} {0}."
    prompt = apply_template(template, problem)
    assert problem in prompt
    assert "{q}" not in prompt.replace(problem, "")  # the placeholder itself was replaced


def test_unknown_template_names_the_known_ones():
    with pytest.raises(ValueError, match="qwen_math"):
        apply_template("chatml", "1+1")
    with pytest.raises(ValueError, match="r1"):
        extract_answer("\\boxed{1}", "chatml")


@pytest.mark.parametrize("template, expected", [("r1", ["</answer>"]), ("qwen_math", []), ("no", [])])
def test_stop_strings(template, expected):
    assert stop_strings(template) == expected
    assert STOP_TOKENS == ("<|im_end|>", "<|endoftext|>", "</s>")


# ---------------------------------------------------------------------------------------------
# Extraction


@pytest.mark.parametrize("response, template, expected", [
    ("so \\boxed{3} wait, no: \\boxed{4}.", "qwen_math", "4"),  # last box wins
    ("\\boxed{\\frac{1}{2}}", "qwen_boxed", "\\frac{1}{2}"),  # nested braces
    ("The answer is \\fbox{3}.", "abel", "3"),
    ("hence \\boxed 5 is it", "no", "5"),  # brace-less
    ("$\\boxed 5$", "qwen_math", "5"),
    ("\\boxed{ 12 }", "qwen_math", "12"),  # surrounding whitespace stripped
    ("\\boxed{\\frac{1}{2}", "qwen_math", None),  # unbalanced
    ("\\boxed{}", "qwen_math", None),  # empty box
    ("The answer is 42.", "qwen_math", None),  # no box
    ("\\boxed{7}<|im_end|> then \\boxed{8}", "qwen_math", "7"),  # text after the stop token ignored
    ("no box here<|endoftext|>\\boxed{8}", "qwen_math", None),
    ("x </think> <answer> 12 </answer>", "r1", "12"),
    ("x </think> <answer>1</answer> <answer>\\boxed{2}</answer>", "r1", "2"),  # last tag; boxed inside wins
    ("x </think> <answer> 12 ", "r1", "12"),  # the engine dropped the stop string
    ("x </think> \\boxed{12}", "r1", None),  # r1 needs the tags
    ("x </think> <answer></answer>", "r1", None),
])
def test_extract_answer(response, template, expected):
    assert extract_answer(response, template) == expected


def test_extraction_never_sees_the_prompt():
    prompt = apply_template("qwen_math", "What is 1+1?")
    assert extract_answer("It is 2.", "qwen_math") is None and "\\boxed{}" in prompt


# ---------------------------------------------------------------------------------------------
# Equivalence: (pred, gold, equal?)

EQUIV_CASES = [
    # normalisation (Hendrycks)
    ("\\dfrac{1}{2}", "0.5", True),
    ("\\frac12", "1/2", True),
    ("\\tfrac{3}{4}", "\\frac34", True),
    ("1,000", "1000", True),
    ("1\\,000", "1000", True),
    ("50\\%", "50", True),
    ("\\text{(B)}", "B", True),
    ("(C)", "C", True),
    ("x=3", "3", True),
    ("x = 3", "3", True),
    ("10^\\circ", "10", True),
    ("90^{\\circ}", "90", True),
    ("\\$5.00", "5", True),
    ("5\\text{ cm}", "5", True),
    ("\\text{Evelyn}", "Evelyn", True),
    (".5", "0.5", True),
    ("7.", "7", True),
    ("\\left( 3, \\frac{\\pi}{2} \\right)", "(3,\\frac{\\pi}{2})", True),
    ("\\sqrt2", "\\sqrt{2}", True),
    ("2x", "f(x)=2 x", True),
    # numeric, rel. tol. 1e-4
    ("025", "25", True),
    ("4.6667", "\\frac{14}{3}", True),
    ("4.5\\times 10^{33}", "4.5e33", True),
    ("0.5", "50\\%", True),
    ("3.1", "3.14159", False),
    ("4.67", "\\frac{14}{3}", False),
    ("-3", "3", False),
    ("7 * 86", "602", False),  # restating the question is not an answer (a reward hack RL finds)
    ("3+4", "7", False),
    ("2\\times 3", "6", False),
    ("1.5\\times10^{3}", "1500", True),  # scientific notation is a number, not an expression
    ("10^3", "1000", True),
    ("1", "100", False),  # percent forms only when a % is written
    ("0", "0.0001", False),
    # symbolic
    ("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", True),
    ("\\pi/2", "\\dfrac{\\pi}{2}", True),
    ("2x+2", "2(x+1)", True),
    ("3\\sqrt{13}", "\\sqrt{117}", True),
    ("p-q", "-q+p", True),
    ("\\sin^2 x+\\cos^2 x", "1", True),
    ("\\binom{4}{2}", "6", True),
    ("2^{10}", "1024", True),
    ("y=2x+1", "y=1+2x", True),
    ("x^2", "x^3", False),
    ("y=2x+1", "y=2x-1", False),
    ("2x+2", "2(x+2)", False),
    ("\\pi", "3", False),
    ("\\sqrt{3}", "\\sqrt{2}", False),
    # tuples, intervals, sets, lists
    ("(1,2)", "(2,1)", False),
    ("(1,2)", "(1,2)", True),
    ("(1, \\frac{1}{2})", "(1,0.5)", True),
    ("[1,2)", "[1,2]", False),
    ("[1,2)", "[1,2)", True),
    ("(-\\infty,1)\\cup(2,\\infty)", "(-\\infty, 1) \\cup (2, \\infty)", True),
    ("(2,\\infty)\\cup(-\\infty,1)", "(-\\infty, 1) \\cup (2, \\infty)", True),  # a union is order-free
    ("(-\\infty,1]\\cup(2,\\infty)", "(-\\infty, 1) \\cup (2, \\infty)", False),
    ("\\infty", "-\\infty", False),
    ("2", "\\infty", False),
    ("\\{1,2\\}", "\\{2,1\\}", True),
    ("\\{1,2\\}", "\\{1,3\\}", False),
    ("3, 1, 2", "1,2,3", True),
    ("1,2", "1,2,3", False),
    ("(2,7,13),(1,8,19)", "(1,8,19), (2,7,13)", True),
    ("(7,2,13),(1,8,19)", "(1,8,19), (2,7,13)", False),
    ("\\begin{pmatrix} -1/3 \\\\ 2/3 \\end{pmatrix}", "\\begin{pmatrix} -\\frac13 \\\\ \\frac{2}{3} \\end{pmatrix}", True),
    ("\\begin{pmatrix} 1/3 \\\\ 2/3 \\end{pmatrix}", "\\begin{pmatrix} -\\frac13 \\\\ \\frac{2}{3} \\end{pmatrix}", False),
    # partial matches and text
    ("2", "2,3", False),
    ("12", "1,2", False),
    ("Evenly", "\\text{Evelyn}", False),  # sympy would read both as products of the same letters
    ("", "0", False),
    ("A", "B", False),
]


@pytest.mark.parametrize("pred, gold, expected", EQUIV_CASES)
def test_is_equiv(pred, gold, expected):
    assert is_equiv(pred, gold) is expected


@pytest.mark.parametrize("pred, gold", [("\\frac{", "1"), ("}{", "\\left("), ("\\boxed{", "x"), ("(((", ")))")])
def test_is_equiv_never_raises(pred, gold):
    assert is_equiv(pred, gold) is False


def test_grader_agrees_with_is_equiv(grader):
    verdicts = grader.grade_many([(pred, gold) for pred, gold, _ in EQUIV_CASES] + [(None, "1")])
    assert verdicts[-1] == "wrong"
    for (pred, gold, expected), verdict in zip(EQUIV_CASES, verdicts):
        assert (verdict == "correct") is expected and verdict in ("correct", "wrong", "parse_error"), (pred, gold)


# ---------------------------------------------------------------------------------------------
# Reward rules


@pytest.mark.parametrize("rule, response, expected_score, expected_reason", [
    ("simplerl", "so \\boxed{\\frac{1}{2}}", 1.0, "correct"),
    ("simplerl", "so \\boxed{3}", -0.5, "wrong"),
    ("simplerl", "the answer is 0.5", -1.0, "no_answer"),  # correct number without a box
    ("correct", "so \\boxed{0.5}", 1.0, "correct"),
    ("correct", "so \\boxed{3}", 0.0, "wrong"),
    ("correct", "the answer is 0.5", 0.0, "no_answer"),
])
def test_compute_rewards(grader, rule, response, expected_score, expected_reason):
    [result] = compute_rewards([response], ["0.5"], "qwen_math", rule, grader)
    assert result == RewardResult(expected_score, expected_reason,
                                  None if expected_reason == "no_answer" else extract_answer(response, "qwen_math"))


def test_reward_rule_tables():
    assert REWARD_RULES["simplerl"] == {"correct": 1.0, "wrong": -0.5, "parse_error": -0.5, "timeout": -0.5,
                                        "no_answer": -1.0}
    assert REWARD_RULES["correct"] == {"correct": 1.0, "wrong": 0.0, "parse_error": 0.0, "timeout": 0.0,
                                       "no_answer": 0.0}


def test_compute_rewards_errors(grader):
    with pytest.raises(ValueError, match="simplerl"):
        compute_rewards(["\\boxed{1}"], ["1"], "qwen_math", "format", grader)
    with pytest.raises(ValueError, match="2 gold"):
        compute_rewards(["\\boxed{1}"], ["1", "2"], "qwen_math", "simplerl", grader)


# ---------------------------------------------------------------------------------------------
# Grader: hard timeout by killing the worker, restart, survival of an external kill


def test_grader_times_out_on_huge_power_and_recovers():
    with Grader(timeout=1.0) as g:
        assert g.grade("2x+2", "2(x+1)") == "correct"  # starts the worker outside the timed part
        start = time.monotonic()
        assert g.grade("10^{10^{10}}", "1") == "timeout"  # sympy evaluates a 10-billion-digit integer
        assert time.monotonic() - start < 1.0 + 3.0
        assert g.grade("2x+2", "2(x+1)") == "correct"  # a fresh worker
        [result] = compute_rewards(["\\boxed{10^{10^{10}}}"], ["1"], "qwen_math", "simplerl", g)
        assert (result.reason, result.score) == ("timeout", -0.5)


def test_grader_survives_worker_killed_externally():
    with Grader(timeout=5.0) as g:
        assert g.grade("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}") == "correct"
        [worker] = g._workers
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.join(timeout=5)
        assert g.grade("2x+2", "2(x+1)") == "correct"
        assert g.grade("2x+2", "2(x+2)") == "wrong"


def test_grader_close_is_safe():
    g = Grader()
    g.close()  # never started
    assert g.grade("1", "1.0") == "correct"  # decided in-process, no worker needed
    assert g._workers == []
    g.close()
    g.close()


def test_grader_is_fast_on_adversarial_inputs():
    digits, numbers = "1" * 100_000 + "x", [str(i) for i in range(2000)]
    with Grader(timeout=2.0) as g:
        g.grade("2x+2", "2(x+1)")  # start the worker outside the timed part
        start = time.monotonic()
        assert g.grade(digits, "1") in ("wrong", "parse_error", "timeout")
        assert g.grade(",".join(numbers), ",".join(reversed(numbers))) == "correct"
        assert time.monotonic() - start < 2 * 2.0 + 3.0


def test_grader_that_cannot_start_a_worker_says_timeout(monkeypatch):
    monkeypatch.setattr(Grader, "_start_worker", lambda self: None)
    with Grader() as g, pytest.warns(UserWarning, match="did not start"):
        assert g.grade("2x+2", "2(x+1)") == "timeout"
    assert g.grade("1", "1") == "correct"  # in-process layers still work
