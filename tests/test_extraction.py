"""Table-driven tests of the extraction modes (reward.EXTRACTIONS, fidelity/extraction.py), has_boxed, and the SimpleRL-Zoo rules.

The case tables live in tests/extraction_cases.py, each answer derived by hand from the upstream rule it names.
"""

import re
import time

import pytest

from extraction_cases import (BOXED, HARNESS_IF_BOXED, HAS_BOXED, QWEN_HARNESS, QWEN_HARNESS_DEVIATIONS, R1_STRICT,
                              R1_STRICT_DEVIATIONS)
from grader_pool import Grader
from fidelity.extraction import has_boxed, independent
from reward import EXTRACTIONS, OUTCOMES, REWARD_RULES, RewardResult, compute_rewards, extract_answer


def _params(cases):
    """(id, *values) rows -> pytest params whose id is the row's id."""
    return [pytest.param(*values, id=case_id) for case_id, *values in cases]


@pytest.fixture(scope="module")
def grader():
    with Grader(workers=1) as g:
        yield g


# ---------------------------------------------------------------------------------------------
# The three modes, case by case


@pytest.mark.parametrize("template, response, expected", _params(BOXED))
def test_boxed(template, response, expected):
    assert extract_answer(response, template, "boxed") == expected
    assert extract_answer(response, template) == expected  # the default, and the positional call of old


@pytest.mark.parametrize("response, expected", _params(QWEN_HARNESS))
def test_qwen_harness(response, expected):
    assert extract_answer(response, "qwen_math", "qwen_harness") == expected


@pytest.mark.parametrize("response, expected", _params(HARNESS_IF_BOXED))
def test_harness_if_boxed(response, expected):
    assert extract_answer(response, "qwen_math", "harness_if_boxed") == expected


@pytest.mark.parametrize("response, harness", _params(QWEN_HARNESS))
def test_harness_if_boxed_is_the_harness_behind_the_boxed_gate(response, harness):
    """v0's gate over every harness row: no "boxed" before the first stop token -> None, else the chain's answer
    ("" where the chain reads nothing)."""
    gated = (harness or "") if "boxed" in re.split(r"</s>|<\|im_end\|>|<\|endoftext\|>", response)[0] else None
    assert extract_answer(response, "qwen_math", "harness_if_boxed") == gated


@pytest.mark.parametrize("response, ours, upstream", _params(QWEN_HARNESS_DEVIATIONS))
def test_qwen_harness_documented_deviations(response, ours, upstream):
    assert extract_answer(response, "qwen_math", "qwen_harness") == ours != upstream


@pytest.mark.parametrize("template, response, expected", _params(R1_STRICT))
def test_r1_strict(template, response, expected):
    assert extract_answer(response, template, extraction="r1_strict") == expected


@pytest.mark.parametrize("response, ours, upstream", _params(R1_STRICT_DEVIATIONS))
def test_r1_strict_documented_deviations(response, ours, upstream):
    assert extract_answer(response, "r1", "r1_strict") == ours != upstream


@pytest.mark.parametrize("response, expected", _params(HAS_BOXED))
def test_has_boxed(response, expected):
    assert has_boxed(response) is expected


# ---------------------------------------------------------------------------------------------
# Modes: the template they consult, errors, speed on hostile text


@pytest.mark.parametrize("template", ["qwen_math", "r1", "abel", "no"])
def test_qwen_harness_reads_every_template_alike(template):
    assert extract_answer("x </think> <answer> 5 </answer> so 7", template, "qwen_harness") == "7"  # last number


def test_unknown_extraction_names_the_choices(grader):
    assert EXTRACTIONS == ("boxed", "qwen_harness", "harness_if_boxed", "r1_strict")
    with pytest.raises(ValueError, match="boxed, qwen_harness, harness_if_boxed, r1_strict"):
        extract_answer("\\boxed{1}", "qwen_math", "last_number")
    with pytest.raises(ValueError, match="qwen_harness"):
        compute_rewards([], [], "qwen_math", "mix", grader, extraction="math")  # checked before any response


