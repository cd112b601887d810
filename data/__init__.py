"""Math problems for training and evaluation: loading, validation, and the built-in arithmetic set.

Every data file is UTF-8 JSONL with one object per line holding at least `problem` (str) and `answer`
(the gold final answer, kept as a string so "025" and "1,234" survive). The normalised files live in
../shared/data (see its README for sources, row counts and quirks); `python -m data.prepare --out DIR`
rebuilds them from the Hugging Face hub and the upstream repositories (their files sha256-checked).

    load_jsonl(path, levels)        any problem/answer JSONL, strictly validated -> ProblemSet
    load_train_data(spec)           a procedural set ("add_one": the embedded default; "arithmetic") or a JSONL path
    load_benchmark(name, data_dir)  a BENCHMARKS name: aime24, amc23, math500, minerva_math, ..., amc_oat, college_math
    load_eval_set(name, ...)        a benchmark, or a held-out draw of a procedural set
    step_indices(n, step, ...)      the seeded order in which training visits the problems (train_zero, sft)
    last_boxed(text)                content of the last \\boxed{...} / \\fbox{...} (gold-answer rule)
The records (Problem, ProblemSet, UsageError) are in data/records.py, the built-in procedural sets
(arithmetic_problems, add_one_problems) in data/procedural.py; both are imported from here.

Deviations and choices:
- A numeric `answer` is accepted only when it is an int or an integer-valued float (AMC stores 27.0);
  it becomes str(int(x)). Anything else that is not a string is an error, never silently str()-ed.
- Rows with an empty answer are skipped and counted (MATH has 2 such rows), not an error.
- Rows with level null (MATH "Level ?") are dropped whenever a level filter is given.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import uuid
from collections.abc import Iterable
from pathlib import Path

from data.procedural import PROCEDURAL_SETS, add_one_problems, arithmetic_problems
from data.records import DataError, Problem, ProblemSet, UsageError, flag, range_problems

__all__ = ["PROCEDURAL_SETS", "add_one_problems", "arithmetic_problems", "DataError", "Problem", "ProblemSet",
           "UsageError", "flag", "range_problems"]  # re-exported: `from data import Problem` is the public path


# ---------------------------------------------------------------------------------------------------
# Field parsing (one row at a time; `where` is the "<file>:<line>" prefix for error messages)


def _parse_answer(value, where: str) -> str:
    """The gold answer as a string: str kept, int or integer-valued float -> str(int(x))."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):  # bool is an int subclass; True is not an answer
        raise DataError(f"{where}: field 'answer' is a bool ({value}); expected a string or an integer")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise DataError(f"{where}: field 'answer' has type {type(value).__name__} ({value!r}); "
                    "expected a string, an int, or a float with an integer value")


_LEVEL_PATTERN = re.compile(r"^(?:level\s*)?(\d+|\?)$", re.IGNORECASE)


