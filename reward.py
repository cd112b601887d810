"""Rule-based math reward: prompt templates, answer extraction, answer equivalence, reward rules.

Per response: cut at the first stop token, extract the final answer (last \\boxed{}; <answer> for r1),
grade it against the gold answer, map the verdict to a score (REFERENCE.md sections 1 and 2).

Sources followed:
- SimpleRL-Zero reward (hkust-nlp, Zeng et al. 2025): +1 correct, -0.5 wrong, -1 no answer; timeout = wrong.
- Dr. GRPO / oat (sail-sg, Liu et al. 2025): correctness-only reward 1 / 0; hard per-sample grading timeout.
- Qwen2.5-Math grader (math_equal): layered check, numeric rel. tolerance 1e-4, percent forms x, x/100, 100x.
- Hendrycks MATH normalisation (Hendrycks et al. 2021, strip_string): the string-matching layer.
- Symbolic layer: latex2sympy2_extended parses LaTeX, sympy checks simplify(a - b) == 0.

Deviations, one line each:
- Percent forms (x/100, 100x) are accepted only when pred or gold carries a "%": Qwen accepts 1 for 100.
- Tuples, intervals, sets and comma lists are split by us and compared element-wise (known anchor false negatives).
- Answers containing a plain word of 4+ letters are never compared symbolically (sympy reads words as
  products of symbols, so anagrams like "Evelyn" / "Evenly" would match).
- The grading timeout kills a persistent worker process (oat/SimpleRL use per-call processes or threads),
  which also stops huge-power hangs (10^{10^{10}}) that ignore thread- and signal-based timeouts.
- A gold that is a plain number is not matched by an unevaluated arithmetic expression ("7 * 86" for
  602; fractions like 1/2 still count): the anchors accept it, and RL learns to box the question.
- A worker that dies mid-sample is restarted once; if the retry fails too the verdict is "timeout".
"""

import math
import multiprocessing
import re
import warnings
from dataclasses import dataclass

from data import last_boxed

