"""Math answer equivalence: is a predicted final answer the same mathematical object as the gold answer?

    equivalence(pred, gold) -> "correct" | "wrong" | "parse_error"   pure, in-process, no timeout
    is_equiv(pred, gold) -> bool                                      equivalence(...) == "correct"
    grader_pool.Grader(timeout, workers).grade_many(pairs)           the same, batched over killable workers

Layers, in order (the first that decides wins; docs/papers.md §2):
1. Hendrycks MATH normalisation (Hendrycks et al. 2021, strip_string), then string equality.
2. Structures: tuples and intervals element-wise in order (brackets must match), sets, \\cup unions and
   bare comma lists order-free (each gold element matched by a distinct predicted one); recursive.
3. Numbers: relative tolerance 1e-4; percent forms x, x/100, 100x (Qwen2.5-Math grader, math_equal).
4. Symbolic: latex2sympy2_extended parses both sides; constant expressions compare by value at rel. tol. 1e-4;
   others by simplify(a - b) == 0 (Qwen2.5-Math, oat), skipped when the two differ at a sample point (a proof
   that they differ, and much cheaper); equations up to a constant factor; matrices entry-wise.
grader_pool.Grader runs layers 1-3 in the calling process and layer 4 in a pool of worker processes that are
KILLED when a sample exceeds its timeout (oat: 1 s, SimpleRL: 10 s), then replaced.

Deviations from the anchors (Hendrycks strip_string, Qwen2.5-Math math_equal, oat's math_grader), one line each:
- Percent forms (x/100, 100x) are accepted only when pred or gold carries a "%": Qwen accepts 1 for 100.
- Two integers compare exactly (1000001 is not 1000000); the 1e-4 tolerance is for decimals and fractions.
- Equations are equal when lhs - rhs differ by a nonzero constant factor (x+y=1 and 2x+2y=2); Qwen: sign only.
- "and" / "or" between answers separate a list; a set written with a repeated element equals the set without.
- Tuples, intervals, sets, unions and comma lists are split by us and compared element-wise (anchor false negatives).
- Answers holding a plain word of 4+ letters never reach sympy (it reads words as products: "Evelyn" = "Evenly").
- A gold that is a plain number is not matched by unevaluated arithmetic ("7 * 86", "7 × 86", "4(59)" for 602 or
  236; 1/2 still counts):
  the anchors accept it, and RL learns to box the question.
- Symbols keep their case (latex2sympy2_extended lowercases by default, which makes R equal r), unless only the
  lowercased form parses (its grammar reads a capital E as Euler's number, so "E_{1}" fails).
- A digit before "(" multiplies: latex2sympy2_extended reads "2(120)" as the mixed number 2 + 120.
- The symbol i is read as the imaginary unit in the symbolic layer (so i^2 = -1), as in MATH's complex answers.
- A trailing unit after a number (\\text{ cm}^2, \\mbox{ inches}, ^\\circ C, ^{\\prime\\prime}) is dropped; a unit on a
  non-number is kept. Minerva's numpy golds (np.arcsin(x)) are read as LaTeX functions.
- A "\\in" or "x =" prefix on one side only is dropped ("x \\in [1,2]" vs "[1,2]", "x=3" vs "3").
- Verdict "parse_error" (not in the anchors): strings differ and sympy could not parse a side, or the grader raised.
- The timeout kills a persistent worker (oat/SimpleRL use per-call processes or threads), which also stops huge
  powers (10^{10^{10}}) that ignore thread and signal timeouts; a worker that dies mid-sample is replaced and the
  sample retried once; a second death (or no worker able to start) gives "timeout".
"""

import math
import re

VERDICTS = ("correct", "wrong", "parse_error", "timeout")
NUMERIC_REL_TOL = 1e-4  # Qwen2.5-Math math_equal


class _Trace:
    """What the layers needed on the way to a verdict (one per top-level comparison)."""

    def __init__(self):
        self.needs_symbolic = False  # a comparison was left undecided because symbolic=False
        self.parse_failed = False  # latex2sympy raised on one side of some comparison


