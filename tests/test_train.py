"""train_zero.py end to end with a tiny random model: a 2-step run, exact resume, DDP equivalence."""

import json
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from data import UsageError
from data import step_indices
from train_zero import Config, main

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run(args, timeout=300, **kwargs):
    return subprocess.run(args, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout, **kwargs)


def tiny_config(model_dir, out_dir, **overrides):
    base = dict(model=model_dir, out_dir=str(out_dir), steps=2, prompts_per_step=4, group_size=2, micro_batch_size=3,
                max_new_tokens=6, lr=1e-3, eval_every=2, eval_limit=4, save_every=2, grader_timeout=5.0,
                template="qwen_boxed", train_data="arithmetic", eval_data="arithmetic", reward="simplerl")
    return Config(**{**base, **overrides})


def without_timings(row: dict) -> dict:
    """A metrics row without the fields that measure seconds or memory (they differ between equal runs)."""
    timings = ("tokens_per_s", "peak_memory_gb", "learn_tokens_per_s", "mfu")
    return {k: v for k, v in row.items() if not k.startswith("time_") and k not in timings}


def test_two_step_run_writes_metrics_samples_config_and_checkpoint(tiny_model_dir, tmp_path, parity_reward):
    before, *rows = main(tiny_config(tiny_model_dir, tmp_path))
    assert before["step"] == 0 and set(before) == {"step", "eval/arithmetic", "eval/arithmetic/answer_rate",
                                                   "eval/arithmetic/stderr", "eval/arithmetic/length"}
    p = before["eval/arithmetic"]  # 4 problems: the sample standard error of 0/1 scores
    assert before["eval/arithmetic/stderr"] == pytest.approx((p * (1 - p) / 3) ** 0.5)
    assert 1 <= before["eval/arithmetic/length"] <= 6
    assert [r["step"] for r in rows] == [1, 2]
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged == [before, *rows]
    assert (tmp_path / "metrics.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")  # plot.py's figure
    for key in ("reward_mean", "accuracy", "answer_rate", "response_length_mean", "response_length_max",
                "truncation_rate", "clip_fraction", "entropy", "grad_norm", "time_rollout", "time_reward",
                "time_learn", "time_sync", "tokens_per_s", "learn_tokens_per_s", "peak_memory_gb", "zero_adv_group_frac",
                "reflection_rate"):
        assert key in rows[0], key
    assert "eval/arithmetic" in rows[1] and "eval/arithmetic" not in rows[0]
    assert sum(rows[0]["outcome_counts"].values()) == 4 * 2  # prompts x group size
    assert set(rows[0]["outcome_counts"]) == {"correct", "wrong", "parse_error", "timeout", "no_answer"}
    assert rows[0]["response_length_max"] <= 6
    assert any(r["entropy"] > 0 and r["grad_norm"] > 0 for r in rows)  # something was learned
    samples = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    assert all(s["problem"].startswith("What is ") for s in samples)
    assert {s["step"] for s in samples} == {1, 2} and all(s["reward"] in (1.0, -0.5) for s in samples)
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 2
    checkpoint = tmp_path / "checkpoints" / "step_000002"
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step_000002"
    assert (checkpoint / "model.safetensors").exists() and (checkpoint / "optimizer.pt").exists()
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))


