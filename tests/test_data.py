"""Tests for data/: JSONL validation, the arithmetic set, the real benchmark files, and prepare.py offline."""

import hashlib
import json
import operator
import re
from pathlib import Path

import pytest

from data import (BENCHMARKS, DataError, UsageError, Problem, add_one_problems, arithmetic_problems, last_boxed, load_benchmark, load_jsonl,
                  load_train_data)
from data import prepare as prepare_module

SHARED_DATA = Path("/work/shared/data")


def write_lines(path: Path, lines: list) -> Path:
    """Write a JSONL file: dicts/lists are JSON-encoded, strings are written as raw lines."""
    with open(path, "w", encoding="utf-8") as f:
        for line in lines:
            f.write((line if isinstance(line, str) else json.dumps(line)) + "\n")
    return path


# ---------------------------------------------------------------------------------------------------
# load_jsonl


def test_load_jsonl_good_file(tmp_path):
    path = write_lines(tmp_path / "train.jsonl", [
        {"problem": "1+1?", "answer": "2", "source": "toy", "level": 1, "answer_alternatives": ["2", "two"]},
        "",  # blank lines are ignored
        {"problem": "Half?", "answer": "\\frac{1}{2}"},
        {"problem": "Twelve?", "answer": 12.0},
        {"problem": "Seven?", "answer": 7},
        {"problem": "AIME", "answer": "025"},
    ])
    problem_set = load_jsonl(path)
    assert [p.answer for p in problem_set.problems] == ["2", "\\frac{1}{2}", "12", "7", "025"]
    assert problem_set.problems[0] == Problem("1+1?", "2", "toy", 1, {"answer_alternatives": ["2", "two"]})
    assert problem_set.problems[1].source == "" and problem_set.problems[1].level is None
    assert (problem_set.path, problem_set.skipped_empty, problem_set.skipped_level) == (str(path), 0, 0)


@pytest.mark.parametrize("line, field", [
    ('{"problem": "x", "answer": ', "invalid JSON"),
    ('["problem", "answer"]', "object"),
    ('{"answer": "1"}', "'problem'"),
    ('{"problem": "x"}', "'answer'"),
    ('{"problem": 3, "answer": "1"}', "'problem'"),
    ('{"problem": "x", "answer": true}', "'answer'"),
    ('{"problem": "x", "answer": [1, 2]}', "'answer'"),
    ('{"problem": "x", "answer": 2.5}', "'answer'"),
    ('{"problem": "x", "answer": null}', "'answer'"),
    ('{"problem": "x", "answer": "1", "level": "hard"}', "'level'"),
    ('{"problem": "x", "answer": "1", "source": 5}', "'source'"),
])
def test_load_jsonl_errors_name_file_line_and_field(tmp_path, line, field):
    path = write_lines(tmp_path / "bad.jsonl", [{"problem": "ok", "answer": "1"}, "", line])
    with pytest.raises(DataError) as error:
        load_jsonl(path)
    assert str(error.value).startswith("bad.jsonl:3: ")
    assert field in str(error.value)


def test_load_jsonl_invalid_utf8(tmp_path):
    path = tmp_path / "latin.jsonl"
    path.write_bytes(b'{"problem": "ok", "answer": "1"}\n{"problem": "caf\xe9", "answer": "1"}\n')
    with pytest.raises(DataError, match=r"^latin\.jsonl:2: not valid UTF-8"):
        load_jsonl(path)


def test_load_jsonl_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.jsonl: file not found"):
        load_jsonl(tmp_path / "nope.jsonl")


def test_load_jsonl_skips_and_counts_empty_answers(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [{"problem": "a", "answer": ""}, {"problem": "b", "answer": "  "},
                                              {"problem": "c", "answer": "3"}])
    problem_set = load_jsonl(path)
    assert [p.problem for p in problem_set.problems] == ["c"]
    assert problem_set.skipped_empty == 2


def test_load_jsonl_all_empty_is_an_error(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [{"problem": "a", "answer": ""}])
    with pytest.raises(DataError, match="t.jsonl: no problems left"):
        load_jsonl(path)


