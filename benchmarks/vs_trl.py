"""Seconds per RL step and peak memory: our trainer (train_zero.py) vs TRL's GRPOTrainer, same model, data, settings.

    pip install -r requirements-bench.txt          # trl==1.16.0 (+ datasets); leaves torch and transformers as they are
    python benchmarks/vs_trl.py                    # 4 steps each side, the settings below, 2 threads
    python benchmarks/vs_trl.py --steps 8 --sides ours    # one side only (ours needs no trl)
One GPU (--device cuda; section "On a GPU" below), a random-weight Qwen2.5-Math-1.5B, a reward with variance:
    python benchmarks/random_model.py --model qwen2.5-math-1.5b --tokenizer smollm2-135m --out /tmp/qwen-1.5b-random --device cuda
    python benchmarks/vs_trl.py --device cuda --model /tmp/qwen-1.5b-random --reward parity --steps 3 \\
        --prompts-per-step 8 --group-size 8 --max-new-tokens 1024 --micro-batch-size 8 --threads 8

Both sides run one after the other, each in its own fresh process (this script re-invoked with --side),
with OMP_NUM_THREADS and torch.set_num_threads set to --threads, CUDA hidden (--device cpu, the default: fp32),
HF_HUB_OFFLINE=1:
- ours: the child runs train_zero.py as __main__ (runpy, its own CLI parsed by tyro) with the flags printed
  in the settings line; the step time is the sum of the stage timers train_zero.py writes to metrics.jsonl
  (time_rollout + time_reward + time_learn + time_sync: sampling, reward, the learn pass and optimiser
  step, weight sync; logging after the step is not counted).
- trl: the child builds GRPOTrainer(model=<the same HF directory>, reward_funcs=[our reward], GRPOConfig(...))
  and times each optimiser step with a TrainerCallback, on_step_begin -> on_step_end. TRL generates inside
  the step (GRPOTrainer._prepare_inputs on the first micro-batch), so its step also holds sampling, reward,
  the 4 forward/backward micro-batches, gradient clipping and the optimiser step; logging comes after
  on_step_end and is not counted. Its generation time is taken by timing GRPOTrainer._generate.
s/step is the mean over steps 2..N (step 1 is warm-up, shown apart). Peak RSS is the child's own VmHWM
(/proc/self/status) read at its end: model load, sampling, training, everything but the grader's worker
processes (the same Grader(5 s, 2 workers) on both sides). GB = 1e9 bytes, as metrics.peak_memory_gb.
Run it on an idle machine: with --threads equal to the cores, any other job oversubscribes them and the
times grow several-fold. Each child measures the CPU time other processes used while it ran (/proc/stat
minus its own getrusage); the script prints that share and warns above 10%.

Settings (both sides): the embedded SmolLM2-135M-Instruct (model.resolve_model("smollm2-135m"), an HF
directory; --model DIR: any HF directory instead, loaded by both sides) in fp32 with sdpa attention; the
built-in arithmetic problems (data.load_train_data, seed 0) in
train_zero's order (train_zero.problems_for_step; TRL gets exactly those rows with shuffle_dataset=False,
and its child checks it saw them in that order), templated with reward.apply_template("qwen_boxed", ...);
reward reward.compute_rewards(rule "simplerl": +1 / -0.5 / -1); --prompts-per-step 8 x --group-size 4
samples, at most --max-new-tokens 48 new tokens, temperature 1, top_p 1, no top_k; Dr. GRPO (advantage
r - mean(r) of the group, no std scaling; token losses summed and divided by L_max = max_new_tokens):
ours --algo drgrpo, TRL loss_type="dr_grpo", scale_rewards="none"; beta 0 (no KL, no reference model);
clip eps 0.2; AdamW (torch.optim.AdamW with fused=True, one kernel per parameter: ours always, TRL
optim="adamw_torch_fused") lr 3e-5 constant, weight decay 0, grad-norm clip 1.0; one optimiser step per rollout batch
of 32 responses, in micro-batches of --micro-batch-size 8 (ours --micro-batch-size 8; TRL
per_device_train_batch_size=8, gradient_accumulation_steps=4, hence steps_per_generation=4 and
generation_batch_size=32: one generate call of 32 sequences per step, as our HF engine); no gradient
checkpointing (--gradient-checkpointing: on for both, non-reentrant: ours --gradient-checkpointing, TRL
gradient_checkpointing=True), no bf16 (TRL's defaults turn both on; --device cuda: bf16 compute, below), no
eval, no checkpoints; seed 0.

Not identical, by design of each trainer: ours skips responses whose advantage is exactly 0 in the learn
pass (a group with equal rewards costs no forward/backward; the zero-std column shows how many there
were), TRL runs all 32; both take log-probs in chunks without materialising the logits [B, T, V]: ours
over the response tokens only (losses.chunked_logprobs_entropy), TRL 1.16 through its fused LM head
(trl.trainer.utils.add_fused_lm_head), which off CUDA scores every position, the prompt's too. The two
sides sample different tokens (different RNG streams), so response lengths differ a little; the table shows them.

--reward parity (both sides): tests/parity_run.parity_rewards, +1 for an even, -0.5 for an odd response index
within the step's batch, whatever the text. A random model's answers are all wrong, so with the real reward
every Dr. GRPO advantage is 0 and our learn pass would be skipped; with parity both sides learn on every
response. Both order a batch prompt by prompt, a group's samples adjacent (ours rollout.HFEngine, TRL's
RepeatSampler), so with an even --group-size every group scores (+1, -0.5, +1, -0.5, ...), advantages
+-0.75, no zero-std group. Ours: the child runs tests/parity_run.py as __main__ (train_zero with
compute_rewards replaced, so its --reward simplerl goes unused); TRL: the reward function calls the same
parity_rewards on each generation batch (TRL scores the whole batch of prompts-per-step x group-size
completions in one call, as train_zero does).

On a GPU (--device cuda; not measured yet): the children see the GPU (CUDA_VISIBLE_DEVICES left as it is;
each uses cuda:0). The same on both sides: fp32 master weights, gradients and AdamW moments with bf16
compute (ours --dtype bfloat16; TRL bf16=True over model_init_kwargs dtype="float32": accelerate wraps the
model's forward in torch.autocast(bfloat16), sampling included; checked on CPU, where the decoder's outputs
in _generate are bf16 and the weights and AdamW state fp32), sdpa, the settings above. Peak memory also as the
child's torch.cuda.max_memory_allocated() over its whole run, in GB (the "peak GPU GB" column; train_zero resets
that counter every step for its peak_memory_gb, so the child records the high-water mark before each reset;
the CUDA context and the allocator's cached slack are not counted, as in metrics.peak_memory_gb). What differs:
- ours runs --shard fsdp (--shard ddp to change; benchmarks/gpu_check.sh and docs/scaling.md's measured run
  use fsdp): FSDP2 on one rank (nothing split), parameters cast to bf16 for compute by its MixedPrecisionPolicy
  rather than autocast, and the transformers engine samples from its own bf16 copy of the weights (2 bytes per
  parameter more, 3.1 GB at 1.5B; refreshed after every optimiser step, in time_sync). TRL samples from the
  live fp32 model under autocast, which casts every weight to bf16 at every decoding step. With --shard ddp
  ours learns as TRL does (autocast over the live model) but samples in fp32, without autocast
  (rollout.HFEngine on the live model).
- log-probs: ours in bf16 with an fp32 log-sum-exp; TRL's fused LM head runs its Triton kernel on CUDA with
  fp32 accumulation, over the completion tokens only.
- neither uses a static KV cache or CUDA graphs for sampling (ours --hf-static-cache off, TRL
  cache_implementation None): transformers generate with a dynamic cache on both sides.

TRL and what it needs, as wheels for the GPU machine (Python 3.12, no network; torch 2.11, transformers and
triton there): trl 1.16.0 needs accelerate>=1.10.1 (imported by GRPOTrainer; transformers' Trainer needs it
too), datasets, pandas, pyarrow, psutil and transformers>=4.56.2; datasets 5.2.0 adds pyarrow>=24, dill,
multiprocess, xxhash; pandas 3.1.1 adds python-dateutil (with tzdata). Their other needs (numpy, pyyaml,
jinja2, packaging, huggingface_hub, fsspec, tqdm, filelock) come with torch and transformers and are not
counted. Measured with `pip download --no-deps` (cp312, manylinux x86_64; the versions pip resolves with
requirements-bench.txt's pins, accelerate as in our .venv), MiB (2**20 bytes):
    pyarrow 26.0.1 52.49 | pandas 3.1.1 11.47 | trl 1.16.0 0.90 | datasets 5.2.0 0.58 | xxhash 4.1.0 0.45
    accelerate 1.16.0 0.37 | tzdata 2026.6 0.33 | psutil 7.2.2 0.15 | multiprocess 0.70.19 0.14
    dill 0.4.1 0.11 | python-dateutil 4.0.0 0.09 | total 67.10
All of it does NOT fit in one call's 64 MiB (the working tree, 1.2 MiB, travels in the same 64 MiB): there,
`--sides ours` reports ours alone. With pyarrow 24.0.0, the oldest datasets 5.2.0 accepts (46.60 MiB), it
is 61.21 MiB, 2.8 MiB under the limit with nothing else carried. But the GPU machine's image already holds
accelerate (1.15.0), pandas, pyarrow, psutil, python-dateutil and xxhash (/work/.library/device/KINDS.md; the
pyarrow version, which datasets 5.2.0 needs >= 24, is not known here): if those import there, only trl,
datasets, dill and multiprocess travel, 1.74 MiB, and both sides run in one call. pyarrow must then be the
image's own, in that Python's prefix: datasets fingerprints every Dataset with dill, which pickles a module
from outside sys.prefix by value, and a pyarrow installed with --target /tmp/site fails there
(Dataset.from_list: "Can't pickle <class 'MonthDayNano'>"; trl, datasets, dill and multiprocess under
--target are fine, checked on CPU).

Measured (python benchmarks/vs_trl.py, defaults; 2-core AVX2 CPU, idle: other processes 0% during both
children; torch 2.13.0+cpu, transformers 5.24.0, trl 1.16.0; script wall time 469 s):

    | side | s/step | peak RSS GB | generation s/step | step 1 s | mean response tokens | zero-std groups | reward |
    | ours | 37.91  | 4.18        | 24.02             | 31.72    | 45.9                 | 0.71            | -0.96  |
    | trl  | 75.59  | 5.33        | 25.00             | 76.33    | 45.6                 | 1.00            | -1.00  |
    ours/TRL: time per step 0.50x, peak RSS 0.78x, generation 0.96x

Generation costs the same on both sides (transformers generate on the live fp32 model). The difference is
the learn pass: at 48 tokens almost no response reaches a \\boxed{} answer, so most groups have equal
rewards; TRL still runs forward/backward over all 32 responses (zero loss), ours only over the ~29% with a
non-zero advantage. Per response learned the two cost roughly the same here (~1.5 s: (37.9 - 24.0) s for
~9 responses vs (75.6 - 25.0) s for 32), so with reward variance in every group the time gap should mostly
close (not measured); the peak-RSS gap should hold (both sides keep one micro-batch of 8 in the graph).
"""