def test_resume_continues_exactly(tiny_model_dir, tmp_path, parity_reward):
    straight = main(tiny_config(tiny_model_dir, tmp_path / "a", steps=4, save_every=2, eval_every=0))
    main(tiny_config(tiny_model_dir, tmp_path / "b", steps=2, save_every=2, eval_every=0))
    resumed = main(tiny_config(tiny_model_dir, tmp_path / "b", steps=4, save_every=2, eval_every=0, resume=True))
    assert [r["step"] for r in resumed] == [3, 4]
    assert [without_timings(r) for r in straight[2:]] == [without_timings(r) for r in resumed]
    assert any(r["grad_norm"] > 0 for r in straight[2:])  # the weights really moved after the resume point
    a = torch.load(tmp_path / "a" / "checkpoints" / "step_000004" / "optimizer.pt", weights_only=False)
    b = torch.load(tmp_path / "b" / "checkpoints" / "step_000004" / "optimizer.pt", weights_only=False)
    for key in a["state"]:
        torch.testing.assert_close(a["state"][key]["exp_avg"], b["state"][key]["exp_avg"], rtol=0, atol=0)
    steps = [json.loads(line)["step"] for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_upstream_loss_options_train_and_resume_exactly(tiny_model_dir, tmp_path, parity_reward):
    """verl's token-mean aggregation and clamped k3 KL, oat's shuffled mini-batches and OpenRLHF's log-probs at
    temperature 1, together: a 4-step run and a 2 + 2 resumed one log the same rows."""
    flags = dict(save_every=2, eval_every=0, loss_agg="token_mean", kl_coef=0.1, kl_clamp=10.0, updates_per_batch=2,
                 shuffle_minibatches=True, logprob_temperature="1", temperature=0.7)
    straight = main(tiny_config(tiny_model_dir, tmp_path / "a", steps=4, **flags))
    main(tiny_config(tiny_model_dir, tmp_path / "b", steps=2, **flags))
    resumed = main(tiny_config(tiny_model_dir, tmp_path / "b", steps=4, resume=True, **flags))
    assert [without_timings(r) for r in straight[2:]] == [without_timings(r) for r in resumed]
    assert all(r["grad_norm"] > 0 for r in straight) and straight[-1]["kl"] > 0


def test_resume_with_different_training_flags_says_which(tiny_model_dir, tmp_path):
    main(tiny_config(tiny_model_dir, tmp_path, steps=1, save_every=1, eval_every=0))
    with pytest.raises(ValueError, match=r"--lr: checkpoint 0.001, now 0.002"):
        main(tiny_config(tiny_model_dir, tmp_path, steps=2, save_every=1, eval_every=0, lr=2e-3, resume=True))


def test_a_budget_beyond_the_context_fails_before_training(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match=r"plus --max-new-tokens 600 is \d+ tokens, more than the model's "
                                         r"max_position_embeddings 512"):
        main(tiny_config(tiny_model_dir, tmp_path, max_new_tokens=600))
    assert not (tmp_path / "metrics.jsonl").exists()


def test_mfu_is_logged_against_the_given_peak(tiny_model_dir, tmp_path, parity_reward, monkeypatch):
    """--peak-tflops: each row's mfu is the learn phase's model FLOPs over time_learn x the peak; on CPU without it
    there is no mfu column (no known peak), only learn_tokens_per_s."""
    from scale.mfu import LearnFlops

    plain = main(tiny_config(tiny_model_dir, tmp_path / "a", steps=1, eval_every=0))
    taken, take = [], LearnFlops.take
    monkeypatch.setattr(LearnFlops, "take", lambda self: taken.append(take(self)) or taken[-1])
    rows = main(tiny_config(tiny_model_dir, tmp_path / "b", steps=1, eval_every=0, peak_tflops=1e-3))
    assert "mfu" not in plain[0] and plain[0]["learn_tokens_per_s"] > 0
    learned = taken[-1]  # the second take of the step: the passes between prepare_batch and the weight sync
    assert learned > 0 and rows[0]["mfu"] == pytest.approx(learned / (rows[0]["time_learn"] * 1e9), rel=1e-9)
    tokens = rows[0]["learn_tokens_per_s"] * rows[0]["time_learn"]  # the batch's prompt and response tokens
    assert tokens == pytest.approx(round(tokens)) and tokens > rows[0]["generated_tokens"]


def test_the_static_cache_engine_trains_and_evaluates_as_the_dynamic_one(tiny_model_dir, tmp_path, parity_reward):
    """--hf-static-cache: the same greedy eval (step 0, and after the same first update), and a step that learns."""
    dynamic = main(tiny_config(tiny_model_dir, tmp_path / "a", steps=1, eval_every=1))
    static = main(tiny_config(tiny_model_dir, tmp_path / "b", steps=1, eval_every=1, hf_static_cache=True))
    assert static[0] == dynamic[0] and static[1]["grad_norm"] > 0
    assert json.loads((tmp_path / "b" / "config.json").read_text())["hf_static_cache"] is True


def test_eval_data_takes_the_papers_groups():
    from train_zero import config_problems, eval_columns

    oat = eval_columns("oat")
    assert list(oat) == ["aime24_oat", "amc_oat", "math500", "minerva_math", "olympiadbench"]
    assert [name for name, (_, any_of) in oat.items() if any_of] == ["minerva_math"]
    assert oat["aime24_oat"] == ("aime24_oat", False)
    assert "aime24_avg32" not in eval_columns("zoo")  # sampled 32 times: not a greedy column
    assert eval_columns("math500,gsm8k") == {"math500": ("math500", False), "gsm8k": ("gsm8k", False)}
    assert not [p for p in config_problems(Config(eval_data="oat,add_one"), 1) if "--eval-data" in p]
    assert [p for p in config_problems(Config(eval_data="oat,nope"), 1) if "--eval-data" in p]


def test_a_stop_token_id_outside_the_vocabulary_fails_before_training(tiny_model_dir, tmp_path):
    with pytest.raises(UsageError, match=r"--stop-token-ids 999999: not a token id of this model's tokenizer"):
        main(tiny_config(tiny_model_dir, tmp_path, stop_token_ids=(3, 999999)))
    assert not (tmp_path / "config.json").exists()


def test_rollouts_and_evaluation_stop_at_the_stop_token_ids(tiny_model_dir, tmp_path, monkeypatch):
    """--stop-token-ids reaches the engine's SamplingParams in rollouts and in the held-out eval alike."""
    from rollout import HFEngine

    seen = []
    generate = HFEngine.generate
    monkeypatch.setattr(HFEngine, "generate", lambda self, prompts, params: seen.append(params.stop_token_ids)
                        or generate(self, prompts, params))
    main(tiny_config(tiny_model_dir, tmp_path, steps=1, eval_every=1, stop_token_ids=(5, 7)))
    assert seen and all(ids == [5, 7] for ids in seen)
    assert json.loads((tmp_path / "config.json").read_text())["stop_token_ids"] == [5, 7]


def test_resume_without_checkpoint_says_so(tiny_model_dir, tmp_path):
    with pytest.raises(UsageError, match="no checkpoint"):
        main(tiny_config(tiny_model_dir, tmp_path, resume=True))


def test_data_order_is_a_function_of_step_and_splits_by_rank():
    problems = list(range(10))
    step3 = step_indices(len(problems), 3, 4, seed=0, rank=0, world_size=1)
    assert step3 == step_indices(len(problems), 3, 4, seed=0, rank=0, world_size=1)
    halves = step_indices(len(problems), 3, 4, 0, 0, 2) + step_indices(len(problems), 3, 4, 0, 1, 2)
    assert halves == step3
    epoch0 = [problems[i] for s in range(0, 2) for i in step_indices(len(problems), s, 5, 0, 0, 1)]
    assert sorted(epoch0) == problems  # each epoch visits every problem once


def test_unknown_flag_fails_with_a_message():
    result = run([sys.executable, "train_zero.py", "--no-such-flag", "3"])
    assert result.returncode != 0 and "no-such-flag" in (result.stderr + result.stdout)


@pytest.mark.parametrize("algo", ["grpo", "drgrpo", "ppo", "grpo+token_mean"])
def test_two_ranks_give_the_same_loss_and_gradients_as_one(tiny_model_dir, tmp_path, algo):
    one = tmp_path / "one.pt"
    two = tmp_path / "two.pt"
    odd = tmp_path / "odd.pt"
    r = run([sys.executable, "tests/ddp_worker.py", tiny_model_dir, str(one), "8", algo])
    assert r.returncode == 0, r.stderr[-3000:]
    r = run([sys.executable, "tests/ddp_worker.py", tiny_model_dir, str(odd), "3", algo])
    assert r.returncode == 0, r.stderr[-3000:]
    r = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
             "tests/ddp_worker.py", tiny_model_dir, str(two), "2", algo])
    assert r.returncode == 0, r.stderr[-3000:]
    saved = [torch.load(p, weights_only=False) for p in (one, two, odd)]
    a, b, c = ({**s["row"], "update": s["update"]} for s in saved)
    # the logged metrics (metrics.step_metrics, as train_zero writes them) are the same for 1 and 2 ranks
    logged = ["loss", "reward_mean", "accuracy", "response_length_mean", "entropy", "clip_fraction", "grad_norm"]
    logged += ["value_loss", "value_mse", "critic_grad_norm"] if algo == "ppo" else []
    for key in logged:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-7) == pytest.approx(c[key], rel=1e-5, abs=1e-7), key
    assert a["loss"] != 0 and (algo != "ppo" or a["value_loss"] > 0)
    assert any(v.abs().max() > 0 for v in a["update"].values())
    if algo == "ppo":  # the critic's backbone and head both moved
        assert a["update"]["critic.head.weight"].abs().max() > 0
        assert any(v.abs().max() > 0 for k, v in a["update"].items() if k.startswith("critic.backbone"))
    for key in a["update"]:
        torch.testing.assert_close(a["update"][key], b["update"][key], atol=1e-6, rtol=1e-4)
        torch.testing.assert_close(a["update"][key], c["update"][key], atol=1e-6, rtol=1e-4)


