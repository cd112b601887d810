"""Peak memory and time of per-token log-probs over a large vocabulary: naive vs torch vs ours.

    python benchmarks/logprob_kernel.py                       # CPU: hidden 256, vocab 151,936, 4,096 tokens, fp32
    python benchmarks/logprob_kernel.py --device cuda --dtype bfloat16 --hidden 1536 --tokens 65536

Methods (forward + backward of sum(logp * g), the gradient w.r.t. hidden states and lm_head weight):
- naive: logits = hidden @ W.T, log_softmax, gather (the [tokens, vocab] logits exist in full);
- torch: F.linear_cross_entropy(reduction="none") (log-prob only, no entropy);
- ours:  losses.chunked_logprobs_entropy (log-prob and entropy, chunked, recomputing backward).
Each method runs in a fresh process. CPU peak memory is the process's VmHWM minus its RSS before
the measured call (inputs already allocated), so it counts what the method itself needs; on CUDA it
is torch.cuda.max_memory_allocated minus the allocation before the call. Time is the median of
--repeats runs after one warm-up. Effective TFLOP/s counts 8*N*H*V (forward, backward, recompute).
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def run_one(args) -> dict:
    import torch
    import torch.nn.functional as F

    from losses import chunked_logprobs_entropy

    torch.manual_seed(0)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    hidden = (torch.randn(args.tokens, args.hidden, device=device) * 0.5).to(dtype).requires_grad_()
    weight = (torch.randn(args.vocab, args.hidden, device=device) * 0.05).to(dtype).requires_grad_()
    targets = torch.randint(0, args.vocab, (args.tokens,), device=device)
    grad_out = torch.randn(args.tokens, device=device)

    def step():
        hidden.grad = weight.grad = None
        if args.method == "naive":
            logp = torch.log_softmax((hidden @ weight.T).float(), -1).gather(1, targets[:, None]).squeeze(1)
        elif args.method == "torch":
            logp = -F.linear_cross_entropy(hidden, weight, targets, reduction="none").float()
        else:
            logp, _ = chunked_logprobs_entropy(hidden, weight, targets, 1.0, args.chunk_size)
        (logp * grad_out).sum().backward()

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    step()  # warm-up
    sync()
    hidden.grad = weight.grad = None
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        reset_peak_rss()
        base = rss_kib("VmRSS") * 1024
    step()
    sync()
    peak = (torch.cuda.max_memory_allocated() if device.type == "cuda" else rss_kib("VmHWM") * 1024) - base
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t)
    seconds = statistics.median(times)
    flops = 8 * args.tokens * args.hidden * args.vocab
    return {"method": args.method, "peak_mib": peak / 2**20, "seconds": seconds, "tflops": flops / seconds / 1e12}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=151_936)
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--chunk-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--methods", default="naive,torch,ours")
    parser.add_argument("--method", help=argparse.SUPPRESS)  # set in the child process
    args = parser.parse_args()
    if args.method:
        print(json.dumps(run_one(args)))
        return
    rows = []
    for method in args.methods.split(","):
        child = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--method", method],
                               capture_output=True, text=True)
        if child.returncode:
            print(f"{method}: failed\n{child.stderr[-2000:]}")
            continue
        rows.append(json.loads(child.stdout.strip().splitlines()[-1]))
    print(f"device={args.device} dtype={args.dtype} N={args.tokens} H={args.hidden} V={args.vocab} chunk={args.chunk_size}")
    print("| method | peak MiB | seconds | effective TFLOP/s |\n| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['method']} | {r['peak_mib']:.0f} | {r['seconds']:.3f} | {r['tflops']:.3f} |")
    naive = next((r for r in rows if r["method"] == "naive"), None)
    ours = next((r for r in rows if r["method"] == "ours"), None)
    if naive and ours:
        print(f"ours vs naive: {naive['peak_mib'] / max(ours['peak_mib'], 1e-9):.1f}x less peak memory, "
              f"{ours['seconds'] / naive['seconds']:.2f}x the time")


if __name__ == "__main__":
    main()
