"""The papers' result tables and ours beside them (format_table): the columns each prints (GROUPS, `evaluate.py --benchmarks oat|simplerl|zoo|all`) and
their published rows (PUBLISHED, `evaluate.py --compare`), with the hub ids `--compare auto` knows (HUB_IDS).

Sources (docs/papers.md §5, §7, §8; every cell copied as published, in %):
- oat: sail-sg/understand-r1-zero@dfca49dd `evaluate_model.py`: tasks aime, amc, math, minerva, olympiad_bench
  (the order of `datasets/evaluation_suite/dataset_dict.json`), greedy, 3,000 tokens, Minerva right when it
  matches any entry of its answer list; its aime and amc are our aime24_oat and amc_oat (83 problems); its math and
  olympiad_bench hold the problems and answers of our math500 and olympiadbench, in the same order (checked, 500 /
  675). Rows: the Dr. GRPO paper's table (Oat-Zero-7B, Oat-Zero-1.5B).
- simplerl: hkust-nlp/simpleRL-reason branch v0 (2702a87) README table: AIME 2024, MATH 500, AMC, Minerva Math,
  OlympiadBench, Avg. (its `eval/sh/eval.sh` also runs gsm8k, gaokao2023en and college_math, which the table
  does not report). Rows: Qwen2.5-Math-7B base, + 8K MATH SFT, SimpleRL-Zero, SimpleRL (long-CoT SFT, then RL).
- zoo: the same repository, branch v1 (cf1c785) README tables: GSM8K, MATH 500, Minerva Math, Olympiad Bench,
  AIME24 (Pass@1), AIME24 (Avg@32), AMC23, Avg. Its note: baselines greedy, the zero-RL models temperature 1.0 /
  top-p 0.95; avg@32 is 32 samples "with the same settings" (temperature 1.0 / top-p 0.95 here); "Average scores
  are based on AIME (Avg@1) and other benchmarks", so the average leaves out avg@32. Rows: 10 bases and their
  SimpleRL-Zoo models.
- HUB_IDS: the model ids the v0 README (news) and the v1 README ("Model Checkpoints") link to on the hub, plus
  sail's Oat-Zero ids and Qwen/Qwen2.5-Math-7B. The Zoo's other bases are not mapped: its README names no hub id
  for them (name their rows: --compare zoo-base-qwen2.5-7b).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from data import UsageError


@dataclass(frozen=True)
class Column:
    """One column of a results table: a benchmark, sampled with the run's flags or with its own settings."""

    name: str  # header, summary.json key and samples file <name>.jsonl
    benchmark: str  # data.BENCHMARKS key (or a procedural set)
    n: int | None = None  # samples per problem (None: --n)
    temperature: float | None = None  # None: --temperature
    top_p: float | None = None  # None: --top-p
    gold: str | None = None  # Minerva's gold rule, "answer" or "alternatives" (None: --minerva-gold)
    in_average: bool = True  # counted in the table's average


def benchmark_columns(spec: str) -> list[Column]:
    """--benchmarks as table columns: each comma-separated item a group of GROUPS (its columns in the
    paper's order) or a benchmark (one column sampled with the flags); a column name given twice is kept once."""
    columns: dict[str, Column] = {}
    for item in (item.strip() for item in spec.split(",") if item.strip()):
        for column in GROUPS.get(item, (Column(item, item),)):
            columns.setdefault(column.name, column)
    return list(columns.values())



def plain(*names: str) -> tuple[Column, ...]:
    """Columns that sample with the run's flags, one per benchmark name."""
    return tuple(Column(name, name) for name in names)


GROUPS: dict[str, tuple[Column, ...]] = {  # --benchmarks <group>: the columns in the paper's order
    "all": plain("aime24", "amc23", "math500", "minerva_math", "olympiadbench", "gsm8k"),
    "oat": (*plain("aime24_oat", "amc_oat", "math500"), Column("minerva_math", "minerva_math", gold="alternatives"),
            *plain("olympiadbench")),
    "simplerl": plain("aime24", "math500", "amc23", "minerva_math", "olympiadbench"),
    "zoo": (*plain("gsm8k", "math500", "minerva_math", "olympiadbench", "aime24"),
            Column("aime24_avg32", "aime24", n=32, temperature=1.0, top_p=0.95, in_average=False), *plain("amc23")),
}
OUTSIDE_AVERAGE = {column.name for group in GROUPS.values() for column in group if not column.in_average}
SHOWN_UNDER = {"aime24_oat": "aime24", "amc_oat": "amc23"}  # a score on Oat's file, in a table without that column


