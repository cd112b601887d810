#!/usr/bin/env bash
# SimpleRL-7B, the warm-started system: SFT of Qwen2.5-Math-7B on SimpleRL's QwQ-32B-Preview long chain-of-thought
# answers to MATH questions (AndrewZeng/SimpleRL-SFT, the set the authors name in hkust-nlp/simpleRL-reason issue
# #79; `python -m data.prepare --out DIR --sft` writes it to DIR/sft/simplerl_sft.jsonl), then the PPO run of
# simplerl_zero_7b.sh from the SFT checkpoint, both with SimpleRL's o1_cot prompt (reward.TEMPLATES). Four nodes of
# 8 GPUs: run this on each node with the same MASTER_ADDR; torchrun's c10d rendezvous assigns the ranks.
# gpus: 32
# gpu-hours: 1154 (RL as simplerl_zero_7b.sh, 1,152; SFT estimated at 2: about 50M target tokens, 2 epochs of
#   ~8K pairs of up to 4,096 tokens, at 6 x 7.6B FLOPs per token and 40 % of an H100's bf16 peak)
# plan-model: qwen2.5-math-7b
# Published: not in docs/papers.md §5 (its numbers are SimpleRL-Zero's).
# SFT settings are not published: the ones below are ours (lr 1e-5 cosine after a 3 % warmup, 64 pairs per step,
#   2 epochs, pairs over 4,096 tokens dropped and counted, as are answers that do not grade equal to MATH's gold).
# Deviations: as simplerl_zero_7b.sh; the SFT set's columns were not inspected offline (data.prepare reads the usual
#   names and says which it found); QwQ answers longer than the 3,000 RL tokens are truncated in RL, as in SimpleRL.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${ZERO_RL_DATA:-../shared/data}
LAUNCH="torchrun --nnodes 4 --nproc_per_node 8 --rdzv-backend c10d --rdzv-endpoint ${MASTER_ADDR:-localhost}:29500"
$LAUNCH --rdzv-id simplerl_7b_sft sft.py \
    --model Qwen/Qwen2.5-Math-7B --template o1_cot --train-data "$DATA/sft/simplerl_sft.jsonl" \
    --max-tokens 4096 --holdout 256 --steps 250 --batch-size 64 --micro-batch-size 1 \
    --lr 1e-5 --lr-schedule cosine --warmup-ratio 0.03 --min-lr-ratio 0 --adam-betas 0.9 0.95 --weight-decay 0 \
    --max-grad-norm 1.0 --shard fsdp --dtype bfloat16 --gradient-checkpointing \
    --eval-every 50 --save-every 50 --out-dir runs/simplerl_7b/sft
$LAUNCH --rdzv-id simplerl_7b_rl train_zero.py \
    --protocol simplerl_zero --model runs/simplerl_7b/sft/checkpoints/step_000250 --template o1_cot --reward simplerl \
    --train-data "$DATA/train/math_lvl3to5_rebuilt.jsonl" \
    --algo ppo --prompts-per-step 1024 --group-size 8 --updates-per-batch 64 --micro-batch-size 2 \
    --max-new-tokens 3000 --temperature 0.6 --top-p 1.0 --clip-eps 0.2 --value-clip 0.2 --gamma 1.0 --gae-lambda 0.95 \
    --kl-coef 0.01 --kl-estimator k1 --kl-in reward --max-grad-norm 1.0 \
    --lr 5e-7 --critic-lr 9e-6 --lr-schedule cosine --warmup-ratio 0.03 --min-lr-ratio 0.1 \
    --adam-betas 0.9 0.95 --adam-eps 1e-8 --weight-decay 0 \
    --shard fsdp --dtype bfloat16 --gradient-checkpointing --rollout-engine vllm --vllm-max-model-len 4096 \
    --steps 166 --eval-data math500 --eval-limit 500 --eval-every 10 --save-every 10 \
    --out-dir runs/simplerl_7b/rl "$@"
