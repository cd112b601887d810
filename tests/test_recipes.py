"""recipes/: every paper run parses into train_zero's Config, fits per the memory plan, and its code path (the
recipe's algorithm, reward, template, data, sharding, dtype and schedule) runs 2 steps on CPU with a tiny
random-weight model of the same architecture family."""

import json
import re
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import tyro

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import memory_plan  # noqa: E402
import random_model  # noqa: E402

from data import default_data_dir  # noqa: E402
import sft  # noqa: E402
from sft import SFTConfig  # noqa: E402
from fidelity.protocols import apply  # noqa: E402
from train_zero import Config, config_problems, main  # noqa: E402

RECIPES = sorted((ROOT / "recipes").glob("*.sh"))
needs_data = pytest.mark.skipif(not (default_data_dir() / "train" / "math_12k_rebuilt.jsonl").exists(),
                                reason="no ../shared/data")


def recipe_command(path: Path, script: str) -> tuple[str, list[str]] | None:
    """(launcher, flags) of the recipe's `script` command (LAUNCH expanded, "$@" dropped, $DATA the data dir)."""
    text = path.read_text().replace("\\\n", " ")
    launch = re.search(r'^LAUNCH="(.*)"$', text, re.M)
    text = text.replace("$LAUNCH", launch.group(1) if launch else "$LAUNCH")
    line = next((line for line in text.splitlines() if f" {script} " in line and not line.startswith("#")), None)
    if line is None:
        return None
    launcher, flags = line.split(script, 1)
    return launcher, shlex.split(flags.replace('"$@"', "").replace('"$DATA', f'"{default_data_dir()}'))


def parse_recipe(path: Path) -> tuple[Config, dict, str]:
    """(Config of the train_zero.py command, header fields gpus / gpu-hours / plan-model, the launcher line)."""
    header = dict(re.findall(r"^# (gpus|gpu-hours|plan-model): (\S+)", path.read_text(), re.M))
    launcher, flags = recipe_command(path, "train_zero.py")
    return tyro.cli(Config, args=flags), header, launcher


def parse_sft(path: Path) -> SFTConfig | None:
    """The SFTConfig of the recipe's sft.py command (a warm-started system), else None."""
    command = recipe_command(path, "sft.py")
    return tyro.cli(SFTConfig, args=command[1]) if command else None


def test_the_recipes_cover_the_papers_runs():
    names = {path.stem for path in RECIPES}
    assert {"oat_zero_7b", "oat_zero_1.5b", "simplerl_zero_7b", "zoo_qwen2.5_0.5b", "zoo_qwen2.5_1.5b", "zoo_qwen2.5_7b",
            "zoo_llama3.1_8b", "zoo_mistral_7b", "zoo_deepseek_math_7b", "simplerl_7b"} <= names


