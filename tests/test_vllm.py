"""VLLMEngine on the real SmolLM2 checkpoint: records, sampler log-probs, weight sync and the sync probe.

Runs only where vllm is installed (.venv-vllm: pip install -r requirements-vllm.txt; see .ci/run):
    python -m pytest -q -m vllm tests/test_vllm.py
One engine serves the whole module (starting it takes ~40 s on 2 CPU cores); the tests run in file order
and leave engine and trainer in sync.
"""

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("vllm")

from model import load_model  # noqa: E402
from rollout import SamplingParams, eos_token_ids  # noqa: E402
from scale.vllm_engine import PROBE_TEXT, PROBE_TOLERANCE, VLLMEngine, trainer_logprobs  # noqa: E402

pytestmark = pytest.mark.vllm

PROMPTS = ["What is 2 + 3? Answer:", "Write one sentence about the sea."]
ROOT = Path(__file__).resolve().parents[1]


def run_training(script, *flags):
    """`python <script> --rollout-engine vllm <flags>` from the project root (its own process: vLLM spawns)."""
    return subprocess.run([sys.executable, str(script), "--rollout-engine", "vllm", *flags], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def engine(smollm_dir):
    engine = VLLMEngine(smollm_dir, dtype="float32", max_model_len=512, kv_cache_gb=1, seed=0)
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def trainer():
    model, _ = load_model("smollm2-135m")
    return model


def response_logprobs(model, sample, temperature: float) -> torch.Tensor:
    """The trainer's log softmax(logits / T) of each response token (plain torch), shape (len(response),)."""
    ids = torch.tensor([sample.prompt_ids + sample.response_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(sample.prompt_ids) - 1 : -1].float()
    return torch.log_softmax(logits / temperature, -1).gather(1, ids[0, len(sample.prompt_ids):, None]).squeeze(1)


def test_samples_follow_hf_engine_conventions(engine, trainer):
    tokenizer, eos = engine.tokenizer, set(eos_token_ids(engine.tokenizer))
    params = SamplingParams(n=8, temperature=0.7, max_new_tokens=4, seed=3)
    groups = engine.generate(PROMPTS, params)
    assert [len(g) for g in groups] == [8, 8]
    reasons = set()
    for prompt, group in zip(PROMPTS, groups):
        for s in group:
            reasons.add(s.finish_reason)
            assert s.prompt_ids == tokenizer(prompt, add_special_tokens=False).input_ids
            if s.finish_reason == "stop":  # EOS kept as the last token, none before it
                assert s.response_ids[-1] in eos and not eos & set(s.response_ids[:-1])
            else:
                assert s.finish_reason == "length" and len(s.response_ids) == 4 and not eos & set(s.response_ids)
            assert s.text == tokenizer.decode(s.response_ids, skip_special_tokens=True)
            assert len(s.logprobs) == len(s.response_ids) and all(lp <= 0 for lp in s.logprobs)
            # the sampler's log-probs are the policy's at the sampling temperature (fp32 on both sides)
            torch.testing.assert_close(torch.tensor(s.logprobs), response_logprobs(trainer, s, 0.7), atol=1e-3, rtol=0)
    assert reasons == {"stop", "length"}  # both branches checked (fixed seed)
    assert engine.generate(PROMPTS, params)[1][0].response_ids == groups[1][0].response_ids  # seeded


def test_stop_strings_are_kept(engine):
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=48, stop=["."], seed=5)
    samples = [s for g in engine.generate(PROMPTS, params) for s in g]
    stopped = [s for s in samples if s.finish_reason == "stop" and s.response_ids[-1] not in engine.eos_ids]
    assert stopped, "no sample ended on the stop string; change the seed"
    for s in stopped:  # the response ends with the token that completed ".", and no shorter prefix holds it
        assert "." in engine.tokenizer.decode(s.response_ids)
        assert "." not in engine.tokenizer.decode(s.response_ids[:-1])


def test_stop_token_ids_are_kept(engine):
    """A stop token id ends the response there (kept); the same seeded sample otherwise (greedy ends at once here)."""
    for seed in range(20):
        params = SamplingParams(n=1, temperature=1.0, max_new_tokens=12, seed=seed)
        full = engine.generate(PROMPTS[1:], params)[0][0].response_ids
        firsts = [i for i, t in enumerate(full) if t not in full[:i] and t not in engine.eos_ids]
        if len(firsts) >= 2:
            break
    stop_id = full[firsts[-1]]  # the latest first occurrence: the longest response that must still be cut there
    params.stop_token_ids = [stop_id]
    cut = engine.generate(PROMPTS[1:], params)[0][0]
    assert cut.response_ids == full[: full.index(stop_id) + 1] and cut.finish_reason == "stop"


def test_greedy_takes_the_argmax(engine, trainer):
    group = engine.generate(PROMPTS[:1], SamplingParams(n=2, temperature=0.0, max_new_tokens=8))[0]
    assert group[0].response_ids == group[1].response_ids
    s = group[0]
    ids = torch.tensor([s.prompt_ids + s.response_ids])
    with torch.no_grad():
        logits = trainer(input_ids=ids).logits[0, len(s.prompt_ids) - 1 : -1]
    assert s.response_ids == logits.argmax(-1).tolist()
    torch.testing.assert_close(torch.tensor(s.logprobs), response_logprobs(trainer, s, 1.0), atol=1e-3, rtol=0)


def test_sync_follows_the_trainer_and_the_probe_sees_a_skipped_sync(engine, trainer, tokenizer):
    probe_ids = engine.tokenizer(PROBE_TEXT, add_special_tokens=False).input_ids
    assert engine.probe(trainer) < PROBE_TOLERANCE  # same checkpoint on both sides
    params = SamplingParams(n=4, temperature=1.0, max_new_tokens=16, seed=11)
    before = engine.generate(PROMPTS, params)
    engine_before, trainer_before = engine.prompt_logprobs(probe_ids), trainer_logprobs(trainer, probe_ids)

    optimizer = torch.optim.AdamW(trainer.parameters(), lr=1e-3)
    batch = tokenizer(["The quick brown fox jumps over the lazy dog. " * 4], return_tensors="pt")
    for _ in range(3):
        trainer(**batch, labels=batch["input_ids"]).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with pytest.raises(RuntimeError, match="weight sync probe failed"):
        engine.probe(trainer)  # the engine still holds the old weights

    seconds = engine.sync_weights(trainer)
    assert seconds > 0
    assert engine.probe(trainer) < PROBE_TOLERANCE
    engine_change = engine.prompt_logprobs(probe_ids) - engine_before
    trainer_change = trainer_logprobs(trainer, probe_ids) - trainer_before
    assert trainer_change.abs().max() > 0.1  # the steps moved the policy ...
    torch.testing.assert_close(engine_change, trainer_change, atol=1e-3, rtol=0)  # ... and the engine with it
    after = engine.generate(PROMPTS, params)
    assert [s.response_ids for g in after for s in g] != [s.response_ids for g in before for s in g]


def test_probe_catches_one_corrupted_tensor(engine, trainer):
    corrupted = copy.deepcopy(trainer)
    with torch.no_grad():
        weight = corrupted.model.layers[5].mlp.down_proj.weight
        weight.add_(torch.randn_like(weight) * 0.01 * weight.std())  # 1% noise on one matrix of 211
    engine.sync_weights(corrupted)
    with pytest.raises(RuntimeError, match=r"weight sync probe failed: .* on 85 probe tokens differ by max"):
        engine.probe(trainer)
    engine.sync_weights(trainer)  # and back
    assert engine.probe(trainer) < PROBE_TOLERANCE


def test_sync_refuses_a_model_with_other_names(engine, trainer):
    with pytest.raises(Exception):  # e.g. a wrapper's "module." prefix: vLLM's loader rejects the names
        engine.sync_weights(torch.nn.ModuleDict({"module": trainer}))
    engine.sync_weights(trainer)  # a failed sync leaves the worker mid-session; a full one recovers it
    assert engine.probe(trainer) < PROBE_TOLERANCE


def test_train_zero_with_the_vllm_engine_probes_every_step(tmp_path):
    """The loop on the real engine: 3 steps of GRPO with TIS, the probe after every sync, drift near zero."""
    out = tmp_path / "run"
    r = run_training("train_zero.py", "--algo", "grpo", "--steps", "3", "--prompts-per-step", "2", "--group-size", "4",
                     "--max-new-tokens", "16", "--lr", "1e-4", "--tis-cap", "2.0", "--eval-every", "3",
                     "--eval-limit", "4", "--save-every", "0", "--out-dir", str(out))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "vLLM engine ready: probe max" in r.stdout
    before, *rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert before["step"] == 0 and "eval/add_one" in before  # the eval before training, on the vLLM engine
    assert [row["step"] for row in rows] == [1, 2, 3]
    for row in rows:
        assert row["probe_max_abs_diff"] < PROBE_TOLERANCE  # the engine followed every optimiser step
        assert row["time_sync"] > 0 and row["time_probe"] > 0
        assert 0 <= row["sampler_drift_abs"] < 1e-3 and abs(row["sampler_drift_kl"]) < 1e-5  # fp32 on both sides
        assert row["generated_tokens"] > 0
    assert "eval/add_one" in rows[-1]


def test_fsdp_sharded_training_syncs_into_vllm_and_passes_the_probe(tmp_path):
    """2 ranks of --shard fsdp, each with its own vLLM engine: every sync gathers the sharded weights one
    parameter at a time, and the probe scores them through the sharded policy (its root all-gathers).
    tests/parity_run.py gives the rewards variance, so every step moves the weights."""
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "tests/parity_run.py",
                        "--rollout-engine", "vllm", "--shard", "fsdp", "--algo", "grpo", "--steps", "2",
                        "--prompts-per-step", "2", "--group-size", "4", "--max-new-tokens", "12", "--lr", "1e-4",
                        "--vllm-kv-cache-gb", "0.25", "--vllm-max-model-len", "512", "--eval-every", "0",
                        "--save-every", "0", "--out-dir", str(out)],
                       cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "vLLM engine ready: probe max" in r.stdout
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [1, 2]
    for row in rows:
        assert row["probe_max_abs_diff"] < PROBE_TOLERANCE  # both ranks' engines hold the updated weights
        assert row["time_sync"] > 0 and row["generated_tokens"] > 0
    assert all(row["grad_norm"] > 0 for row in rows)  # the weights moved before each sync


