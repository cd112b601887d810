"""benchmarks/vs_trl.py: the flags each side gets on CPU (the measured run's, unchanged) and on CUDA (bf16 compute,
peak GPU memory), the parity reward on both sides, the table; then our side end to end on a tiny random model."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import vs_trl  # noqa: E402 (benchmarks/ is not a package)

# train_zero's command line of the measured CPU run (the docstring's table), as vs_trl.py printed it before --device
MEASURED_OURS_FLAGS = [
    "--model", "MODEL", "--train-data", "arithmetic", "--template", "qwen_boxed", "--reward", "simplerl", "--algo",
    "drgrpo", "--steps", "4", "--prompts-per-step", "8", "--group-size", "4", "--max-new-tokens", "48",
    "--micro-batch-size", "8", "--updates-per-batch", "1", "--lr", "3e-05", "--temperature", "1.0", "--top-p", "1.0",
    "--kl-coef", "0", "--clip-eps", "0.2", "--max-grad-norm", "1.0", "--weight-decay", "0", "--dtype", "float32",
    "--attn-implementation", "sdpa", "--seed", "0", "--grader-timeout", "5.0", "--grader-workers", "2",
    "--eval-every", "0", "--save-every", "0", "--out-dir", "TMP"]

# GRPOConfig's arguments of the measured CPU run
MEASURED_TRL_CONFIG = dict(
    output_dir="TMP", max_steps=4, seed=0, use_cpu=True, bf16=False, fp16=False,
    model_init_kwargs={"dtype": "float32", "attn_implementation": "sdpa"}, gradient_checkpointing=False,
    per_device_train_batch_size=8, gradient_accumulation_steps=4, num_generations=4, max_completion_length=48,
    shuffle_dataset=False, temperature=1.0, top_p=1.0, top_k=0, loss_type="dr_grpo", scale_rewards="none", beta=0.0,
    epsilon=0.2, num_iterations=1, learning_rate=3e-5, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
    optim="adamw_torch_fused", max_grad_norm=1.0, eval_strategy="no", save_strategy="no", report_to="none",
    logging_steps=1, disable_tqdm=True, dataloader_num_workers=0)


def test_cpu_defaults_are_the_measured_run():
    args = vs_trl.parse_args([])
    assert (args.device, args.model, args.reward, args.gradient_checkpointing, args.shard) == \
        ("cpu", "smollm2-135m", "simplerl", False, None)
    assert vs_trl.ours_flags(args, "MODEL", "TMP") == MEASURED_OURS_FLAGS
    assert vs_trl.ours_script(args) == ROOT / "train_zero.py"
    assert vs_trl.trl_config_kwargs(args, "TMP") == MEASURED_TRL_CONFIG
    assert vs_trl.settings_lines(args, "/m")[0] == (
        "settings: model /m (SmolLM2-135M-Instruct) fp32 sdpa | 8 prompts x 4 samples, <= 48 new tokens, temperature 1, "
        "top_p 1 | Dr. GRPO (no std scaling, loss / L_max), beta 0 (no reference), clip 0.2, AdamW lr 3e-05 constant, "
        "grad clip 1.0 | 1 optimiser step per rollout batch, micro-batch 8 | arithmetic data, qwen_boxed template, "
        "simplerl reward | CPU, 2 threads | 4 steps, s/step = mean of steps 2..4")
    env = vs_trl.child_env(args, {"CUDA_VISIBLE_DEVICES": "0", "PATH": "/bin"})
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["OMP_NUM_THREADS"] == "2" and env["HF_HUB_OFFLINE"] == "1"
    assert env["PATH"] == "/bin"


def test_cuda_is_bf16_compute_on_fp32_weights_on_both_sides():
    args = vs_trl.parse_args(["--device", "cuda"])
    ours = vs_trl.ours_flags(args, "MODEL", "TMP")
    assert ours[ours.index("--dtype") + 1] == "bfloat16"
    assert ours[ours.index("--shard") + 1] == "fsdp"  # the engine samples from its own bf16 copy
    assert "--gradient-checkpointing" not in ours
    assert ours.count("--dtype") == 1
    trl = vs_trl.trl_config_kwargs(args, "TMP")
    assert (trl["bf16"], trl["fp16"], trl["use_cpu"], trl["gradient_checkpointing"]) == (True, False, False, False)
    assert trl["model_init_kwargs"]["dtype"] == "float32"  # fp32 master weights, as ours
    assert {k: v for k, v in trl.items() if k not in ("bf16", "use_cpu")} == \
        {k: v for k, v in MEASURED_TRL_CONFIG.items() if k not in ("bf16", "use_cpu")}
    assert vs_trl.child_env(args, {"CUDA_VISIBLE_DEVICES": "3"})["CUDA_VISIBLE_DEVICES"] == "3"  # not hidden
    assert "CUDA_VISIBLE_DEVICES" not in vs_trl.child_env(args, {})
    settings, ours_line, trl_line = vs_trl.settings_lines(args, "/m", "NVIDIA H200")
    assert "fp32 weights, bf16 compute" in settings and "CUDA NVIDIA H200, ours --shard fsdp" in settings
    assert "--dtype bfloat16" in ours_line and "bf16=True" in trl_line


@pytest.mark.parametrize("argv, shard", [(["--device", "cuda", "--shard", "ddp"], "ddp"),
                                         (["--shard", "fsdp"], "fsdp"), (["--shard", "ddp"], "ddp")])
def test_shard_flag_reaches_ours(argv, shard):
    ours = vs_trl.ours_flags(vs_trl.parse_args(argv), "MODEL", "TMP")
    assert ours[ours.index("--shard") + 1] == shard and ours.count("--shard") == 1


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_gradient_checkpointing_on_both_sides(device):
    args = vs_trl.parse_args(["--device", device, "--gradient-checkpointing"])
    assert "--gradient-checkpointing" in vs_trl.ours_flags(args, "MODEL", "TMP")
    trl = vs_trl.trl_config_kwargs(args, "TMP")
    assert trl["gradient_checkpointing"] is True and trl["gradient_checkpointing_kwargs"] == {"use_reentrant": False}
    assert "gradient checkpointing" in vs_trl.settings_lines(args, "/m")[0]


def test_parity_reward_on_both_sides():
    args = vs_trl.parse_args(["--reward", "parity", "--group-size", "4"])
    assert vs_trl.ours_script(args) == ROOT / "tests" / "parity_run.py"
    assert vs_trl.settings_lines(args, "/m")[1].startswith("ours: python tests/parity_run.py --model /m ")
    rewards = vs_trl.reward_function("parity")
    n = args.prompts_per_step * args.group_size
    scores = [r.score for r in rewards(["no answer"] * n, ["7"] * n, vs_trl.TEMPLATE, vs_trl.RULE, None)]
    assert scores[:4] == [1.0, -0.5, 1.0, -0.5] and len(scores) == n
    groups = [scores[i:i + args.group_size] for i in range(0, n, args.group_size)]
    assert all(len(set(g)) > 1 for g in groups)  # every group has variance: every response is learned
    from reward import compute_rewards

    assert vs_trl.reward_function("simplerl") is compute_rewards


def test_model_must_be_an_hf_directory(tmp_path):
    with pytest.raises(SystemExit):
        vs_trl.parse_args(["--model", str(tmp_path / "missing")])
    (tmp_path / "config.json").write_text("{}")
    args = vs_trl.parse_args(["--model", str(tmp_path)])
    assert args.model == str(tmp_path.resolve())
    assert "(SmolLM2-135M-Instruct)" not in vs_trl.settings_lines(args, args.model)[0]


@pytest.mark.parametrize("argv", [["--steps", "1"], ["--micro-batch-size", "5"], ["--sides", "ours,trll"],
                                  ["--device", "tpu"], ["--reward", "correct"]])
def test_bad_flags_exit(argv):
    with pytest.raises(SystemExit):
        vs_trl.parse_args(argv)


def fake_result(peak_rss_gb: float, peak_gpu_gb: float | None = None) -> dict:
    result = {"step_s": [9.0, 2.0, 4.0], "generate_s": [5.0, 1.0, 1.0], "response_len": [8, 8, 8],
              "zero_std": [0.0, 0.0, 0.0], "reward": [0.25, 0.25, 0.25], "peak_rss_gb": peak_rss_gb, "child_s": 20.0}
    return result if peak_gpu_gb is None else {**result, "peak_gpu_gb": peak_gpu_gb}


def test_table_shows_peak_gpu_memory_on_cuda():
    cuda = vs_trl.table_lines(vs_trl.parse_args(["--device", "cuda"]),
                              {"ours": fake_result(4.0, 20.0), "trl": fake_result(8.0, 40.0)})
    assert "| peak GPU GB |" in cuda[0] and cuda[0].count("|") == cuda[1].count("|") == cuda[2].count("|")
    assert cuda[2].startswith("| ours | 3.00 | 20.00 | 4.00 |")
    assert "peak GPU memory 0.50x" in cuda[-1] and "peak RSS 0.50x" in cuda[-1]
    cpu = vs_trl.table_lines(vs_trl.parse_args([]), {"ours": fake_result(4.0), "trl": fake_result(8.0)})
    assert "GPU" not in "".join(cpu) and cpu[0].count("|") == cpu[1].count("|") == cpu[2].count("|")


def test_cuda_peak_survives_train_zeros_resets(monkeypatch):
    import torch

    allocated = {"peak": 0}
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: allocated["peak"])
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: allocated.update(peak=0))
    peak_gb = vs_trl.track_cuda_peak()
    allocated["peak"] = 7e9
    torch.cuda.reset_peak_memory_stats()  # as metrics.peak_memory_gb after each step
    allocated["peak"] = 2e9
    assert peak_gb() == 7.0
    allocated["peak"] = 9e9
    assert peak_gb() == 9.0


def run_script(argv: list[str]) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "vs_trl.py"), *argv], capture_output=True,
                          text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def table_row(stdout: str, side: str) -> list[str]:
    return [cell.strip() for cell in next(line for line in stdout.splitlines()
                                          if line.startswith(f"| {side} |")).strip("|").split("|")]


TINY = ["--reward", "parity", "--steps", "2", "--prompts-per-step", "2", "--group-size", "2", "--max-new-tokens", "8",
        "--micro-batch-size", "2", "--threads", "2"]


def test_ours_end_to_end_with_parity_reward(tiny_model_dir):
    """Our side on a tiny random model: with the parity reward no group is zero-std and the mean reward is 0.25."""
    stdout = run_script(["--model", tiny_model_dir, "--sides", "ours", *TINY])
    row = table_row(stdout, "ours")
    assert (row[6], row[7]) == ("0.00", "0.25")  # zero-std groups, reward (steps 2..N)
    assert "ours: python tests/parity_run.py" in stdout


@pytest.mark.skipif(importlib.util.find_spec("trl") is None, reason="needs trl (pip install -r requirements-bench.txt)")
def test_both_sides_end_to_end_with_parity_reward(tiny_model_dir):
    stdout = run_script(["--model", tiny_model_dir, "--sides", "ours,trl", *TINY])
    for side in ("ours", "trl"):
        row = table_row(stdout, side)
        assert (row[6], row[7]) == ("0.00", "0.25"), (side, row)
    assert "trl saw the same prompts in the same order: yes" in stdout
