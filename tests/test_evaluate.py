"""evaluate.py: the estimators against hand-computed values, the table, the flags, the engine seam, and end to end
with a tiny random model on the real benchmark files (one process and 2 torchrun ranks); the papers' tables
(fidelity/published.py: groups of columns, their layout and average, the published rows)."""

import json
import math
import sys
from subprocess import run

import pytest

from data import Problem, UsageError, default_data_dir, read_log
from evaluate import (EvalHFEngine, EvalConfig, EvalSettings, benchmark_columns, checkpoint_template, evaluate_problems,
                      main, pass_at_k, pass_ks, summarize)
from grader_pool import Grader
from fidelity.published import GROUPS, HUB_IDS, OUTSIDE_AVERAGE, PUBLISHED, format_table, published_rows
from rollout import HFEngine, Sample, SamplingParams

needs_data = pytest.mark.skipif(not (default_data_dir() / "eval" / "gsm8k.jsonl").exists(), reason="no ../shared/data")


def record(index, sample, reason, length=10, response="", finish_reason="stop"):
    return {"index": index, "sample": sample, "reason": reason, "length": length, "response": response,
            "answer": None if reason == "no_answer" else "1", "finish_reason": finish_reason}


def test_pass_at_k_hand_computed():
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # 1 - C(3,3)/C(5,3)
    assert pass_at_k(16, 3, 4) == pytest.approx(1 - math.comb(13, 4) / math.comb(16, 4))
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 2, 3) == 1.0  # n - c < k: some draw of k holds a correct one
    assert pass_at_k(8, 3, 1) == pytest.approx(3 / 8)  # pass@1 is the sample accuracy
    with pytest.raises(ValueError, match="k <= n"):
        pass_at_k(2, 1, 3)


def test_summarize_hand_computed():
    records = [record(0, 0, "correct", 4, "Wait, 2."), record(0, 1, "wrong", 8, "However it is"),
               record(1, 0, "no_answer", 20, "await", "length"), record(1, 1, "wrong", 12),
               record(2, 0, "correct", 6), record(2, 1, "correct", 2, "Let me verify. Wait.")]
    s = summarize(records, [1, 2])
    assert (s["problems"], s["samples"], s["n"]) == (3, 6, 2)
    assert s["avg@2"] == pytest.approx(0.5)  # per-problem means 0.5, 0, 1
    assert s["stderr"] == pytest.approx(math.sqrt(((0.0) ** 2 + 0.5**2 + 0.5**2) / 2) / math.sqrt(3))
    assert s["pass@1"] == pytest.approx(0.5) and s["pass@2"] == pytest.approx(2 / 3)
    assert s["answer_rate"] == pytest.approx(5 / 6) and s["truncation_rate"] == pytest.approx(1 / 6)
    assert s["length"] == pytest.approx(52 / 6) and s["length_correct"] == 4 and s["length_wrong"] == pytest.approx(40 / 3)
    assert s["verdicts"] == {"correct": 3, "wrong": 2, "no_answer": 1}
    assert s["reflection"] == pytest.approx(3 / 6)  # "await" is not "wait"
    assert s["reflection_words"]["wait"] == pytest.approx(2 / 6) and s["reflection_words"]["verify"] == pytest.approx(1 / 6)
    assert s["reflection_words"]["however"] == pytest.approx(1 / 6) and s["reflection_words"]["recheck"] == 0
    assert summarize(records[:2], [1])["stderr"] is None  # one problem
    with pytest.raises(ValueError, match="same number of samples"):
        summarize(records[:3], [1])


def test_format_table_puts_benchmarks_in_columns_with_the_published_row():
    summary = {"math500": {"n": 4, "avg@4": 0.5, "stderr": 0.1, "pass@1": 0.5, "pass@4": 0.75},
               "aime24": {"n": 4, "avg@4": 0.25, "stderr": 0.05, "pass@1": 0.25, "pass@4": 0.5}}
    table = format_table("m", summary, ["oat-zero-7b"]).splitlines()
    assert table[0] == "| model | metric | math500 | aime24 | average |"
    assert table[2] == "| m | avg@4 ± stderr | 50.0 ± 10.0 | 25.0 ± 5.0 | 37.5 |"
    assert table[3] == "|  | pass@4 | 75.0 | 50.0 | 62.5 |"
    assert table[4] == "| Oat-Zero-7B (published) | pass@1 | 80.0 | 43.3 | 51.4 (its five) |"
    assert "83 problems" in table[-1]
    greedy = format_table("m", {"gsm8k": {"n": 1, "avg@1": 0.125, "stderr": 0.02, "pass@1": 0.125}})
    assert "| m | pass@1 | 12.5 | 12.5 |" in greedy


