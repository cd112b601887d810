"""Upstream fidelity: the answer readings and the reward rule that only a paper's own code uses.

reward.py reads answers the core way (`--extraction boxed`: the last box; under r1 the last <answer> block) and
scores with the +1 / -0.5 / -1 and 1 / 0 rules. This module holds the rest, imported only when a flag asks for it
(`--extraction qwen_harness | harness_if_boxed | r1_strict`, `--reward independent`, or a `--protocol`):

- "qwen_harness": the Qwen2.5-Math harness chain for data "math" (QwenLM/Qwen2.5-Math evaluation/parser.py,
  extract_answer + strip_string); SimpleRL v0 / Zoo evaluation and the Zoo reward (hf_math_verify.py).
- "harness_if_boxed": SimpleRL-Zero v0's reward reading (hkust-nlp/simpleRL-reason@v0 experience_maker.py,
  preprocess_box_response_for_qwen_prompt): no answer unless the text "boxed" occurs, else the harness chain; an
  answer the chain reads as "" is graded (wrong), so under "simplerl" it scores -0.5, not -1.
- "r1_strict": Oat-Zero's r1 reward (sail-sg/understand-r1-zero math_grader.py, answer_tag_reward_fn).
- "independent": SimpleRL-Zoo's reward rule (hf_math_verify.py), correctness and the box scored apart.

Deviations, one line each:
- qwen_harness reads the response only; the Zoo reads prompt + response from the first "<|im_start|>assistant",
  so under a template without it (abel) the question's numbers can feed the Zoo's last-number fallback.
- qwen_harness: strip_string's deletion of 132 standalone MathQA unit words and their plurals is not reproduced;
  they include the letters a c d g h l m o s t ("a+b" -> "+b", "5 cm" -> "5").
- qwen_harness: number words are not converted (upstream's word2number: "five" -> "5", "3 and one" -> "1").
- r1_strict: a box inside <answer> is read as in "boxed" (also \\fbox and "\\boxed 5", whichever is last); oat
  reads the last "\\boxed" and needs a "{" after it ("\\boxed 5", "\\boxedx": no answer; "\\fbox{3}" stays raw).
- independent: FORMAT_PENALTY_VALUE is fixed at its default -1 (upstream reads it from the environment).
"""

import re

from reward import _BRACE_DEPTH, _answer_block, _cut_at_stop, _last_boxed


def upstream_answer(response: str, cut: str, template: str, extraction: str) -> str | None:
    """The answer `extraction` (qwen_harness, harness_if_boxed, r1_strict) reads; reward.extract_answer's contract.

    response: the generated text; cut: it up to its first stop token. r1_strict reads Oat's strict layout under the
    r1 template and the last box under any other, as oat does; harness_if_boxed gives None without the text
    "boxed" and "" for a box the chain reads nothing from.
    """
    if extraction == "r1_strict":
        return _r1_strict(cut) if template == "r1" else _last_boxed(cut)
    answer = _qwen_harness(cut.strip() if len(cut) < len(response) else cut)  # upstream strips a text it cut
    if extraction == "qwen_harness":
        return answer
    return (answer or "") if "boxed" in cut else None  # v0: "boxed" absent -> -1; a box read as "" -> -0.5


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


def independent(outcome: str, boxed: bool) -> float:
    """SimpleRL-Zoo's "independent" rule (hf_math_verify.py): correctness and the box scored apart."""
    if outcome == "correct":
        return 1.0 if boxed else 0.5
    return -0.5 if boxed else -1.0  # wrong, unparsed, timed out or no answer; -1.0 is FORMAT_PENALTY_VALUE's default


def independent_scores(reasons: list[str], responses: list[str]) -> list[float]:
    """The "independent" rule's score of each response: its verdict and whether it holds a closed box."""
    return [independent(reason, has_boxed(response)) for reason, response in zip(reasons, responses)]
