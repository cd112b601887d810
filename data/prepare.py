"""Rebuild the normalised train/eval JSONL files from the Hugging Face hub and the papers' GitHub repositories.

Usage (needs network and `pip install datasets`):

    python -m data.prepare --out DIR        # writes DIR/eval/*.jsonl and DIR/train/*.jsonl
    python -m data.prepare --out DIR --sft  # and DIR/sft/simplerl_sft.jsonl, SimpleRL's warm-start set
    ZERO_RL_DATA=DIR python evaluate.py ... # then point the loaders at DIR (or pass --data-dir DIR)

Writes eval/{aime24,amc23,math500,minerva_math,olympiadbench,gsm8k}.jsonl (from the hub),
eval/{aime24_oat,amc_oat,gaokao2023en,college_math}.jsonl (from GitHub, UPSTREAM) and
train/{gsm8k_train,math_12k_rebuilt,math_lvl3to5_rebuilt}.jsonl with the fields and normalisations
of ../shared/data/README.md:
- gsm8k: problem = question; solution = answer; answer = text after "####", stripped ("1,234" kept).
- amc23: answer_raw = source float; answer = str(int(x)).
- olympiadbench: problem = question; answer = final_answer[0] with outer "$" stripped.
- minerva_math: answer = last \\boxed{...} of solution; answer_alternatives = the answer list of the
  same problem (whitespace-normalised text) in the understand-r1-zero evaluation suite.
- MATH: answer = last \\boxed{...}/\\fbox{...} of solution (data.last_boxed); level = int from
  "Level N" (None for "Level ?"); subject = type; MATH-500 problems removed from train + test = 12k;
  lvl3to5 = rows with level 3, 4 or 5.
- aime24_oat / amc_oat (Oat-Zero's, understand-r1-zero `datasets/evaluation_suite/{aime,amc}`, Arrow files read
  with pyarrow): answer = str(int(x)) of the source answer ("025" -> "25", 27.0 -> "27"), kept as answer_raw.
- gaokao2023en / college_math (SimpleRL v0's): problem = question; answer = the source answer without one pair of
  enclosing "$", kept as answer_raw; gaokao's `source` becomes `origin`; college_math's license column is dropped.

Every GitHub file is pinned to a commit and checked against the sha256 of UPSTREAM before anything is written; a
mismatch stops with one line naming the file. These four files come out byte-identical to ../shared/data (tested
on its copies of the upstream files).

The hub files are NOT byte-identical to ../shared/data, which was built from GitHub copies (Qwen2.5-Math /
simpleRL eval files, the raw MATH release). Known differences:
- MATH rows carry `hub_id` = "<split>/<subject>/<row index>" instead of the release's file-based
  `unique_id`, and MATH-500 is removed by problem text (the hub copy has no file names). Row order is
  split, subject, hub order, not numeric file id.
- aime24 comes from HuggingFaceH4/aime_2024, whose answers may lack the leading zeros ("25" vs "025")
  and whose problem wording may differ slightly from Qwen's copy.
- olympiadbench: the hub config may hold 674 rows, not 675; columns are copied as the hub names them.
- Row order, key order and id fields follow the hub sets, so checksums differ.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from data import last_boxed, write_jsonl


# ---------------------------------------------------------------------------------------------------
# Hub sources: the one table of dataset ids (columns checked against the hub dataset cards)


class HubSet(NamedTuple):
    dataset_id: str
    config: str | None
    split: str


MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra",
                 "number_theory", "prealgebra", "precalculus")

HUB = {
    # key               dataset id                        config                 split      columns used
    "aime24": HubSet("HuggingFaceH4/aime_2024", None, "train"),  # id problem solution answer url
    "amc23": HubSet("math-ai/amc23", None, "test"),  # problem|question, answer (float), id, url
    "math500": HubSet("HuggingFaceH4/MATH-500", None, "test"),  # problem solution answer subject level unique_id
    "minerva_math": HubSet("svc-huggingface/minerva-math", None, "test"),  # problem solution type idx
    "minerva_answers": HubSet("lkevinzc/math-eval", None, "minerva"),  # problem, answer (list of str)
    "olympiadbench": HubSet("Hothan/OlympiadBench", "OE_TO_maths_en_COMP", "train"),  # question final_answer ...
    "gsm8k": HubSet("openai/gsm8k", "main", "test"),  # question answer
    "gsm8k_train": HubSet("openai/gsm8k", "main", "train"),  # question answer
    # MATH: fetched once per (subject config in MATH_SUBJECTS) x (train, test); problem level type solution
    "math": HubSet("EleutherAI/hendrycks_math", None, "train"),
    # --sft: SimpleRL's warm-start set, QwQ-32B-Preview long CoT on MATH questions; the id its authors give
    # (hkust-nlp/simpleRL-reason issue #79). Columns not checked offline: convert_sft_pairs reads the usual names.
    "simplerl_sft": HubSet("AndrewZeng/SimpleRL-SFT", None, "train"),
}

Fetch = Callable[[str, str | None, str], list[dict]]


def fetch(dataset_id: str, config: str | None, split: str) -> list[dict]:
    """Download one split of a hub dataset as a list of row dicts. The only function touching the network.

    Raises:
        ImportError: `datasets` is not installed (the message says how to install it).
    """
    try:
        from datasets import load_dataset
    except ImportError as e:
        raise ImportError("data.prepare needs the Hugging Face `datasets` library: pip install datasets") from e
    return [dict(row) for row in load_dataset(dataset_id, config, split=split)]


# ---------------------------------------------------------------------------------------------------
# GitHub sources: the papers' own evaluation files, pinned to a commit and sha256-checked


class UpstreamFile(NamedTuple):
    repository: str  # GitHub owner/name
    commit: str
    path: str  # in the repository
    sha256: str  # of the file's bytes at that commit
    source: str  # the `source` field of the normalised rows


URZ = ("sail-sg/understand-r1-zero", "dfca49dd460ee7cc8e4a5a162c876a7fd6993b87")  # Oat-Zero
SRL = ("hkust-nlp/simpleRL-reason", "cf1c7858bfc145a27aa733e75d930d34f0d318a6")  # branch v1; v0's eval/data: same blobs
SUITE = "datasets/evaluation_suite"
SRL_EVAL = "examples/simplelr_math_eval/data"

UPSTREAM = {
    # sha256 of the upstream bytes. gaokao2023en, college_math: as ../shared/data/README.md records it for its
    # byte-identical copies eval/original/<name>_test.jsonl. The Arrow files: computed from the repository at
    # that commit (the README records only the JSONL dumps of their rows, eval/original/urz_*.jsonl).
    "aime24_oat": UpstreamFile(*URZ, f"{SUITE}/aime/data-00000-of-00001.arrow",
                               "861514ca0262d6c03d36d463ee33fe4465b0b85c0593f5df67bc75a717f50e5a", f"URZ {SUITE}/aime"),
    "amc_oat": UpstreamFile(*URZ, f"{SUITE}/amc/data-00000-of-00001.arrow",
                            "5e16d28683b95782686413eadd12560d051b2d4ac8aef456b500891ccabd5233", f"URZ {SUITE}/amc"),
    "gaokao2023en": UpstreamFile(*SRL, f"{SRL_EVAL}/gaokao2023en/test.jsonl",
                                 "654d8f49bdb86f578c171dbc0dd8f4d9f1bf3d7a7438f60359fda7d643df4951",
                                 f"SRL {SRL_EVAL}/gaokao2023en/test.jsonl"),
    "college_math": UpstreamFile(*SRL, f"{SRL_EVAL}/college_math/test.jsonl",
                                 "91131bc4a355b884fc63ef7c4f048c35adb030004a4cb07b1475698f120aa4a6",
                                 f"SRL {SRL_EVAL}/college_math/test.jsonl"),
}


class ChecksumError(ValueError):
    """A downloaded file is not the one UPSTREAM pins."""


def download(url: str) -> bytes:
    """The bytes at `url` (60 s timeout). The only function that downloads a file; tests replace it."""
    from urllib.request import urlopen

    with urlopen(url, timeout=60) as response:
        return response.read()


def check_sha256(data: bytes, expected: str, name: str) -> bytes:
    """`data`, when its sha256 is `expected`. Raises ChecksumError, one line naming `name`, otherwise."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ChecksumError(f"{name}: sha256 {actual}, expected {expected} (the file changed or the download was "
                            "damaged; nothing was written)")
    return data