def test_flags_pass_k_compare_and_checkpoint_template(tmp_path):
    assert pass_ks("", 1) == [1] and pass_ks("", 4) == [1, 2, 4] and pass_ks("", 6) == [1, 2, 4, 6]
    assert pass_ks("16,1,4", 16) == [1, 4, 16]
    with pytest.raises(UsageError, match="1..--n"):
        pass_ks("8", 4)
    assert published_rows("auto", "sail/Qwen2.5-Math-7B-Oat-Zero") == ["oat-zero-7b"]
    assert published_rows("qwen2.5-math-7b, simplerl-zero-7b", "x") == ["qwen2.5-math-7b", "simplerl-zero-7b"]
    with pytest.raises(UsageError, match="no published row"):
        published_rows("auto", "smollm2-135m")
    with pytest.raises(UsageError, match="unknown"):
        published_rows("gpt-5", "x")
    assert checkpoint_template(str(tmp_path)) is None
    (tmp_path / "trainer_state.json").write_text(json.dumps({"step": 3, "config": {"template": "r1"}}))
    assert checkpoint_template(str(tmp_path)) == "r1"


class FixedEngine:
    """Answers every prompt with the same responses (one per sample)."""

    def __init__(self, texts):
        self.texts = texts

    def generate(self, prompts, params):
        return [[Sample([1], [5, 6], t, "stop") for t in self.texts[: params.n]] for _ in prompts]


def test_any_gold_of_a_list_counts_as_correct():
    problems = [Problem("q1", "8.7 \\times 10^{8}"), Problem("q2", "3")]
    engine = FixedEngine(["The answer is \\boxed{8.7e8}", "\\boxed{870000000}"])
    params = SamplingParams(n=2, temperature=1.0, max_new_tokens=8)
    with Grader(workers=1) as grader:
        only_answer = evaluate_problems(engine, problems, "qwen_math", grader, params)
        any_of = evaluate_problems(engine, problems, "qwen_math", grader, params,
                                   golds=[["8.7 \\times 10^{8}", "8.7e8"], ["3"]])
    assert [(r["index"], r["sample"]) for r in any_of] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert [r["reason"] for r in any_of][:2] == ["correct", "correct"]
    assert [r["reason"] for r in any_of][2:] == ["wrong", "wrong"]
    assert only_answer[1]["reason"] == "correct"  # 870000000 = 8.7 x 10^8 either way
    assert all(r["gold"] == "8.7 \\times 10^{8}" for r in any_of[:2])


def test_the_static_cache_needs_the_generate_path():
    assert any("--hf-static-cache" in p for p in EvalSettings(hf_batching="continuous", hf_static_cache=True).problems())
    assert not any("--hf-static-cache" in p for p in EvalSettings(hf_static_cache=True).problems())


def test_training_eval_grades_a_set_named_in_alternatives_against_any_alternative():
    """Oat's Minerva rule in the in-training eval (train_zero --eval-data oat): any of answer_alternatives counts."""
    import torch.distributed as dist

    from data import ProblemSet
    from distributed import setup_distributed
    from train_zero import eval_metrics

    problems = [Problem("q", "1", meta={"answer_alternatives": ["1", "2"]}), Problem("r", "3")]
    sets = {"minerva_math": ProblemSet(problems, "x", 0, 0)}
    engine, d = FixedEngine(["so \\boxed{2}"]), setup_distributed()
    try:
        with Grader(workers=1) as grader:
            plain = eval_metrics(engine, sets, "qwen_math", grader, 8, d)
            oat = eval_metrics(engine, sets, "qwen_math", grader, 8, d, alternatives=frozenset({"minerva_math"}))
    finally:
        dist.destroy_process_group()
    assert (plain["eval/minerva_math"], oat["eval/minerva_math"]) == (0.0, 0.5)