@pytest.mark.parametrize("algo", ["grpo", "drgrpo", "ppo"])
def test_fsdp_gives_the_same_loss_gradients_and_update_as_ddp(tiny_model_dir, tmp_path, algo):
    """2 gloo ranks, --shard fsdp vs --shard ddp on the same batch (and FSDP with gradient checkpointing)."""
    outputs = {}
    for name, extra in (("ddp", ["ddp"]), ("fsdp", ["fsdp"]), ("fsdp_ckpt", ["fsdp", "--gradient-checkpointing"])):
        outputs[name] = tmp_path / f"{name}.pt"
        r = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
                 "tests/ddp_worker.py", tiny_model_dir, str(outputs[name]), "3", algo, *extra])
        assert r.returncode == 0, r.stderr[-3000:]
    ddp, fsdp, ckpt = (torch.load(outputs[n], weights_only=False) for n in ("ddp", "fsdp", "fsdp_ckpt"))
    logged = ["loss", "grad_norm", "entropy", "clip_fraction"] + (["value_loss", "critic_grad_norm"] if algo == "ppo" else [])
    for other in (fsdp, ckpt):
        for key in logged:
            assert other["row"][key] == pytest.approx(ddp["row"][key], rel=1e-5, abs=1e-7), key
        assert set(other["update"]) == set(ddp["update"])
        for key in ddp["update"]:
            torch.testing.assert_close(other["update"][key], ddp["update"][key], atol=1e-6, rtol=1e-4)
    assert ddp["row"]["grad_norm"] > 0 and any(v.abs().max() > 0 for v in ddp["update"].values())
    if algo == "ppo":
        assert fsdp["update"]["critic.head.weight"].abs().max() > 0