class Published(NamedTuple):
    label: str  # the table row's name
    scores: dict[str, float]  # column name -> % (pass@1, or avg@32 for aime24_avg32)
    average: float  # the paper's, over its columns other than OUTSIDE_AVERAGE
    caveat: str = ""  # printed below the table


OAT = ("its AIME and AMC are Oat's files aime24_oat and amc_oat (83 problems; amc23 has 40 of them); "
       "its Minerva accepts any of answer_alternatives")
PUBLISHED: dict[str, Published] = {
    # docs/papers.md §5 (Dr. GRPO paper; SimpleRL v0 README), greedy, qwen_math template
    "qwen2.5-math-7b": Published("Qwen2.5-Math-7B base (published)", {
        "aime24": 16.7, "amc23": 52.5, "math500": 52.4, "minerva_math": 12.9, "olympiadbench": 16.4}, 30.2),
    "simplerl-zero-7b": Published("SimpleRL-Zero-7B (published)", {"aime24": 33.3, "amc23": 62.5, "math500": 77.2,
                                                                   "minerva_math": 33.5, "olympiadbench": 37.6}, 48.8),
    "oat-zero-7b": Published("Oat-Zero-7B (published)", {"aime24_oat": 43.3, "amc_oat": 62.7, "math500": 80.0,
                                                         "minerva_math": 30.1, "olympiadbench": 41.0}, 51.4, OAT),
    "oat-zero-1.5b": Published("Oat-Zero-1.5B (published)", {"aime24_oat": 20.0, "amc_oat": 53.0, "math500": 74.2,
                                                             "minerva_math": 25.7, "olympiadbench": 37.6}, 42.1, OAT),
    # docs/papers.md §7: SimpleRL v0's README table, its other two rows
    "qwen2.5-math-7b-sft": Published("Qwen2.5-Math-7B + 8K MATH SFT (published)", {
        "aime24": 3.3, "math500": 54.6, "amc23": 22.5, "minerva_math": 32.7, "olympiadbench": 19.6}, 26.5),
    "simplerl-7b": Published("Qwen2.5-Math-7B-SimpleRL (published)", {
        "aime24": 26.7, "math500": 82.4, "amc23": 62.5, "minerva_math": 39.7, "olympiadbench": 43.3}, 50.9,
        "long-CoT SFT warm start, then RL (not zero-RL)"),
}

