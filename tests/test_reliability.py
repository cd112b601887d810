"""What docs/reliability.md guarantees, each as the failure it prevents: flags checked before anything loads,
one run per directory (a lock, no silent overwrite), a refused resume that changes nothing, a divergence guard
that never saves non-finite weights, strict JSON metrics, and a resume that survives a torn metrics line."""

import json
import socket
import subprocess
import sys
import time

import pytest
import torch

import train_zero
from checkpoint import NonFiniteWeights, save_checkpoint
from rundir import LOCK, truncate_logs
from data import UsageError
from test_train import ENV, ROOT, run, tiny_config
from train_zero import Config, Diverged, main


@pytest.fixture
def no_model_load(monkeypatch):
    """Any attempt to load a model fails the test: flag and directory checks must come first."""
    def refuse(*args, **kwargs):
        pytest.fail("a model was loaded before the flags / run directory were checked")

    monkeypatch.setattr(train_zero, "load_model", refuse)


def snapshot(path):
    """Every file under `path` with its bytes (what "changes nothing on disk" compares)."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------------------------------------
# Flags: every problem, before anything loads


@pytest.mark.parametrize("flags, message", [
    (dict(template="nosuch"), "--template 'nosuch': use one of"),
    (dict(lr=-1.0), "--lr -1.0: must be > 0"),
    (dict(max_new_tokens=0), "--max-new-tokens 0: must be at least 1"),
    (dict(prompts_per_step=-1), "--prompts-per-step -1: must be >= 0"),
    (dict(group_size=0), "--group-size 0: must be at least 1"),
    (dict(group_size=1), "--group-size 1 with --algo drgrpo: a group of one sample has advantage r - mean(r) = 0"),
    (dict(temperature=0.0), "--temperature 0.0: must be > 0 (greedy sampling makes a group's samples identical"),
    (dict(micro_batch_size=0), "--micro-batch-size 0: must be at least 1"),
    (dict(model="/no/such/model/dir"), "--model /no/such/model/dir: no such local directory"),
    (dict(train_data="/no/such.jsonl"), "--train-data /no/such.jsonl: no such file"),
    (dict(eval_data="arithmetic,gsm9k"), "--eval-data arithmetic,gsm9k: unknown gsm9k"),
    (dict(reward="nosuch"), "--reward 'nosuch': use one of correct, independent, mix, simplerl"),
    (dict(levels=(3, 6)), "--levels 3 6: MATH levels are 1 to 5"),
    (dict(ref_offload=True), "--ref-offload needs --shard fsdp"),
    (dict(max_bad_steps=0), "--max-bad-steps 0: must be at least 1"),
])
def test_a_bad_flag_fails_before_anything_loads_or_is_written(tmp_path, no_model_load, flags, message):
    with pytest.raises(UsageError) as error:
        main(Config(**{"out_dir": str(tmp_path / "run"), **flags}))
    assert message in str(error.value)
    assert not (tmp_path / "run").exists()


def test_a_model_directory_without_config_says_so(tmp_path, no_model_load):
    with pytest.raises(UsageError, match="has no config.json"):
        main(Config(model=str(tmp_path), out_dir=str(tmp_path / "run")))


def test_the_command_line_prints_every_problem_as_one_line_without_a_traceback():
    start = time.perf_counter()
    result = run([sys.executable, "train_zero.py", "--template", "nosuch", "--lr", "-1", "--group-size", "1"])
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("train_zero.py: error: --") for line in lines), lines
    assert time.perf_counter() - start < 60  # imports only (a model load would add its own time)


# ---------------------------------------------------------------------------------------------
# One run per directory


def write_lock(out_dir, pid, host=None):
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / LOCK).write_text(json.dumps({"pid": pid, "host": host or socket.gethostname(), "started": "earlier"}))


def test_a_directory_locked_by_a_live_run_is_refused_and_left_untouched(tiny_model_dir, tmp_path, no_model_load):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    other = subprocess.Popen(["sleep", "60"])
    try:
        write_lock(tmp_path, other.pid)
        before = snapshot(tmp_path)
        for resume in (False, True):
            with pytest.raises(UsageError, match=rf"is in use by another run \(pid {other.pid} on "):
                main(tiny_config(tiny_model_dir, tmp_path, resume=resume, overwrite=True))
        assert snapshot(tmp_path) == before
    finally:
        other.kill()
        other.wait()


def test_a_lock_from_another_host_is_refused_with_how_to_clear_it(tiny_model_dir, tmp_path, no_model_load):
    write_lock(tmp_path, 1, host="some-other-node")
    with pytest.raises(UsageError, match=rf"delete {tmp_path / LOCK} if that run is gone"):
        main(tiny_config(tiny_model_dir, tmp_path))


def test_the_stale_lock_of_a_killed_run_is_taken_over(tiny_model_dir, tmp_path, capfd):
    gone = subprocess.Popen(["true"])
    gone.wait()
    write_lock(tmp_path, gone.pid)
    rows = main(tiny_config(tiny_model_dir, tmp_path, steps=1, eval_every=0, save_every=0))
    assert [r["step"] for r in rows] == [1]
    assert "taking over" in capfd.readouterr().err
    assert not (tmp_path / LOCK).exists()  # released at the end of the run


def test_a_second_run_while_the_first_trains_is_refused(tiny_model_dir, tmp_path):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "tests/parity_run.py", "--model", tiny_model_dir, "--out-dir", str(out),
                              "--steps", "6", "--prompts-per-step", "4", "--group-size", "2", "--max-new-tokens", "6",
                              "--eval-every", "0", "--save-every", "3"], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (out / LOCK).exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert (out / LOCK).exists(), "the first run never took the lock"
        with pytest.raises(UsageError, match=f"pid {first.pid}"):
            main(tiny_config(tiny_model_dir, out, resume=True))
        with pytest.raises(UsageError, match=f"pid {first.pid}"):
            main(tiny_config(tiny_model_dir, out, overwrite=True))
    finally:
        _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]  # the first run's log is whole and in order
    assert (out / "checkpoints" / "latest").read_text() == "step_000006" and not (out / LOCK).exists()


def test_a_fresh_run_into_an_old_run_refuses_unless_overwrite(tiny_model_dir, tmp_path, parity_reward):
    main(tiny_config(tiny_model_dir, tmp_path, steps=3, save_every=3, eval_every=0))
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match=r"holds an earlier run \(checkpoints, config.json, metrics.jsonl, "
                                         r"metrics.png, samples.jsonl\): pass --resume to continue it, --overwrite"):
        main(tiny_config(tiny_model_dir, tmp_path, steps=2, save_every=2, eval_every=0))
    assert snapshot(tmp_path) == before
    main(tiny_config(tiny_model_dir, tmp_path, steps=2, save_every=2, eval_every=0, overwrite=True))
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_000002"]  # old ones gone
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]


def test_a_refused_resume_changes_nothing_and_loads_no_model(tiny_model_dir, tmp_path, parity_reward, monkeypatch):
    main(tiny_config(tiny_model_dir, tmp_path, steps=2, save_every=2, eval_every=0))
    before = snapshot(tmp_path)
    monkeypatch.setattr(train_zero, "load_model", lambda *a, **k: pytest.fail("the model loaded before the refusal"))
    with pytest.raises(UsageError, match=r"--lr: checkpoint 0.001, now 0.002"):
        main(tiny_config(tiny_model_dir, tmp_path, steps=4, eval_every=0, lr=2e-3, resume=True))
    assert snapshot(tmp_path) == before  # config.json included


# ---------------------------------------------------------------------------------------------
# Divergence: skipped, logged as strict JSON, stopped; never saved


def test_non_finite_steps_are_skipped_logged_and_stop_the_run_without_a_bad_checkpoint(
        tiny_model_dir, tmp_path, parity_reward, monkeypatch):
    import learn

    real_loss, real_learn, calls = learn.policy_loss, train_zero.learn, []

    def poisoned_loss(*args, **kwargs):  # from the second step on, the loss (and so every gradient) is NaN
        loss, stats = real_loss(*args, **kwargs)
        return (loss * float("nan"), stats) if len(calls) > 1 else (loss, stats)

    def counting_learn(*args, **kwargs):
        calls.append(1)
        return real_learn(*args, **kwargs)

    monkeypatch.setattr(learn, "policy_loss", poisoned_loss)
    monkeypatch.setattr(train_zero, "learn", counting_learn)
    with pytest.raises(Diverged, match=r"step 3: 2 steps in a row \(since step 2\) with a non-finite loss or gradi"):
        main(tiny_config(tiny_model_dir, tmp_path, steps=6, save_every=1, eval_every=0, max_bad_steps=2))
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in metrics.jsonl")) for line in lines]
    assert [r["step"] for r in rows] == [1, 2, 3]
    assert rows[0]["skipped_updates"] == 0 and "nonfinite" not in rows[0]
    for row in rows[1:]:
        assert row["skipped_updates"] == 1 and row["loss"] is None and row["grad_norm"] is None
        assert set(row["nonfinite"]) == {"loss", "grad_norm"}
    # every checkpoint written holds finite weights: the skipped steps left the weights of step 1 unchanged
    from safetensors.torch import load_file
    saved = {p.name: load_file(p / "model.safetensors") for p in (tmp_path / "checkpoints").glob("step_*")}
    assert sorted(saved) == ["step_000001", "step_000002"]  # step 3 stopped the run before its save
    assert all(torch.isfinite(t).all() for weights in saved.values() for t in weights.values())
    assert all(torch.equal(saved["step_000001"][k], saved["step_000002"][k]) for k in saved["step_000001"])


def test_logits_that_overflow_after_a_finite_update_stop_the_run_before_sampling(tiny_model_dir, tmp_path,
                                                                                 parity_reward, monkeypatch):
    # A finite gradient whose update is far too large (on an H200, --lr 1e30 on a random Qwen2) leaves finite weights
    # whose next logits overflow: sampling them ended the process with a device-side assert. Here step 1's update
    # sets the final norm's weights to 3e38 (finite), which overflows the logits of step 2.
    real_learn = train_zero.learn

    def overflowing_learn(policy, *args, **kwargs):
        stats = real_learn(policy, *args, **kwargs)
        with torch.no_grad():
            train_zero.unwrap(policy).lm.model.norm.weight.fill_(3e38)
        return stats

    monkeypatch.setattr(train_zero, "learn", overflowing_learn)
    with pytest.raises(Diverged, match=r"step 2: the policy's next-token logits hold NaN or inf: its weights diverged "
                                       r"in the last update; start again with a lower --lr"):
        main(tiny_config(tiny_model_dir, tmp_path, steps=4, save_every=0, eval_every=0))
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1] and rows[0]["skipped_updates"] == 0


def test_the_engine_refuses_non_finite_logits_sampled_or_greedy(tiny_model, tokenizer):
    from rollout import HFEngine, NonFiniteLogits, SamplingParams

    engine = HFEngine(tiny_model, tokenizer)
    assert len(engine.generate(["1 + 1 ="], SamplingParams(n=2, temperature=1.0, top_p=0.5, max_new_tokens=4))[0]) == 2
    with torch.no_grad():
        tiny_model.lm_head.weight[5, 0] = float("nan")
    for temperature in (1.0, 0.0):
        with pytest.raises(NonFiniteLogits, match="NaN or inf"):
            engine.generate(["1 + 1 ="], SamplingParams(n=2, temperature=temperature, max_new_tokens=4))


def test_non_finite_weights_are_never_saved(tiny_model, tokenizer, tmp_path):
    import torch.distributed as dist
    from distributed import setup_distributed

    d = setup_distributed()
    try:
        optimizer = torch.optim.AdamW(tiny_model.parameters())
        save_checkpoint(tmp_path, 1, tiny_model, tokenizer, optimizer, {}, d)
        with torch.no_grad():
            next(tiny_model.parameters())[0, 0] = float("nan")
        with pytest.raises(NonFiniteWeights, match="step 2: the weights hold NaN or inf"):
            save_checkpoint(tmp_path, 2, tiny_model, tokenizer, optimizer, {}, d)
    finally:
        dist.destroy_process_group()
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", "step_000001"]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_000001"


def test_a_collapsed_policy_warns(tiny_model_dir, tmp_path, capfd, monkeypatch, parity_reward):
    import metrics

    monkeypatch.setattr(metrics, "ENTROPY_COLLAPSE", 1e9)  # every entropy counts as collapsed
    main(tiny_config(tiny_model_dir, tmp_path, steps=1, eval_every=0, save_every=0))
    assert "warning: step 1: " in capfd.readouterr().err


# ---------------------------------------------------------------------------------------------
# A torn metrics line


def test_a_torn_last_line_is_dropped_and_a_bad_middle_line_is_named(tmp_path, capfd):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text('{"step": 1}\n{"step": 2}\n{"step": 3, "rew')  # killed mid-write
    truncate_logs(tmp_path, 2)
    assert metrics.read_text() == '{"step": 1}\n{"step": 2}\n'
    assert f"{metrics}:3: left out a torn last line" in capfd.readouterr().err
    metrics.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(UsageError, match=rf"{metrics}:2: not a log row"):
        truncate_logs(tmp_path, 3)


def test_resume_after_a_torn_metrics_line_continues(tiny_model_dir, tmp_path, parity_reward):
    main(tiny_config(tiny_model_dir, tmp_path, steps=2, save_every=2, eval_every=0))
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 3, "reward_me')
    rows = main(tiny_config(tiny_model_dir, tmp_path, steps=3, save_every=2, eval_every=0, resume=True))
    assert [r["step"] for r in rows] == [3]
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3]


def test_every_rank_stops_when_rank_0_refuses_the_directory(tiny_model_dir, tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1}\n')
    r = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone", "train_zero.py",
             "--model", tiny_model_dir, "--out-dir", str(tmp_path), "--steps", "1", "--prompts-per-step", "2"])
    assert r.returncode != 0  # no rank hangs waiting for the other
    assert r.stderr.count("train_zero.py: error: ") == 1, r.stderr[-3000:]  # said once, by rank 0
    assert f"train_zero.py: error: {tmp_path} holds an earlier run (metrics.jsonl)" in r.stderr
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1}\n' and not (tmp_path / LOCK).exists()
