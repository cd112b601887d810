"""docs/reliability.md, for all three entry points (train_zero.py, sft.py, evaluate.py): every problem is refused
before anything is written or any weights load, in one line each; the run directory belongs to one run of ours;
a damaged checkpoint is named and the lock released; a resume cannot bend the schedule; sft.py steps with
train_zero's guarded optimiser step; concurrent atomic writes never tear. Each test is a probe that failed on
main at 11edab4 (issue 22)."""

import json
import math
import sys
import threading
from dataclasses import replace

import pytest

import evaluate
import sft
import train_zero
from data import UsageError, write_atomic
from evaluate import EvalConfig
from learn import Diverged
from rundir import LOCK
from test_reliability import snapshot
from test_sft import sft_config
from test_train import run, tiny_config


@pytest.fixture
def no_weights(monkeypatch):
    """Any attempt to load model weights fails the test: every check must come first."""
    def refuse(*args, **kwargs):
        pytest.fail("model weights were loaded before the flags, data and run directory were checked")

    for module in (train_zero, sft, evaluate):
        monkeypatch.setattr(module, "load_model", refuse)


# ---------------------------------------------------------------------------------------------
# train_zero.py: a refused run writes nothing, so the corrected command is not "an earlier run"


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


@pytest.mark.parametrize("case", ["weights_on_some_files", "levels_with_a_builtin_set", "empty_file", "malformed_file",
                                  "missing_eval_files", "unloadable_model"])
def test_a_refused_training_run_writes_nothing_and_the_corrected_one_starts(tiny_model_dir, tmp_path, case,
                                                                              monkeypatch, parity_reward):
    good = write_jsonl(tmp_path / "good.jsonl", [{"problem": "What is 1 + 1?", "answer": "2"}] * 4)
    broken_model = tmp_path / "broken_model"
    broken_model.mkdir()
    (broken_model / "config.json").write_text("{ not json")
    bad = {"weights_on_some_files": dict(train_data=f"{good}:0.5,{good}"),
           "levels_with_a_builtin_set": dict(train_data="arithmetic", levels=(3,)),
           "empty_file": dict(train_data=write_jsonl(tmp_path / "empty.jsonl", [])),
           "malformed_file": dict(train_data=write_jsonl(tmp_path / "bad.jsonl", [{"problem": "q"}])),
           "missing_eval_files": dict(eval_data="math500", data_dir=str(tmp_path)),
           "unloadable_model": dict(model=str(broken_model))}[case]
    out = tmp_path / "run"
    real_load = train_zero.load_model
    monkeypatch.setattr(train_zero, "load_model", lambda *a, **k: pytest.fail("weights loaded before the refusal"))
    with pytest.raises(UsageError):
        train_zero.main(tiny_config(tiny_model_dir, out, **bad))
    assert not out.exists()  # nothing written: no config.json, no lock
    monkeypatch.setattr(train_zero, "load_model", real_load)
    rows = train_zero.main(tiny_config(tiny_model_dir, out, steps=1, eval_every=0, save_every=0))
    assert [r["step"] for r in rows] == [1]


def test_cli_reports_data_problems_in_one_line_each(tmp_path):
    result = run([sys.executable, "train_zero.py", "--train-data", f"{tmp_path}/a.jsonl:0.5,{tmp_path}/b.jsonl",
                  "--levels", "3", "--out-dir", ""])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert all(line.startswith("train_zero.py: error: ") for line in lines) and len(lines) >= 4, lines
    assert any("give a weight to every file or to none" in line for line in lines)
    assert any("--out-dir '': name a directory" in line for line in lines)


def test_out_dir_must_name_a_writable_directory(tiny_model_dir, tmp_path, no_weights):
    with pytest.raises(UsageError, match="--out-dir '': name a directory"):
        train_zero.main(tiny_config(tiny_model_dir, ""))
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        train_zero.main(tiny_config(tiny_model_dir, tmp_path / "afile" / "run"))


