"""Rule-based math reward: prompt templates, answer extraction, reward rules.

Per response: cut at the first stop token, extract the final answer (one of EXTRACTIONS), grade it against the
gold answer (grader.py), map the verdict to a score (REWARD_RULES; docs/papers.md §1, §2 and §8).

Extraction modes, extract_answer(response, template, extraction):
- "boxed" (default): the last \\boxed{} / \\fbox{} / "\\boxed 5"; under r1, the last <answer> block (its last box
  if it holds one). SimpleRL-Zero's rule as docs/papers.md §2 states it.
- "qwen_harness": the Qwen2.5-Math harness chain for data "math" (QwenLM/Qwen2.5-Math evaluation/parser.py,
  extract_answer + strip_string; SimpleRL v0/Zoo evaluation and the Zoo reward, hf_math_verify.py); any template.
- "harness_if_boxed": SimpleRL-Zero v0's reward extraction (hkust-nlp/simpleRL-reason@v0 experience_maker.py,
  preprocess_box_response_for_qwen_prompt): no answer unless the text "boxed" occurs in the response (cut at its
  first stop token), else the qwen_harness chain; an empty harness answer is "" (graded: wrong, not no answer),
  so under "simplerl" a response without "boxed" scores -1 and one with a box upstream cannot read -0.5.
- "r1_strict": Oat-Zero's r1 reward (sail-sg/understand-r1-zero math_grader.py, answer_tag_reward_fn): an answer
  only when the response holds "</think> <answer>" and "</answer>"; other templates read the last box, as oat does.

Reward rules, REWARD_RULES[rule] (a table outcome -> score, or a function (outcome, boxed) -> score):
- "simplerl" (SimpleRL-Zero, Zeng et al. 2025): +1 correct, -0.5 wrong, -1 no answer; timeout = wrong.
- "correct" (Dr. GRPO / oat, Liu et al. 2025) and "mix" (SimpleRL-Zoo's default, same scores): 1 correct, else 0.
- "independent" (SimpleRL-Zoo, hf_math_verify.py): correct and boxed 1, correct unboxed 0.5, otherwise boxed -0.5,
  otherwise -1 (FORMAT_PENALTY_VALUE's default); "boxed" is has_boxed(response), no answer counts as not correct.
Answer equivalence and its timeout: grader.py (Hendrycks MATH normalisation, Qwen2.5-Math grader, oat).

Deviations, one line each:
- Verdict "parse_error" (no side parsed beyond strings, or the grader raised) scores like "wrong"; it is
  reported apart so grader gaps show in the metrics.
- Every mode grades with grader.py (or the Grader's math_verify backend): the Zoo uses math-verify, oat its own.
- qwen_harness reads the response only; the Zoo reads prompt + response from the first "<|im_start|>assistant",
  so under a template without it (abel) the question's numbers can feed the Zoo's last-number fallback.
- qwen_harness: strip_string's deletion of 132 standalone MathQA unit words and their plurals is not reproduced;
  they include the letters a c d g h l m o s t ("a+b" -> "+b", "5 cm" -> "5").
- qwen_harness: number words are not converted (upstream's word2number: "five" -> "5", "3 and one" -> "1").
- r1_strict: a box inside <answer> is read as in "boxed" (also \\fbox and "\\boxed 5", whichever is last); oat
  reads the last "\\boxed" and needs a "{" after it ("\\boxed 5", "\\boxedx": no answer; "\\fbox{3}" stays raw).
- independent: FORMAT_PENALTY_VALUE is fixed at its default -1 (upstream reads it from the environment).
- Every grader deviation is listed in grader.py's docstring.
"""

import re
from collections.abc import Callable
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

EXTRACTIONS = ("boxed", "qwen_harness", "harness_if_boxed", "r1_strict")  # the modes of the module docstring
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


def _r1_strict(response: str) -> str | None:
    """Oat-Zero's layout check (math_grader.py, answer_tag_reward_fn): "</think> <answer>" (exactly one space)
    and "</answer>" both occur, in any order, else no answer; the answer is all the text after the last
    "<answer>" with every "</answer>" deleted (so text after </answer> stays in it)."""
    if "</think> <answer>" not in response or "</answer>" not in response:
        return None
    return _answer_block(response.rsplit("<answer>", 1)[1].replace("</answer>", ""))