def test_load_jsonl_level_filter(tmp_path):
    path = write_lines(tmp_path / "math.jsonl", [
        {"problem": "a", "answer": "1", "level": 2},
        {"problem": "b", "answer": "1", "level": "Level 4"},
        {"problem": "c", "answer": "1", "level": None},
        {"problem": "d", "answer": "1", "level": 5},
        {"problem": "e", "answer": "1", "level": "Level ?"},
        {"problem": "f", "answer": "", "level": 4},  # counted as empty, not as filtered
    ])
    everything = load_jsonl(path)
    assert [p.level for p in everything.problems] == [2, 4, None, 5, None]
    hard = load_jsonl(path, levels=[3, 4, 5])
    assert [p.problem for p in hard.problems] == ["b", "d"]
    assert (hard.skipped_level, hard.skipped_empty) == (3, 1)
    with pytest.raises(DataError, match="no problems left"):
        load_jsonl(path, levels=[1])


# ---------------------------------------------------------------------------------------------------
# arithmetic set


OPERATORS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def test_arithmetic_deterministic_and_seeded():
    assert arithmetic_problems(200, seed=3) == arithmetic_problems(200, seed=3)
    assert arithmetic_problems(200, seed=3) != arithmetic_problems(200, seed=4)
    assert arithmetic_problems(50, seed=3) == arithmetic_problems(200, seed=3)[:50]


def test_arithmetic_answers_are_correct_and_easy():
    problems = arithmetic_problems(2000, seed=0)
    seen = set()
    for p in problems:
        match = re.fullmatch(r"What is (\d+) ([-+*]) (\d+)\?", p.problem)
        assert match, p.problem
        a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
        assert int(p.answer) == OPERATORS[op](a, b) and p.source == "arithmetic"
        if op == "*":
            assert min(a, b) <= 9 and 10 <= max(a, b) <= 99
        else:
            assert 10 <= a <= 99 and 10 <= b <= 99 and int(p.answer) >= 0
        seen.add(op)
    assert seen == {"+", "-", "*"}


def test_load_train_data_arithmetic(tmp_path):
    problem_set = load_train_data("arithmetic", seed=1)
    assert problem_set.path == "arithmetic" and len(problem_set.problems) == 10_000
    assert problem_set.problems[:5] == arithmetic_problems(5, seed=1)
    with pytest.raises(ValueError, match="no levels"):
        load_train_data("arithmetic", levels=[3])
    path = write_lines(tmp_path / "t.jsonl", [{"problem": "a", "answer": "1", "level": 3}])
    assert load_train_data(str(path), levels=[3]).problems[0].problem == "a"


def test_add_one_is_seeded_prefix_stable_correct_and_carries():
    problems = add_one_problems(2000, seed=0)
    assert problems[:50] == add_one_problems(50, seed=0) and problems != add_one_problems(2000, seed=1)
    firsts = set()
    for p in problems:
        a = int(re.fullmatch(r"What is (\d+) \+ 1\?", p.problem).group(1))
        assert 10 <= a <= 99 and int(p.answer) == a + 1 and p.source == "add_one"
        firsts.add(a)
    assert firsts == set(range(10, 100))  # every two-digit number, the carries (19, 29, ..., 99) included
    with pytest.raises(ValueError, match="n must be >= 0"):
        add_one_problems(-1)
    assert load_train_data("add_one", seed=2).problems[:3] == add_one_problems(3, seed=2)
    with pytest.raises(ValueError, match="the add_one set has no levels"):
        load_train_data("add_one", levels=[3])


# ---------------------------------------------------------------------------------------------------
# benchmarks (real files)


needs_shared_data = pytest.mark.skipif(not (SHARED_DATA / "eval").is_dir(), reason="no /work/shared/data")


@needs_shared_data
def test_real_benchmarks():
    assert len(load_benchmark("math500", SHARED_DATA).problems) == 500
    assert len(load_benchmark("gsm8k", SHARED_DATA, limit=50).problems) == 50
    aime = load_benchmark("aime24", SHARED_DATA)
    assert len(aime.problems) == 30 and "025" in [p.answer for p in aime.problems]
    minerva = load_benchmark("minerva", SHARED_DATA)  # alias
    assert len(minerva.problems) == 272 and "answer_alternatives" in minerva.problems[0].meta