# ---------------------------------------------------------------------------------------------
# Layer 1: Hendrycks MATH string normalisation


def _strip_outer_braces(s: str) -> str:
    """"{{1}}" -> "1": drop brace pairs that enclose the whole string, in one pass (no quadratic rescans)."""
    if not s.startswith("{"):
        return s
    partner, stack = {}, []
    for i, ch in enumerate(s):
        if ch == "{" and (i == 0 or s[i - 1] != "\\"):
            stack.append(i)
        elif ch == "}" and (i == 0 or s[i - 1] != "\\") and stack:
            partner[stack.pop()] = i
    start, end = 0, len(s) - 1
    while start < end and partner.get(start) == end:
        start, end = start + 1, end - 1
    return s[start : end + 1]


_UNIT = r"\\(?:text|mbox|mathrm)\s*\{[^{}]*\}(?:\s*\^\s*\{?-?\d+\}?)?"
_TRAILING_UNITS = re.compile(r"^([-+]?[\d.,]+(?:e[-+]?\d+)?)\s*(?:" + _UNIT + r"\s*)+$")


def _normalize(s: str) -> str:
    """Hendrycks-style normal form of an answer string (written for this repo, same rules as strip_string)."""
    s = s.strip().replace("\n", "").replace("\\!", "")
    s = re.sub(r"\\\\(?=[a-zA-Z])", r"\\", s)  # doubly escaped commands "\\frac" (matrix rows "\\ 1" kept)
    s = s.replace("\\displaystyle", "").replace("tfrac", "frac").replace("dfrac", "frac")
    s = re.sub(r"\\(?:left|right)(?:\.|(?![a-zA-Z]))", "", s)  # \left( -> (, \right. -> ""
    degrees = r"(?:\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|°)(?:\s*(?:\\mathrm\{[CF]\}|[CF]))?(?![a-zA-Z])"
    s = re.sub(degrees, "", s)  # 30^\circ, 30^{\circ}, 30°, 1950^\circ C
    s = re.sub(r"^([-+]?[\d.]+)\s*\^\s*\{?\\prime\s*(?:\\prime)?\s*\}?$", r"\1", s)  # arc minutes / seconds
    s = re.sub(r"(?<=[a-zA-Z])'", r"^{\\prime}", s)  # x' -> x^{\prime}
    s = re.sub(r"\bnp\.(?=[a-z]+\()", r"\\", s)  # Minerva golds in numpy: np.arcsin(x) -> \arcsin(x)
    s = re.sub(r"_([0-9a-zA-Z])", r"_{\1}", s)  # E_1 -> E_{1}
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "").replace("%", "")
    conjunction = r"\s*,?\s*\\(?:text|mbox|mathrm)\s*\{\s*(?:and|or)\s*\}\s*|\s+(?:and|or)\s+"
    s = re.sub(conjunction, ",", s)  # "2, 3, \text{ and } 4" -> "2, 3,4"
    s = _TRAILING_UNITS.sub(r"\1", s.strip())  # "5 \text{ cm}^2" -> "5"; any other \text{X} becomes X
    wrapper = re.compile(r"\\(?:text|textbf|mbox|mathrm|mathbf)\s*\{([^{}]*)\}")
    while wrapper.search(s):
        s = wrapper.sub(r"\1", s)  # innermost first, until none is left
    s = s.replace("{,}", ",")
    s = re.sub(r"(?<!\\)\\[,;: ]|\\quad|\\qquad|~|\s", "", s)  # all spacing, incl. thin spaces "1\,000"
    s = _strip_outer_braces(s)
    s = re.sub(r"^\(?([A-E])\)$|^\(([A-E])\)?$", lambda m: m.group(1) or m.group(2), s)  # "(B)" -> "B"
    if re.fullmatch(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?", s):
        s = s.replace(",", "")  # thousands separators
    s = re.sub(r"(?<![\d}])\.(\d)", r"0.\1", s)  # ".5" -> "0.5"
    s = re.sub(r"\\sqrt\s*([0-9a-zA-Z])", r"\\sqrt{\1}", s)  # \sqrt2 -> \sqrt{2}
    s = re.sub(r"\\frac([0-9a-zA-Z])([0-9a-zA-Z])", r"\\frac{\1}{\2}", s)  # \frac12 -> \frac{1}{2}
    s = re.sub(r"\\frac([0-9a-zA-Z])\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\{([^{}]*)\}([0-9a-zA-Z])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"^([-+]?)(\d+(?:\.\d*)?)/(\d+(?:\.\d*)?)$", r"\1\\frac{\2}{\3}", s)  # 1/2, -1./3 -> \frac
    return s.rstrip(".")


_ASSIGNMENT = re.compile(r"^\s*[a-zA-Z](?:_\{?\w+\}?)?(?:\([a-z]\))?\s*(?:=|\\in(?![a-zA-Z]))(?=[^=]*$)")


def _has_relation(s: str) -> bool:
    return "=" in s or re.search(r"\\in(?![a-zA-Z])", s) is not None  # \in, not \infty


def _drop_assignment(pred: str, gold: str) -> tuple[str, str]:
    """"x=3" vs "3", "x \\in [1,2]" vs "[1,2]": when only one side has a simple left side (x, a_1, f(x)), drop it.

    Works on the raw strings, so a unit after the right side is still recognised ("x = 5 \\text{ cm}")."""
    if _has_relation(_normalize(pred)) != _has_relation(_normalize(gold)):
        return _ASSIGNMENT.sub("", pred, count=1), _ASSIGNMENT.sub("", gold, count=1)
    return pred, gold


# ---------------------------------------------------------------------------------------------
# Layer 3: numbers with relative tolerance (Qwen2.5-Math math_equal)

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)"  # unambiguous: no quadratic backtracking on long digit runs


def _to_number(s: str) -> float | None:
    """The value of a normalised plain number (int, decimal, 1e5, \\frac{a}{b}, a\\times10^{b}, 10^{b}); else None."""
    if re.fullmatch(_NUMBER + r"(?:e[-+]?\d+)?", s):
        return float(s)
    m = re.fullmatch(r"([-+]?)\\frac\{(" + _NUMBER + r")\}\{(" + _NUMBER + r")\}", s)
    if m and float(m.group(3)) != 0:
        return (-1.0 if m.group(1) == "-" else 1.0) * float(m.group(2)) / float(m.group(3))
    m = re.fullmatch(r"(" + _NUMBER + r")(?:\\times|\\cdot|\*)10\^\{?([-+]?\d{1,3})\}?", s)
    if m:
        return float(f"{m.group(1)}e{m.group(2)}")
    m = re.fullmatch(r"10\^\{?([-+]?\d{1,3})\}?", s)
    return float(f"1e{m.group(1)}") if m else None


# ---------------------------------------------------------------------------------------------
# Layer 4: symbolic (latex2sympy2_extended + sympy); may be slow, so the Grader runs it in a worker

_WORD = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{4,}")


def _has_word(s: str) -> bool:
    """A plain word of 4+ letters outside LaTeX commands and environment names."""
    return bool(_WORD.search(re.sub(r"\\(?:begin|end)\{\w+\*?\}", "", s)))


def _parse(s: str):
    """latex2sympy2_extended with case kept and i as the imaginary unit. Raises on any parse failure."""
    import sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig, latex2sympy

    s = re.sub(r"(?<=\d)\s*(?=\()", r"\\cdot ", s)  # "2(120)": the grammar would read 2 + 120 (a mixed number)
    try:
        expr = latex2sympy(s, conversion_config=ConversionConfig(lowercase_symbols=False))
    except Exception:  # the grammar reads a capital E as Euler's number, so "E_{1}" parses only lowercased
        expr = latex2sympy(s)
    if isinstance(expr, sympy.Basic) and sympy.Symbol("i") in expr.free_symbols:
        expr = expr.subs(sympy.Symbol("i"), sympy.I)
    return expr


def _values_at(a, b, point: dict) -> tuple[complex, complex] | None:
    """Both expressions evaluated at point (symbol -> rational), or None when either is not a finite number there."""
    try:
        va, vb = complex(a.subs(point).evalf(20)), complex(b.subs(point).evalf(20))
    except (TypeError, ValueError, OverflowError, ZeroDivisionError, AttributeError):  # unevaluated, zoo, nan, ...
        return None
    return (va, vb) if all(math.isfinite(v.real) and math.isfinite(v.imag) for v in (va, vb)) else None


def _expressions_equal(a, b) -> bool:
    """Constants: equal values at rel. tol. 1e-4. Otherwise simplify(a - b) == 0, after a cheap numeric probe:
    two values that differ at a sample point prove the expressions differ (saves sympy's slow simplify)."""
    import sympy

    symbols = sorted(a.free_symbols | b.free_symbols, key=str)
    if not symbols and (values := _values_at(a, b, {})) is not None:
        va, vb = values
        return abs(va - vb) <= NUMERIC_REL_TOL * max(abs(va), abs(vb))
    for k in range(2):
        point = {s: sympy.Rational(13 + 7 * i + 11 * k, 10) for i, s in enumerate(symbols)}
        if (values := _values_at(a, b, point)) is not None:
            va, vb = values
            if abs(va - vb) > 1e-6 * max(1.0, abs(va), abs(vb)):
                return False
    return sympy.simplify(a - b) == 0


def _symbolic_equal(pred: str, gold: str, trace: _Trace) -> bool:
    """Layer 4 on two normalised strings; a parse failure is recorded in trace and counts as "not equal"."""
    import sympy

    try:
        a, b = _parse(pred), _parse(gold)
    except Exception:  # latex2sympy raises many types on malformed or unsupported LaTeX
        trace.parse_failed = True
        return False
    try:
        if a == b:
            return True
        if isinstance(a, sympy.Equality) and isinstance(b, sympy.Equality):
            da, db = a.lhs - a.rhs, b.lhs - b.rhs  # equivalent if lhs - rhs differ by a nonzero constant
            if sympy.simplify(da - db) == 0 or sympy.simplify(da + db) == 0:
                return True
            ratio = sympy.simplify(da / db) if db != 0 else None
            return ratio is not None and not ratio.free_symbols and ratio.is_nonzero is True and ratio.is_finite
        if isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase):
            return a.shape == b.shape and all(_expressions_equal(x, y) for x, y in zip(a, b))
        if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
            return False  # sets, relations, booleans: only structural equality (checked above) counts
        return _expressions_equal(a, b)
    except Exception:  # sympy raises many types (TypeError, NotImplementedError, ...) on odd inputs
        return False