def _qwen_harness(text: str) -> str | None:
    """The Qwen2.5-Math harness's extract_answer(text, "math") (evaluation/parser.py), rewritten; None for its ""."""
    text = text.replace("\u043a\u0438", "")  # "ки", the step tag of Math-Shepherd data
    if "final answer is $" in text and "$. I hope" in text:  # Minerva's few-shot style; the FIRST one counts
        answer = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:  # any "boxed", even inside a word; "\fbox" is not one
        rest = text.rsplit("boxed", 1)[1]
        if rest.startswith("{"):
            depth, end = 0, len(rest)  # a box that never closes runs to the end of the text
            for i, char in enumerate(rest):
                depth += _BRACE_DEPTH.get(char, 0)
                if depth == 0:
                    end = i
                    break
            answer = rest[1:end]
        else:
            answer = rest.split("$")[0].strip()  # "\boxed 5": up to the next "$"
    elif "he answer is" in text:
        answer = text.rsplit("he answer is", 1)[1].strip()
    elif "final answer is" in text:
        answer = text.rsplit("final answer is", 1)[1].strip()
    else:
        numbers = re.findall(r"-?\d*\.?\d+", text.replace(",", ""))  # the last number, thousands commas dropped
        answer = numbers[-1] if numbers else ""
    answer = re.sub(r"\n\s*", "", answer).removeprefix(":")
    answer = answer[:-1] if answer.endswith(".") else answer
    answer = answer[:-1] if answer.endswith("/") else answer
    return _harness_strip(answer) or None


_HARNESS_PREFIXES = ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to")  # dropped anywhere
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")  # what survives the harness's int() round trip in "a/b"


def _harness_strip(s: str) -> str:
    r"""The harness's strip_string(s, skip_unit=False) (evaluation/parser.py), rewritten, in upstream's order.

    Reproduced:
    - strip; drop newlines, trailing "."s and "\!"; array and bmatrix -> pmatrix; tfrac, dfrac -> frac
    - \neq, \leq, \geq -> \ne, \le, \ge; drop \left and \right; \{ \} -> { }
    - drop a trailing \text{...} (from the first "\text{" when the string ends in "}") unless that leaves ""
    - drop ^{\circ}, ^\circ, \$, $, \(, \); a string of digits loses its leading zeros ("007" -> "7")
    - \text{X} -> X; drop x=, y=, z=, x\in, ..., z\to anywhere; \emptyset -> {}; (-\infty,\infty) -> \mathbb{R}
    - drop \% and %; " ." -> " 0." and "{." -> "{0."; infinity -> \infty, then inf -> \infty if no \infty is left
    - drop "and" anywhere ("3 and 4" -> "34"), \mathbf and \mbox{...}; j -> i when the string holds no i
    - "2.0" -> "2", "3.00x" -> "3x"; a leading "." gets a 0; "k = 5" -> "5" (one "=", at most 2 characters before)
    - \sqrt2x -> \sqrt{2x}; drop spaces; \frac12 -> \frac{1}{2}; "a/b" of two integers or sqrt terms -> \frac{a}{b}
    Not reproduced:
    - deleting MathQA unit words; converting number words with word2number (both in the module docstring)
    - unwrapping {x} / (x) / [x]: upstream guards it with isalnum(), which is false for any bracket
    - removing quotes: upstream discards the result; "+\inity" -> \infty: a typo no model output matches
    """
    s = s.strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = _sub_closed(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s).replace("\\end{array}", "\\end{pmatrix}")
    s = s.replace("bmatrix", "pmatrix").replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    unit = s.find("\\text{")  # a trailing unit: from the first \text{ on when s ends in "}", unless that is all of s
    s = (s[:unit] if unit >= 0 and s.endswith("}") else s).strip() or s
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    if s.isdecimal() and len(s) <= 4300:  # int() refuses longer digit strings; upstream then keeps them
        s = str(int(s))
    s = _sub_closed(r"\\text\{(.*?)\}", r"\1", s)
    for prefix in _HARNESS_PREFIXES:
        s = s.replace(prefix, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "").replace(" .", " 0.").replace("{.", "{0.")
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = _sub_closed(r"\\mbox\{.*?\}", "", s.replace("and", "").replace("\\mathbf", ""))
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    # (?<!\d): the same matches as upstream's patterns, without rescanning long digit runs from every position
    s = re.sub(r"(?<!\d)(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(?<!\d)(\d+)\.0*$", r"\1", s)
    s = "0" + s if s.startswith(".") else s
    left, *right = s.split("=")
    if len(right) == 1 and len(left) <= 2:
        s = right[0]
    s = _harness_fix_fracs(re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s).replace(" ", ""))
    numerator, *denominator = s.split("/")
    if len(denominator) == 1 and all("sqrt" in part or _INTEGER.fullmatch(part) for part in (numerator, *denominator)):
        s = f"\\frac{{{numerator}}}{{{denominator[0]}}}"
    return s


