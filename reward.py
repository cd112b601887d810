"""Rule-based math reward: prompt templates, answer extraction, reward rules.

Per response: cut at the first stop token, extract the final answer (one of EXTRACTIONS), grade it against the
gold answer (grader.py), map the verdict to a score (REWARD_RULES; docs/papers.md §1, §2 and §8).

Extraction, extract_answer(response, template, extraction):
- "boxed" (default): the last \\boxed{} / \\fbox{} / "\\boxed 5"; under r1, the last <answer> block (its last box
  if it holds one). SimpleRL-Zero's rule as docs/papers.md §2 states it.
- "qwen_harness", "harness_if_boxed", "r1_strict": one upstream's own reading (the Qwen2.5-Math harness chain,
  SimpleRL-Zero v0's, Oat-Zero's strict r1 layout), in fidelity/extraction.py, imported only when asked for.

Reward rules (--reward):
- "simplerl" (SimpleRL-Zero, Zeng et al. 2025): +1 correct, -0.5 wrong, -1 no answer; timeout = wrong.
- "correct" (Dr. GRPO / oat, Liu et al. 2025) and "mix" (SimpleRL-Zoo's default, same scores): 1 correct, else 0.
- "independent" (SimpleRL-Zoo): correctness and the box scored apart (fidelity/extraction.py).
Answer equivalence and its timeout: grader.py (Hendrycks MATH normalisation, Qwen2.5-Math grader, oat).

Deviations, one line each:
- Verdict "parse_error" (no side parsed beyond strings, or the grader raised) scores like "wrong"; it is
  reported apart so grader gaps show in the metrics.
- Every mode grades with grader.py (or the Grader's math_verify backend): the Zoo uses math-verify, oat its own.
- Every grader deviation is listed in grader.py's docstring; every upstream reading's in fidelity/extraction.py.
"""

import re
from dataclasses import dataclass

from data import BOXED, last_boxed
from grader import VERDICTS
from grader_pool import Grader

# ---------------------------------------------------------------------------------------------
# Prompt templates (docs/papers.md §1): the single source for training and evaluation

TEMPLATES: dict[str, str] = {
    "qwen_math": (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n"
        "<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    ),
    "qwen_boxed": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{q}\n"
        "Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>\n<|im_start|>assistant\n"
    ),
    "r1": (
        "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
        "The Assistant first thinks about the reasoning process in the mind and then provides the User with the "
        "answer. The reasoning process is enclosed within <think> </think> and answer is enclosed within <answer> "
        "</answer> tags, respectively, i.e., <think> reasoning process here </think> <answer> answer here "
        "</answer>.\nUser: {q}\nAssistant: <think>"
    ),
    "abel": "Question:\n{q}\nAnswer:\nLet's think step by step.\n",
    # SimpleRL's warm-started system (hkust-nlp/simpleRL-reason: PROMPT_TEMPLATES["o1_cot"] of its evaluation, the
    # prompt its released SFT-then-RL model states); recipes/simplerl_7b.sh
    "o1_cot": (
        "[Round 0] USER:\n{q}\nPlease reason step by step, and put your final answer within \\boxed{}. ASSISTANT:\n"
    ),
    # not a paper's: the embedded default's (docs/results.md). SmolLM2-Instruct's ChatML with
    # one worked example, so the 135M model answers in a box from step 1 and the reward grades its arithmetic.
    "chat_oneshot": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 2 + 3?<|im_end|>\n"
        "<|im_start|>assistant\n2 + 3 = \\boxed{5}<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"
    ),
    "no": "{q}",
}
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>", "</s>")


def _check_template(template: str) -> None:
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}: use one of {sorted(TEMPLATES)}")


def apply_template(template: str, problem: str) -> str:
    """The prompt for one problem: TEMPLATES[template] with "{q}" replaced by the problem text.

    Args: template, a key of TEMPLATES; problem, the raw problem text (may contain braces).
    Returns: the prompt string. Raises: ValueError for an unknown template.
    Source: docs/papers.md §1 (SimpleRL-Zero / Dr. GRPO templates).
    """
    _check_template(template)
    return TEMPLATES[template].replace("{q}", problem)  # not .format: problems contain LaTeX braces


def stop_strings(template: str) -> list[str]:
    """Stop strings for generation besides EOS: ["</answer>"] for r1, [] otherwise.

    Raises: ValueError for an unknown template. Source: docs/papers.md §1 (r1 stops at </answer>).
    """
    _check_template(template)
    return ["</answer>"] if template == "r1" else []


# ---------------------------------------------------------------------------------------------
# Answer extraction (docs/papers.md §2, steps 1-2, and §8)

EXTRACTIONS = ("boxed", "qwen_harness", "harness_if_boxed", "r1_strict")  # all but boxed: fidelity/extraction.py
_BRACE_DEPTH = {"{": 1, "}": -1}  # change of brace depth per character


def _check_extraction(extraction: str) -> None:
    if extraction not in EXTRACTIONS:
        raise ValueError(f"unknown extraction {extraction!r}: use one of {', '.join(EXTRACTIONS)}")


def _cut_at_stop(response: str) -> str:
    """The response up to its first stop token (any of STOP_TOKENS); all of it when it holds none."""
    cut = min([i for i in (response.find(t) for t in STOP_TOKENS) if i >= 0], default=len(response))
    return response[:cut]


def _last_boxed(text: str) -> str | None:
    """The gold-answer rule of data.last_boxed, stripped; None for no box, an unbalanced one, or an empty one."""
    content = last_boxed(text)
    return content.strip() or None if content is not None else None


def _answer_block(content: str) -> str | None:
    """What an <answer> block holds: its last box when it has one, else the text; stripped, None when empty."""
    if BOXED.search(content):
        content = _last_boxed(content) or ""
    return content.strip() or None