import argparse
import json
import os
import runpy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEMPLATE, RULE = "qwen_boxed", "simplerl"
GRADER_TIMEOUT, GRADER_WORKERS = 5.0, 2
EMBEDDED = "smollm2-135m"  # the default --model (model.resolve_model converts it once into an HF directory)
PARITY_RUN = ROOT / "tests" / "parity_run.py"  # train_zero with the parity reward (+1 / -0.5 by response index)
RESULT = "VS_TRL_RESULT "  # prefix of the child's result line on stdout


# ---------------------------------------------------------------------------------------------
# The command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The parent's and the child's flags (sys.argv[1:] when argv is None). Exits with a message (argparse) when
    the micro-batch does not divide the batch, --steps < 2, --sides names an unknown side, or --model is
    neither the embedded model nor an HF directory (config.json)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=4, help="optimiser steps per side; s/step averages steps 2..N")
    parser.add_argument("--prompts-per-step", type=int, default=8)
    parser.add_argument("--group-size", type=int, default=4, help="samples per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--micro-batch-size", type=int, default=8, help="responses per forward/backward, both sides")
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads and OMP_NUM_THREADS of each child")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sides", default="ours,trl", help="comma-separated, run in this order")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="cpu: CUDA hidden, fp32; cuda: bf16 compute on fp32 weights, peak GPU memory measured")
    parser.add_argument("--model", default=EMBEDDED, help=f"an HF directory both sides load (default: the embedded "
                        f"{EMBEDDED}), e.g. what benchmarks/random_model.py writes")
    parser.add_argument("--reward", choices=("simplerl", "parity"), default="simplerl",
                        help="simplerl: reward.compute_rewards; parity: +1 / -0.5 by response index "
                             "(tests/parity_run.py), a reward with variance for a random model")
    parser.add_argument("--gradient-checkpointing", action="store_true", help="on both sides (off by default)")
    parser.add_argument("--shard", choices=("ddp", "fsdp"), default=None,
                        help="ours' --shard (default: train_zero's ddp on cpu, fsdp on cuda; see the docstring)")
    parser.add_argument("--side", choices=("ours", "trl"), help=argparse.SUPPRESS)  # set in the child process
    args = parser.parse_args(argv)
    if (args.prompts_per_step * args.group_size) % args.micro_batch_size:
        parser.error("--micro-batch-size must divide prompts-per-step x group-size")
    if args.steps < 2:
        parser.error("--steps must be >= 2 (step 1 is warm-up)")
    unknown = [side for side in args.sides.split(",") if side not in ("ours", "trl")]
    if unknown:
        parser.error(f"--sides {args.sides}: unknown side(s) {', '.join(unknown)}; use ours, trl or both, "
                     "comma-separated")
    if args.model != EMBEDDED:
        if not (Path(args.model) / "config.json").is_file():
            parser.error(f"--model {args.model}: not an HF directory (no config.json; the children run offline); build "
                         "one with python benchmarks/random_model.py --out DIR, or leave --model out for the embedded "
                         f"{EMBEDDED}")
        args.model = str(Path(args.model).resolve())
    return args