def _sub_closed(pattern: str, replacement: str, s: str) -> str:
    """re.sub for a pattern that ends at the first "}" after its start: only s up to its last "}" can match, and
    leaving the rest out keeps each unclosed opening from being rescanned to the end (quadratic time)."""
    end = s.rfind("}") + 1
    return re.sub(pattern, replacement, s[:end]) + s[end:]


def _harness_fix_fracs(s: str) -> str:
    r"""\frac12 -> \frac{1}{2}, \frac1{72} -> \frac{1}{72}; s unchanged when a \frac has under 2 characters after it."""
    head, *tails = s.split("\\frac")
    fixed = [head]
    for tail in tails:
        if tail.startswith("{"):
            fixed.append(tail)
        elif len(tail) < 2:
            return s
        elif tail[1] == "{":
            fixed.append("{" + tail[0] + "}" + tail[1:])
        else:
            fixed.append("{" + tail[0] + "}{" + tail[1] + "}" + tail[2:])
    return "\\frac".join(fixed)


def extract_answer(response: str, template: str, extraction: str = "boxed") -> str | None:
    """The final answer in a model response (never apply this to the prompt: qwen templates contain \\boxed{}).

    Args: response, the generated text only; template, a key of TEMPLATES; extraction, one of EXTRACTIONS:
    "boxed" (the last box; the last <answer> block under r1), "qwen_harness" (the Qwen2.5-Math harness chain and
    its strip_string; the template is not consulted), "harness_if_boxed" (qwen_harness, but None when the text
    "boxed" is absent and "" when the chain reads nothing: SimpleRL-Zero v0), "r1_strict" (Oat-Zero's strict r1 layout; the last box
    under other templates). Every mode first cuts the response at its first stop token (STOP_TOKENS).
    Returns: the answer, stripped (qwen_harness: normalised as strip_string does); None when there is none
    (harness_if_boxed: "" for a response with "boxed" that the chain reads nothing from).
    Raises: ValueError for an unknown template or extraction.
    Source: SimpleRL-Zero (last \\boxed{}), QwenLM/Qwen2.5-Math evaluation/parser.py (extract_answer,
    strip_string), sail-sg/understand-r1-zero math_grader.py (answer_tag_reward_fn); module docstring.
    """
    _check_template(template)
    _check_extraction(extraction)
    cut = _cut_at_stop(response)
    if extraction in ("qwen_harness", "harness_if_boxed"):
        answer = _qwen_harness(cut.strip() if len(cut) < len(response) else cut)  # upstream strips a text it cut
        if extraction == "qwen_harness":
            return answer
        return (answer or "") if "boxed" in cut else None  # v0: "boxed" absent -> -1; a box read as "" -> -0.5
    if template != "r1":
        return _last_boxed(cut)
    return _r1_strict(cut) if extraction == "r1_strict" else _r1_tolerant(cut)


_ZOO_BOX_DEPTH = 3  # the Zoo's box regex admits two levels of braces inside \boxed{...}


def has_boxed(response: str) -> bool:
    """Whether the response, cut at its first stop token, holds a closed \\boxed{...} (SimpleRL-Zoo's
    is_boxed_matched, hf_math_verify.py): its braces balance within _ZOO_BOX_DEPTH levels, the box's own
    included; \\fbox and "\\boxed 5" do not count. Used by the "independent" rule."""
    text = _cut_at_stop(response)
    for match in re.finditer(r"\\boxed\{", text):
        depth = 0
        for i in range(match.end() - 1, len(text)):
            depth += _BRACE_DEPTH.get(text[i], 0)
            if depth == 0:
                return True
            if depth > _ZOO_BOX_DEPTH:
                break
    return False


# ---------------------------------------------------------------------------------------------
# Reward rules (docs/papers.md §2 and §8)