def torchrun_parity(model_dir, out_dir, *flags, nproc=2):
    """2 ranks of train_zero.py (tests/parity_run.py: a reward with variance on a random model)."""
    r = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--standalone",
             "tests/parity_run.py", "--model", model_dir, "--out-dir", str(out_dir), "--prompts-per-step", "4",
             "--group-size", "2", "--max-new-tokens", "6", "--lr", "1e-3", "--eval-every", "0", *flags])
    assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(line) for line in (out_dir / "metrics.jsonl").read_text().splitlines()]


def test_fsdp_ppo_with_kl_resumes_exactly_from_its_sharded_checkpoint(tiny_model_dir, tmp_path):
    """--shard fsdp, 2 ranks: policy (HF export + DCP optimiser), critic (DCP) and a sharded KL reference."""
    flags = ["--shard", "fsdp", "--algo", "ppo", "--kl-coef", "0.05", "--kl-in", "reward", "--critic-lr", "1e-2",
             "--updates-per-batch", "2", "--micro-batch-size", "3", "--save-every", "2"]
    straight = torchrun_parity(tiny_model_dir, tmp_path / "a", "--steps", "4", *flags)
    torchrun_parity(tiny_model_dir, tmp_path / "b", "--steps", "2", *flags)
    resumed = torchrun_parity(tiny_model_dir, tmp_path / "b", "--steps", "4", "--resume", *flags)
    assert [without_timings(r) for r in straight[2:]] == [without_timings(r) for r in resumed[2:]]
    assert all(r["grad_norm"] > 0 and r["critic_grad_norm"] > 0 for r in straight) and straight[3]["kl"] != 0
    step2 = tmp_path / "b" / "checkpoints" / "step_000002"
    assert (step2 / "optimizer").is_dir() and (step2 / "critic").is_dir() and not (step2 / "optimizer.pt").exists()
    from transformers import AutoModelForCausalLM

    a, b = (AutoModelForCausalLM.from_pretrained(tmp_path / run / "checkpoints" / "step_000004") for run in "ab")
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    for (name, x), (_, y), (_, z) in zip(a.named_parameters(), b.named_parameters(), base.named_parameters()):
        torch.testing.assert_close(x, y, rtol=0, atol=0, msg=name)  # the export holds the trained fp32 weights
    assert any((x - z).abs().max() > 0 for x, z in zip(a.parameters(), base.parameters()))