def test_overwrite_refuses_a_directory_it_did_not_write_and_keeps_it(tiny_model_dir, tmp_path, no_weights):
    """Pointed at an HF model directory, --overwrite deletes nothing (the model's config.json above all)."""
    model_copy = tmp_path / "model"
    model_copy.mkdir()
    (model_copy / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    (model_copy / "model.safetensors").write_bytes(b"weights")
    before = snapshot(model_copy)
    for overwrite in (False, True):
        with pytest.raises(UsageError, match="holds files no run of this script writes"):
            train_zero.main(tiny_config(tiny_model_dir, model_copy, overwrite=overwrite))
    assert snapshot(model_copy) == before and not (model_copy / LOCK).exists()


def test_a_config_json_that_is_not_a_runs_is_not_ours(tiny_model_dir, tmp_path, no_weights):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    with pytest.raises(UsageError, match=r"config.json \(not a run's"):
        train_zero.main(tiny_config(tiny_model_dir, tmp_path, overwrite=True))
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "llama"


def test_a_damaged_trainer_state_is_named_and_the_lock_released(tiny_model_dir, tmp_path, parity_reward):
    train_zero.main(tiny_config(tiny_model_dir, tmp_path, steps=2, save_every=2, eval_every=0))
    state = tmp_path / "checkpoints" / "step_000002" / "trainer_state.json"
    state.write_text('{"step": 2, "conf')
    for _ in range(2):  # the second attempt meets the same error, not "in use by another run"
        with pytest.raises(UsageError, match=rf"{state}: not valid JSON"):
            train_zero.main(tiny_config(tiny_model_dir, tmp_path, steps=4, save_every=2, eval_every=0, resume=True))
        assert not (tmp_path / LOCK).exists()
    result = run([sys.executable, "train_zero.py", "--model", tiny_model_dir, "--out-dir", str(tmp_path), "--resume",
                  "--steps", "4", "--train-data", "arithmetic", "--template", "qwen_boxed", "--eval-every", "0"])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().startswith(f"train_zero.py: error: {state}: not valid JSON"), result.stderr


def test_resume_with_more_steps_under_a_step_dependent_schedule_is_refused(tiny_model_dir, tmp_path, parity_reward):
    cfg = tiny_config(tiny_model_dir, tmp_path, steps=2, save_every=1, eval_every=0, lr_schedule="cosine")
    train_zero.main(cfg)
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match=r"--steps: checkpoint 2, now 4 \(the learning-rate schedule --lr-schedule "
                                         r"cosine"):
        train_zero.main(replace(cfg, steps=4, resume=True))
    assert snapshot(tmp_path) == before
    constant = tiny_config(tiny_model_dir, tmp_path / "constant", steps=1, save_every=1, eval_every=0)
    train_zero.main(constant)
    rows = train_zero.main(replace(constant, steps=2, resume=True))  # a constant lr has no horizon: allowed
    assert [r["step"] for r in rows] == [2]


# ---------------------------------------------------------------------------------------------
# sft.py: the same checks, the same guarded optimiser step


@pytest.mark.parametrize("flags, message", [
    (dict(max_grad_norm=-1.0), "--max-grad-norm -1.0: must be > 0"),
    (dict(adam_betas=(0.9, 1.5)), "--adam-betas (0.9, 1.5): must be two numbers in [0, 1)"),
    (dict(adam_eps=0.0), "--adam-eps 0.0: must be > 0"),
    (dict(grader_workers=0), "--grader-workers 0: must be at least 1"),
    (dict(eval_every=-1), "--eval-every -1: must be >= 0"),
    (dict(save_every=-2), "--save-every -2: must be >= 0"),
    (dict(max_bad_steps=0), "--max-bad-steps 0: must be at least 1"),
    (dict(dtype="float16"), "--dtype float16: training in fp16 needs loss scaling"),
    (dict(out_dir=""), "--out-dir '': name a directory"),
])
def test_sft_refuses_bad_flags_before_anything_loads(tiny_model_dir, tmp_path, no_weights, flags, message):
    with pytest.raises(UsageError) as error:
        sft.main(sft_config(tiny_model_dir, tmp_path, **flags))
    assert message in str(error.value)
    assert not (tmp_path / "sft").exists()