def test_default_data_dir_env(monkeypatch, tmp_path):
    from data import default_data_dir

    monkeypatch.setenv("ZERO_RL_DATA", str(tmp_path))
    assert default_data_dir() == tmp_path
    monkeypatch.delenv("ZERO_RL_DATA")
    assert default_data_dir() == Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def test_load_benchmark_errors(tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'aime25'.*math500"):
        load_benchmark("aime25", tmp_path)
    with pytest.raises(UsageError) as error:
        load_benchmark("amc23", tmp_path)
    message = str(error.value)
    assert str(tmp_path / "eval" / "amc23.jsonl") in message
    assert "ZERO_RL_DATA" in message and "python -m data.prepare --out" in message


# ---------------------------------------------------------------------------------------------------
# gold-answer extraction and prepare.py (offline, fake hub)


@pytest.mark.parametrize("solution, expected", [
    ("so $\\boxed{5}$.", "5"),
    ("first \\boxed{1}, finally \\boxed{\\frac{1}{2}}.", "\\frac{1}{2}"),
    ("\\fbox{x^{2}}", "x^{2}"),
    ("The answer is $\\boxed 2$.", "2"),
    ("spaced \\boxed {7}", "7"),
    ("empty \\boxed{}", ""),
    ("\\boxed5 is not a box", None),
    ("no box here", None),
    ("\\boxed{unclosed", None),
])
def test_last_boxed(solution, expected):
    assert last_boxed(solution) == expected


def math_row(problem, answer, level="Level 4", subject="Algebra"):
    return {"problem": problem, "level": level, "type": subject, "solution": f"Work. $\\boxed{{{answer}}}$"}


FAKE_HUB = {
    "HuggingFaceH4/aime_2024": [{"id": 60, "problem": "Aya walks.", "solution": "...", "answer": "025", "url": "u"}],
    "math-ai/amc23": [{"id": 0, "question": "Cities A and B.", "answer": 27.0, "url": "u"}],
    "HuggingFaceH4/MATH-500": [{"problem": "Held out  problem.", "solution": "\\boxed{3}", "answer": "3",
                                "subject": "Algebra", "level": 2, "unique_id": "test/algebra/1.json"}],
    "svc-huggingface/minerva-math": [{"problem": "Telescope\n size?", "solution": "So \\boxed{1.6}.",
                                      "type": "Astronomy", "idx": 0}],
    "lkevinzc/math-eval": [{"problem": "Telescope size?", "answer": ["1.6 ", "1.60"]}],
    "Hothan/OlympiadBench": [{"id": 1606, "question": "Xenia and Sergey.", "final_answer": ["$(0,2),(0,-2)$"],
                              "is_multiple_answer": True, "unit": None, "answer_type": "Tuple", "subfield": "C",
                              "context": None, "solution": ["..."], "error": None}],
    ("openai/gsm8k", "test"): [{"question": "Apples?", "answer": "Work <<1+1=2>>\n#### 1,234"}],
    ("openai/gsm8k", "train"): [{"question": "Pears?", "answer": "Work\n####  7 "}],
    ("EleutherAI/hendrycks_math", "train", "algebra"): [
        math_row("Nested?", "\\frac{1}{2}", "Level 3"), math_row("Easy?", "4", "Level 1"),
        {"problem": "Brace-less?", "level": "Level 5", "type": "Algebra", "solution": "So $\\boxed 2$."},
        math_row("Unknown level?", "9", "Level ?")],
    ("EleutherAI/hendrycks_math", "test", "algebra"): [
        math_row("Held out problem.", "3", "Level 2"), math_row("Test five?", "x+1", "Level 5")],
}


def fake_fetch(dataset_id, config, split):
    """Rows for a (dataset, config, split), keyed as specifically as FAKE_HUB needs."""
    for key in ((dataset_id, split, config), (dataset_id, split), dataset_id):
        if key in FAKE_HUB:
            return FAKE_HUB[key]
    assert dataset_id == "EleutherAI/hendrycks_math", (dataset_id, config, split)
    return []


def test_prepare_writes_normalised_files(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "fetch", fake_fetch)  # the one network function
    counts = prepare_module.prepare(tmp_path)
    assert set(counts) == {f"eval/{file}" for file in BENCHMARKS.values()} | {
        "train/gsm8k_train.jsonl", "train/math_12k_rebuilt.jsonl", "train/math_lvl3to5_rebuilt.jsonl"}
    assert not list(tmp_path.rglob("*.tmp"))

    def answers(name):
        return [p.answer for p in load_benchmark(name, tmp_path).problems]

    assert answers("gsm8k") == ["1,234"]
    assert answers("amc23") == ["27"] and load_benchmark("amc23", tmp_path).problems[0].meta["answer_raw"] == 27.0
    assert answers("aime24") == ["025"] and answers("math500") == ["3"]
    assert answers("olympiadbench") == ["(0,2),(0,-2)"]
    minerva = load_benchmark("minerva_math", tmp_path).problems[0]
    assert minerva.answer == "1.6" and minerva.meta["answer_alternatives"] == ["1.6", "1.60"]
    assert [p.answer for p in load_jsonl(tmp_path / "train/gsm8k_train.jsonl").problems] == ["7"]

    math12k = load_jsonl(tmp_path / "train/math_12k_rebuilt.jsonl")
    by_problem = {p.problem: p for p in math12k.problems}
    assert "Held out problem." not in by_problem  # MATH-500 removed (whitespace-normalised match)
    assert by_problem["Nested?"].answer == "\\frac{1}{2}" and by_problem["Nested?"].level == 3
    assert by_problem["Brace-less?"].answer == "2"
    assert by_problem["Unknown level?"].level is None
    assert [p.source for p in math12k.problems] == ["math_train"] * 4 + ["math_test"]
    hard = load_jsonl(tmp_path / "train/math_lvl3to5_rebuilt.jsonl")
    assert sorted(p.problem for p in hard.problems) == ["Brace-less?", "Nested?", "Test five?"]


def test_prepare_cli_uses_fetch(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(prepare_module, "fetch", fake_fetch)
    prepare_module.main(["--out", str(tmp_path)])
    assert "math_lvl3to5_rebuilt.jsonl" in capsys.readouterr().out
    assert (tmp_path / "eval" / "gsm8k.jsonl").is_file()


SFT_ROWS = [  # the column layouts convert_sft_pairs reads (the hub set's own were not checked offline)
    {"prompt": "[Round 0] USER:\nNested?\nPlease reason step by step, and put your final answer within \\boxed{}. "
               "ASSISTANT:\n", "response": "Hmm, wait. Half. \\boxed{0.5}"},  # gold from MATH by problem text
    {"messages": [{"role": "user", "content": "New problem?"},
                  {"role": "assistant", "content": "Long thought. \\boxed{7}"}]},  # gold = its own box
    {"question": "Counted?", "output": "So \\boxed{3}", "gt_answer": "4"},  # a gold column; it disagrees
    {"problem": " ", "solution": "no problem text"},
    {"problem": "No box?", "solution": "never boxed"},
]


def test_sft_pairs_read_columns_chats_and_prompt_wrappers():
    from data.prepare import convert_sft_pairs, strip_prompt
    from reward import TEMPLATES, apply_template

    math_rows = [{"problem": "Nested?", "answer": "\\frac{1}{2}"}]
    rows, counts = convert_sft_pairs(SFT_ROWS, math_rows, "simplerl_sft")
    assert counts == {"kept": 3, "no_problem_or_solution": 1, "no_answer": 1}
    assert [(r["problem"], r["answer"], r["answer_from"]) for r in rows] == [
        ("Nested?", "\\frac{1}{2}", "math"), ("New problem?", "7", "solution"), ("Counted?", "4", "column gt_answer")]
    assert rows[0]["solution"] == "Hmm, wait. Half. \\boxed{0.5}" and rows[0]["idx"] == 0
    for template in ("o1_cot", "qwen_math", "qwen_boxed"):  # the prompts a distilled set may store
        assert strip_prompt(apply_template(template, "Two\nlines?")) == "Two\nlines?", template
    assert strip_prompt(apply_template("abel", "Two?")) == TEMPLATES["abel"].replace("{q}", "Two?").strip()
    with pytest.raises(ValueError, match=r"columns are \['text'\]"):
        convert_sft_pairs([{"text": "a"}], [], "simplerl_sft")


def test_prepare_sft_writes_the_warm_start_set_that_sft_reads(tmp_path, monkeypatch, tokenizer):
    from grader_pool import Grader
    from sft import build_pairs

    monkeypatch.setitem(FAKE_HUB, "AndrewZeng/SimpleRL-SFT", SFT_ROWS)
    monkeypatch.setattr(prepare_module, "fetch", fake_fetch)
    prepare_module.main(["--out", str(tmp_path), "--sft"])
    problems = load_jsonl(tmp_path / "sft" / "simplerl_sft.jsonl").problems
    assert [p.answer for p in problems] == ["\\frac{1}{2}", "7", "4"]  # "Nested?" is a MATH train problem
    with Grader(workers=1) as grader:
        pairs, dropped = build_pairs(problems, "o1_cot", tokenizer, 256, grader)
    assert len(pairs) == 2 and dropped == {"no_solution": 0, "answer_mismatch": 1, "too_long": 0}  # 3 != 4
    assert "sft/simplerl_sft.jsonl" not in prepare_module.prepare(tmp_path / "plain")  # opt-in


def write_rows(path, n, source):
    path.write_text("".join(json.dumps({"problem": f"{source} {i}", "answer": str(i), "source": source}) + "\n"
                            for i in range(n)))
    return str(path)


def test_train_data_mixtures_concatenate_or_weight_files(tmp_path):
    from data import train_data_files

    a, b = write_rows(tmp_path / "a.jsonl", 10, "a"), write_rows(tmp_path / "b.jsonl", 30, "b")
    plain = load_train_data(f"{a},{b}")
    assert [p.problem for p in plain.problems] == [f"a {i}" for i in range(10)] + [f"b {i}" for i in range(30)]
    mixed = load_train_data(f"{a}:0.5,{b}:0.5", seed=3)
    sources = [p.source for p in mixed.problems]
    assert len(sources) == 40 and sources.count("a") == 20 and sources.count("b") == 20
    assert len({p.problem for p in mixed.problems if p.source == "a"}) == 10  # the small part is cycled, all rows used
    assert [p.problem for p in load_train_data(f"{a}:0.5,{b}:0.5", seed=3).problems] == [p.problem for p in mixed.problems]
    assert [p.problem for p in load_train_data(f"{a}:1,{b}:3", seed=3).problems][10:] != \
        [p.problem for p in plain.problems][10:]  # shuffled draws
    with pytest.raises(ValueError, match="every file or to none"):
        load_train_data(f"{a}:0.5,{b}")
    with pytest.raises(ValueError, match="drop --levels"):
        load_train_data("zoo-hard", levels=[3])
    assert train_data_files(f"{a}:0.5,{b}:2") == [Path(a), Path(b)] and train_data_files("add_one") == []
    assert [f.name for f in train_data_files("zoo-easy", tmp_path)] == ["gsm8k_train.jsonl", "math_12k_rebuilt.jsonl"]


@needs_shared_data
def test_zoo_presets_row_counts():
    """SimpleRL-Zoo's Easy (GSM8K train + MATH level 1), Medium (MATH 1-4) and Hard (MATH 3-5) from our files."""
    easy = load_train_data("zoo-easy", data_dir=SHARED_DATA)
    assert len(easy.problems) == 7_473 + 958 and sum(p.source == "gsm8k_train" for p in easy.problems) == 7_473
    assert {p.level for p in easy.problems if p.source != "gsm8k_train"} == {1}
    medium = load_train_data("zoo-medium", data_dir=SHARED_DATA)
    assert len(medium.problems) == 8_504 and {p.level for p in medium.problems} == {1, 2, 3, 4}
    hard = load_train_data("zoo-hard", data_dir=SHARED_DATA)
    assert len(hard.problems) == 8_886 and hard.skipped_empty == 2  # math_lvl3to5_rebuilt's 8,888 less 2 empty answers


# ---------------------------------------------------------------------------------------------------
# the papers' other evaluation sets: loading, and prepare.py's GitHub files (offline; sha256 checks)


REAL_UPSTREAM_ROWS = prepare_module.upstream_rows
FAKE_UPSTREAM = {  # rows in each upstream file's own layout
    "aime24_oat": [{"problem": "Aya walks.", "answer": "025", "difficulty": 1.0}],
    "amc_oat": [{"problem": "Cities A and B.", "answer": 27.0, "difficulty": 2.0}],
    "gaokao2023en": [{"source": "2023BJ/01Q.en", "question": "Find $M \\cap N$.", "lang": "en",
                      "answer": "$\\{x|-2\\leq x < 1\\}$"}],
    "college_math": [{"data_source": "college_math.Algebra", "question_number": "exercise.0.4.61",
                      "question": "Simplify: $-10-4(n-5)$", "answer": "$10-4 n $", "license": "CC BY 3.0",
                      "data_topic": "college_math.algebra"}],
}


@pytest.fixture(autouse=True)
def no_github_downloads(monkeypatch):
    """Every prepare() in this module reads FAKE_UPSTREAM instead of GitHub: no test needs the network."""
    monkeypatch.setattr(prepare_module, "upstream_rows", lambda key: FAKE_UPSTREAM[key])


PAPER_SETS = {"aime24_oat": 30, "amc_oat": 83, "gaokao2023en": 385, "college_math": 2818}  # ../shared/data/README.md


@needs_shared_data
def test_the_papers_other_sets_load_by_name_with_their_row_counts():
    for name, rows in PAPER_SETS.items():
        loaded = load_benchmark(name, SHARED_DATA)
        problems = loaded.problems
        assert len(problems) + loaded.skipped_empty == rows, name
        assert loaded.skipped_empty == (2 if name == "gaokao2023en" else 0)  # gaokao rows 167, 192: empty answer
        assert all(p.problem.strip() and p.answer.strip() for p in problems)
        assert "answer_raw" in problems[0].meta
    amc = load_benchmark("amc_oat", SHARED_DATA).problems
    assert amc[0].answer == "142" and amc[0].meta["answer_raw"] == 142.0
    by_text = {" ".join(p.problem.split()): p.answer for p in amc}
    amc23 = load_benchmark("amc23", SHARED_DATA).problems  # its 40 problems are among the 83, with the same answers
    assert all(by_text.get(" ".join(p.problem.split())) == p.answer for p in amc23)
    college = load_benchmark("college_math", SHARED_DATA).problems[0]
    assert college.answer == "10-4 n" and college.meta["answer_raw"] == "$10-4 n$"
    assert load_benchmark("gaokao2023en", SHARED_DATA).problems[0].meta["lang"] == "en"


def test_prepare_writes_the_papers_other_sets(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_module, "fetch", fake_fetch)
    counts = prepare_module.prepare(tmp_path)
    assert {f"eval/{name}.jsonl" for name in PAPER_SETS} <= set(counts)
    aime, amc = load_benchmark("aime24_oat", tmp_path).problems[0], load_benchmark("amc_oat", tmp_path).problems[0]
    assert (aime.answer, aime.meta["answer_raw"], aime.source) == ("25", "025", "URZ datasets/evaluation_suite/aime")
    assert (amc.answer, amc.meta["answer_raw"], amc.meta["difficulty"]) == ("27", 27.0, 2.0)
    gaokao = load_benchmark("gaokao2023en", tmp_path).problems[0]
    assert gaokao.answer == "\\{x|-2\\leq x < 1\\}" and gaokao.meta["origin"] == "2023BJ/01Q.en"
    college = load_jsonl(tmp_path / "eval" / "college_math.jsonl").problems[0]
    assert college.answer == "10-4 n" and "license" not in college.meta
    assert college.meta["question_number"] == "exercise.0.4.61"
    with pytest.raises(ValueError, match="row 0: answer '2.5' is not an integer"):
        prepare_module.convert_oat([{"problem": "p", "answer": "2.5"}], "amc")


def test_a_download_that_fails_its_sha256_is_refused_in_one_line(tmp_path, monkeypatch):
    upstream = tmp_path / "test.jsonl"
    upstream.write_text('{"question": "Find $x$.", "answer": "$1$", "lang": "en", "source": "s"}\n')
    monkeypatch.setattr(prepare_module, "upstream_rows", REAL_UPSTREAM_ROWS)
    monkeypatch.setattr(prepare_module, "download", lambda url: upstream.read_bytes())
    with pytest.raises(prepare_module.ChecksumError) as error:  # not the pinned file
        prepare_module.upstream_rows("gaokao2023en")
    message = str(error.value)
    assert "\n" not in message and message.startswith("https://raw.githubusercontent.com/hkust-nlp/simpleRL-reason/")
    assert "gaokao2023en/test.jsonl: sha256 " in message and "nothing was written" in message
    pinned = prepare_module.UPSTREAM["gaokao2023en"]._replace(sha256=hashlib.sha256(upstream.read_bytes()).hexdigest())
    monkeypatch.setitem(prepare_module.UPSTREAM, "gaokao2023en", pinned)
    assert prepare_module.upstream_rows("gaokao2023en")[0]["answer"] == "$1$"  # the same bytes, pinned: read
    upstream.write_text(upstream.read_text().replace("$1$", "$2$"))  # tampered after pinning
    with pytest.raises(prepare_module.ChecksumError, match="gaokao2023en/test.jsonl: sha256"):
        prepare_module.upstream_rows("gaokao2023en")
    monkeypatch.setattr(prepare_module, "fetch", fake_fetch)
    with pytest.raises(SystemExit) as exit_:  # the command: one line, nothing written
        prepare_module.main(["--out", str(tmp_path / "out")])
    assert str(exit_.value).startswith("python -m data.prepare: error: https://") and "\n" not in str(exit_.value)
    assert not (tmp_path / "out").exists()


@needs_shared_data
def test_prepare_rebuilds_the_shipped_files_byte_for_byte(tmp_path, monkeypatch):
    """From ../shared/data's copies of the upstream files: the SimpleRL files pass the pinned sha256 (they are the
    upstream bytes); the Arrow files' rows are eval/original/urz_*.jsonl (their JSONL dumps)."""
    originals = SHARED_DATA / "eval" / "original"
    monkeypatch.setattr(prepare_module, "upstream_rows", REAL_UPSTREAM_ROWS)
    monkeypatch.setattr(prepare_module, "download",
                        lambda url: (originals / f"{url.split('/')[-2]}_test.jsonl").read_bytes())
    for name in ("gaokao2023en", "college_math"):
        rows = prepare_module.upstream_rows(name)
        prepare_module.write_jsonl(tmp_path / f"{name}.jsonl",
                                   prepare_module.convert_simplerl_eval(rows, name, prepare_module.UPSTREAM[name].source))
    for name, dump in (("aime24_oat", "urz_aime"), ("amc_oat", "urz_amc")):
        rows = [json.loads(line) for line in (originals / f"{dump}.jsonl").read_text().splitlines()]
        prepare_module.write_jsonl(tmp_path / f"{name}.jsonl",
                                   prepare_module.convert_oat(rows, prepare_module.UPSTREAM[name].source))
    for name in PAPER_SETS:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (SHARED_DATA / "eval" / f"{name}.jsonl").read_bytes(), name


def test_arrow_files_are_read_as_rows():
    pyarrow = pytest.importorskip("pyarrow")
    rows = FAKE_UPSTREAM["amc_oat"] + [{"problem": "Second.", "answer": 4.0, "difficulty": 1.5}]
    sink = pyarrow.BufferOutputStream()
    table = pyarrow.Table.from_pylist(rows)
    with pyarrow.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    assert prepare_module.read_rows(sink.getvalue().to_pybytes(), "amc/data-00000-of-00001.arrow") == rows