ZOO_COLUMNS = ("gsm8k", "math500", "minerva_math", "olympiadbench", "aime24", "aime24_avg32", "amc23")
ZOO = {  # docs/papers.md §7: slug -> (name, the SimpleRL-Zoo model's hub id, base row, + SimpleRL-Zoo row), each
    # row the ZOO_COLUMNS cells and the average
    "mistral-7b": ("Mistral-7B-v0.1", "hkust-nlp/Mistral-7B-v0.1-SimpleRL-Zoo",
        (21.2, 4.2, 4.0, 2.4, 0.0, 0.0, 0.0, 5.3), (75.0, 15.8, 6.6, 4.1, 0.0, 0.2, 10.0, 18.6)),
    "llama-3.1-8b": ("Llama-3.1-8B", "hkust-nlp/Llama-3.1-8B-SimpleRL-Zoo",
        (39.7, 13.6, 4.8, 3.1, 0.0, 0.2, 2.5, 10.6), (79.2, 23.0, 9.6, 5.3, 0.0, 0.2, 15.0, 22.0)),
    "deepseek-math-7b": ("DeepSeek-Math-7B", "hkust-nlp/DeepSeek-Math-7B-SimpleRL-Zoo",
        (28.4, 19.4, 5.5, 4.7, 0.0, 0.0, 10.0, 11.3), (78.5, 39.6, 21.0, 12.6, 3.3, 0.6, 20.0, 29.2)),
    "mistral-small-24b": ("Mistral-Small-24B", "hkust-nlp/Mistral-Small-24B-SimpleRL-Zoo",
        (78.6, 43.6, 10.7, 11.6, 3.3, 0.5, 17.5, 27.6), (92.0, 70.6, 36.8, 36.6, 16.7, 13.1, 45.0, 49.6)),
    "qwen2.5-0.5b": ("Qwen2.5-0.5B", "hkust-nlp/Qwen-2.5-0.5B-SimpleRL-Zoo",
        (36.7, 15.8, 4.8, 2.8, 0.0, 0.3, 12.5, 12.1), (49.5, 34.4, 10.3, 8.9, 0.0, 0.7, 22.5, 20.9)),
    "qwen2.5-1.5b": ("Qwen2.5-1.5B", "hkust-nlp/Qwen-2.5-1.5B-SimpleRL-Zoo",
        (55.7, 29.6, 6.6, 6.5, 0.0, 0.1, 12.5, 18.5), (74.4, 59.0, 20.2, 21.0, 6.7, 4.2, 35.0, 36.1)),
    "qwen2.5-7b": ("Qwen2.5-7B", "hkust-nlp/Qwen-2.5-7B-SimpleRL-Zoo",
        (88.2, 64.6, 25.7, 30.1, 3.3, 0.3, 30.0, 40.3), (91.7, 78.2, 38.6, 40.4, 20.0, 15.6, 62.5, 55.2)),
    "qwen2.5-math-7b": ("Qwen2.5-Math-7B", "hkust-nlp/Qwen-2.5-Math-7B-SimpleRL-Zoo",
        (65.5, 63.6, 12.5, 25.8, 13.3, 8.6, 42.5, 37.2), (90.2, 80.2, 37.5, 39.0, 40.0, 24.0, 70.0, 59.5)),
    "qwen2.5-14b": ("Qwen2.5-14B", "hkust-nlp/Qwen-2.5-14B-SimpleRL-Zoo",
        (91.6, 65.4, 24.3, 33.5, 6.7, 3.4, 37.5, 43.2), (94.4, 80.2, 40.4, 44.9, 23.3, 14.2, 57.6, 56.8)),
    "qwen2.5-32b": ("Qwen2.5-32B", "hkust-nlp/Qwen-2.5-32B-SimpleRL-Zoo",
        (92.9, 68.6, 27.9, 31.1, 10.0, 4.5, 45.0, 45.9), (95.9, 82.4, 42.6, 46.4, 36.7, 27.2, 67.5, 61.9)),
}
ZOO_BASE = "the Zoo's table: greedy; aime24_avg32 is 32 samples at temperature 1.0 / top-p 0.95"
ZOO_RL = "the Zoo's table: one sample at temperature 1.0 / top-p 0.95, up to 16k tokens; aime24_avg32 is 32 of them"


def zoo_rows() -> dict[str, Published]:
    """ZOO as PUBLISHED rows: zoo-base-<slug> (the base model, as the Zoo's table reports it) and
    simplerl-zoo-<slug> (after SimpleRL-Zoo)."""
    rows = {}
    for slug, (name, _, base, trained) in ZOO.items():
        odd = "; its AMC23 57.6 is no multiple of 2.5 (40 problems), as published" if slug == "qwen2.5-14b" else ""
        rows[f"zoo-base-{slug}"] = Published(f"{name} base, Zoo (published)", dict(zip(ZOO_COLUMNS, base)), base[-1],
                                             ZOO_BASE)
        rows[f"simplerl-zoo-{slug}"] = Published(f"{name} + SimpleRL-Zoo (published)", dict(zip(ZOO_COLUMNS, trained)),
                                                 trained[-1], ZOO_RL + odd)
    return rows


PUBLISHED.update(zoo_rows())