# ---------------------------------------------------------------------------------------------
# Prompt templates (REFERENCE.md section 1): the single source for training and evaluation

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
    Source: REFERENCE.md section 1 (SimpleRL-Zero / Dr. GRPO templates).
    """
    _check_template(template)
    return TEMPLATES[template].replace("{q}", problem)  # not .format: problems contain LaTeX braces


def stop_strings(template: str) -> list[str]:
    """Stop strings for generation besides EOS: ["</answer>"] for r1, [] otherwise.

    Raises: ValueError for an unknown template. Source: REFERENCE.md section 1 (r1 stops at </answer>).
    """
    _check_template(template)
    return ["</answer>"] if template == "r1" else []


# ---------------------------------------------------------------------------------------------
# Answer extraction (REFERENCE.md section 2, steps 1-2)

_BOX = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")  # \boxed or \fbox, not \boxedfoo


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
    if _BOX.search(content):
        content = _last_boxed(content) or ""
    return content.strip() or None


# ---------------------------------------------------------------------------------------------
# Equivalence, layer 1: Hendrycks MATH string normalisation


def _normalize(s: str) -> str:
    """Hendrycks-style normal form of an answer string (written for this repo, same rules as strip_string)."""
    s = s.strip().replace("\n", "").replace("\\!", "")
    s = re.sub(r"\\\\(?=[a-zA-Z])", r"\\", s)  # doubly escaped commands "\\frac" (matrix rows "\\ 1" kept)
    s = s.replace("\\displaystyle", "").replace("tfrac", "frac").replace("dfrac", "frac")
    s = re.sub(r"\\(?:left|right)(?:\.|(?![a-zA-Z]))", "", s)  # \left( -> (, \right. -> ""
    s = re.sub(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°", "", s)  # degrees
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    # a trailing unit wrapper after a number is dropped ("5 \text{ cm}"), any other \text{X} becomes X
    s = re.sub(r"^([-+]?[\d.,]+)\s*\\(?:text|mbox|mathrm)\s*\{[^{}]*\}$", r"\1", s.strip())
    wrapper = re.compile(r"\\(?:text|textbf|mbox|mathrm|mathbf)\s*\{([^{}]*)\}")
    while wrapper.search(s):
        s = wrapper.sub(r"\1", s)  # innermost first, until none is left
    s = s.replace("{,}", ",")
    s = re.sub(r"(?<!\\)\\[,;: ]|\\quad|\\qquad|~|\s", "", s)  # all spacing, incl. thin spaces "1\,000"
    s = re.sub(r"^\(?([A-E])\)$|^\(([A-E])\)?$", lambda m: m.group(1) or m.group(2), s)  # "(B)" -> "B"
    if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")  # thousands separators
    s = re.sub(r"(?<![\d}])\.(\d)", r"0.\1", s)  # ".5" -> "0.5"
    s = re.sub(r"\\sqrt\s*([0-9a-zA-Z])", r"\\sqrt{\1}", s)  # \sqrt2 -> \sqrt{2}
    s = re.sub(r"\\frac([0-9a-zA-Z])([0-9a-zA-Z])", r"\\frac{\1}{\2}", s)  # \frac12 -> \frac{1}{2}
    s = re.sub(r"\\frac([0-9a-zA-Z])\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\}([0-9a-zA-Z])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"^([-+]?)(\d+)/(\d+)$", r"\1\\frac{\2}{\3}", s)  # 1/2 -> \frac{1}{2}
    return s.rstrip(".")


def _drop_assignment(pred: str, gold: str) -> tuple[str, str]:
    """"x=3" vs "3": when only one side is an equation with a simple left side (x, k, f(x)), keep its right side."""
    def rhs(s: str) -> str:
        m = re.fullmatch(r"[a-zA-Z](?:_\{?\w+\}?)?(?:\([a-z]\))?=([^=]+)", s)
        return m.group(1) if m else s
    if ("=" in pred) != ("=" in gold):
        return rhs(pred), rhs(gold)
    return pred, gold


# ---------------------------------------------------------------------------------------------
# Equivalence, layer 2: numbers with relative tolerance (Qwen2.5-Math math_equal)


def _to_number(s: str) -> float | None:
    """The value of a normalised plain number (int, decimal, 1e5, \\frac{a}{b}, a\\times10^{b}); else None."""
    number = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"  # unambiguous: no quadratic backtracking on long digit runs
    if re.fullmatch(number + r"(?:e[-+]?\d+)?", s):
        return float(s)
    m = re.fullmatch(r"([-+]?)\\frac\{(" + number + r")\}\{(" + number + r")\}", s)
    if m and float(m.group(3)) != 0:
        return (-1.0 if m.group(1) == "-" else 1.0) * float(m.group(2)) / float(m.group(3))
    m = re.fullmatch(r"(" + number + r")(?:\\times|\\cdot|\*)10\^\{?([-+]?\d{1,3})\}?", s)
    if m:
        return float(f"{m.group(1)}e{m.group(2)}")
    return None


# ---------------------------------------------------------------------------------------------
# Equivalence, layer 3: symbolic (latex2sympy2_extended + sympy); may be slow, so the Grader runs it in a worker


def _symbolic_equal(pred: str, gold: str) -> bool:
    """simplify(a - b) == 0 on the parsed LaTeX, or equal numeric values; any failure -> False."""
    for s in (pred, gold):
        if re.search(r"(?<![\\a-zA-Z])[a-zA-Z]{4,}", re.sub(r"\\(?:begin|end)\{\w+\*?\}", "", s)):
            return False  # a plain word: sympy would read it as a product of symbols (anagrams would match)
    import sympy
    from latex2sympy2_extended import latex2sympy

    try:
        a, b = latex2sympy(pred), latex2sympy(gold)
    except Exception:  # any parse error of either side means "not provably equal" at this layer
        return False
    try:
        if a == b:
            return True
        if isinstance(a, sympy.Equality) and isinstance(b, sympy.Equality):
            da, db = a.lhs - a.rhs, b.lhs - b.rhs
            return sympy.simplify(da - db) == 0 or sympy.simplify(da + db) == 0
        if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
            return False  # sets, relations, booleans: only structural equality (checked above) counts
        if sympy.simplify(a - b) == 0:
            return True
        if not a.free_symbols and not b.free_symbols:
            va, vb = complex(sympy.N(a)), complex(sympy.N(b))
            finite = all(math.isfinite(abs(v)) for v in (va, vb))  # inf - (-inf) <= tol * inf would be True
            return finite and abs(va - vb) <= 1e-4 * max(abs(va), abs(vb))
    except Exception:  # sympy raises many types (TypeError, NotImplementedError, ...) on odd inputs
        return False
    return False


# ---------------------------------------------------------------------------------------------
# Equivalence: layers combined, with tuples / intervals / sets split and compared element-wise


def _split_top_level(s: str, separator: str) -> list[str]:
    """Split s at separators outside any (), [], {} nesting."""
    parts, depth, start, i = [], 0, 0, 0
    while i < len(s):
        if s[i] in "([{":
            depth += 1
        elif s[i] in ")]}":
            depth -= 1
        elif depth == 0 and s.startswith(separator, i):
            parts.append(s[start:i])
            start = i + len(separator)
            i = start
            continue
        i += 1
    return parts + [s[start:]]


def _encloses(s: str, opener: str, closer: str) -> bool:
    """True if s starts with opener, ends with closer, and the first opener closes only at the very end."""
    if not (s.startswith(opener) and s.endswith(closer)) or len(s) < len(opener) + len(closer):
        return False
    depth = 0
    for i, ch in enumerate(s):
        depth += 1 if ch in "([{" else -1 if ch in ")]}" else 0
        if depth == 0 and i < len(s) - 1:
            return False
    return depth == 0


def _structure(s: str) -> tuple[str, list[str]] | None:
    """(kind, elements) for a set "\\{a,b\\}", a bracketed "(a,b]" or a bare "a,b" list; None for a scalar.

    kind is "set" for sets and bare lists (order-free), else the two brackets, e.g. "(]" (order matters)."""
    if _encloses(s, "\\{", "\\}"):
        return "set", _split_top_level(s[2:-2], ",")
    if s[:1] in "([" and s[-1:] in ")]" and _encloses(s, s[0], s[-1]):
        items = _split_top_level(s[1:-1], ",")
        if len(items) > 1:
            return s[0] + s[-1], items
    items = _split_top_level(s, ",")
    return ("set", items) if len(items) > 1 else None


_UNEVALUATED = re.compile(r"\d\s*(?:[-+*]|\\times|\\cdot|\\div)\s*[-(]?\s*\d")  # 7 * 86, 3+4, 2\times(5)
_MAX_SET_SIZE = 64  # larger sets / lists must match element for element as strings (after normalisation)


def _equiv(pred: str, gold: str, symbolic: bool) -> bool:
    """Layers 1-2, plus layer 3 when symbolic; recursive on tuples, intervals, sets and unions."""
    percent = "%" in pred or "%" in gold
    p, g = _drop_assignment(_normalize(pred), _normalize(gold))
    if p == g:
        return bool(p)
    if not p or not g:
        return False
    p_union, g_union = _split_top_level(p, "\\cup"), _split_top_level(g, "\\cup")
    if len(p_union) > 1 or len(g_union) > 1:  # a union is a set of intervals: order-free
        p_struct, g_struct = ("set", p_union), ("set", g_union)
    else:
        p_struct, g_struct = _structure(p), _structure(g)
    if p_struct or g_struct:
        if not (p_struct and g_struct) or p_struct[0] != g_struct[0] or len(p_struct[1]) != len(g_struct[1]):
            return False
        if p_struct[0] != "set":  # tuples and intervals: element-wise, in order
            return all(_equiv(a, b, symbolic) for a, b in zip(p_struct[1], g_struct[1]))
        if sorted(p_struct[1]) == sorted(g_struct[1]):
            return True
        if len(g_struct[1]) > _MAX_SET_SIZE:
            return False  # the matching below is quadratic and runs in-process without a timeout
        unmatched = list(p_struct[1])  # sets: each gold element matches a distinct pred element
        for b in g_struct[1]:
            match = next((a for a in unmatched if _equiv(a, b, symbolic)), None)
            if match is None:
                return False
            unmatched.remove(match)
        return True
    p_number, g_number = _to_number(p), _to_number(g)
    if p_number is not None and g_number is not None:
        targets = (g_number, g_number / 100, g_number * 100) if percent else (g_number,)
        return any(math.isclose(p_number, t, rel_tol=1e-4) for t in targets)
    if g_number is not None and _UNEVALUATED.search(p):
        return False  # "7 * 86" for 602 restates the question: a learnable reward hack, not an answer
    return symbolic and _symbolic_equal(p, g)


def is_equiv(pred: str, gold: str) -> bool:
    """Whether a predicted answer equals the gold answer, in-process and without a timeout (pure function).

    Args: pred, the extracted answer (LaTeX); gold, the reference answer (LaTeX).
    Returns: True if equal by (1) normalised string, (2) number within rel. tol. 1e-4 (percent forms when a
    "%" is present), or (3) sympy: simplify(a - b) == 0 after parsing with latex2sympy2_extended.
    Tuples/intervals compare element-wise in order (brackets must match), sets and comma lists order-free.
    Raises: nothing; a failure in any layer counts as "not equal" at that layer.
    Source: Hendrycks MATH strip_string, Qwen2.5-Math math_equal, SimpleRL-Zero grader.
    """
    try:
        return _equiv(pred, gold, symbolic=True)
    except Exception:  # never raise: a grader bug must not crash training; it counts as "not equal"
        return False


# ---------------------------------------------------------------------------------------------
# Grader: is_equiv with a hard per-sample timeout, the sympy layer in one killable worker process

_WORKER_STARTUP_TIMEOUT = 120.0  # seconds for a spawned worker to import sympy (and the parent's __main__)


def _worker_loop(conn) -> None:
    """Worker process body: answer (pred, gold) requests with is_equiv until None or the pipe closes."""
    import sympy  # noqa: F401  (imported before "ready" so start-up time never counts against a sample)
    import latex2sympy2_extended  # noqa: F401

    conn.send("ready")
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):  # the parent is gone: nothing left to serve
            return
        if request is None:
            return
        conn.send(is_equiv(*request))


class Grader:
    """Runs is_equiv with a hard per-sample timeout; never hangs or raises.

    Layers (1)-(2) run in-process. When they cannot decide, the full check runs in ONE persistent worker
    process ('spawn' context: safe under torchrun and threads), started lazily. A sample that takes longer than
    `timeout` seconds gets the worker KILLED (SIGKILL: sympy cannot ignore it, unlike thread or alarm timeouts)
    and restarted on the next call; its verdict is "timeout". Not thread-safe: one Grader per thread/rank.
    Source: oat (1 s) / SimpleRL (10 s) grading timeouts; REFERENCE.md section 2 step 4.
    """

    def __init__(self, timeout: float = 5.0):
        """Args: timeout, seconds one sample may spend in the symbolic layer (worker start-up not counted)."""
        self.timeout = timeout
        self._process = None
        self._conn = None

    def grade(self, pred: str | None, gold: str) -> str:
        """Verdict for one answer: "correct" | "wrong" | "timeout" ("wrong" when pred is None). Never raises."""
        if pred is None:
            return "wrong"
        try:
            if _equiv(pred, gold, symbolic=False):
                return "correct"
            p, g = _normalize(pred), _normalize(gold)
            if _to_number(p) is not None and _to_number(g) is not None:
                return "wrong"  # two plain numbers: sympy cannot change the verdict
        except Exception:  # a bug in the cheap layers must not crash the caller; the worker re-checks everything
            pass
        for _ in range(2):  # a worker killed from outside gets one restart
            verdict = self._ask_worker(pred, gold)
            if verdict != "died":
                return verdict
        return "timeout"

    def _ask_worker(self, pred: str, gold: str) -> str:
        if (self._process is None or not self._process.is_alive()) and not self._start():
            warnings.warn("reward.Grader: the sympy worker process did not start (is the main script importable, "
                          "with an `if __name__ == '__main__':` guard?); grading this sample as 'timeout'")
            return "timeout"
        try:
            self._conn.send((pred, gold))
            if not self._conn.poll(self.timeout):
                self.close()  # kill mid-computation; the next sample starts a fresh worker
                return "timeout"
            return "correct" if self._conn.recv() else "wrong"
        except (EOFError, OSError):  # the worker died (killed from outside, out of memory): restart it
            self.close()
            return "died"

    def _start(self) -> bool:
        self.close()
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(target=_worker_loop, args=(child_conn,), daemon=True, name="reward-grader")
        try:
            self._process.start()
            child_conn.close()
            if self._conn.poll(_WORKER_STARTUP_TIMEOUT) and self._conn.recv() == "ready":
                return True
        except Exception:  # any start failure (pipe, process limits, a daemonic parent): no worker this time
            pass
        self.close()
        return False

    def close(self) -> None:
        """Kill the worker (if any). Safe to call twice or on a Grader that never started one."""
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(timeout=5)
            self._process = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "Grader":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# Reward rules (REFERENCE.md section 2)


@dataclass(frozen=True)
class RewardResult:
    score: float  # the reward for this response
    reason: str  # "correct" | "wrong" | "no_answer" | "timeout"
    answer: str | None  # the extracted answer, None if there was none


REWARD_RULES: dict[str, dict[str, float]] = {
    "simplerl": {"correct": 1.0, "wrong": -0.5, "no_answer": -1.0, "timeout": -0.5},  # SimpleRL-Zero
    "correct": {"correct": 1.0, "wrong": 0.0, "no_answer": 0.0, "timeout": 0.0},  # oat / Dr. GRPO, SimpleRL-Zoo
}


def compute_rewards(responses: list[str], golds: list[str], template: str, rule: str,
                    grader: Grader) -> list[RewardResult]:
    """Reward for each response: extract the answer, grade it, map the verdict through REWARD_RULES[rule].

    Args: responses, generated texts (response only, no prompt); golds, gold answers, same length;
    template, a key of TEMPLATES (decides the extraction); rule, a key of REWARD_RULES; grader, a Grader.
    Returns: one RewardResult per response; reason "no_answer" when nothing could be extracted.
    Raises: ValueError for an unknown rule or template, or when responses and golds differ in length.
    Source: SimpleRL-Zero reward (+1 / -0.5 / -1), oat / Dr. GRPO correctness reward (1 / 0).
    """
    if rule not in REWARD_RULES:
        raise ValueError(f"unknown reward rule {rule!r}: use one of {sorted(REWARD_RULES)}")
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} gold answers: pass one gold per response")
    _check_template(template)
    results = []
    for response, gold in zip(responses, golds):
        answer = extract_answer(response, template)
        reason = "no_answer" if answer is None else grader.grade(answer, gold)
        results.append(RewardResult(REWARD_RULES[rule][reason], reason, answer))
    return results