def test_continuous_and_static_batching_give_generates_greedy_answers(smollm_dir):
    """The engine seam: transformers' continuous batching, length-sorted generate (with and without the static
    cache) and HFEngine's generate decode the same greedy tokens, each answer in its prompt's place."""
    from model import load_model
    from reward import apply_template

    model, tokenizer = load_model(smollm_dir)
    prompts = [apply_template("chat_oneshot", f"What is {a} + 1?") for a in (12, 57)] + \
              [apply_template("qwen_math", "What is the sum of the first five odd numbers?")]
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=24)
    batched = HFEngine(model, tokenizer).generate(prompts, params)
    for continuous, static_cache in ((True, False), (False, False), (False, True)):
        groups = EvalHFEngine(model, tokenizer, batch_size=2, continuous=continuous,
                              static_cache=static_cache).generate(prompts, params)
        assert [g[0].response_ids for g in groups] == [g[0].response_ids for g in batched]
        assert [g[0].finish_reason for g in groups] == [g[0].finish_reason for g in batched]


@needs_data
def test_evaluate_writes_samples_summary_and_table(tiny_model_dir, tmp_path, capsys):
    cfg = EvalConfig(model=tiny_model_dir, benchmarks="gsm8k,aime24,arithmetic", limit=3, max_new_tokens=4, n=2,
                     temperature=1.0, top_p=0.95, engine="hf", hf_batching="continuous", out_dir=str(tmp_path))
    summary = main(cfg)
    assert {name: s["problems"] for name, s in summary.items() if name != "average"} == \
        {"gsm8k": 3, "aime24": 3, "arithmetic": 3}
    rows = read_log(tmp_path / "gsm8k.jsonl")
    gold = [json.loads(line)["answer"] for line in (default_data_dir() / "eval" / "gsm8k.jsonl").open()][:3]
    assert [(r["index"], r["sample"]) for r in rows] == [(i, j) for i in range(3) for j in range(2)]
    assert [r["gold"] for r in rows[::2]] == gold
    assert all(r["reason"] in ("correct", "wrong", "parse_error", "no_answer", "timeout") for r in rows)
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["template"] == "qwen_math" and written["config"]["n"] == 2
    for name in ("gsm8k", "aime24", "arithmetic"):  # the summary is recomputed from the per-sample rows
        again = summarize(read_log(tmp_path / f"{name}.jsonl"), [1, 2])
        assert {k: written["benchmarks"][name][k] for k in again} == again
    assert "| model | metric | gsm8k | aime24 | arithmetic | average |" in capsys.readouterr().out


@needs_data
def test_two_ranks_split_the_problems_and_write_what_one_process_writes(tiny_model_dir, tmp_path):
    flags = ["--model", tiny_model_dir, "--benchmarks", "gsm8k", "--limit", "5", "--max-new-tokens", "4",
             "--engine", "hf", "--grader-workers", "1"]
    one = run([sys.executable, "evaluate.py", *flags, "--out-dir", str(tmp_path / "one")], capture_output=True, text=True)
    two = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "evaluate.py",
               *flags, "--out-dir", str(tmp_path / "two")], capture_output=True, text=True)
    assert one.returncode == 0 and two.returncode == 0, (one.stderr[-2000:], two.stderr[-2000:])
    assert read_log(tmp_path / "two" / "gsm8k.jsonl") == read_log(tmp_path / "one" / "gsm8k.jsonl")
    assert [r["index"] for r in read_log(tmp_path / "two" / "gsm8k.jsonl")] == [0, 1, 2, 3, 4]


@needs_data
def test_stop_token_ids_are_checked_and_reach_the_engine(tiny_model_dir, tmp_path, monkeypatch):
    from rollout import HFEngine

    with pytest.raises(UsageError, match="--stop-token-ids -1: not a token id"):
        main(EvalConfig(model=tiny_model_dir, benchmarks="gsm8k", limit=2, max_new_tokens=8, engine="hf",
                        stop_token_ids=(-1,), out_dir=str(tmp_path / "bad")))
    seen, generate = [], HFEngine.generate
    monkeypatch.setattr(HFEngine, "generate", lambda self, prompts, params: seen.append(params.stop_token_ids)
                        or generate(self, prompts, params))
    main(EvalConfig(model=tiny_model_dir, benchmarks="gsm8k", limit=2, max_new_tokens=8, engine="hf",
                    stop_token_ids=(5,), out_dir=str(tmp_path / "good")))
    assert seen and all(ids == [5] for ids in seen)


@needs_data
def test_a_prompt_longer_than_the_context_is_refused_before_generation(tiny_model_dir, tmp_path):
    with pytest.raises(UsageError, match="gsm8k problem 0: .* more than the model's context of 512"):
        main(EvalConfig(model=tiny_model_dir, benchmarks="gsm8k", limit=2, max_new_tokens=500, engine="hf",
                        out_dir=str(tmp_path)))