CORRUPTING_RUN = '''
import copy, torch, tyro
import scale.vllm_engine, train_zero
original, calls = scale.vllm_engine.VLLMEngine.sync_weights, []

def corrupting_sync(self, model):  # the 2nd sync (the first of the loop): 1% noise on one matrix of 211
    calls.append(model)
    if len(calls) == 2:
        model = copy.deepcopy(model)
        with torch.no_grad():
            weight = model.model.layers[5].mlp.down_proj.weight
            weight.add_(torch.randn_like(weight) * 0.01 * weight.std())
    return original(self, model)

scale.vllm_engine.VLLMEngine.sync_weights = corrupting_sync
if __name__ == "__main__":
    train_zero.main(tyro.cli(train_zero.Config))
'''


def test_a_corrupted_sync_stops_the_run_before_it_logs_the_step(tmp_path):
    script, out = tmp_path / "corrupting_run.py", tmp_path / "run"
    script.write_text(CORRUPTING_RUN)
    r = run_training(script, "--steps", "3", "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "8",
                     "--eval-every", "0", "--save-every", "0", "--out-dir", str(out))
    assert r.returncode != 0
    assert "RuntimeError: weight sync probe failed: engine vs trainer log-probs on 85 probe tokens differ by max" in r.stderr
    assert not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text().strip()  # step 1 not logged


