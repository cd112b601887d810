"""Rule-based math reward: prompt templates, answer extraction, reward rules.

Per response: cut at the first stop token, extract the final answer (last \\boxed{}; <answer> for r1),
grade it against the gold answer (grader.py), map the verdict to a score (docs/papers.md §1 and §2).

Sources followed:
- SimpleRL-Zero reward (hkust-nlp, Zeng et al. 2025): +1 correct, -0.5 wrong, -1 no answer; timeout = wrong.
- Dr. GRPO / oat (sail-sg, Liu et al. 2025): correctness-only reward 1 / 0; hard per-sample grading timeout.
- Answer equivalence and its timeout: grader.py (Hendrycks MATH normalisation, Qwen2.5-Math grader, oat).

Deviations, one line each:
- Verdict "parse_error" (no side parsed beyond strings, or the grader raised) scores like "wrong"; it is
  reported apart so grader gaps show in the metrics.
- Every grader deviation is listed in grader.py's docstring.
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
# Answer extraction (docs/papers.md §2, steps 1-2)

def _last_boxed(text: str) -> str | None:
    """The gold-answer rule of data.last_boxed, stripped; None for no box, an unbalanced one, or an empty one."""
    content = last_boxed(text)
    return content.strip() or None if content is not None else None


def extract_answer(response: str, template: str) -> str | None:
    """The final answer in a model response (never apply this to the prompt: qwen templates contain \\boxed{}).

    Args: response, the generated text only; template, a key of TEMPLATES.
    Returns: the answer, stripped; None when there is none (no box or <answer>, unbalanced braces, empty box).
    Raises: ValueError for an unknown template.
    Source: SimpleRL-Zero / Qwen2.5-Math extraction (last \\boxed{}), r1 <answer> tags (DeepSeek-R1, Dr. GRPO).
    """
    _check_template(template)
    cut = min([i for i in (response.find(t) for t in STOP_TOKENS) if i >= 0], default=len(response))
    response = response[:cut]
    if template != "r1":
        return _last_boxed(response)
    start = response.rfind("<answer>")
    if start < 0:
        return None
    content = response[start + len("<answer>") :]
    end = content.find("</answer>")
    content = content[:end] if end >= 0 else content  # tolerate a stop string the engine removed
    if BOXED.search(content):
        content = _last_boxed(content) or ""
    return content.strip() or None


# ---------------------------------------------------------------------------------------------
# Reward rules (docs/papers.md §2)


@dataclass(frozen=True)
class RewardResult:
    score: float  # the reward for this response
    reason: str  # "correct" | "wrong" | "parse_error" | "timeout" (grader verdicts) | "no_answer"
    answer: str | None  # the extracted answer, None if there was none


OUTCOMES = (*VERDICTS, "no_answer")  # every RewardResult.reason: the grader's verdicts, or no extracted answer

REWARD_RULES: dict[str, dict[str, float]] = {  # rule -> score per outcome
    # SimpleRL-Zero
    "simplerl": {"correct": 1.0, "wrong": -0.5, "parse_error": -0.5, "timeout": -0.5, "no_answer": -1.0},
    # oat / Dr. GRPO, SimpleRL-Zoo
    "correct": {"correct": 1.0, "wrong": 0.0, "parse_error": 0.0, "timeout": 0.0, "no_answer": 0.0},
}


def compute_rewards(responses: list[str], golds: list[str], template: str, rule: str,
                    grader: Grader) -> list[RewardResult]:
    """Reward for each response: extract the answer, grade it, map the verdict through REWARD_RULES[rule].

    Args: responses, generated texts (response only, no prompt); golds, gold answers, same length;
    template, a key of TEMPLATES (decides the extraction); rule, a key of REWARD_RULES; grader, a Grader.
    Returns: one RewardResult per response; reason "no_answer" when nothing could be extracted, else the
    grader's verdict ("correct" | "wrong" | "parse_error" | "timeout"); graded in one batch (grader.grade_many).
    Raises: ValueError for an unknown rule or template, or when responses and golds differ in length.
    Source: SimpleRL-Zero reward (+1 / -0.5 / -1), oat / Dr. GRPO correctness reward (1 / 0).
    """
    if rule not in REWARD_RULES:
        raise ValueError(f"unknown reward rule {rule!r}: use one of {sorted(REWARD_RULES)}")
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers: pass one gold per response")
    _check_template(template)
    answers = [extract_answer(response, template) for response in responses]
    verdicts = iter(grader.grade_many([(answer, gold) for answer, gold in zip(answers, golds) if answer is not None]))
    reasons = ["no_answer" if answer is None else next(verdicts) for answer in answers]
    return [RewardResult(REWARD_RULES[rule][reason], reason, answer) for reason, answer in zip(reasons, answers)]


# ---------------------------------------------------------------------------------------------
# Reflection ("aha moment") keywords in responses: training metrics and evaluation both count them

REFLECTION_WORDS = ("recheck", "rethink", "reassess", "reevaluate", "re-evaluate", "re-examine", "reconsider",
                    "double-check", "check again", "think again", "verify", "wait", "try again", "alternatively",
                    "however")  # the "aha moment" keywords of docs/papers.md §6
_KEYWORDS = {w: re.compile(rf"\b{re.escape(w)}\b", re.IGNORECASE) for w in REFLECTION_WORDS}  # whole words: not "await"


def reflection_words(text: str) -> set[str]:
    """The REFLECTION_WORDS that occur in `text` as whole words, any case ("Wait," counts, "await" does not)."""
    return {w for w, pattern in _KEYWORDS.items() if pattern.search(text)}