# ---------------------------------------------------------------------------------------------
# Layer 2: tuples / intervals / sets split and compared element-wise; all layers combined


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
        if depth == 0 and len(opener) - 1 <= i < len(s) - 1:  # (the "\\" of "\\{" comes before any bracket)
            return False
    return depth == 0


def _structure(s: str) -> tuple[str, list[str]] | None:
    """(kind, elements) for a set "\\{a,b\\}", a bracketed "(a,b]" or a bare "a,b" list; None for a scalar.

    kind is "set" for sets and bare lists (order-free), else the two brackets, e.g. "(]" (order matters)."""
    if _encloses(s, "\\{", "\\}"):
        return "set", list(dict.fromkeys(_split_top_level(s[2:-2], ",")))  # {1,1,2} = {1,2}
    if s[:1] in "([" and s[-1:] in ")]" and _encloses(s, s[0], s[-1]):
        items = _split_top_level(s[1:-1], ",")
        if len(items) > 1:
            return s[0] + s[-1], items
    items = _split_top_level(s, ",")
    return ("set", items) if len(items) > 1 else None


_UNEVALUATED = re.compile(  # 7 * 86, 3+4, 2\times(5), 7 × 86, 4(59), (7)(86), (7)86
    r"\d\s*(?:[-+*×·÷]|\\times|\\cdot|\\div|\\ast)\s*[-(]?\s*\d|\d\s*\(\s*[-+]?\s*\d|\)\s*\(|\)\s*\d")
