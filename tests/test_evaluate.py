"""evaluate.py end to end with a tiny random model on the real benchmark files, and the table format."""

import json

import pytest

from data import default_data_dir
from evaluate import EvalConfig, format_table, main

needs_data = pytest.mark.skipif(not (default_data_dir() / "eval" / "gsm8k.jsonl").exists(), reason="no ../shared/data")


def test_format_table_hand_computed():
    table = format_table({"gsm8k": (1, 4), "math500": (3, 4)})
    assert "| gsm8k | 4 | 25.0 |" in table and "| math500 | 4 | 75.0 |" in table and "| average | | 50.0 |" in table


@needs_data
def test_evaluate_writes_per_sample_jsonl_and_table(tiny_model_dir, tmp_path, capsys):
    cfg = EvalConfig(model=tiny_model_dir, benchmarks="gsm8k,aime24,arithmetic", limit=3, max_new_tokens=4,
                     out_dir=str(tmp_path))
    scores = main(cfg)
    assert {name: n for name, (_, n) in scores.items()} == {"gsm8k": 3, "aime24": 3, "arithmetic": 3}
    rows = [json.loads(line) for line in (tmp_path / "gsm8k.jsonl").read_text().splitlines()]
    gold = [json.loads(line)["answer"] for line in (default_data_dir() / "eval" / "gsm8k.jsonl").open()][:3]
    assert [r["gold"] for r in rows] == gold
    assert all(r["reason"] in ("correct", "wrong", "parse_error", "no_answer", "timeout") for r in rows)
    assert "| average |" in capsys.readouterr().out


def test_unknown_benchmark_is_rejected_before_loading_the_model(tmp_path):
    with pytest.raises(ValueError, match="gsm9k"):
        main(EvalConfig(model="does/not-exist", benchmarks="gsm9k", out_dir=str(tmp_path)))
