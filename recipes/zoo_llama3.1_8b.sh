#!/usr/bin/env bash
# SimpleRL-Zoo, meta-llama/Llama-3.1-8B: GRPO with the Zoo's mix reward (1 right / 0, no box needed) on the zoo-easy data (Zeng et al. 2025,
# "SimpleRL-Zoo"; hkust-nlp/simpleRL-reason train_grpo_math_tune_ray.sh, verl; docs/papers.md §4).
# 2 nodes of 8 GPUs: run this on each node with the same MASTER_ADDR (the first node's address).
# gpus: 16
# gpu-hours: 253 (estimated: the Qwen2.5-7B's 240 H100-hours x 8.03B / 7.62B parameters (the paper gives none))
# plan-model: llama-3.1-8b
# Template: abel (SimpleRL-Zoo issue #71). Response budget 8192.
# Steps: about 100 rollout batches of 1,024 prompts (the Zoo's 7B/14B runs); 4 optimiser steps each (mini-batch 256).
# --protocol simplerl_zoo: the Zoo's extraction, math-verify grader, reward, token-mean loss, KL clamp
#   (tests/test_upstream.py checks each value against upstream's source lines).
# Deviations: the Zoo's data files are rebuilt from ../shared/data (data.ZOO_PRESETS; README); verl's KL loss is
# k3 ("low_var_kl"), as here.
set -euo pipefail
cd "$(dirname "$0")/.."
export ZERO_RL_DATA=${ZERO_RL_DATA:-../shared/data}
torchrun --nnodes 2 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint "${MASTER_ADDR:-localhost}:29500" \
    --rdzv-id zoo_llama3.1_8b train_zero.py \
    --protocol simplerl_zoo --model meta-llama/Llama-3.1-8B --template abel --train-data zoo-easy \
    --algo grpo --prompts-per-step 1024 --group-size 8 --updates-per-batch 4 --micro-batch-size 2 \
    --max-new-tokens 8192 --temperature 1.0 --top-p 1.0 --clip-eps 0.2 --entropy-coef 0.001 \
    --kl-coef 1e-4 --kl-estimator k3 --kl-in loss --max-grad-norm 1.0 --truncated keep --stop-token-ids 14924 16533 \
    --lr 5e-7 --lr-schedule constant --adam-betas 0.9 0.999 --adam-eps 1e-8 --weight-decay 0.01 \
    --shard fsdp --dtype bfloat16 --gradient-checkpointing --rollout-engine vllm --vllm-max-model-len 9216 \
    --steps 100 --eval-data math500 --eval-limit 500 --eval-every 5 --save-every 5 \
    --out-dir runs/zoo_llama3.1_8b "$@"