def read_rows(data: bytes, path: str) -> list[dict]:
    """The rows of an upstream file: an Arrow stream for a `.arrow` path (as `datasets.save_to_disk` writes one;
    read with pyarrow, which `datasets` installs), else JSONL."""
    if path.endswith(".arrow"):
        try:
            import pyarrow
        except ImportError as e:
            raise ImportError(f"data.prepare reads {path} with pyarrow: pip install datasets") from e
        return pyarrow.ipc.open_stream(data).read_all().to_pylist()
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def upstream_rows(key: str) -> list[dict]:
    """The rows of UPSTREAM[key]: downloaded at its commit, sha256-checked (ChecksumError), parsed."""
    file = UPSTREAM[key]
    url = f"https://raw.githubusercontent.com/{file.repository}/{file.commit}/{file.path}"
    return read_rows(check_sha256(download(url), file.sha256, url), file.path)


# ---------------------------------------------------------------------------------------------------
# Conversions: hub and GitHub rows -> normalised rows (pure functions)


def normalise_text(text: str) -> str:
    """Whitespace-normalised text, the key used to match problems across sets."""
    return " ".join(text.split())


def integer_string(value) -> str:
    """str(int(x)) for an integral number, stripped text for a string; e.g. 27.0 -> "27"."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, float) and not value.is_integer():
        raise ValueError(f"expected an integer-valued answer, got {value!r}")
    return str(int(value))


def as_list(value) -> list:
    """A list field that some hub copies store as a single value."""
    return value if isinstance(value, list) else [value]


def convert_gsm8k(rows: list[dict], source: str) -> list[dict]:
    """GSM8K: answer = text after "####" of the worked solution, stripped."""
    return [{"idx": i, "problem": row["question"], "answer": row["answer"].split("####")[-1].strip(),
             "solution": row["answer"], "source": source} for i, row in enumerate(rows)]


def convert_aime24(rows: list[dict]) -> list[dict]:
    """AIME 2024: fields copied; answer as a string."""
    return [{"id": row.get("id"), "problem": row["problem"], "answer": str(row["answer"]).strip(),
             "solution": row.get("solution"), "url": row.get("url"), "source": "aime24"} for row in rows]


def convert_amc23(rows: list[dict]) -> list[dict]:
    """AMC 2023: answer = str(int(x)) of the float answer, the float kept as answer_raw."""
    return [{"id": row.get("id"), "problem": row.get("problem") or row["question"],
             "answer": integer_string(row["answer"]), "answer_raw": row["answer"], "url": row.get("url"),
             "source": "amc23"} for row in rows]


def convert_math500(rows: list[dict]) -> list[dict]:
    """MATH-500: all fields copied, source added."""
    return [{**row, "answer": str(row["answer"]), "source": "math500"} for row in rows]


def convert_minerva(rows: list[dict], answer_rows: list[dict]) -> list[dict]:
    """Minerva math: answer = last \\boxed of solution; answer_alternatives from a second set by problem text."""
    alternatives = {normalise_text(row["problem"]): [a.rstrip() for a in as_list(row["answer"])] for row in answer_rows}
    return [{"idx": row.get("idx", i), "problem": row["problem"], "answer": last_boxed(row["solution"]) or "",
             "answer_alternatives": alternatives.get(normalise_text(row["problem"]), []),
             "solution": row["solution"], "type": row.get("type"), "source": "minerva_math"}
            for i, row in enumerate(rows)]


OLYMPIAD_FIELDS = ("id", "final_answer", "is_multiple_answer", "answer_type", "unit", "subfield", "context",
                   "solution", "error")


def convert_olympiadbench(rows: list[dict]) -> list[dict]:
    """OlympiadBench (English, text-only, open-ended maths): answer = final_answer[0] without outer "$"."""
    return [{"id": row.get("id"), "problem": row["question"],
             "answer": as_list(row["final_answer"])[0].strip().strip("$"),
             **{name: row.get(name) for name in OLYMPIAD_FIELDS if name != "id"}, "source": "olympiadbench"}
            for row in rows]


def convert_oat(rows: list[dict], source: str) -> list[dict]:
    """Oat-Zero's AIME / AMC: answer = str(int(x)) of the source answer (a float, or AIME's string such as "025"),
    which stays as answer_raw. Raises ValueError for an answer that is not an integer."""
    out = []
    for i, row in enumerate(rows):
        value = float(row["answer"])
        if not value.is_integer():
            raise ValueError(f"{source} row {i}: answer {row['answer']!r} is not an integer")
        out.append({"id": i, "problem": row["problem"], "answer": str(int(value)), "answer_raw": row["answer"],
                    "difficulty": row.get("difficulty"), "source": source})
    return out


def strip_dollars(text: str) -> str:
    """An answer without one pair of enclosing "$", whitespace stripped: "$10-4 n $" -> "10-4 n"."""
    text = text.strip()
    return text[1:-1].strip() if len(text) >= 2 and text[0] == text[-1] == "$" else text


SIMPLERL_FIELDS = {  # the fields kept besides problem and answer: ours -> the source's
    "gaokao2023en": {"lang": "lang", "origin": "source"},
    "college_math": {"data_source": "data_source", "data_topic": "data_topic", "question_number": "question_number"},
}


def convert_simplerl_eval(rows: list[dict], name: str, source: str) -> list[dict]:
    """SimpleRL v0's gaokao2023en / college_math: problem = question; answer = strip_dollars(answer), the source
    answer kept as answer_raw; SIMPLERL_FIELDS[name] copied."""
    return [{"id": i, "problem": row["question"], "answer": strip_dollars(row["answer"]), "answer_raw": row["answer"],
             "source": source, **{ours: row[theirs] for ours, theirs in SIMPLERL_FIELDS[name].items()}}
            for i, row in enumerate(rows)]


def parse_level(level_raw: str | int) -> int | None:
    """"Level 3" (or 3) -> 3; "Level ?" (2 MATH geometry rows) -> None."""
    digits = str(level_raw).removeprefix("Level").strip()
    return int(digits) if digits.isdigit() else None


def convert_math(rows_by_part: dict[tuple[str, str], list[dict]], math500: list[dict]) -> list[dict]:
    """MATH train + test minus the MATH-500 problems (the PRM800K split), answers from the last \\boxed.

    Args:
        rows_by_part: (split, subject) -> hub rows with problem, level ("Level N"), type, solution.
        math500: MATH-500 rows; their problems (whitespace-normalised) are removed.
    Returns:
        Rows sorted by split (train first) then subject, each with hub_id, problem, answer, solution,
        subject, level, level_raw, source ("math_train"/"math_test"). An empty \\boxed{} gives answer "".
    """
    held_out = {normalise_text(row["problem"]) for row in math500}
    out = []
    for split in ("train", "test"):
        for subject in MATH_SUBJECTS:
            for i, row in enumerate(rows_by_part.get((split, subject), [])):
                if normalise_text(row["problem"]) in held_out:
                    continue
                out.append({"hub_id": f"{split}/{subject}/{i}", "problem": row["problem"],
                            "answer": last_boxed(row["solution"]) or "", "solution": row["solution"],
                            "subject": row["type"], "level": parse_level(row["level"]),
                            "level_raw": row["level"], "source": f"math_{split}"})
    return out


PROBLEM_COLUMNS = ("problem", "question", "query", "input", "instruction", "prompt")
SOLUTION_COLUMNS = ("solution", "response", "output", "completion", "answer")
GOLD_COLUMNS = ("gt_answer", "gold_answer", "ground_truth", "gt", "final_answer", "answer")
PROMPT_WRAPPERS = (  # SimpleRL's o1_cot prompt and the Qwen chat turns, as they may be stored with the problem
    re.compile(r"^\[Round 0\] USER:\n?(.*?)\n?Please reason step by step, and put your final answer within "
               r"\\boxed\{\}\.? ?ASSISTANT:\s*$", re.DOTALL),
    re.compile(r"^(?:<\|im_start\|>system\n.*?<\|im_end\|>\n)?<\|im_start\|>user\n(.*?)(?:\nPlease reason step by "
               r"step, and put your final answer within \\boxed\{\}\.)?<\|im_end\|>\n<\|im_start\|>assistant\n?$",
               re.DOTALL),
)


def strip_prompt(text: str) -> str:
    """The bare problem of a stored prompt: SimpleRL's o1_cot wrapper or a Qwen chat turn removed, else as is."""
    for wrapper in PROMPT_WRAPPERS:
        match = wrapper.match(text.strip())
        if match:
            return match.group(1).strip()
    return text.strip()