@dataclass(frozen=True)
class RewardResult:
    score: float  # the reward for this response
    reason: str  # "correct" | "wrong" | "parse_error" | "timeout" (grader verdicts) | "no_answer"
    answer: str | None  # the extracted answer, None if there was none


OUTCOMES = (*VERDICTS, "no_answer")  # every RewardResult.reason: the grader's verdicts, or no extracted answer


def _independent(outcome: str, boxed: bool) -> float:
    """SimpleRL-Zoo's "independent" rule (hf_math_verify.py): correctness and the box scored apart."""
    if outcome == "correct":
        return 1.0 if boxed else 0.5
    return -0.5 if boxed else -1.0  # wrong, unparsed, timed out or no answer; -1.0 is FORMAT_PENALTY_VALUE's default


# rule -> a table outcome -> score, or, for a rule that also looks at the box, a function (outcome, boxed) -> score
REWARD_RULES: dict[str, dict[str, float] | Callable[[str, bool], float]] = {
    # SimpleRL-Zero
    "simplerl": {"correct": 1.0, "wrong": -0.5, "parse_error": -0.5, "timeout": -0.5, "no_answer": -1.0},
    # oat / Dr. GRPO, SimpleRL-Zoo
    "correct": {"correct": 1.0, "wrong": 0.0, "parse_error": 0.0, "timeout": 0.0, "no_answer": 0.0},
    # SimpleRL-Zoo's REWORD_FUNCTION_TYPE (sic) values: "mix", its default, scores as "correct"; "independent"
    "mix": {"correct": 1.0, "wrong": 0.0, "parse_error": 0.0, "timeout": 0.0, "no_answer": 0.0},
    "independent": _independent,
}


def compute_rewards(responses: list[str], golds: list[str], template: str, rule: str, grader: Grader,
                    extraction: str = "boxed") -> list[RewardResult]:
    """Reward for each response: extract the answer, grade it, map the verdict through REWARD_RULES[rule].

    Args: responses, generated texts (response only, no prompt); golds, gold answers, same length;
    template, a key of TEMPLATES; rule, a key of REWARD_RULES; grader, a Grader; extraction, one of
    EXTRACTIONS (extract_answer).
    Returns: one RewardResult per response; reason "no_answer" when nothing could be extracted, else the
    grader's verdict ("correct" | "wrong" | "parse_error" | "timeout"); graded in one batch (grader.grade_many).
    A rule given as a function also receives has_boxed(response).
    Raises: ValueError for an unknown rule, template or extraction, or when responses and golds differ in length.
    Source: SimpleRL-Zero reward (+1 / -0.5 / -1), oat / Dr. GRPO correctness reward (1 / 0), SimpleRL-Zoo
    (hf_math_verify.py: mix, independent).
    """
    if rule not in REWARD_RULES:
        raise ValueError(f"unknown reward rule {rule!r}: use one of {sorted(REWARD_RULES)}")
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers: pass one gold per response")
    _check_template(template)
    _check_extraction(extraction)
    answers = [extract_answer(response, template, extraction) for response in responses]
    verdicts = iter(grader.grade_many([(answer, gold) for answer, gold in zip(answers, golds) if answer is not None]))
    reasons = ["no_answer" if answer is None else next(verdicts) for answer in answers]
    scores = REWARD_RULES[rule]
    if callable(scores):
        return [RewardResult(scores(reason, has_boxed(response)), reason, answer)
                for response, reason, answer in zip(responses, reasons, answers)]
    return [RewardResult(scores[reason], reason, answer) for reason, answer in zip(reasons, answers)]


# ---------------------------------------------------------------------------------------------
# Reflection ("aha moment") keywords in responses: training metrics and evaluation both count them

REFLECTION_WORDS = ("recheck", "rethink", "reassess", "reevaluate", "re-evaluate", "re-examine", "reconsider",
                    "double-check", "check again", "think again", "verify", "wait", "try again", "alternatively",
                    "however")  # the "aha moment" keywords of docs/papers.md §6
_KEYWORDS = {w: re.compile(rf"\b{re.escape(w)}\b", re.IGNORECASE) for w in REFLECTION_WORDS}  # whole words: not "await"


def reflection_words(text: str) -> set[str]:
    """The REFLECTION_WORDS that occur in `text` as whole words, any case ("Wait," counts, "await" does not)."""
    return {w for w, pattern in _KEYWORDS.items() if pattern.search(text)}
