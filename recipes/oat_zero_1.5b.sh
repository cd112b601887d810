#!/usr/bin/env bash
# Oat-Zero-1.5B: Dr. GRPO from Qwen2.5-Math-1.5B (Liu et al. 2025; sail-sg/understand-r1-zero
# examples/qwen2.5-math-1.5b.sh, which trains on math_12k; docs/papers.md §4).
# gpus: 8
# gpu-hours: 44 (estimated: the 7B's 216 A100-hours x 1.54B / 7.62B parameters, assuming step time scales with
#   the parameter count at the same tokens; the paper gives no wall time for 1.5B)
# plan-model: qwen2.5-math-1.5b
# Published: AIME24 20.0, AMC 53.0 (83 problems), MATH500 74.2, Minerva 25.7, OlympiadBench 37.6 (docs/papers.md §5).
# Deviations: MATH 12k is rebuilt here (12,000 rows, ../shared/data/README.md); --steps 500 is an upper bound,
# as for the 7B.
# In-training eval as oat's: its five sets in full (--eval-data oat: Minerva accepts any listed answer), greedy,
# every 16 steps. --protocol oat_zero sets the rest of oat's protocol (tests/test_upstream.py checks each value).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${ZERO_RL_DATA:-../shared/data}
torchrun --nproc_per_node 8 train_zero.py \
    --protocol oat_zero --model Qwen/Qwen2.5-Math-1.5B --template qwen_math --reward correct --truncated zero_reward \
    --train-data "$DATA/train/math_12k_rebuilt.jsonl" \
    --algo drgrpo --prompts-per-step 128 --group-size 8 --updates-per-batch 8 --micro-batch-size 4 \
    --max-new-tokens 3000 --temperature 1.0 --top-p 1.0 --clip-eps 0.2 --kl-coef 0 --max-grad-norm 1.0 \
    --lr 1e-6 --lr-schedule constant --adam-betas 0.9 0.95 --adam-eps 1e-8 --weight-decay 0 \
    --shard fsdp --dtype bfloat16 --gradient-checkpointing --rollout-engine vllm --vllm-max-model-len 4096 \
    --steps 500 --eval-data oat --eval-limit 0 --eval-every 16 --save-every 16 \
    --out-dir runs/oat_zero_1.5b "$@"