def test_fsdp_bfloat16_with_checkpointing_and_an_offloaded_reference_trains_on_two_ranks(tiny_model_dir, tmp_path):
    rows = torchrun_parity(tiny_model_dir, tmp_path, "--steps", "2", "--shard", "fsdp", "--dtype", "bfloat16",
                           "--gradient-checkpointing", "--kl-coef", "0.1", "--ref-offload", "--save-every", "0")
    assert [r["step"] for r in rows] == [1, 2] and all(r["grad_norm"] > 0 for r in rows)
    assert rows[0]["kl"] == 0.0 and rows[1]["kl"] > 0  # the reference is the starting policy


def test_two_nodes_on_localhost_train_like_two_local_ranks(tiny_model_dir, tmp_path):
    """Multi-node as documented (torchrun --nnodes 2 --rdzv-backend c10d), 2 nodes x 1 process on this machine."""
    import socket
    import subprocess as sp

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    flags = ["--model", tiny_model_dir, "--out-dir", str(tmp_path / "nodes"), "--steps", "2", "--prompts-per-step", "4",
             "--group-size", "2", "--max-new-tokens", "6", "--lr", "1e-3", "--eval-every", "0", "--save-every", "2"]
    nodes = [sp.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
                       "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}", "--rdzv-id", "zero-rl-test",
                       "tests/parity_run.py", *flags], cwd=ROOT, env=ENV, stdout=sp.PIPE, stderr=sp.PIPE, text=True)
             for _ in range(2)]
    for node in nodes:
        _, err = node.communicate(timeout=300)
        assert node.returncode == 0, err[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "nodes" / "metrics.jsonl").read_text().splitlines()]
    local = torchrun_parity(tiny_model_dir, tmp_path / "local", "--steps", "2", "--save-every", "2")
    assert [without_timings(r) for r in rows] == [without_timings(r) for r in local] and rows[1]["grad_norm"] > 0
    assert sorted(p.name for p in (tmp_path / "nodes" / "checkpoints" / "step_000002").glob("rng_rank*")) == [
        "rng_rank0.pt", "rng_rank1.pt"]


