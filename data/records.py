"""The records every stage passes (Problem, ProblemSet) and the user's-input errors every entry point reports
(UsageError, DataError), with the range check of every settings group. Imported through `data`."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    """One math problem with its gold answer (a string, compared by the reward's grader)."""

    problem: str  # the question text shown to the model
    answer: str  # gold final answer as the source gives it, e.g. "025", "1,234", "\\frac{1}{2}"
    source: str = ""  # which set it came from, e.g. "math_train", "gsm8k", "arithmetic"
    level: int | None = None  # MATH difficulty 1..5, None when the set has no levels
    meta: dict = field(default_factory=dict)  # every other field of the row (answer_alternatives, ...)


class UsageError(ValueError):
    """The user's input is wrong (a flag, a file, a run directory): the command line prints the message as
    one line per problem, without a traceback, and exits with status 2."""


def flag(name: str) -> str:
    """A settings field's command-line flag: out_dir -> --out-dir."""
    return "--" + name.replace("_", "-")


def range_problems(settings, rules: list[tuple[str, bool, str]]) -> list[str]:
    """One line "--flag value: must be rule" per (field name, ok, rule) of `settings` that is not ok: the range
    checks of every settings group (their problems() methods)."""
    return [f"{flag(name)} {getattr(settings, name)}: must be {rule}" for name, ok, rule in rules if not ok]


class DataError(UsageError):
    """A data file is malformed. The message starts with "<file>:<line>: " and names the field."""


@dataclass
class ProblemSet:
    """Problems loaded from one file (or generated), with counts of what was left out."""

    problems: list[Problem]
    path: str  # file path, or "arithmetic"
    skipped_empty: int  # rows skipped because their answer was empty or whitespace
    skipped_level: int  # rows dropped by the level filter