_MAX_SET_SIZE = 64  # larger sets / lists must match element for element as strings (after normalisation)


def _equiv(pred: str, gold: str, symbolic: bool, trace: _Trace) -> bool:
    """Layers 1-3, plus layer 4 when symbolic (else trace.needs_symbolic marks an undecided comparison)."""
    percent = "%" in pred or "%" in gold
    pred, gold = _drop_assignment(pred, gold)
    p, g = _normalize(pred), _normalize(gold)
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
            return all(_equiv(a, b, symbolic, trace) for a, b in zip(p_struct[1], g_struct[1]))
        if sorted(p_struct[1]) == sorted(g_struct[1]):
            return True
        if len(g_struct[1]) > _MAX_SET_SIZE:
            return False  # the matching below is quadratic
        unmatched = list(p_struct[1])  # sets: each gold element matches a distinct pred element
        for b in g_struct[1]:
            match = next((a for a in unmatched if _equiv(a, b, symbolic, trace)), None)
            if match is None:
                return False
            unmatched.remove(match)
        return True
    p_number, g_number = _to_number(p), _to_number(g)
    if p_number is not None and g_number is not None:
        if re.fullmatch(r"[-+]?\d+", p) and re.fullmatch(r"[-+]?\d+", g) and not percent:
            return int(p) == int(g)  # two integers: exact (1000001 is not 1000000)
        targets = (g_number, g_number / 100, g_number * 100) if percent else (g_number,)
        return any(math.isclose(p_number, t, rel_tol=NUMERIC_REL_TOL) for t in targets)
    if g_number is not None and _UNEVALUATED.search(p):
        return False  # "7 * 86" for 602 restates the question: a learnable reward hack, not an answer
    if _has_word(p) or _has_word(g):
        return False  # text answers are compared as strings only
    if not symbolic:
        trace.needs_symbolic = True
        return False
    if _symbolic_equal(p, g, trace):
        return True
    if "%" in pred and "%" not in gold:  # 33\frac{1}{3}\% for 1/3: the percent form of a non-number
        return _symbolic_equal(f"\\frac{{{p}}}{{100}}", g, trace)
    if "%" in gold and "%" not in pred:
        return _symbolic_equal(p, f"\\frac{{{g}}}{{100}}", trace)
    return False