def test_sft_skips_non_finite_steps_and_stops_without_a_bad_checkpoint(tiny_model_dir, tmp_path, monkeypatch):
    real = sft.target_nll
    calls = []

    def poisoned(policy, pairs, pad_id, device):
        calls.append(1)
        return real(policy, pairs, pad_id, device) * (float("nan") if len(calls) > 1 else 1.0)

    monkeypatch.setattr(sft, "target_nll", poisoned)
    cfg = sft_config(tiny_model_dir, tmp_path, steps=6, micro_batch_size=4, save_every=1, eval_every=0, max_bad_steps=2)
    with pytest.raises(Diverged, match=r"step 3: 2 steps in a row \(since step 2\)"):
        sft.main(cfg)
    rows = [json.loads(line) for line in (tmp_path / "sft" / "metrics.jsonl").read_text().splitlines()]
    assert [r["skipped_updates"] for r in rows] == [0.0, 1.0, 1.0]
    # step 2 was skipped (weights as after step 1) and saved; step 3 stopped the run before its save
    assert sorted(p.name for p in (tmp_path / "sft" / "checkpoints").iterdir()) == ["latest", "step_000001", "step_000002"]
    assert not (tmp_path / "sft" / LOCK).exists()


def test_sft_command_line_one_line_per_problem():
    result = run([sys.executable, "sft.py", "--max-grad-norm", "-1", "--adam-eps", "0", "--grader-workers", "0"])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 3 and all(line.startswith("sft.py: error: --") for line in lines), lines


# ---------------------------------------------------------------------------------------------
# evaluate.py: every flag checked up front; --out-dir is a run directory


@pytest.mark.parametrize("flags, message", [
    (dict(n=2, temperature=-1.0), "--temperature -1.0: must be >= 0"),
    (dict(n=2, temperature=1.0, top_p=0.0), "--top-p 0.0: must be in (0, 1]"),
    (dict(top_p=2.0), "--top-p 2.0: must be in (0, 1]"),
    (dict(limit=-1), "--limit -1: must be >= 0"),
    (dict(batch_size=0), "--batch-size 0: must be at least 1"),
    (dict(max_new_tokens=0), "--max-new-tokens 0: must be at least 1"),
    (dict(grader_workers=0), "--grader-workers 0: must be at least 1"),
    (dict(n=2, temperature=1.0, pass_k="abc"), "--pass-k 'abc': each k must be an integer"),
    (dict(data_dir="/no/such/dir"), "--data-dir /no/such/dir: no such directory"),
    (dict(model="/no/such/model"), "--model /no/such/model: no such local directory"),
    (dict(out_dir=""), "--out-dir '': name a directory"),
])
def test_evaluate_refuses_bad_flags_before_loading_or_writing(tiny_model_dir, tmp_path, no_weights, flags, message):
    with pytest.raises(UsageError) as error:
        evaluate.main(EvalConfig(**{"model": tiny_model_dir, "benchmarks": "arithmetic", "limit": 2,
                                    "out_dir": str(tmp_path / "eval"), **flags}))
    assert message in str(error.value)
    assert not (tmp_path / "eval").exists()


