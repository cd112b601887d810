"""benchmarks/memory_plan.py: exact parameter counts of the shipped configs, the plan's arithmetic, and its
refusals (every problem one line on stderr, exit 2, before anything is computed)."""

import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from memory_plan import (CONFIGS, GB, HUB_IDS, activation_bytes_per_token, count_parameters, load_config,  # noqa: E402
                         main, plan)

from data import UsageError  # noqa: E402


def by_hand(V, H, I, L, kv_heads, heads, tied):
    """Qwen2 parameter count: embeddings, per layer q/k/v (with biases), o, gate/up/down, two norms; final norm."""
    kv = kv_heads * (H // heads)
    layer = (H * H + H) + 2 * (H * kv + kv) + H * H + 3 * H * I + 2 * H
    return V * H * (1 if tied else 2) + L * layer + H, layer


@pytest.mark.parametrize("name, published, shape", [
    ("qwen2.5-math-1.5b", 1_543_714_304, (151936, 1536, 8960, 28, 2, 12, True)),
    ("qwen2.5-math-7b", 7_615_616_512, (152064, 3584, 18944, 28, 4, 28, False)),
])
def test_shipped_configs_count_exactly(name, published, shape):
    counts = count_parameters(load_config(name))
    total, layer = by_hand(*shape)
    assert counts["total"] == total == published  # Qwen2.5 model cards: 1.54B and 7.61B
    assert counts["layer_max"] == layer and counts["layers"] == 28 * layer
    assert counts["root"] == total - 28 * layer


def args(**overrides):
    base = dict(gpus=8, shard="fsdp", dtype="bfloat16", gradient_checkpointing=False, kl_coef=0.0, micro_batch_size=2,
                prompt_tokens=10, max_new_tokens=20, prompts_per_step=16, group_size=4, logprob_chunk_size=16,
                engine="vllm", vllm_gpu_memory_utilization=0.25, gpu_gb=80.0, algo="drgrpo")
    return SimpleNamespace(**{**base, **overrides})


def test_the_plan_adds_up_by_hand():
    config = SimpleNamespace(hidden_size=8, vocab_size=100, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=1)
    counts = {"total": 1000, "layer_max": 300, "layers": 600, "root": 400, "critic": 700}
    phases = plan(args(), config, counts, activations=(10.0, 100.0))
    learn = phases["learn"]
    assert learn["policy weights (fp32)"] == 4 * 1000 / 8 and learn["AdamW moments (fp32)"] == 8 * 1000 / 8
    assert learn["FSDP gathered units (root + 2 layers)"] == (400 + 2 * 300) * 2
    assert learn["activations (one micro-batch)"] == 2 * 30 * (10 + 2 * 100)  # tokens x (base + L x per layer)
    assert learn["log-prob kernel (2 chunk x vocab + lm_head grad)"] == 2 * 16 * 100 * 4 + 100 * 8 * 4
    assert phases["rollout"]["vLLM weights + KV cache (--vllm-gpu-memory-utilization)"] == 0.25 * 80 * GB
    ddp = plan(args(shard="ddp", algo="ppo", kl_coef=0.1, gradient_checkpointing=True), config, counts, (10.0, 100.0))
    assert ddp["learn"]["policy weights (fp32)"] == 4000 and ddp["learn"]["autocast bf16 weight copies"] == 2000
    assert ddp["learn"]["critic weights + grads + AdamW"] == 16 * 700 and ddp["learn"]["KL reference (fp32, frozen)"] == 4000
    assert ddp["learn"]["activations (one micro-batch)"] == 60 * (10 + 2 * 8 * 4 + 100)  # inputs kept, one layer recomputed


def test_activations_are_measured_per_token_and_per_layer():
    from transformers import LlamaConfig

    config = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2)
    base32, layer32 = activation_bytes_per_token(config, "float32")
    base16, layer16 = activation_bytes_per_token(config, "bfloat16")
    assert layer32 > 10 * 32 * 4  # at least ten hidden-size vectors per token per layer in fp32
    assert layer16 == pytest.approx(layer32 / 2, rel=0.2)  # bf16 halves them


def test_set_overrides_config_fields_and_rejects_unknown_ones():
    from memory_plan import parse_overrides

    config = load_config("qwen2.5-math-1.5b", parse_overrides(["num_hidden_layers=2", "hidden_size=64"]))
    assert config.num_hidden_layers == 2 and config.hidden_size == 64 and config.vocab_size == 151936
    with pytest.raises(ValueError, match="no field 'hidden_sise'"):
        load_config("qwen2.5-math-1.5b", {"hidden_sise": 64})
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_overrides(["num_hidden_layers"])


def test_random_model_has_the_configs_architecture_and_loads(tmp_path, smollm_dir):
    """benchmarks/random_model.py: a small model of the Qwen2.5-Math-1.5B family that train_zero can load."""
    from random_model import build

    from model import load_model

    small = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
             "num_key_value_heads": 2}
    out = build("qwen2.5-math-1.5b", smollm_dir, str(tmp_path / "m"), small, dtype="float32")
    lm, tokenizer = load_model(out)
    assert type(lm).__name__ == "Qwen2ForCausalLM" and lm.config.vocab_size == 151936
    assert lm.config.num_hidden_layers == 2 and lm.config.eos_token_id == tokenizer.eos_token_id
    assert sum(p.numel() for p in lm.parameters()) == count_parameters(load_config("qwen2.5-math-1.5b", small))["total"]
    again = build("qwen2.5-math-1.5b", smollm_dir, str(tmp_path / "again"), small, dtype="float32")
    assert all(torch.equal(a, b) for a, b in zip(lm.parameters(), load_model(again)[0].parameters()))  # seeded
    with pytest.raises(ValueError, match="more than"):  # SmolLM2's 49,152 ids do not fit a 1,000-id vocabulary
        build("qwen2.5-math-1.5b", smollm_dir, str(tmp_path / "x"), {**small, "vocab_size": 1000})