def equivalence(pred: str, gold: str) -> str:
    """Verdict for one answer, in-process and without a timeout (pure function).

    Args: pred, the extracted answer (LaTeX); gold, the reference answer (LaTeX).
    Returns: "correct" if equal by layers 1-4 (module docstring); "parse_error" if not, and sympy could not
    parse one side of a comparison it was needed for (or the grader raised); else "wrong".
    Raises: nothing. Source: Hendrycks MATH strip_string, Qwen2.5-Math math_equal, oat math_grader.
    """
    trace = _Trace()
    try:
        if _equiv(pred, gold, True, trace):
            return "correct"
    except Exception:  # never raise: a grader bug must not crash training
        return "parse_error"
    return "parse_error" if trace.parse_failed else "wrong"


def is_equiv(pred: str, gold: str) -> bool:
    """Whether pred equals gold (equivalence(pred, gold) == "correct"); in-process, no timeout, never raises.

    Tuples/intervals compare element-wise in order (brackets must match), sets and comma lists order-free;
    numbers at rel. tol. 1e-4 (percent forms only when a "%" is present); else sympy simplify(a - b) == 0.
    Source: Hendrycks MATH strip_string, Qwen2.5-Math math_equal, SimpleRL-Zero grader.
    """
    return equivalence(pred, gold) == "correct"


def cheap_verdict(pred: str, gold: str) -> str | None:
    """"correct" or "wrong" when layers 1-3 decide without sympy, else None (the pair needs layer 4). Never raises."""
    trace = _Trace()
    try:
        if _equiv(pred, gold, False, trace):
            return "correct"
    except Exception:  # a bug in the cheap layers: let the worker decide (it reports "parse_error")
        return None
    return None if trace.needs_symbolic else "wrong"
