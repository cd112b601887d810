"""Self-consistency of the grader on the real data: every gold answer must grade equal to itself.

Checks (tests/grader/real_data.py): each distinct gold of ../shared/data/{eval,train}/*.jsonl written as a
response "\\boxed{gold}" and extracted like a model answer; each Minerva answer_alternatives entry; each
OlympiadBench final_answer entry. What does not grade "correct" must be listed, with a reason, in
tests/grader/known_failures.py; a listed pair that now grades "correct" fails too (remove it from the list).
"""

from collections import Counter

import pytest
from known_failures import SELF_CONSISTENCY_EXPECTED
from real_data import self_consistency_pairs

from data import default_data_dir
from grader_pool import Grader

DATA_DIR = default_data_dir()
needs_data = pytest.mark.skipif(not (DATA_DIR / "eval" / "minerva_math.jsonl").exists(), reason="no ../shared/data")


@needs_data
def test_gold_answers_grade_equal_to_themselves():
    pairs = self_consistency_pairs(DATA_DIR)
    with Grader(timeout=5.0) as grader:
        verdicts = grader.grade_many([(pred, gold) for _, _, _, pred, gold in pairs])
    counts = Counter((check, verdict) for (check, *_), verdict in zip(pairs, verdicts))
    print("self-consistency:", dict(sorted(counts.items())))
    failures = {(check, stem, row, pred, verdict)
                for (check, stem, row, pred, _), verdict in zip(pairs, verdicts) if verdict != "correct"}
    expected = {row[:5] for row in SELF_CONSISTENCY_EXPECTED}
    assert not failures - expected, f"new failures (fix the grader, or list them with a reason): {failures - expected}"
    assert not expected - failures, f"listed failures that no longer fail (remove them): {expected - failures}"
    assert counts[("boxed", "correct")] > 5000 and counts[("final_answer", "correct")] == 675  # the data was read
    assert all(reason for *_, reason in SELF_CONSISTENCY_EXPECTED)