@needs_data
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_parses_launches_its_gpus_and_fits_the_memory_plan(path):
    cfg, header, launcher = parse_recipe(path)
    gpus = int(header["gpus"])
    nodes = int(re.search(r"--nnodes (\d+)", launcher).group(1)) if "--nnodes" in launcher else 1
    assert nodes * int(re.search(r"--nproc_per_node (\d+)", launcher).group(1)) == gpus
    assert float(header["gpu-hours"]) > 0
    if sft_cfg := parse_sft(path):  # SFT, then RL from its last checkpoint, with the same launcher and prompt
        assert recipe_command(path, "sft.py")[0].split("--rdzv-id")[0] == launcher.split("--rdzv-id")[0]
        assert cfg.model == f"{sft_cfg.out_dir}/checkpoints/step_{sft_cfg.steps:06d}" and cfg.template == sft_cfg.template
        assert sft_cfg.steps % sft_cfg.save_every == 0 and sft_cfg.max_tokens <= cfg.vllm_max_model_len
        missing_set = f"--train-data {sft_cfg.train_data}: no such file"  # data.prepare --sft writes it (needs the hub)
        assert [p for p in sft.config_problems(sft_cfg, gpus) if not p.startswith(missing_set)] == []
        cfg = replace(cfg, model=f"Qwen/{header['plan-model']}")  # the checkpoint does not exist yet
    assert [p for p in config_problems(cfg, gpus) if "needs vllm" not in p] == []  # vLLM: installed on the GPU machines
    config = memory_plan.load_config(header["plan-model"])
    assert 1024 + cfg.max_new_tokens <= min(config.max_position_embeddings, cfg.vllm_max_model_len)
    flags = ["--model", header["plan-model"], "--gpus", str(gpus), "--algo", cfg.algo, "--shard", cfg.shard,
             "--dtype", cfg.dtype, "--kl-coef", str(cfg.kl_coef), "--micro-batch-size", str(cfg.micro_batch_size),
             "--prompt-tokens", "1024", "--max-new-tokens", str(cfg.max_new_tokens),
             "--prompts-per-step", str(cfg.prompts_per_step), "--group-size", str(cfg.group_size), "--engine", cfg.rollout_engine]
    plan = memory_plan.main(flags + (["--gradient-checkpointing"] if cfg.gradient_checkpointing else []))
    assert plan["fits"], f"{path.name}: {plan['peak'] / 1e9:.1f} GB per rank"


def tiny_model(header: dict, smollm_dir, tmp_path) -> str:
    """A 2-layer random-weight model of the recipe's family (its shipped config, shrunk), saved; returns its dir."""
    return random_model.build(header["plan-model"], smollm_dir, str(tmp_path / "model"), dtype="float32", overrides=dict(
        num_hidden_layers=2, hidden_size=64, intermediate_size=128, num_attention_heads=4, num_key_value_heads=2,
        vocab_size=49152))


@needs_data
@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_code_path_runs_two_steps_on_a_tiny_model_of_its_family(path, tmp_path, smollm_dir, parity_reward):
    cfg, header, _ = parse_recipe(path)
    tiny = tiny_model(header, smollm_dir, tmp_path)
    if sft_cfg := parse_sft(path):  # the warm start's code path first, on a few MATH pairs; RL starts from it
        math = [json.loads(line) for line in (default_data_dir() / "train" / "math_lvl3to5_rebuilt.jsonl").open()][:8]
        (tmp_path / "sft.jsonl").write_text("".join(json.dumps(row) + "\n" for row in math))
        sft.main(replace(sft_cfg, model=tiny, train_data=str(tmp_path / "sft.jsonl"), out_dir=str(tmp_path / "sft"),
                         steps=2, batch_size=2, micro_batch_size=1, holdout=2, max_tokens=2048, eval_every=2,
                         save_every=2, lr=1e-3))
        tiny = str(tmp_path / "sft" / "checkpoints" / "step_000002")
    cfg = replace(apply(cfg, cfg.protocol), protocol="")  # resolved now, so the overrides below stay overrides
    rows = main(replace(cfg, model=tiny, out_dir=str(tmp_path / "run"), steps=2, prompts_per_step=2, group_size=2,
                        micro_batch_size=2, max_new_tokens=8, rollout_engine="hf", eval_every=2, eval_limit=2,
                        save_every=2, lr=1e-3, critic_lr=1e-3,
                        stop_token_ids=tuple(i % 49152 for i in cfg.stop_token_ids),  # the real model's ids, into
                        # the tiny model's vocabulary: the stops stay on the code path
                        # a random model never stops, so every response is truncated: zero_reward would zero them
                        # all (test_train.py tests that mode); keep them here so the loss has something to learn
                        truncated="keep"))
    assert [r["step"] for r in rows] == [0, 1, 2] and all(r["grad_norm"] > 0 for r in rows[1:])  # 0: the eval before
    assert "eval/math500" in rows[-1] and (tmp_path / "run" / "checkpoints" / "step_000002").is_dir()