def _parse_level(value, where: str) -> int | None:
    """MATH level as an int: 3, "3", "Level 3" -> 3; null, "Level ?" -> None."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        match = _LEVEL_PATTERN.match(value.strip())
        if match:
            return None if match.group(1) == "?" else int(match.group(1))
    raise DataError(f"{where}: field 'level' is {value!r}; expected an int, a \"Level N\" string, or null")


# ---------------------------------------------------------------------------------------------------
# JSONL loading


def load_jsonl(path: str | Path, levels: Iterable[int] | None = None) -> ProblemSet:
    """Load and validate a problem/answer JSONL file.

    Args:
        path: UTF-8 JSONL file, one object per line with `problem` (str) and `answer` (str, int, or
            integer-valued float). Optional `source` (str) and `level` (int, "Level N", or null);
            all other fields go to Problem.meta. Blank lines are ignored.
        levels: if given, keep only rows whose level is in it (null-level rows are dropped too).
    Returns:
        ProblemSet in file order, with counts of empty-answer rows skipped and rows level-filtered.
    Raises:
        DataError: "<file>:<line>: ..." for invalid UTF-8 or JSON, a row that is not an object, a missing
            or wrongly typed field; "<file>: ..." when the file does not exist or no problem is left.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a UTF-8 JSONL file with 'problem' and 'answer'; "
                        "or use 'arithmetic' for the built-in set)")
    keep_levels = None if levels is None else {int(level) for level in levels}
    problems, skipped_empty, skipped_level, rows = [], 0, 0, 0
    with open(path, "rb") as f:
        for line_number, raw in enumerate(f, start=1):
            where = f"{path.name}:{line_number}"
            try:
                text = raw.decode("utf-8-sig" if line_number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{where}: not valid UTF-8 ({e.reason} at byte {e.start})") from e
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: invalid JSON ({e.msg}, column {e.colno})") from e
            if not isinstance(row, dict):
                raise DataError(f"{where}: row is a JSON {type(row).__name__}, expected an object "
                                "with fields 'problem' and 'answer'")
            rows += 1
            for name in ("problem", "answer"):
                if name not in row:
                    raise DataError(f"{where}: missing field '{name}'")
            if not isinstance(row["problem"], str):
                raise DataError(f"{where}: field 'problem' has type {type(row['problem']).__name__}, "
                                "expected a string")
            answer = _parse_answer(row["answer"], where)
            level = _parse_level(row.get("level"), where)
            source = row.get("source", "")
            if not isinstance(source, str):
                raise DataError(f"{where}: field 'source' has type {type(source).__name__}, expected a string")
            if not answer.strip():
                skipped_empty += 1
                continue
            if keep_levels is not None and level not in keep_levels:
                skipped_level += 1
                continue
            meta = {k: v for k, v in row.items() if k not in ("problem", "answer", "source", "level")}
            problems.append(Problem(row["problem"], answer, source, level, meta))
    if not problems:
        raise DataError(f"{path}: no problems left ({rows} rows, {skipped_empty} with an empty answer, "
                        f"{skipped_level} outside levels {sorted(keep_levels or [])})")
    return ProblemSet(problems, str(path), skipped_empty, skipped_level)


def write_atomic(path: str | Path, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically: a sibling temporary file with a unique name (.<name>.<random>.tmp,
    so two writers never share one), then os.replace, so a reader or a crash sees the old file or a new one, never
    half of one. Creates parent directories. The one atomic-write helper of the project (metrics rewrites,
    config.json, summary.json, the checkpoint `latest` pointer, data files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:  # "x": never another writer's file
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_log(path: str | Path) -> list[dict]:
    """The rows of a log we append to (metrics.jsonl, samples.jsonl). A last line cut short by a kill mid-write
    is left out with a warning on stderr; a bad line elsewhere raises UsageError naming file and line."""
    path = Path(path)
    lines, rows = path.read_text(encoding="utf-8").splitlines(), []
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError("not a JSON object")
            rows.append(row)
        except ValueError as e:
            if number < len(lines):
                raise UsageError(f"{path}:{number}: not a log row ({e}); fix or delete that line") from None
            print(f"warning: {path}:{number}: left out a torn last line (a run killed mid-write)", file=sys.stderr,
                  flush=True)
    return rows


def write_jsonl(path: str | Path, rows: list[dict]) -> None:
    """Write rows as UTF-8 JSONL atomically (write_atomic), creating parent dirs."""
    write_atomic(path, "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows))


ZOO_PRESETS: dict[str, list[tuple[str, tuple[int, ...] | None]]] = {
    # SimpleRL-Zoo's difficulty levels (Zeng et al. 2025, section 2.2): (file under <data_dir>/train, levels)
    "zoo-easy": [("gsm8k_train.jsonl", None), ("math_12k_rebuilt.jsonl", (1,))],  # GSM8K + MATH level 1
    "zoo-medium": [("math_12k_rebuilt.jsonl", (1, 2, 3, 4))],  # MATH levels 1-4
    "zoo-hard": [("math_12k_rebuilt.jsonl", (3, 4, 5))],  # MATH levels 3-5
}


def _mix(parts: list[ProblemSet], weights: list[float] | None, name: str, seed: int) -> ProblemSet:
    """One ProblemSet from several: concatenated, or (weights) a mixture as large as all parts together in which
    part i holds round(w_i / sum(w) x total) rows, drawn by a seeded shuffle (cycled when the part is smaller)."""
    if weights is None:
        problems = [p for part in parts for p in part.problems]
    else:
        total, problems = sum(len(part.problems) for part in parts), []
        for i, (part, weight) in enumerate(zip(parts, weights)):
            order = list(range(len(part.problems)))
            random.Random(seed * 1_000_003 + i).shuffle(order)
            share = round(weight / sum(weights) * total)
            problems += [part.problems[order[k % len(order)]] for k in range(share)] if order else []
    return ProblemSet(problems, name, sum(p.skipped_empty for p in parts), sum(p.skipped_level for p in parts))


def train_data_problems(spec: str, levels: Iterable[int] | None = None,
                        data_dir: str | Path | None = None) -> list[str]:
    """What is wrong with a --train-data spec (and --levels, --data-dir), one line each, without reading a file: a
    missing file, --levels with a built-in set or out of 1..5, weights on some files only or all 0."""
    levels = list(levels or ())
    out = []
    if levels and (spec in PROCEDURAL_SETS or spec in ZOO_PRESETS):
        has = "has no levels" if spec in PROCEDURAL_SETS else "fixes its own levels"
        out.append(f"--levels {' '.join(map(str, levels))} given, but the {spec} set {has}; drop --levels or pass a "
                   "MATH JSONL file")
    if any(not 1 <= level <= 5 for level in levels):
        out.append(f"--levels {' '.join(map(str, levels))}: MATH levels are 1 to 5")
    if spec not in PROCEDURAL_SETS and spec not in ZOO_PRESETS:
        paths, weights = _file_spec(spec)
        if not paths:
            out.append("--train-data '': name a JSONL file or a built-in set")
        if weights and len(weights) != len(paths):
            out.append(f"--train-data {spec}: give a weight to every file or to none")
        if weights and sum(weights) <= 0:
            out.append(f"--train-data {spec}: the weights must not all be 0")
    for path in train_data_files(spec, data_dir):
        if not path.is_file():
            out.append(f"--train-data {spec}: no such file {path} (JSONL files with problem and answer, "
                       f"comma-separated with optional :weight, or a built-in set: "
                       f"{', '.join([*PROCEDURAL_SETS, *ZOO_PRESETS])})")
    return out


def load_train_data(spec: str, levels: Iterable[int] | None = None, seed: int = 0,
                    data_dir: str | Path | None = None) -> ProblemSet:
    """Training problems from a spec.

    Args:
        spec: a PROCEDURAL_SETS name ("arithmetic", "add_one": 10,000 problems drawn with `seed`); a ZOO_PRESETS
            name ("zoo-easy", "zoo-medium", "zoo-hard": files under <data_dir>/train); a JSONL path (load_jsonl);
            or several paths, comma-separated, each with an optional ":weight" ("a.jsonl:0.7,b.jsonl:0.3": a
            mixture, see _mix; without weights the files are concatenated).
        levels: level filter for JSONL files (see load_jsonl); must be empty for a procedural set or a preset.
        seed: seed of the procedural draw and of a weighted mixture's draw.
        data_dir: the presets' data directory (default: default_data_dir()).
    Returns:
        ProblemSet.
    Raises:
        UsageError: what train_data_problems finds (a missing file, levels with a procedural set or a preset,
            weights on some files only); DataError: a malformed file (see load_jsonl).
    """
    if problems := train_data_problems(spec, levels, data_dir):
        raise UsageError("\n".join(problems))
    if spec in PROCEDURAL_SETS:
        return ProblemSet(PROCEDURAL_SETS[spec](10_000, seed), spec, 0, 0)
    if spec in ZOO_PRESETS:
        parts = [load_jsonl(path, part_levels) for path, (_, part_levels) in zip(train_data_files(spec, data_dir),
                                                                                   ZOO_PRESETS[spec])]
        return _mix(parts, None, spec, seed)
    paths, weights = _file_spec(spec)
    if len(paths) == 1 and not weights:
        return load_jsonl(spec, levels)
    return _mix([load_jsonl(path, levels) for path in paths], weights or None, spec, seed)


def step_indices(n: int, step: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1) -> list[int]:
    """Indices into n items of the rank's share of step `step`'s batch (batch_size items over all ranks, each rank
    batch_size / world_size in a row): the items in a fresh seeded shuffle of range(n) each epoch. A pure function
    of (seed, step), so a resumed run sees the same items; train_zero's prompts and sft.py's pairs."""
    per_rank = batch_size // world_size
    orders: dict[int, list[int]] = {}  # epoch -> its shuffle (a step spans at most a few epochs)
    picked = []
    for position in range(step * batch_size + rank * per_rank, step * batch_size + (rank + 1) * per_rank):
        epoch, index = divmod(position, n)
        if epoch not in orders:
            orders[epoch] = list(range(n))
            random.Random(seed * 1_000_003 + epoch).shuffle(orders[epoch])
        picked.append(orders[epoch][index])
    return picked


def train_data_files(spec: str, data_dir: str | Path | None = None) -> list[Path]:
    """The files a --train-data spec reads (none for a procedural set), for checking they exist before a run."""
    if spec in PROCEDURAL_SETS:
        return []
    if spec in ZOO_PRESETS:
        root = Path(data_dir if data_dir is not None else default_data_dir()) / "train"
        return [root / name for name, _ in ZOO_PRESETS[spec]]
    return [Path(path) for path in _file_spec(spec)[0]]


def _file_spec(spec: str) -> tuple[list[str], list[float]]:
    """"a.jsonl:0.7,b.jsonl" -> (["a.jsonl", "b.jsonl"], [0.7]): the paths, and the weights of those that have one."""
    paths, weights = [], []
    for item in (item.strip() for item in spec.split(",") if item.strip()):
        path, sep, weight = item.rpartition(":")
        if sep and re.fullmatch(r"[0-9]*\.?[0-9]+", weight):
            paths.append(path)
            weights.append(float(weight))
        else:
            paths.append(item)
    return paths, weights


# ---------------------------------------------------------------------------------------------------
# Benchmarks


BENCHMARKS: dict[str, str] = {  # name -> file under <data_dir>/eval (see ../shared/data/README.md)
    "aime24": "aime24.jsonl",  # 30, the Qwen2.5-Math / SimpleRL file
    "amc23": "amc23.jsonl",  # 40
    "math500": "math500.jsonl",  # 500
    "minerva_math": "minerva_math.jsonl",  # 272, with answer_alternatives (understand-r1-zero's answer lists)
    "olympiadbench": "olympiadbench.jsonl",  # 675
    "gsm8k": "gsm8k.jsonl",  # 1,319
    "aime24_oat": "aime24_oat.jsonl",  # 30, Oat-Zero's AIME 2024 (understand-r1-zero evaluation_suite)
    "amc_oat": "amc_oat.jsonl",  # 83, Oat-Zero's AMC (amc23 is 40 of them)
    "gaokao2023en": "gaokao2023en.jsonl",  # 385, SimpleRL v0's
    "college_math": "college_math.jsonl",  # 2,818, SimpleRL v0's
}
_ALIASES = {"minerva": "minerva_math"}
EVAL_GROUPS = ("all", "oat", "simplerl", "zoo")  # the papers' tables (fidelity/published.py GROUPS): their benchmarks
PROCEDURAL_EVAL_SEED = 1_000_000  # the procedural sets' eval draw: not training's seed-0 (or any small-seed) draw


def default_data_dir() -> Path:
    """$ZERO_RL_DATA if set, else <repo root>/../shared/data (repo root = parent of this package)."""
    if os.environ.get("ZERO_RL_DATA"):
        return Path(os.environ["ZERO_RL_DATA"])
    return Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def load_benchmark(name: str, data_dir: str | Path | None = None, limit: int | None = None) -> ProblemSet:
    """Load an evaluation benchmark by name.

    Args:
        name: a key of BENCHMARKS (or the alias "minerva").
        data_dir: directory holding eval/<file>; default default_data_dir().
        limit: keep only the first `limit` problems (None keeps all).
    Returns:
        ProblemSet in file order.
    Raises:
        UsageError: unknown name (the message lists the known ones); the file is missing (the message says
            where and how to get it). DataError: the file is malformed (see load_jsonl).
    """
    key = _ALIASES.get(name, name)
    if key not in BENCHMARKS:
        raise UsageError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)} (alias: minerva)")
    path = Path(data_dir if data_dir is not None else default_data_dir()) / "eval" / BENCHMARKS[key]
    if not path.is_file():
        raise UsageError(f"benchmark {key!r}: {path} does not exist. Point ZERO_RL_DATA or --data-dir "
                                "at a data directory, or build one with `python -m data.prepare --out DIR`")
    problem_set = load_jsonl(path)
    if limit is not None:
        problem_set.problems = problem_set.problems[:limit]
    return problem_set


def load_eval_set(name: str, data_dir: str | None, limit: int | None) -> ProblemSet:
    """A benchmark by name (load_benchmark), or a procedural set ("arithmetic", "add_one": a held-out draw of `limit`
    problems, 500 without one, seeded apart from every training draw)."""
    if name in PROCEDURAL_SETS:
        return ProblemSet(PROCEDURAL_SETS[name](limit or 500, seed=PROCEDURAL_EVAL_SEED), name, 0, 0)
    return load_benchmark(name, data_dir, limit or None)


# ---------------------------------------------------------------------------------------------------
# Gold-answer extraction (used by prepare.py; the rule behind every `answer` derived from a solution)


BOXED = re.compile(r"\\(?:boxed|fbox)(?![a-zA-Z])")  # \boxed or \fbox, not \boxedfoo (reward.py uses it too)


def last_boxed(text: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...} in `text`, with balanced braces, unstripped.

    Follows the MATH convention (Hendrycks et al. 2021, `last_boxed_only_string`): nested braces are
    kept, so "\\boxed{\\frac{1}{2}}" -> "\\frac{1}{2}"; the brace-less form "\\boxed 2" -> "2".
    Reproduces the `answer` of ../shared/data math500 and math_12k_rebuilt for every row.

    Args:
        text: a solution (LaTeX).
    Returns:
        The content ("" for an empty box), or None when there is no \\boxed/\\fbox, its braces never
        close, or it is followed by neither "{" nor a space (e.g. "\\boxed5").
    """
    matches = list(BOXED.finditer(text))
    if not matches:
        return None
    rest = text[matches[-1].end():]
    stripped = rest.lstrip(" \t")
    if not stripped.startswith("{"):
        if len(stripped) == len(rest):  # no space after \\boxed: not a brace-less box
            return None
        return re.match(r"[^\s$]*", stripped).group(0)  # brace-less: up to whitespace or "$"
    depth = 0
    for i, char in enumerate(stripped):
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        if depth == 0:
            return stripped[1:i]
    return None