HUB_IDS: dict[str, tuple[str, ...]] = {  # lower-cased hub id -> its PUBLISHED rows (--compare auto prints them all)
    "qwen/qwen2.5-math-7b": ("qwen2.5-math-7b", "zoo-base-qwen2.5-math-7b"),
    "hkust-nlp/qwen-2.5-math-7b-simplerl-zero": ("simplerl-zero-7b",),
    "hkust-nlp/qwen-2.5-math-7b-simplerl": ("simplerl-7b",),
    "sail/qwen2.5-math-7b-oat-zero": ("oat-zero-7b",),
    "sail/qwen2.5-math-1.5b-oat-zero": ("oat-zero-1.5b",),
    **{hub_id.lower(): (f"simplerl-zoo-{slug}",) for slug, (_, hub_id, _, _) in ZOO.items()},
}


def published_score(scores: dict[str, float], column: str, columns: list[str]) -> float | None:
    """A published row's cell under `column` of a table with `columns`: its score for that column, else its score on
    Oat's file of the same contest when the table has no column for that file (SHOWN_UNDER), else None."""
    if column in scores:
        return scores[column]
    return next((score for key, score in scores.items() if SHOWN_UNDER.get(key) == column and key not in columns),
                None)


# ---------------------------------------------------------------------------------------------
# Our table, with the published rows beside it


def published_rows(spec: str, model: str) -> list[str]:
    """--compare as PUBLISHED keys: names, or auto (every row of --model's hub id in HUB_IDS). Raises UsageError."""
    names = [s.strip().lower() for s in spec.split(",") if s.strip()]
    if names == ["auto"]:
        keys = HUB_IDS.get(model.strip("/").lower())
        if keys is None:
            raise UsageError(f"--compare auto: no published row for --model {model!r}; name one of {', '.join(PUBLISHED)}")
        return list(keys)
    unknown = [s for s in names if s not in PUBLISHED]
    if unknown:
        raise UsageError(f"--compare {', '.join(unknown)}: unknown; use auto or any of {', '.join(PUBLISHED)}")
    return names


def _cell(value: float | None, stderr: float | None = None) -> str:
    if value is None:
        return ""
    return f"{100 * value:.1f}" + (f" ± {100 * stderr:.1f}" if stderr is not None else "")


def format_table(model: str, summary: dict[str, dict], compare: list[str] = (), outside_average: list[str] = ()) -> str:
    """Markdown: the columns and their average (over the columns not in `outside_average`, as the paper's); rows:
    each column's avg@n (± its standard error when n > 1; pass@1 when greedy), pass@k for k > 1 where a column has
    it, then each published row named in `compare` (the paper's average; the notes and caveats below)."""
    names = list(summary)
    averaged = [b for b in names if b not in outside_average]
    lines = [f"| model | metric | {' | '.join(names)} | average |", "| --- " * (len(names) + 3) + "|"]
    if names:
        label = " / ".join(dict.fromkeys(f"avg@{s['n']} ± stderr" if s["n"] > 1 else "pass@1"
                                         for s in summary.values()))
        ks = sorted({key for s in summary.values() for key in s if key.startswith("pass@") and key != "pass@1"},
                    key=lambda key: int(key[5:]))
        for i, (metric, key) in enumerate([(label, None)] + [(k, k) for k in ks]):
            values = {b: summary[b].get(key or f"avg@{summary[b]['n']}") for b in names}
            cells = [_cell(values[b], summary[b]["stderr"] if key is None and summary[b]["n"] > 1 else None)
                     for b in names]
            complete = all(values[b] is not None for b in averaged)
            average = _cell(_mean([values[b] for b in averaged]) if complete else None)
            lines.append(f"| {model if i == 0 else ''} | {metric} | {' | '.join(cells)} | {average} |")
    notes = [f"average: over the columns but {', '.join(b for b in names if b not in averaged)}, as the paper's"
             ] if len(averaged) < len(names) else []
    for name in compare:
        label, scores, average, caveat = PUBLISHED[name]
        cells = [published_score(scores, b, names) for b in names]
        counted = "zero one two three four five six seven eight".split()[len(scores.keys() - OUTSIDE_AVERAGE)]
        lines.append(f"| {label} | pass@1 | {' | '.join('' if c is None else f'{c:.1f}' for c in cells)} | "
                     f"{average:.1f} (its {counted}) |")
        if caveat:
            notes.append(f"{label}: {caveat}.")
    return "\n".join(lines + ([""] + notes if notes else []))


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