def test_evaluate_names_a_damaged_checkpoint_and_a_missing_benchmark(tiny_model_dir, tmp_path, no_weights):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (model / "trainer_state.json").write_text("{oops")
    with pytest.raises(UsageError, match=rf"{model / 'trainer_state.json'}: not valid JSON"):
        evaluate.main(EvalConfig(model=str(model), benchmarks="arithmetic", out_dir=str(tmp_path / "eval")))
    with pytest.raises(UsageError, match="benchmark 'math500': .* does not exist"):
        evaluate.main(EvalConfig(model=tiny_model_dir, benchmarks="math500", data_dir=str(tmp_path),
                                 out_dir=str(tmp_path / "eval")))
    assert not (tmp_path / "eval").exists()


def test_evaluate_out_dir_is_a_run_directory(tiny_model_dir, tmp_path):
    """A second evaluation into the same --out-dir is refused (its files would mix) unless --overwrite; a file in
    the way of --out-dir is refused before the model loads."""
    cfg = EvalConfig(model=tiny_model_dir, benchmarks="arithmetic", limit=2, max_new_tokens=4, engine="hf",
                     grader_workers=1, out_dir=str(tmp_path / "eval"))
    evaluate.main(cfg)
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["arithmetic.jsonl", "config.json", "summary.json"]
    before = snapshot(tmp_path / "eval")
    with pytest.raises(UsageError, match=r"holds an earlier run \(arithmetic.jsonl, config.json, summary.json\)"):
        evaluate.main(replace(cfg, benchmarks="add_one"))
    assert snapshot(tmp_path / "eval") == before
    evaluate.main(replace(cfg, benchmarks="add_one", overwrite=True))
    assert sorted(p.name for p in (tmp_path / "eval").iterdir()) == ["add_one.jsonl", "config.json", "summary.json"]
    (tmp_path / "file").write_text("x")
    result = run([sys.executable, "evaluate.py", "--model", tiny_model_dir, "--benchmarks", "arithmetic",
                  "--out-dir", str(tmp_path / "file")])
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == f"evaluate.py: error: --out-dir {tmp_path / 'file'}: is a file, not a directory"


def test_evaluate_command_line_one_line_per_problem():
    result = run([sys.executable, "evaluate.py", "--n", "2", "--temperature", "-1", "--top-p", "2", "--limit", "-1",
                  "--batch-size", "0", "--max-new-tokens", "0", "--grader-workers", "0", "--pass-k", "abc"])
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 8 and all(line.startswith("evaluate.py: error: --") for line in lines), lines


# ---------------------------------------------------------------------------------------------
# Atomic writes: unique temporary names, so two writers never tear a file


def test_two_writers_of_one_file_never_tear_it(tmp_path):
    path = tmp_path / "summary.json"
    texts = ["a" * 50_000, "b" * 70_000]
    write_atomic(path, texts[0])
    torn, errors, stop = [], [], threading.Event()

    def writer(text):
        try:
            for _ in range(300):
                write_atomic(path, text)
        except OSError as e:  # the fixed "<name>.tmp" of old: one writer renames the other's temporary file away
            errors.append(e)

    def reader():
        while not stop.is_set():
            content = path.read_text()
            if content not in texts:
                torn.append(len(content))

    threads = [threading.Thread(target=writer, args=(t,)) for t in texts]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert not errors and not torn, (errors[:2], torn[:5])
    assert not [p.name for p in tmp_path.iterdir() if p.name != "summary.json"]  # no temporary file left behind


def test_settings_groups_have_one_default_per_field():
    """A field shared by the entry points is defined once, in its settings group: max_new_tokens' default is the
    learn stage's (it had two, 32 and 20), and the dtype rule is model.resolve_dtype's."""
    from config import ModelSettings, RolloutSettings
    from model import resolve_dtype

    assert train_zero.Config().max_new_tokens == RolloutSettings().max_new_tokens == 20
    assert train_zero.Config().dtype == sft.SFTConfig().dtype == EvalConfig().dtype == ModelSettings().dtype == "auto"
    import torch

    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("auto", "cuda") == torch.bfloat16
    assert math.isclose(train_zero.Config().lr, 5e-5) and math.isclose(sft.SFTConfig().lr, 1e-5)