def _pick(row: dict, names: tuple[str, ...], exclude: str | None = None) -> str | None:
    return next((name for name in names if name != exclude and isinstance(row.get(name), str) and row[name].strip()),
                None)


def convert_sft_pairs(rows: list[dict], math_rows: list[dict], source: str) -> tuple[list[dict], dict[str, int]]:
    """(problem, solution) rows of an SFT set for sft.py, with the gold answer each solution is checked against.

    Reads, per row, either a chat list (`messages` / `conversations`: the first user turn and the last assistant
    turn, `content` or `value`) or a problem column (PROBLEM_COLUMNS, first present) and a solution column
    (SOLUTION_COLUMNS); a stored prompt wrapper is removed (strip_prompt). The gold answer is a gold column
    (GOLD_COLUMNS, when it is not the solution column), else the answer of the same MATH problem (whitespace-
    normalised text, `math_rows`), else the solution's own last \\boxed{} (then sft.py's check only drops a
    solution without a box). `answer_from` says which.

    Returns:
        (rows with problem, answer, answer_from, solution, source; counts {"kept", "no_problem_or_solution",
        "no_answer"}).
    Raises:
        ValueError: no row has a problem and a solution; the message names the columns the set has.
    """
    math_answers = {normalise_text(row["problem"]): row["answer"] for row in math_rows if row["answer"]}
    out, counts = [], {"kept": 0, "no_problem_or_solution": 0, "no_answer": 0}
    for i, row in enumerate(rows):
        chat = row.get("messages") or row.get("conversations")
        problem = solution = gold_column = None
        if isinstance(chat, list) and chat:
            turns = [(str(t.get("role") or t.get("from")), t.get("content") or t.get("value")) for t in chat]
            problem = next((text for role, text in turns if role in ("user", "human")), None)
            solution = next((text for role, text in reversed(turns) if role in ("assistant", "gpt")), None)
        else:
            problem_column = _pick(row, PROBLEM_COLUMNS)
            solution_column = _pick(row, SOLUTION_COLUMNS, exclude=problem_column)
            problem = row[problem_column] if problem_column else None
            solution = row[solution_column] if solution_column else None
            gold_column = _pick(row, GOLD_COLUMNS, exclude=solution_column)
        if not (isinstance(problem, str) and isinstance(solution, str) and problem.strip() and solution.strip()):
            counts["no_problem_or_solution"] += 1
            continue
        problem = strip_prompt(problem)
        if gold_column:
            answer, answer_from = row[gold_column].strip(), f"column {gold_column}"
        elif normalise_text(problem) in math_answers:
            answer, answer_from = math_answers[normalise_text(problem)], "math"
        else:
            answer, answer_from = (last_boxed(solution) or "").strip(), "solution"
        if not answer:
            counts["no_answer"] += 1
            continue
        out.append({"idx": i, "problem": problem, "answer": answer, "answer_from": answer_from,
                    "solution": solution.strip(), "source": source})
    counts["kept"] = len(out)
    if rows and not out:
        raise ValueError(f"{source}: no row has a problem and a solution; its columns are {sorted(rows[0])} "
                         f"(expected messages/conversations, or one of {PROBLEM_COLUMNS} and one of "
                         f"{SOLUTION_COLUMNS})")
    return out, counts


