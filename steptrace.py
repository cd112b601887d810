"""`--trace`: one group of one step through every stage, in the order train_zero.py runs them, as a lesson.

    python train_zero.py --steps 1 --trace        # the embedded default: docs/trace.md shows its output

It prints what the loop computed for the first group of the first step (rank 0), nothing recomputed but the
advantages the two other group-relative algorithms would give and the per-token weight each aggregation gives:
the prompt as the model sees it, the G responses (tokens, finish reason), the extracted answers, verdicts and
rewards, the advantages (GRPO's, Dr. GRPO's, and the run's), the weight every token of a response gets in the
loss (GRPO: 1/|o_i|, Dr. GRPO: 1/L_max: the length bias in numbers), and the step's loss and gradient norm.
"""

from __future__ import annotations

from learn import ALGORITHMS
from losses import group_advantages


def format_trace(prompt: str, samples: list, results: list, advantages: list, row: dict, cfg) -> str:
    """The trace of one group as text.

    prompt: the templated prompt; samples, results: the group's G rollout.Sample and reward.RewardResult records;
    advantages: the group's (R_i,) advantage rows from learn.prepare_batch; row: the step's metrics row (loss,
    grad_norm, clip_fraction, entropy); cfg: the run's train_zero.Config.
    """
    import torch

    G, L = len(samples), cfg.max_new_tokens
    rewards = torch.tensor([r.score for r in results])
    grpo = group_advantages(rewards, G, scale_by_std=True).tolist()
    drgrpo = group_advantages(rewards, G, scale_by_std=False).tolist()
    mine = [float(a[0]) if len(a) else 0.0 for a in advantages]
    aggregation = ALGORITHMS[cfg.algo].aggregation if cfg.loss_agg == "algo" else cfg.loss_agg
    lines = [
        f"== --trace: step 1, the first group ({G} responses to one prompt), stage by stage ==",
        "",
        f"1. rollout. The prompt as the model sees it (--template {cfg.template}):",
        *(f"   | {line}" for line in prompt.splitlines()),
        f"   {G} responses sampled at temperature {cfg.temperature:g}, top-p {cfg.top_p:g}, at most {L} new tokens:",
        "   #   tokens  finish  response",
        *(f"   {i + 1:<3d} {len(s.response_ids):<7d} {s.finish_reason:<7s} {s.text!r}" for i, s in enumerate(samples)),
        "",
        f"2. reward (--reward {cfg.reward}, --extraction {cfg.extraction}): the answer read from each response, the "
        "grader's verdict, the reward.",
        "   #   answer          verdict      reward",
        *(f"   {i + 1:<3d} {str(r.answer):<15.15s} {r.reason:<12s} {r.score:+.2f}" for i, r in enumerate(results)),
        f"   mean reward {rewards.mean().item():+.3f}, std {rewards.std().item() if G > 1 else 0.0:.3f}",
        "",
        f"3. advantages. This run's (--algo {cfg.algo}) beside the two group-relative ones: Dr. GRPO's is "
        "r_i - mean(r); GRPO's divides it by the group's std (+1e-6).",
        f"   #   reward  Dr.GRPO   GRPO      this run ({cfg.algo}{', the first token' if cfg.algo == 'ppo' else ''})",
        *(f"   {i + 1:<3d} {rewards[i].item():+.2f}   {drgrpo[i]:+.4f}  {grpo[i]:+.4f}   {mine[i]:+.4f}"
          for i in range(G)),
        "",
        f"4. the loss's weight on each token of a response. GRPO (seq_mean_token_mean) gives 1/|o_i|: a long "
        f"response's tokens each count less. Dr. GRPO (seq_mean_token_sum_norm) gives every token 1/L_max = 1/{L}. "
        f"This run: {aggregation}.",
        "   #   |o_i|  GRPO 1/|o_i|  Dr.GRPO 1/L_max  GRPO A_i x |o_i| / |o_i|  Dr.GRPO A_i x |o_i| / L_max",
        *(f"   {i + 1:<3d} {len(s.response_ids):<6d} {1 / len(s.response_ids):<13.4f} {1 / L:<16.4f} "
          f"{grpo[i]:+.4f}{'':<20s}{drgrpo[i] * len(s.response_ids) / L:+.4f}" for i, s in enumerate(samples)),
        "   The last two columns are each response's total pull on the loss: under GRPO every response pulls with "
        "its advantage whatever its length; under Dr. GRPO a longer response pulls harder, so a long wrong answer "
        "is pushed down more and a long right one up more.",
        "",
        f"5. learn: the step's loss {row['loss']:+.6f} (all groups, all ranks), gradient norm before clipping "
        f"{row['grad_norm']:.4f} (clipped to {cfg.max_grad_norm:g}), clip fraction {row['clip_fraction']:.3f}, "
        f"entropy {row['entropy']:.3f} nats; then AdamW at lr {row['lr']:.2e}.",
    ]
    return "\n".join(lines)
