"""SimpleRL-Zoo's grader: HuggingFace math-verify, called as the Zoo's reward calls it (--grader math_verify).

grader_pool.Grader runs it in its killable worker processes, which import this module (and math_verify) only for
that backend. The deviations from the Zoo's call are in grader_pool.py's docstring.
"""

from math_verify import parse, verify


def math_verify_equivalence(pred: str, gold: str) -> str:
    """Verdict for one answer by math-verify, called as SimpleRL-Zoo's reward calls it; in-process, no timeout of ours.

    Args: pred, the extracted answer (LaTeX); gold, the reference answer (LaTeX). Each is wrapped in \\boxed{}
    unless it already holds "\\boxed", then parsed with math_verify.parse at its defaults (LaTeX and plain
    expression extraction, "any_match", a 5 s signal alarm) and compared with verify(gold=..., target=...) at its
    defaults (float_rounding 6, strict, a 5 s alarm; an alarm makes parse return nothing and verify False).
    Returns: "parse_error" if a side parsed to nothing (or math-verify raised); "correct" if verify is true; else
    "wrong". Raises: nothing. Its alarms need the main thread, as in the pool's workers (elsewhere it answers "parse_error").
    Source: hkust-nlp/simpleRL-reason branch v1, verl/utils/reward_score/hf_math_verify.py (compute_score,
    hf_verify_with_try).
    """

    def boxed(answer: str) -> str:
        return answer if "\\boxed" in answer else "\\boxed{" + answer + "}"

    try:
        target, reference = parse(boxed(pred)), parse(boxed(gold))
        if not target or not reference:
            return "parse_error"
        return "correct" if verify(gold=reference, target=target) else "wrong"
    except Exception:  # never raise: upstream counts an error as not equal
        return "parse_error"