def test_bad_flags_are_refused_before_loading_the_model(tmp_path):
    with pytest.raises(UsageError, match="gsm9k"):
        main(EvalConfig(model="does/not-exist", benchmarks="gsm9k", out_dir=str(tmp_path)))
    with pytest.raises(UsageError, match="--n 4"):
        main(EvalConfig(model="does/not-exist", benchmarks="gsm8k", n=4, out_dir=str(tmp_path)))
    with pytest.raises(UsageError, match="--pass-k"):
        main(EvalConfig(model="does/not-exist", benchmarks="gsm8k", n=2, temperature=1.0, pass_k="4"))


# ---------------------------------------------------------------------------------------------------
# the papers' tables: groups of columns, their layout and average, the published rows

ZOO = ["gsm8k", "math500", "minerva_math", "olympiadbench", "aime24", "aime24_avg32", "amc23"]


def column_names(spec):
    return [column.name for column in benchmark_columns(spec)]


def test_each_group_resolves_to_its_papers_columns_in_order():
    assert column_names("oat") == ["aime24_oat", "amc_oat", "math500", "minerva_math", "olympiadbench"]
    assert column_names("simplerl") == ["aime24", "math500", "amc23", "minerva_math", "olympiadbench"]
    assert column_names("zoo") == ZOO
    assert column_names("all") == ["aime24", "amc23", "math500", "minerva_math", "olympiadbench", "gsm8k"]
    assert column_names("zoo, gsm8k,college_math") == ZOO + ["college_math"]  # a column named twice is kept once
    zoo = benchmark_columns("zoo")
    assert (zoo[5].benchmark, zoo[5].n, zoo[5].temperature, zoo[5].top_p, zoo[5].in_average) == \
        ("aime24", 32, 1.0, 0.95, False)
    assert all(c.n is c.temperature is c.top_p is None and c.in_average for c in zoo if c.name != "aime24_avg32")
    assert benchmark_columns("oat")[3].gold == "alternatives" and benchmark_columns("minerva_math")[0].gold is None
    assert EvalSettings(benchmarks="oat,simplerl,zoo,gaokao2023en,college_math").problems() == []
    assert any("unknown oat2" in line and "all, oat, simplerl, zoo" in line
               for line in EvalSettings(benchmarks="oat2").problems())


def greedy(value):
    return {"n": 1, "avg@1": value, "stderr": 0.01, "pass@1": value}


def test_the_zoo_table_prints_its_layout_and_averages_without_avg32():
    summary = {name: greedy(value) for name, value in zip(ZOO, (0.9, 0.8, 0.4, 0.4, 0.3, None, 0.6))}
    summary["aime24_avg32"] = {"n": 32, "avg@32": 0.25, "stderr": 0.05, "pass@1": 0.25, "pass@32": 0.5}
    table = format_table("m", summary, ["simplerl-zoo-qwen2.5-math-7b"], ["aime24_avg32"]).splitlines()
    assert table[0] == f"| model | metric | {' | '.join(ZOO)} | average |"
    # (90 + 80 + 40 + 40 + 30 + 60) / 6 = 56.7; with avg@32's 25 it would be 52.1
    assert table[2] == "| m | pass@1 / avg@32 ± stderr | 90.0 | 80.0 | 40.0 | 40.0 | 30.0 | 25.0 ± 5.0 | 60.0 | 56.7 |"
    assert table[3] == "|  | pass@32 |  |  |  |  |  | 50.0 |  |  |"
    assert table[4] == ("| Qwen2.5-Math-7B + SimpleRL-Zoo (published) | pass@1 | 90.2 | 80.2 | 37.5 | 39.0 | 40.0 | "
                        "24.0 | 70.0 | 59.5 (its six) |")
    assert table[6] == "average: over the columns but aime24_avg32, as the paper's"
    assert "temperature 1.0 / top-p 0.95" in table[7]