# ---------------------------------------------------------------------------------------------------
# Writing


def prepare(out: str | Path, fetch_rows: Fetch | None = None, sft: bool = False,
            fetch_upstream: Callable[[str], list[dict]] | None = None) -> dict[str, int]:
    """Download, normalise and write every eval and train file under `out`.

    Args:
        out: output directory (gets eval/ and train/).
        fetch_rows: (dataset_id, config, split) -> rows; default `fetch` (the hub). Tests pass a fake.
        sft: also write sft/simplerl_sft.jsonl, SimpleRL's QwQ-distilled warm-start set (convert_sft_pairs), for
            `sft.py --train-data DIR/sft/simplerl_sft.jsonl`.
        fetch_upstream: UPSTREAM key -> rows; default `upstream_rows` (GitHub, sha256-checked). Tests pass a fake.
    Returns:
        {relative file path: rows written}.
    Raises:
        ImportError: `datasets` (or pyarrow) missing (default fetches only). Hub and network errors propagate.
        ChecksumError: a GitHub file is not the one UPSTREAM pins (before anything is written).
        ValueError: the SFT set has no usable columns (convert_sft_pairs).
    """
    fetch_rows, fetch_upstream = fetch_rows or fetch, fetch_upstream or upstream_rows
    out = Path(out)
    files = {  # the GitHub files first: a checksum error stops before the long hub downloads
        "eval/aime24_oat.jsonl": convert_oat(fetch_upstream("aime24_oat"), UPSTREAM["aime24_oat"].source),
        "eval/amc_oat.jsonl": convert_oat(fetch_upstream("amc_oat"), UPSTREAM["amc_oat"].source),
        **{f"eval/{name}.jsonl": convert_simplerl_eval(fetch_upstream(name), name, UPSTREAM[name].source)
           for name in ("gaokao2023en", "college_math")},
    }

    def get(key: str) -> list[dict]:
        hub = HUB[key]
        return fetch_rows(hub.dataset_id, hub.config, hub.split)

    math500 = convert_math500(get("math500"))
    files |= {
        "eval/aime24.jsonl": convert_aime24(get("aime24")),
        "eval/amc23.jsonl": convert_amc23(get("amc23")),
        "eval/math500.jsonl": math500,
        "eval/minerva_math.jsonl": convert_minerva(get("minerva_math"), get("minerva_answers")),
        "eval/olympiadbench.jsonl": convert_olympiadbench(get("olympiadbench")),
        "eval/gsm8k.jsonl": convert_gsm8k(get("gsm8k"), "gsm8k"),
        "train/gsm8k_train.jsonl": convert_gsm8k(get("gsm8k_train"), "gsm8k_train"),
    }
    math_rows = {(split, subject): fetch_rows(HUB["math"].dataset_id, subject, split)
                 for split in ("train", "test") for subject in MATH_SUBJECTS}
    files["train/math_12k_rebuilt.jsonl"] = convert_math(math_rows, math500)
    files["train/math_lvl3to5_rebuilt.jsonl"] = [row for row in files["train/math_12k_rebuilt.jsonl"]
                                                 if row["level"] in (3, 4, 5)]
    if sft:
        files["sft/simplerl_sft.jsonl"], counts = convert_sft_pairs(
            get("simplerl_sft"), files["train/math_12k_rebuilt.jsonl"], "simplerl_sft")
        print(f"simplerl_sft: {counts}")
    for name, rows in files.items():
        write_jsonl(out / name, rows)
    return {name: len(rows) for name, rows in files.items()}


def main(argv: list[str] | None = None) -> None:
    """CLI: python -m data.prepare --out DIR."""
    parser = argparse.ArgumentParser(prog="python -m data.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="output directory (gets eval/ and train/)")
    parser.add_argument("--sft", action="store_true",
                        help=f"also SimpleRL's QwQ-distilled SFT set ({HUB['simplerl_sft'].dataset_id}) -> sft/")
    args = parser.parse_args(argv)
    try:
        counts = prepare(args.out, sft=args.sft)
    except ChecksumError as error:
        sys.exit(f"python -m data.prepare: error: {error}")
    for name, count in counts.items():
        print(f"{count:6d} rows  {Path(args.out) / name}")


if __name__ == "__main__":
    main()
