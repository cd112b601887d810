"""Answer pairs from the real data (../shared/data) for the grader's self-consistency test and its audit.

    self_consistency_pairs(data_dir) -> [(check, file, row, pred, gold)]

check is "boxed" (the gold written as a response "\\boxed{gold}", extracted like a model's answer; each
distinct gold once), "alternative" (each Minerva answer_alternatives entry against answer) or "final_answer"
(each OlympiadBench final_answer entry, "$"-wrapped as the source gives it, against answer).
"""

import json
from pathlib import Path

EVAL_FILES = ("aime24", "amc23", "math500", "minerva_math", "olympiadbench", "gsm8k")
TRAIN_FILES = ("gsm8k_train", "math_12k_rebuilt", "math_lvl3to5_rebuilt")


def read_rows(data_dir: Path) -> list[tuple[str, int, dict]]:
    """(file stem, 0-based row, row dict) for every eval and train file, in file order."""
    rows = []
    for folder, stems in (("eval", EVAL_FILES), ("train", TRAIN_FILES)):
        for stem in stems:
            with open(Path(data_dir) / folder / f"{stem}.jsonl", encoding="utf-8") as f:
                rows += [(stem, i, json.loads(line)) for i, line in enumerate(f)]
    return rows


def gold_of(row: dict) -> str:
    """The row's answer as a string (AMC's raw answers are integral floats; data.load_jsonl does the same)."""
    answer = row["answer"]
    return answer if isinstance(answer, str) else str(int(answer))


def self_consistency_pairs(data_dir: Path) -> list[tuple[str, str, int, str, str]]:
    from reward import extract_answer

    pairs, seen = [], set()
    for stem, i, row in read_rows(data_dir):
        gold = gold_of(row)
        if not gold.strip():
            continue  # MATH has 2 empty answers; data.load_jsonl skips them
        if gold not in seen:
            seen.add(gold)
            response = f"So the answer is $\\boxed{{{gold}}}$."
            pairs.append(("boxed", stem, i, extract_answer(response, "qwen_math"), gold))
        pairs += [("alternative", stem, i, alt, gold) for alt in row.get("answer_alternatives") or []]
        pairs += [("final_answer", stem, i, final, gold) for final in row.get("final_answer") or []]
    return pairs