def _r1_tolerant(response: str) -> str | None:
    """"boxed" mode under r1: the last <answer> block, up to its </answer> or the end of the response."""
    start = response.rfind("<answer>")
    if start < 0:
        return None
    content = response[start + len("<answer>") :]
    end = content.find("</answer>")
    return _answer_block(content[:end] if end >= 0 else content)  # tolerate a stop string the engine removed


def extract_answer(response: str, template: str, extraction: str = "boxed") -> str | None:
    """The final answer in a model response (never apply this to the prompt: qwen templates contain \\boxed{}).

    Args: response, the generated text only; template, a key of TEMPLATES; extraction, one of EXTRACTIONS:
    "boxed" (the last box; the last <answer> block under r1), or an upstream's own reading
    (fidelity.extraction.upstream_answer). Every mode first cuts the response at its first stop token (STOP_TOKENS).
    Returns: the answer, stripped; None when there is none (harness_if_boxed: "" for a response with "boxed" that
    the harness chain reads nothing from).
    Raises: ValueError for an unknown template or extraction.
    Source: SimpleRL-Zero (last \\boxed{}); Dr. GRPO's r1 template (<answer> ... </answer>).
    """
    _check_template(template)
    _check_extraction(extraction)
    cut = _cut_at_stop(response)
    if extraction != "boxed":  # an upstream's own reading
        from fidelity.extraction import upstream_answer

        return upstream_answer(response, cut, template, extraction)
    return _r1_tolerant(cut) if template == "r1" else _last_boxed(cut)


# ---------------------------------------------------------------------------------------------
# Reward rules (docs/papers.md §2 and §8)


@dataclass(frozen=True)
class RewardResult:
    score: float  # the reward for this response
    reason: str  # "correct" | "wrong" | "parse_error" | "timeout" (grader verdicts) | "no_answer"
    answer: str | None  # the extracted answer, None if there was none


OUTCOMES = (*VERDICTS, "no_answer")  # every RewardResult.reason: the grader's verdicts, or no extracted answer


# rule -> outcome -> score; the Zoo's "independent" also looks at the box (fidelity/extraction.py)
REWARD_RULES: dict[str, dict[str, float]] = {
    # SimpleRL-Zero
    "simplerl": {"correct": 1.0, "wrong": -0.5, "parse_error": -0.5, "timeout": -0.5, "no_answer": -1.0},
    # oat / Dr. GRPO, SimpleRL-Zoo
    "correct": {"correct": 1.0, "wrong": 0.0, "parse_error": 0.0, "timeout": 0.0, "no_answer": 0.0},
    # SimpleRL-Zoo's REWORD_FUNCTION_TYPE (sic) default "mix" scores as "correct"
    "mix": {"correct": 1.0, "wrong": 0.0, "parse_error": 0.0, "timeout": 0.0, "no_answer": 0.0},
}
RULES = (*REWARD_RULES, "independent")  # every --reward


def compute_rewards(responses: list[str], golds: list[str], template: str, rule: str, grader: Grader,
                    extraction: str = "boxed") -> list[RewardResult]:
    """Reward for each response: extract the answer, grade it, map the verdict through REWARD_RULES[rule].

    Args: responses, generated texts (response only, no prompt); golds, gold answers, same length;
    template, a key of TEMPLATES; rule, one of RULES; grader, a Grader; extraction, one of
    EXTRACTIONS (extract_answer).
    Returns: one RewardResult per response; reason "no_answer" when nothing could be extracted, else the
    grader's verdict ("correct" | "wrong" | "parse_error" | "timeout"); graded in one batch (grader.grade_many).
    "independent" also looks at whether the response holds a closed box (fidelity.extraction.has_boxed).
    Raises: ValueError for an unknown rule, template or extraction, or when responses and golds differ in length.
    Source: SimpleRL-Zero reward (+1 / -0.5 / -1), oat / Dr. GRPO correctness reward (1 / 0), SimpleRL-Zoo
    (hf_math_verify.py: mix, independent).
    """
    if rule not in RULES:
        raise ValueError(f"unknown reward rule {rule!r}: use one of {sorted(RULES)}")
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers: pass one gold per response")
    _check_template(template)
    _check_extraction(extraction)
    answers = [extract_answer(response, template, extraction) for response in responses]
    verdicts = iter(grader.grade_many([(answer, gold) for answer, gold in zip(answers, golds) if answer is not None]))
    reasons = ["no_answer" if answer is None else next(verdicts) for answer in answers]
    if rule == "independent":
        from fidelity.extraction import independent_scores

        scores = independent_scores(reasons, responses)
    else:
        scores = [REWARD_RULES[rule][reason] for reason in reasons]
    return [RewardResult(score, reason, answer) for score, reason, answer in zip(scores, reasons, answers)]


# ---------------------------------------------------------------------------------------------
# Reflection ("aha moment") keywords in responses: training metrics and evaluation both count them

REFLECTION_WORDS = ("recheck", "rethink", "reassess", "reevaluate", "re-evaluate", "re-examine", "reconsider",
                    "double-check", "check again", "think again", "verify", "wait", "try again", "alternatively",
                    "however")  # the "aha moment" keywords of docs/papers.md §6
_KEYWORDS = {w: re.compile(rf"\b{re.escape(w)}\b", re.IGNORECASE) for w in REFLECTION_WORDS}  # whole words: not "await"


def reflection_words(text: str) -> set[str]:
    """The REFLECTION_WORDS that occur in `text` as whole words, any case ("Wait," counts, "await" does not)."""
    return {w for w, pattern in _KEYWORDS.items() if pattern.search(text)}