def test_torchrun_two_ranks_trains(tiny_model_dir, tmp_path):
    r = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--standalone",
             "train_zero.py", "--model", tiny_model_dir, "--out-dir", str(tmp_path), "--steps", "2",
             "--prompts-per-step", "4", "--group-size", "2", "--max-new-tokens", "6", "--eval-every", "2",
             "--eval-limit", "4", "--save-every", "2"])
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [0, 1, 2] and "eval/add_one" in rows[0] and "eval/add_one" in rows[2]
    assert (tmp_path / "checkpoints" / "step_000002" / "model.safetensors").exists()


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "train" / "gsm8k_train.jsonl").exists(), reason="no ../shared/data")
def test_real_model_on_real_data_then_evaluate_the_checkpoint(smollm_dir, tmp_path):
    """SmolLM2-135M on GSM8K train for one step, then evaluate.py on its checkpoint (GSM8K test)."""
    from evaluate import EvalConfig
    from evaluate import main as evaluate_main

    train_file = str(ROOT.parent / "shared" / "data" / "train" / "gsm8k_train.jsonl")
    rows = main(Config(model="smollm2-135m", train_data=train_file, out_dir=str(tmp_path / "run"), steps=1,
                       prompts_per_step=2, group_size=2, max_new_tokens=8, eval_every=0, save_every=1))
    assert rows[0]["response_length_max"] <= 8
    checkpoint = tmp_path / "run" / "checkpoints" / "step_000001"
    summary = evaluate_main(EvalConfig(model=str(checkpoint), benchmarks="gsm8k", limit=2, max_new_tokens=8,
                                       out_dir=str(tmp_path / "eval")))
    assert summary["gsm8k"]["problems"] == 2 and (tmp_path / "eval" / "gsm8k.jsonl").exists()


def test_kl_term_loads_a_reference_and_logs_kl(tiny_model_dir, tmp_path, parity_reward):
    rows = main(tiny_config(tiny_model_dir, tmp_path, steps=3, kl_coef=0.1, kl_estimator="k3", eval_every=0,
                            save_every=0, clip_eps_high=0.28, entropy_coef=0.01))
    assert rows[0]["kl"] == 0.0  # the policy equals the reference before the first update
    assert rows[2]["kl"] > 0  # and drifts from it after
    assert all(r["grad_norm"] > 0 for r in rows)


@pytest.mark.parametrize("mode", ["drop", "zero_reward"])
def test_truncated_responses_can_be_dropped_or_zeroed(tiny_model_dir, tmp_path, parity_reward, monkeypatch, mode):
    import train_zero

    seen = {}
    real_learn = train_zero.learn

    def spy(policy, optimizer, batch, *args, **kwargs):
        seen.setdefault("advantages", torch.cat(batch.advantages))
        seen.setdefault("in_loss", batch.in_loss.clone())
        seen.setdefault("truncated", torch.tensor([s.finish_reason == "length" for s in batch.samples]))
        return real_learn(policy, optimizer, batch, *args, **kwargs)

    monkeypatch.setattr(train_zero, "learn", spy)
    main(tiny_config(tiny_model_dir, tmp_path, steps=1, max_new_tokens=3, eval_every=0, save_every=0, truncated=mode))
    assert seen["truncated"].all()  # 3 tokens from a random model: every response is cut
    if mode == "drop":
        assert not seen["in_loss"].any()
    else:  # every reward is 0, so every advantage is 0
        assert seen["in_loss"].all() and (seen["advantages"] == 0).all()


def test_ppo_with_kl_in_reward_learns_a_critic_and_resumes_exactly(tiny_model_dir, tmp_path, parity_reward):
    ppo = dict(algo="ppo", save_every=2, eval_every=0, kl_coef=0.05, kl_in="reward", kl_estimator="k1",
               critic_lr=1e-2, updates_per_batch=2)
    straight = main(tiny_config(tiny_model_dir, tmp_path / "a", steps=4, **ppo))
    main(tiny_config(tiny_model_dir, tmp_path / "b", steps=2, **ppo))
    resumed = main(tiny_config(tiny_model_dir, tmp_path / "b", steps=4, resume=True, **ppo))
    assert [without_timings(r) for r in straight[2:]] == [without_timings(r) for r in resumed]
    assert all(r["value_loss"] > 0 and r["critic_grad_norm"] > 0 and r["grad_norm"] > 0 for r in straight)
    assert straight[0]["kl"] == 0.0 and straight[3]["kl"] != 0.0  # the policy drifts from the reference
    step2, step4 = (torch.load(tmp_path / "b" / "checkpoints" / f"step_00000{k}" / "critic.pt") for k in (2, 4))
    assert (step2["head.weight"] - step4["head.weight"]).abs().max() > 0  # the critic kept learning after the resume
    straight4 = torch.load(tmp_path / "a" / "checkpoints" / "step_000004" / "critic.pt")
    for key in straight4:
        torch.testing.assert_close(straight4[key], step4[key], rtol=0, atol=0)
    assert (tmp_path / "b" / "checkpoints" / "step_000004" / "critic_optimizer.pt").exists()