HOSTILE = {
    "digits": "1" * 100_000,
    "digits_in_unclosed_box": "\\boxed{" + "1" * 100_000,
    "unclosed_text_commands": "The answer is " + "\\text{" * 20_000,
    "unclosed_mbox_commands": "The answer is " + "\\mbox{" * 20_000,
    "deep_braces": "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "many_unclosed_boxes": "\\boxed{" * 30_000,
    "fracs": "\\boxed{" + "\\frac" * 30_000 + "}",
}


@pytest.mark.parametrize("response", HOSTILE.values(), ids=HOSTILE.keys())
def test_extraction_is_fast_on_hostile_text(response):
    start = time.perf_counter()
    for extraction in EXTRACTIONS:
        extract_answer(response, "r1", extraction)
    has_boxed(response)
    assert time.perf_counter() - start < 2.0  # about 0.1 s; upstream's regexes are quadratic on some of these


# ---------------------------------------------------------------------------------------------
# SimpleRL-Zoo's reward rules (hf_math_verify.py): mix and independent, by hand


def test_rule_tables():
    assert REWARD_RULES["mix"] == REWARD_RULES["correct"] == dict.fromkeys(OUTCOMES, 0.0) | {"correct": 1.0}
    assert [independent("correct", True), independent("correct", False)] == [1.0, 0.5]
    for outcome in ("wrong", "parse_error", "timeout", "no_answer"):
        assert [independent(outcome, True), independent(outcome, False)] == [-0.5, -1.0]


@pytest.mark.parametrize("response, extraction, expected_score, expected_reason, expected_answer", [
    pytest.param("so \\boxed{0.5}", "qwen_harness", 1.0, "correct", "0.5", id="boxed_correct"),
    pytest.param("The answer is 0.5.", "qwen_harness", 1.0, "correct", "0.5", id="unboxed_correct_no_box_needed"),
    pytest.param("so \\boxed{3}", "qwen_harness", 0.0, "wrong", "3", id="boxed_wrong"),
    pytest.param("No idea.", "qwen_harness", 0.0, "no_answer", None, id="no_answer"),
    pytest.param("The answer is 0.5.", "boxed", 0.0, "no_answer", None, id="boxed_extraction_needs_the_box"),
])
def test_mix(grader, response, extraction, expected_score, expected_reason, expected_answer):
    [result] = compute_rewards([response], ["1/2"], "qwen_math", "mix", grader, extraction)
    assert result == RewardResult(expected_score, expected_reason, expected_answer)


@pytest.mark.parametrize("response, expected_score, expected_reason", [
    pytest.param("so \\boxed{0.5}", 1.0, "correct", id="correct_boxed"),
    pytest.param("so \\boxed{3}", -0.5, "wrong", id="wrong_boxed"),
    pytest.param("The answer is 0.5.", -1.0, "no_answer", id="correct_but_no_box"),
    pytest.param("so \\boxed", -0.5, "wrong", id="unreadable_box_is_wrong"),
    pytest.param("So \\fbox{0.5}", -1.0, "no_answer", id="fbox_is_no_box"),
])
def test_simplerl_v0_reward(grader, response, expected_score, expected_reason):
    """SimpleRL-Zero v0: +1 right, -0.5 otherwise, then -1 whenever "boxed" is absent (experience_maker.py)."""
    [result] = compute_rewards([response], ["1/2"], "qwen_math", "simplerl", grader, extraction="harness_if_boxed")
    assert (result.score, result.reason) == (expected_score, expected_reason)


@pytest.mark.parametrize("response, extraction, expected_score, expected_reason", [
    pytest.param("so \\boxed{0.5}", "qwen_harness", 1.0, "correct", id="correct_boxed"),
    pytest.param("The answer is 0.5.", "qwen_harness", 0.5, "correct", id="correct_unboxed"),
    pytest.param("so \\fbox{0.5}", "qwen_harness", 0.5, "correct", id="correct_in_fbox_is_unboxed"),
    pytest.param("so \\boxed 0.5", "qwen_harness", 0.5, "correct", id="correct_braceless_is_unboxed"),
    pytest.param("so \\boxed{3}", "qwen_harness", -0.5, "wrong", id="wrong_boxed"),
    pytest.param("The answer is 3.", "qwen_harness", -1.0, "wrong", id="wrong_unboxed"),
    pytest.param("No idea.", "qwen_harness", -1.0, "no_answer", id="no_answer_unboxed"),
    pytest.param("so \\boxed{}", "qwen_harness", -0.5, "no_answer", id="empty_box_counts_as_boxed"),
    pytest.param("\\boxed{3}<|im_end|>\\boxed{0.5}", "qwen_harness", -0.5, "wrong", id="box_after_stop_ignored"),
    pytest.param("<|im_end|>\\boxed{0.5}", "qwen_harness", -1.0, "no_answer", id="only_box_after_stop"),
    pytest.param("The answer is 0.5.", "boxed", -1.0, "no_answer", id="boxed_extraction_finds_nothing"),
    pytest.param("so \\boxed{0.5}", "boxed", 1.0, "correct", id="boxed_extraction_correct"),
])
def test_independent(grader, response, extraction, expected_score, expected_reason):
    [result] = compute_rewards([response], ["1/2"], "qwen_math", "independent", grader, extraction=extraction)
    assert (result.score, result.reason) == (expected_score, expected_reason)


def test_independent_in_a_batch_keeps_each_response_with_its_box(grader):
    responses = ["so \\boxed{0.5}", "The answer is 0.5.", "so \\boxed{2}", "nothing", "The answer is 2."]
    results = compute_rewards(responses, ["0.5"] * 5, "qwen_math", "independent", grader, "qwen_harness")
    assert [r.score for r in results] == [1.0, 0.5, -0.5, -1.0, -1.0]
    assert [r.answer for r in results] == ["0.5", "0.5", "2", None, "2"]


def test_old_rules_unchanged_under_new_extractions(grader):
    results = compute_rewards(["The answer is 0.5.", "x </think><answer>0.5</answer>"], ["0.5", "0.5"], "r1",
                              "simplerl", grader, "r1_strict")
    assert [(r.score, r.reason) for r in results] == [(-1.0, "no_answer"), (-1.0, "no_answer")]
    [result] = compute_rewards(["x </think> <answer> 0.5 </answer>"], ["0.5"], "r1", "correct", grader, "r1_strict")
    assert result == RewardResult(1.0, "correct", "0.5")
