#!/usr/bin/env bash
# The GPU check (issue #10): a few training steps of a random-weight model at a paper model's size on one
# GPU, with the memory plan's prediction beside the measured peak, then the log-prob kernel's GPU rows.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]        # env: MODEL, STEPS, PROMPTS, GROUP, NEW_TOKENS, MICRO, TOKENIZER, FLAGS
# FLAGS: more train_zero flags, e.g. FLAGS=--hf-static-cache (the transformers engine's CUDA-graph decode path).
#
# SET="KEY=VALUE ..." overrides config fields (the CPU dry run: SET="num_hidden_layers=2 hidden_size=64 ...").
# Defaults: the Qwen2.5-Math-1.5B config (benchmarks/configs), 3 steps of Dr. GRPO, 8 prompts x 8 samples x
# 1,024 new tokens, micro-batch 8, --dtype bfloat16 --shard fsdp --gradient-checkpointing, transformers engine,
# arithmetic prompts, the parity reward (below). TOKENIZER: an HF directory or smollm2-135m. Needs no network.
# Prints per step: s/step, generated tokens/s, the learn phase's tokens/s and MFU, peak allocated GB (metrics.jsonl).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu_check}
MODEL=${MODEL:-qwen2.5-math-1.5b} STEPS=${STEPS:-3} PROMPTS=${PROMPTS:-8} GROUP=${GROUP:-8}
NEW_TOKENS=${NEW_TOKENS:-1024} MICRO=${MICRO:-8} TOKENIZER=${TOKENIZER:-smollm2-135m}
DATA=arithmetic TEMPLATE=qwen_boxed  # the run's prompts, and the plan's prompt length below
sets=(); for kv in ${SET:-}; do sets+=(--set "$kv"); done  # SET="KEY=VALUE ...": config overrides (a smaller model)
DEVICE=$(python3 -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
mkdir -p "$out"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
      torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"

start=$SECONDS
python3 benchmarks/random_model.py --model "$MODEL" --tokenizer "$TOKENIZER" --out "$out/model" --device "$DEVICE" "${sets[@]}"
echo "random model: $((SECONDS - start)) s"

flags=(--train-data "$DATA" --template "$TEMPLATE" --algo drgrpo --dtype bfloat16 --shard fsdp --gradient-checkpointing --prompts-per-step "$PROMPTS"
       --group-size "$GROUP" --max-new-tokens "$NEW_TOKENS" --micro-batch-size "$MICRO" ${FLAGS:-})
start=$SECONDS
# tests/parity_run.py is train_zero.py with a reward that has variance (+1 / -0.5 by index): a random model's
# answers are all wrong, so with the real reward every advantage is 0 and the learn pass would be skipped.
PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH} torchrun --standalone --nproc_per_node 1 tests/parity_run.py --model "$out/model" "${flags[@]}" --steps "$STEPS" \
    --eval-every 0 --save-every "$STEPS" --out-dir "$out/run"
echo "training: $((SECONDS - start)) s"
python3 - "$out/run/metrics.jsonl" <<'EOF'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("| step | s/step | rollout s | learn s | sync s | generated tokens | tokens/s | learn tokens/s | learn MFU | peak allocated GB |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    seconds = r["time_rollout"] + r["time_reward"] + r["time_learn"] + r["time_sync"]
    mfu = f"{r['mfu']:.1%}" if "mfu" in r else "-"  # no known peak (CPU): --peak-tflops
    print(f"| {r['step']} | {seconds:.1f} | {r['time_rollout']:.1f} | {r['time_learn']:.1f} | {r['time_sync']:.2f} | "
          f"{r['generated_tokens']:.0f} | {r['tokens_per_s']:.0f} | {r['learn_tokens_per_s']:.0f} | {mfu} | "
          f"{r['peak_memory_gb']:.2f} |")
EOF
# The plan for the same run; it counts a runtime (CUDA context, allocator slack) that peak_memory_gb leaves out.
python3 - "$out/run/metrics.jsonl" "$out/model" "$MODEL" "$MICRO" "$NEW_TOKENS" "$PROMPTS" "$GROUP" "$DATA" "$TEMPLATE" ${SET:-} <<'EOF'
import json, sys
from types import SimpleNamespace
import torch
sys.path.insert(0, "benchmarks")
import memory_plan
metrics, model_dir, model, micro, new, prompts, group, data, template, *sets = sys.argv[1:]
prompt = memory_plan.longest_prompt(SimpleNamespace(model=model_dir, template=template, train_data=data))
gpu_gb = torch.cuda.get_device_properties(0).total_memory / 1e9 if torch.cuda.is_available() else 80.0
sets = [arg for kv in sets for arg in ("--set", kv)]
result = memory_plan.main(["--model", model, "--gpus", "1", "--algo", "drgrpo", "--shard", "fsdp", "--dtype", "bfloat16",
                           "--gradient-checkpointing", "--engine", "hf", "--micro-batch-size", micro,
                           "--prompt-tokens", str(prompt), "--max-new-tokens", new, "--prompts-per-step", prompts,
                           "--group-size", group, "--gpu-gb", str(gpu_gb), *sets])
measured = max(json.loads(line)["peak_memory_gb"] for line in open(metrics)) * 1e9
planned = result["peak"] - result["runtime"]
print(f"plan without runtime {planned / 1e9:.2f} GB, measured peak allocated {measured / 1e9:.2f} GB: "
      f"plan / measured = {planned / measured:.2f}")
EOF