def test_clip_eps_low_is_an_alias_of_clip_eps():
    r = run([sys.executable, "-c", "import tyro, train_zero; "
             "print(tyro.cli(train_zero.Config, args=['--clip-eps-low', '0.1', '--clip-eps-high', '0.3']))"])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "clip_eps=0.1" in r.stdout and "clip_eps_high=0.3" in r.stdout


def test_tis_cap_needs_an_engine_with_sampler_logprobs(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="--tis-cap 2.0: needs the sampler's log-probs; use --rollout-engine vllm"):
        main(tiny_config(tiny_model_dir, tmp_path, tis_cap=2.0))


@pytest.mark.skipif(__import__("importlib.util").util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_vllm_engine_without_vllm_says_how_to_install(tiny_model_dir, tmp_path):
    with pytest.raises(UsageError, match="--rollout-engine vllm needs vllm: pip install -r requirements-vllm.txt"):
        main(tiny_config(tiny_model_dir, tmp_path, rollout_engine="vllm"))


def test_adamw_bytes_to_come_counts_the_moments_the_first_step_makes():
    from scale.vllm_engine import adamw_bytes_to_come

    layer = torch.nn.Linear(10, 3)  # 33 parameters
    optimizer = torch.optim.AdamW(layer.parameters())
    assert adamw_bytes_to_come([optimizer]) == 2 * 33 * 4
    layer(torch.randn(2, 10)).sum().backward()
    optimizer.step()
    assert adamw_bytes_to_come([optimizer]) == 0  # made (or loaded on resume): already in memory_allocated


def test_auto_template_and_eval_data_follow_the_training_set():
    from train_zero import resolve_auto

    assert (resolve_auto(Config()).template, resolve_auto(Config()).eval_data) == ("chat_oneshot", "add_one")
    arithmetic = resolve_auto(Config(train_data="arithmetic"))
    assert (arithmetic.template, arithmetic.eval_data) == ("qwen_boxed", "arithmetic")
    math = resolve_auto(Config(train_data="../shared/data/train/math_12k_rebuilt.jsonl"))
    assert (math.template, math.eval_data) == ("qwen_boxed", "arithmetic")  # never the toy one-shot template
    chosen = resolve_auto(Config(template="qwen_math", eval_data="gsm8k"))
    assert (chosen.template, chosen.eval_data) == ("qwen_math", "gsm8k")


def test_lr_schedule_warmup_then_cosine_to_the_floor_and_adamw_settings(tiny_model_dir, tmp_path, parity_reward):
    from learn import lr_factor

    cfg = tiny_config(tiny_model_dir, tmp_path, steps=10, lr_schedule="cosine", warmup_ratio=0.2, min_lr_ratio=0.1)
    factors = [lr_factor(step, cfg) for step in range(10)]
    assert factors[:2] == [0.5, 1.0]  # warmup: 2 steps
    assert factors[2] == 1.0 and factors[-1] == pytest.approx(0.1)  # cosine from the peak to the floor
    assert factors[6] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 4 / 7)))
    assert all(a >= b for a, b in zip(factors[1:], factors[2:]))
    constant = replace(cfg, lr_schedule="constant", warmup_ratio=0.0)
    assert {lr_factor(step, constant) for step in range(10)} == {1.0}
    rows = main(replace(cfg, steps=4, warmup_ratio=0.5, eval_every=0, save_every=4, adam_betas=(0.8, 0.9), adam_eps=1e-6))
    assert [r["lr"] for r in rows] == pytest.approx([cfg.lr / 2, cfg.lr, cfg.lr, cfg.lr * 0.1])
    groups = torch.load(tmp_path / "checkpoints" / "step_000004" / "optimizer.pt", weights_only=False)["param_groups"]
    assert [(tuple(g["betas"]), g["eps"]) for g in groups] == [((0.8, 0.9), 1e-6)] * len(groups)