def test_more_prompt_tokens_than_one_step_holds(engine):
    """64 seeded requests of ~200 prompt tokens: on CPU a chunked prefill would crash the engine (see VLLMEngine)."""
    prompts = [f"Problem {i}: " + "Add the numbers one by one and explain each step carefully. " * 16 for i in range(8)]
    groups = engine.generate(prompts, SamplingParams(n=8, temperature=1.0, max_new_tokens=4, seed=2))
    assert sum(len(s.prompt_ids) for g in groups for s in g) > 8192  # vLLM on CPU schedules 4,096 tokens a step
    assert [len(g) for g in groups] == [8] * 8 and all(len(s.response_ids) >= 1 for g in groups for s in g)


def test_evaluate_gives_the_same_greedy_answers_with_vllm_and_transformers(tmp_path):
    """The engine seam of evaluate.py: --engine vllm and --engine hf decode the embedded model greedily to the same
    responses and verdicts on a held-out add_one draw, and write the same summary numbers."""
    flags = ["--benchmarks", "add_one", "--limit", "16", "--template", "chat_oneshot", "--max-new-tokens", "20"]
    for engine in ("vllm", "hf"):
        r = subprocess.run([sys.executable, "evaluate.py", *flags, "--engine", engine, "--out-dir", str(tmp_path / engine)],
                           cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=900)
        assert r.returncode == 0, r.stderr[-3000:]
    rows = {e: [json.loads(line) for line in (tmp_path / e / "add_one.jsonl").read_text().splitlines()] for e in ("vllm", "hf")}
    assert [(r["response"], r["reason"]) for r in rows["vllm"]] == [(r["response"], r["reason"]) for r in rows["hf"]]
    summaries = {e: json.loads((tmp_path / e / "summary.json").read_text())["benchmarks"]["add_one"] for e in rows}
    assert summaries["vllm"]["avg@1"] == summaries["hf"]["avg@1"] and summaries["vllm"]["problems"] == 16