# ---------------------------------------------------------------------------------------------
# Measurements inside a child


def vmhwm_gb() -> float:
    """This process's peak resident set (VmHWM) in GB (1e9 bytes)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / 1e9
    raise RuntimeError("VmHWM not in /proc/self/status")


def cpu_seconds() -> tuple[float, float]:
    """(CPU seconds all processes on the machine have used since boot, CPU seconds this process and its waited-for
    children have used), from /proc/stat and getrusage; their difference over a run is other processes' CPU use."""
    import resource

    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = (sum(ticks[:8]) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
    own = sum(r.ru_utime + r.ru_stime for r in (resource.getrusage(resource.RUSAGE_SELF),
                                                 resource.getrusage(resource.RUSAGE_CHILDREN)))
    return busy, own


def track_cuda_peak():
    """Make torch.cuda.reset_peak_memory_stats record the high-water mark before it resets (train_zero's
    metrics.peak_memory_gb resets it every step); returns a function giving the process's peak of
    torch.cuda.max_memory_allocated over the whole run, in GB (1e9 bytes), on the current device."""
    import torch

    reset, before_resets = torch.cuda.reset_peak_memory_stats, [0]

    def recording_reset(device=None):
        before_resets[0] = max(before_resets[0], torch.cuda.max_memory_allocated(device))
        reset(device)

    torch.cuda.reset_peak_memory_stats = recording_reset
    return lambda: max(before_resets[0], torch.cuda.max_memory_allocated()) / 1e9


# ---------------------------------------------------------------------------------------------
# The two sides, each run in its own child process


def step_problems(args) -> list[list]:
    """The problems of steps 0..N-1, in the order train_zero.py uses them (one process)."""
    from data import load_train_data, step_indices

    problems = load_train_data("arithmetic", None, args.seed).problems
    return [[problems[i] for i in step_indices(len(problems), step, args.prompts_per_step, args.seed)]
            for step in range(args.steps)]


def ours_script(args) -> Path:
    """The script our child runs as __main__: train_zero.py, or tests/parity_run.py for --reward parity."""
    return PARITY_RUN if args.reward == "parity" else ROOT / "train_zero.py"


def ours_shard(args) -> str | None:
    """Ours' --shard: the flag's, else fsdp on cuda (a bf16 engine copy to sample from, as gpu_check.sh), else
    None (not passed: train_zero's ddp)."""
    return args.shard or ("fsdp" if args.device == "cuda" else None)


def ours_flags(args, model_path: str, out_dir: str) -> list[str]:
    """train_zero's command line for these settings (on CPU with the defaults: exactly the measured run's)."""
    cuda = args.device == "cuda"
    flags = ["--model", model_path, "--train-data", "arithmetic", "--template", TEMPLATE, "--reward", RULE,
             "--algo", "drgrpo", "--steps", str(args.steps), "--prompts-per-step", str(args.prompts_per_step),
             "--group-size", str(args.group_size), "--max-new-tokens", str(args.max_new_tokens),
             "--micro-batch-size", str(args.micro_batch_size), "--updates-per-batch", "1", "--lr", str(args.lr),
             "--temperature", "1.0", "--top-p", "1.0", "--kl-coef", "0", "--clip-eps", "0.2", "--max-grad-norm", "1.0",
             "--weight-decay", "0", "--dtype", "bfloat16" if cuda else "float32", "--attn-implementation", "sdpa",
             "--seed", str(args.seed), "--grader-timeout", str(GRADER_TIMEOUT), "--grader-workers", str(GRADER_WORKERS),
             "--eval-every", "0", "--save-every", "0", "--out-dir", out_dir]
    if shard := ours_shard(args):
        flags += ["--shard", shard]
    if args.gradient_checkpointing:
        flags.append("--gradient-checkpointing")
    return flags


def run_ours(args, model_path: str, out_dir: str) -> dict:
    import torch
    import transformers

    torch.set_num_threads(args.threads)
    script = ours_script(args)
    sys.argv = [script.name, *ours_flags(args, model_path, out_dir)]
    runpy.run_path(str(script), run_name="__main__")
    rows = [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return {"step_s": [r["time_rollout"] + r["time_reward"] + r["time_learn"] + r["time_sync"] for r in rows],
            "generate_s": [r["time_rollout"] for r in rows],
            "response_len": [r["response_length_mean"] for r in rows],
            "zero_std": [r["zero_adv_group_frac"] for r in rows],
            "reward": [r["reward_mean"] for r in rows],
            "same_prompts": True,  # ours defines the order
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}


def reward_function(reward: str):
    """The rule both sides score with: reward.compute_rewards (--reward simplerl) or tests/parity_run.parity_rewards
    (--reward parity: +1 for an even, -0.5 for an odd index in the list it is given). Either is called as
    f(responses, golds, template, rule, grader) -> list[RewardResult], one per response, in order."""
    if reward == "parity":
        return runpy.run_path(str(PARITY_RUN))["parity_rewards"]  # its module body only (not its __main__ block)
    from reward import compute_rewards

    return compute_rewards


def trl_config_kwargs(args, out_dir: str) -> dict:
    """GRPOConfig's arguments for these settings (the docstring's Settings; cuda: bf16=True over fp32 weights)."""
    cuda = args.device == "cuda"
    kwargs = dict(
        output_dir=out_dir, max_steps=args.steps, seed=args.seed, use_cpu=not cuda, bf16=cuda, fp16=False,
        model_init_kwargs={"dtype": "float32", "attn_implementation": "sdpa"},
        gradient_checkpointing=args.gradient_checkpointing, per_device_train_batch_size=args.micro_batch_size,
        gradient_accumulation_steps=args.prompts_per_step * args.group_size // args.micro_batch_size,
        num_generations=args.group_size, max_completion_length=args.max_new_tokens, shuffle_dataset=False,
        temperature=1.0, top_p=1.0, top_k=0, loss_type="dr_grpo", scale_rewards="none", beta=0.0, epsilon=0.2,
        num_iterations=1, learning_rate=args.lr, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        optim="adamw_torch_fused", max_grad_norm=1.0, eval_strategy="no", save_strategy="no", report_to="none",
        logging_steps=1, disable_tqdm=True, dataloader_num_workers=0)
    if args.gradient_checkpointing:  # non-reentrant, as ours (model.enable_gradient_checkpointing)
        kwargs["gradient_checkpointing_kwargs"] = {"use_reentrant": False}
    return kwargs


def run_trl(args, model_path: str, out_dir: str) -> dict:
    import torch
    import transformers
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from grader_pool import Grader
    from reward import apply_template

    torch.set_num_threads(args.threads)
    steps = step_problems(args)
    rows = [{"prompt": apply_template(TEMPLATE, p.problem), "problem": p.problem, "answer": p.answer}
            for problems in steps for p in problems]
    grader = Grader(GRADER_TIMEOUT, GRADER_WORKERS)
    rewards = reward_function(args.reward)
    seen: list[list[str]] = []  # the problems each reward call got, one entry per step

    def score(prompts, completions, answer, problem, **kwargs):
        seen.append(list(dict.fromkeys(problem)))
        return [r.score for r in rewards(completions, answer, TEMPLATE, RULE, grader)]

    score.__name__ = args.reward  # TRL's name for it in its logs (rewards/simplerl/mean)

    generate_s: list[float] = []

    class Trainer(GRPOTrainer):
        def _generate(self, prompts):
            start = time.perf_counter()
            out = super()._generate(prompts)
            generate_s.append(time.perf_counter() - start)
            return out

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.start, self.step_s, self.logs = 0.0, [], []

        def on_step_begin(self, a, state, control, **kwargs):
            self.start = time.perf_counter()

        def on_step_end(self, a, state, control, **kwargs):
            self.step_s.append(time.perf_counter() - self.start)

        def on_log(self, a, state, control, logs=None, **kwargs):
            if logs and "completions/mean_length" in logs:
                self.logs.append(dict(logs))

    config = GRPOConfig(**trl_config_kwargs(args, out_dir))
    assert config.generation_batch_size == args.prompts_per_step * args.group_size and config.steps_per_generation \
        == config.gradient_accumulation_steps, "one generation batch per optimiser step"
    timer = StepTimer()
    trainer = Trainer(model=model_path, reward_funcs=[score], args=config, train_dataset=Dataset.from_list(rows),
                      callbacks=[timer])
    trainer.train()
    grader.close()
    return {"step_s": timer.step_s, "generate_s": generate_s,
            "response_len": [log["completions/mean_length"] for log in timer.logs],
            "zero_std": [log["frac_reward_zero_std"] for log in timer.logs],
            "reward": [log["reward"] for log in timer.logs],
            "same_prompts": seen == [[p.problem for p in problems] for problems in steps],
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "trl": trl.__version__}}


def child(args) -> None:
    from model import resolve_model

    start, (busy_start, own_start) = time.perf_counter(), cpu_seconds()
    cuda_peak_gb = track_cuda_peak() if args.device == "cuda" else None
    model_path = resolve_model(args.model)
    with tempfile.TemporaryDirectory(prefix=f"vs_trl_{args.side}_") as out_dir:
        result = (run_ours if args.side == "ours" else run_trl)(args, model_path, out_dir)
    wall, (busy, own) = time.perf_counter() - start, cpu_seconds()
    other = (busy - busy_start) - (own - own_start)  # CPU seconds used by other processes meanwhile
    result.update(side=args.side, model=model_path, peak_rss_gb=vmhwm_gb(), child_s=wall,
                  cpu_s=own - own_start, other_cpu_share=max(other, 0.0) / (wall * (os.cpu_count() or 1)))
    if cuda_peak_gb:
        import torch

        result.update(peak_gpu_gb=cuda_peak_gb(), gpu=torch.cuda.get_device_name())
    print(RESULT + json.dumps(result), flush=True)


# ---------------------------------------------------------------------------------------------
# The parent: run the sides, print the table


def child_env(args, environ: dict) -> dict:
    """The children's environment: --threads, offline hub, and CUDA hidden unless --device cuda."""
    env = {**environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if args.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def settings_lines(args, model: str, gpu: str | None = None) -> list[str]:
    """The settings, our command line and TRL's config, as printed above the table."""
    cuda = args.device == "cuda"
    name = " (SmolLM2-135M-Instruct)" if args.model == EMBEDDED else ""
    precision = "fp32 weights, bf16 compute" if cuda else "fp32"
    rule = f"{RULE} reward" if args.reward == "simplerl" else "parity reward (+1 even / -0.5 odd response index)"
    device = f"CUDA {gpu or ''}".rstrip() if cuda else "CPU"
    if shard := ours_shard(args):
        device += f", ours --shard {shard}"
    checkpointing = " | gradient checkpointing" if args.gradient_checkpointing else ""
    script = ours_script(args).relative_to(ROOT)
    return [f"settings: model {model}{name} {precision} sdpa | {args.prompts_per_step} prompts x "
            f"{args.group_size} samples, <= {args.max_new_tokens} new tokens, temperature 1, top_p 1 | Dr. GRPO "
            f"(no std scaling, loss / L_max), beta 0 (no reference), clip 0.2, AdamW lr {args.lr:g} constant, "
            f"grad clip 1.0 | 1 optimiser step per rollout batch, micro-batch {args.micro_batch_size}{checkpointing} | "
            f"arithmetic data, {TEMPLATE} template, {rule} | {device}, {args.threads} threads | {args.steps} steps, "
            f"s/step = mean of steps 2..{args.steps}",
            f"ours: python {script} {' '.join(ours_flags(args, model, 'TMP'))}",
            "trl: GRPOTrainer, GRPOConfig(loss_type='dr_grpo', scale_rewards='none', beta=0.0, "
            f"per_device_train_batch_size={args.micro_batch_size}, gradient_accumulation_steps="
            f"{args.prompts_per_step * args.group_size // args.micro_batch_size}, num_generations={args.group_size}, "
            f"max_completion_length={args.max_new_tokens}, optim='adamw_torch_fused', bf16={cuda}, "
            f"gradient_checkpointing={args.gradient_checkpointing}, shuffle_dataset=False, ...)"]


def table_lines(args, results: dict) -> list[str]:
    """The results table (markdown) and, with both sides, the ours/TRL ratios; cuda adds the peak GPU memory."""
    cuda = args.device == "cuda"
    lines = ["| side | s/step |" + (" peak GPU GB |" if cuda else "") + " peak RSS GB | generation s/step | step 1 s "
             "| mean response tokens | zero-std groups | reward | child total s |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- |" if cuda else "")]
    for side, r in results.items():
        gpu = f" {r['peak_gpu_gb']:.2f} |" if cuda else ""
        lines.append(f"| {side} | {mean(r['step_s'][1:]):.2f} |{gpu} {r['peak_rss_gb']:.2f} "
                     f"| {mean(r['generate_s'][1:]):.2f} | {r['step_s'][0]:.2f} | {mean(r['response_len'][1:]):.1f} "
                     f"| {mean(r['zero_std'][1:]):.2f} | {mean(r['reward'][1:]):.2f} | {r['child_s']:.0f} |")
    if {"ours", "trl"} <= results.keys():
        ours, theirs = results["ours"], results["trl"]
        gpu = f"peak GPU memory {ours['peak_gpu_gb'] / theirs['peak_gpu_gb']:.2f}x, " if cuda else ""
        lines.append(f"\nours/TRL (< 1: ours faster / smaller): time per step "
                     f"{mean(ours['step_s'][1:]) / mean(theirs['step_s'][1:]):.2f}x, {gpu}"
                     f"peak RSS {ours['peak_rss_gb'] / theirs['peak_rss_gb']:.2f}x, "
                     f"generation {mean(ours['generate_s'][1:]) / mean(theirs['generate_s'][1:]):.2f}x")
    return lines


def main(argv: list[str] | None = None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.side:
        child(args)
        return
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: torch sees no CUDA device here; run on a GPU machine, or use "
                             "--device cpu")
    env = child_env(args, os.environ)
    results, started = {}, time.perf_counter()
    for side in args.sides.split(","):
        print(f"running {side} ...", file=sys.stderr, flush=True)
        child_run = subprocess.run([sys.executable, __file__, *argv, "--side", side], env=env,
                                   capture_output=True, text=True)
        lines = [line for line in child_run.stdout.splitlines() if line.startswith(RESULT)]
        if child_run.returncode or not lines:
            hint = " (pip install -r requirements-bench.txt)" if "No module named 'trl'" in child_run.stderr else ""
            print(f"{side}: failed (exit {child_run.returncode}){hint}\n{child_run.stderr[-3000:]}")
            continue
        results[side] = json.loads(lines[-1][len(RESULT):])
    if not results:
        raise SystemExit(1)
    first = next(iter(results.values()))
    versions = {k: v for r in results.values() for k, v in r["versions"].items()}
    print("\n".join(settings_lines(args, first["model"], first.get("gpu"))))
    print("versions: " + ", ".join(f"{k} {versions.get(k, 'n/a')}" for k in ("torch", "transformers", "trl")))
    if "trl" in results:
        print(f"trl saw the same prompts in the same order: {'yes' if results['trl']['same_prompts'] else 'NO'}")
    print()
    print("\n".join(table_lines(args, results)))
    others = ", ".join(f"{side} {r['other_cpu_share']:.0%}" for side, r in results.items())
    print(f"(columns after peak RSS: means over steps 2..{args.steps}; CPU used by other processes while each child "
          f"ran, share of all CPUs: {others}; script wall time {time.perf_counter() - started:.0f} s)")
    if any(r["other_cpu_share"] > 0.1 for r in results.values()):
        print("warning: other processes used the CPUs during the run; the times are inflated and noisy (threads "
              "oversubscribed): rerun on an idle machine")


if __name__ == "__main__":
    main()