def test_bad_schedule_and_adamw_flags_are_refused(tiny_model_dir, tmp_path):
    from train_zero import config_problems

    cfg = tiny_config(tiny_model_dir, tmp_path, warmup_ratio=1.0, min_lr_ratio=2.0, adam_betas=(0.9, 1.0), adam_eps=0.0)
    problems = "\n".join(config_problems(cfg, 1))
    for flag in ("--warmup-ratio", "--min-lr-ratio", "--adam-betas", "--adam-eps"):
        assert flag in problems


@pytest.mark.parametrize("world_size", range(1, 9))
def test_the_default_flags_are_valid_at_any_world_size(world_size):
    """--prompts-per-step 0 (the default) is 4 rounded up to a multiple of the world size, so the card's
    `torchrun --nproc_per_node N train_zero.py --algo drgrpo` has no flag problem for any N; an explicit value
    that does not divide is still refused."""
    from train_zero import config_problems, resolve_auto

    cfg = resolve_auto(Config(algo="drgrpo"), world_size)
    assert config_problems(cfg, world_size) == []
    assert cfg.prompts_per_step % world_size == 0 and 4 <= cfg.prompts_per_step < 4 + world_size
    assert resolve_auto(Config(), 1).prompts_per_step == 4  # the README's default run is unchanged
    if world_size > 1:
        explicit = resolve_auto(Config(prompts_per_step=world_size + 1), world_size)
        assert any("must be a multiple of the world size" in p for p in config_problems(explicit, world_size))


def test_the_cards_command_runs_as_typed_on_eight_ranks(tiny_model_dir, tmp_path):
    """torchrun --nproc_per_node 8 train_zero.py --algo drgrpo, on 8 gloo ranks and a tiny random model (the only
    flags added: the model, a short run, no eval or checkpoint): 8 prompts, one per rank."""
    r = run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "8", "--standalone", "train_zero.py",
             "--algo", "drgrpo", "--model", tiny_model_dir, "--out-dir", str(tmp_path), "--steps", "1",
             "--max-new-tokens", "4", "--eval-every", "0", "--save-every", "0", "--grader-workers", "1"],
            timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "config.json").read_text())["prompts_per_step"] == 8
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1] and rows[0]["generated_tokens"] > 0


def test_trace_prints_one_group_through_every_stage(tiny_model_dir, tmp_path, parity_reward, capsys):
    """--trace: the prompt, the G responses, verdicts and rewards, GRPO / Dr. GRPO / the run's advantages, the
    per-token weights 1/|o_i| and 1/L_max, and the step's loss and grad norm as logged."""
    from losses import group_advantages

    rows = main(tiny_config(tiny_model_dir, tmp_path, steps=1, eval_every=0, save_every=0, trace=True, group_size=4))
    out = capsys.readouterr().out
    start = out.index("== --trace: step 1, the first group (4 responses to one prompt)")
    trace = out[start:]
    for section in ("1. rollout", "2. reward (--reward simplerl", "3. advantages", "4. the loss's weight",
                    "1/|o_i|", "1/L_max = 1/6", "5. learn"):
        assert section in trace, section
    assert "| <|im_start|>system" in trace  # the qwen_boxed prompt, as the model sees it
    assert f"gradient norm before clipping {rows[0]['grad_norm']:.4f}" in trace
    assert f"the step's loss {rows[0]['loss']:+.6f}" in trace
    # parity_reward: +1, -0.5, +1, -0.5 -> Dr. GRPO advantages +0.75, -0.75; GRPO's divide by the std 0.866
    table = trace[trace.index("3. advantages"):trace.index("4. the loss")].splitlines()[2:6]
    expected = group_advantages(torch.tensor([1.0, -0.5, 1.0, -0.5]), 4, scale_by_std=False).tolist()
    assert [float(line.split()[2]) for line in table] == pytest.approx(expected, abs=1e-4)
    assert [float(line.split()[4]) for line in table] == pytest.approx(expected, abs=1e-4)  # the run is drgrpo