def test_the_vllm_share_default_is_what_the_trainer_leaves_free():
    from scale.vllm_engine import VLLM_MAX_SHARE, vllm_memory_share

    assert vllm_memory_share(80 * GB, 20 * GB, 2 * GB) == pytest.approx(58 / 80)
    assert vllm_memory_share(80 * GB, 1 * GB, 2 * GB) == VLLM_MAX_SHARE  # capped
    with pytest.raises(ValueError, match="trainer holds 76.0 GB of this GPU's 80.0 GB"):
        vllm_memory_share(80 * GB, 76 * GB, 2 * GB)
    config = SimpleNamespace(hidden_size=8, vocab_size=100, num_hidden_layers=2, num_attention_heads=2,
                             num_key_value_heads=1)
    counts = {"total": 10 * GB, "layer_max": 300, "layers": 600, "root": 400, "critic": 700}
    rollout = plan(args(vllm_gpu_memory_utilization=0.0, gpus=8), config, counts, (10.0, 100.0))["rollout"]
    held = 12 * 10 * GB / 8  # fp32 weights + AdamW moments, sharded over 8
    assert rollout["policy weights + AdamW (gradients freed)"] == held
    assert rollout["vLLM weights + KV cache (--vllm-gpu-memory-utilization)"] == pytest.approx(80 * GB - held - 2 * GB)


def test_peak_live_bytes_sums_the_profilers_allocations_and_frees_in_time_order():
    from torch.profiler import ProfilerActivity, profile
    from memory_plan import peak_live_bytes
    mb = 1 << 20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        a = torch.empty(8 * mb, dtype=torch.uint8)
        b = torch.empty(4 * mb, dtype=torch.uint8)
        del a  # 12 MB were live together; after this at most 4 + 6
        c = torch.empty(6 * mb, dtype=torch.uint8)
        del b, c
    assert 12 * mb <= peak_live_bytes(prof) < 12 * mb + mb // 4


def memory_plan_cli(*args):
    """memory_plan.py run as a command from the repository root: (return code, stdout, stderr lines)."""
    r = subprocess.run([sys.executable, "benchmarks/memory_plan.py", *args], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    return r.returncode, r.stdout, r.stderr.splitlines()


def assert_refused(code, stdout, lines, *expected):
    """Exit 2, no traceback, nothing computed (no plan printed), one "memory_plan.py: error: " line per problem."""
    assert code == 2 and stdout == "" and "Traceback" not in "\n".join(lines), (code, stdout, lines)
    assert all(line.startswith("memory_plan.py: error: ") for line in lines), lines
    assert len(lines) == len(expected) and all(text in line for text, line in zip(expected, lines)), lines


BAD_SIZES = [("--gpus", "0"), ("--micro-batch-size", "-1"), ("--max-new-tokens", "-5"), ("--prompts-per-step", "0"),
             ("--gpu-gb", "-1")]


@pytest.mark.parametrize("flag, value", BAD_SIZES)
def test_a_size_out_of_range_is_refused_before_anything_is_computed(flag, value, monkeypatch):
    monkeypatch.setattr("memory_plan.count_parameters", lambda config: pytest.fail("computed a plan"))
    with pytest.raises(UsageError, match=f"^{flag} {value}"):  # --gpus 0 was a ZeroDivisionError; the rest "fit"
        main([flag, value])


def test_every_bad_flag_is_one_line_of_the_command_line():
    flags = [arg for pair in BAD_SIZES for arg in pair]
    assert_refused(*memory_plan_cli(*flags, "--set", "num_hidden_layers"), *(f for f, _ in BAD_SIZES), "--set")
    assert_refused(*memory_plan_cli("--no-such-flag"), "unrecognized arguments: --no-such-flag")


def test_a_hub_id_of_a_shipped_config_plans_offline(monkeypatch):
    from transformers import AutoConfig

    monkeypatch.setattr(AutoConfig, "from_pretrained", lambda *a, **k: pytest.fail("went to the hub"))
    assert load_config("Qwen/Qwen2.5-Math-7B").to_dict() == load_config("qwen2.5-math-7b").to_dict()
    assert all((CONFIGS / f"{name}.json").is_file() for name in HUB_IDS.values())
    for recipe in (ROOT / "recipes").glob("*.sh"):  # each recipe's base model plans as its plan-model header says
        text = recipe.read_text()
        hub_ids = set(re.findall(r"--model ([\w.-]+/[\w.-]+) ", text)) & set(HUB_IDS)
        assert {HUB_IDS[h] for h in hub_ids} <= {re.search(r"# plan-model: (\S+)", text).group(1)}, recipe.name


def test_an_unknown_model_that_cannot_load_offline_is_one_line():
    assert_refused(*memory_plan_cli("--model", "no-such-org/no-such-model"), "--model no-such-org/no-such-model: not a shipped")