def test_the_oat_and_simplerl_tables_put_published_cells_under_their_own_files():
    oat = {name: greedy(0.5) for name in column_names("oat")}
    table = format_table("m", oat, ["oat-zero-7b", "qwen2.5-math-7b"]).splitlines()
    assert table[0] == "| model | metric | aime24_oat | amc_oat | math500 | minerva_math | olympiadbench | average |"
    assert table[3] == "| Oat-Zero-7B (published) | pass@1 | 43.3 | 62.7 | 80.0 | 30.1 | 41.0 | 51.4 (its five) |"
    # SimpleRL v0's base row was scored on aime24 / amc23, not on Oat's files: no cell there
    assert table[4] == "| Qwen2.5-Math-7B base (published) | pass@1 |  |  | 52.4 | 12.9 | 16.4 | 30.2 (its five) |"
    assert "average:" not in "\n".join(table) and "83 problems" in table[-1]
    simplerl = {name: greedy(0.5) for name in column_names("simplerl")}
    table = format_table("m", simplerl, ["simplerl-zero-7b", "simplerl-7b", "qwen2.5-math-7b-sft"]).splitlines()
    assert table[3:6] == [  # v0's column order: AIME24, MATH500, AMC23, Minerva, OlympiadBench
        "| SimpleRL-Zero-7B (published) | pass@1 | 33.3 | 77.2 | 62.5 | 33.5 | 37.6 | 48.8 (its five) |",
        "| Qwen2.5-Math-7B-SimpleRL (published) | pass@1 | 26.7 | 82.4 | 62.5 | 39.7 | 43.3 | 50.9 (its five) |",
        "| Qwen2.5-Math-7B + 8K MATH SFT (published) | pass@1 | 3.3 | 54.6 | 22.5 | 32.7 | 19.6 | 26.5 (its five) |"]


def test_published_rows_fill_their_papers_columns_and_average_what_the_paper_averages():
    papers = {"oat-zero": "oat", "zoo-base": "zoo", "simplerl-zoo": "zoo"}
    for name, (label, scores, average, caveat) in PUBLISHED.items():
        group = next((g for prefix, g in papers.items() if name.startswith(prefix)), "simplerl")
        assert set(scores) == {column.name for column in GROUPS[group]}, name
        counted = [score for column, score in scores.items() if column not in OUTSIDE_AVERAGE]
        assert abs(sum(counted) / len(counted) - average) <= 0.0501, name  # the paper rounds each cell
    assert OUTSIDE_AVERAGE == {"aime24_avg32"} and len(PUBLISHED) == 6 + 2 * 10
    scores = PUBLISHED["simplerl-zoo-qwen2.5-32b"].scores
    assert abs(sum(scores.values()) / 7 - 61.9) > 1  # counting avg@32 would not give the paper's average


def test_compare_auto_names_every_published_row_of_a_hub_id():
    assert published_rows("auto", "hkust-nlp/Qwen-2.5-7B-SimpleRL-Zoo") == ["simplerl-zoo-qwen2.5-7b"]
    assert published_rows("auto", "hkust-nlp/Mistral-7B-v0.1-SimpleRL-Zoo") == ["simplerl-zoo-mistral-7b"]
    assert published_rows("auto", "hkust-nlp/Qwen-2.5-Math-7B-SimpleRL") == ["simplerl-7b"]
    assert published_rows("auto", "Qwen/Qwen2.5-Math-7B") == ["qwen2.5-math-7b", "zoo-base-qwen2.5-math-7b"]
    assert sum(hub_id.endswith("-simplerl-zoo") for hub_id in HUB_IDS) == 10
    assert published_rows("zoo-base-qwen2.5-7b", "x") == ["zoo-base-qwen2.5-7b"]
    with pytest.raises(UsageError, match="no published row"):
        published_rows("auto", "Qwen/Qwen2.5-7B")  # the Zoo's README names no hub id for its bases


@needs_data
def test_a_group_runs_each_column_with_its_own_sampling(tiny_model_dir, tmp_path, capsys):
    summary = main(EvalConfig(model=tiny_model_dir, benchmarks="zoo", limit=1, max_new_tokens=2, engine="hf",
                              grader_workers=1, out_dir=str(tmp_path)))
    assert [name for name in summary if name != "average"] == ZOO
    avg32 = summary["aime24_avg32"]
    assert (avg32["n"], avg32["temperature"], avg32["top_p"], avg32["samples"]) == (32, 1.0, 0.95, 32)
    assert "pass@32" in avg32 and len(read_log(tmp_path / "aime24_avg32.jsonl")) == 32
    assert (summary["aime24"]["n"], summary["aime24"]["temperature"]) == (1, 0.0)
    six = [summary[name]["avg@1"] for name in ZOO if name != "aime24_avg32"]
    assert summary["average"]["avg@1"] == pytest.approx(sum(six) / 6)
    out = capsys.readouterr().out
    assert f"| model | metric | {' | '.join(ZOO)} | average |" in out and "over the columns but aime24_avg32" in out
