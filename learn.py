"""The learn stage: from a rewarded rollout batch to advantages and optimiser steps (policy and critic).

train_zero.py calls, each step:
    score(...)            -> logp_old, logp_ref, values: per-response rows from no-grad forward passes
    advantage_rows(...)   -> GRPO / Dr. GRPO group advantages, or PPO's GAE (whitened) and returns
    learn(...)            -> the clipped policy loss over mini- and micro-batches (losses.policy_loss)
    learn_critic(...)     -> the clipped value loss, same batching (losses.value_loss), PPO only

Per-response quantities travel as "rows": one 1-D float tensor per response with one entry per
response token (len(sample.response_ids)). `collate` lays samples out right-padded; `place_rows`
puts rows back at their response positions, so a row does not depend on the micro-batch it lands in.

Every micro-batch loss is divided by the global number of responses in its optimiser step and
multiplied by world_size (DDP averages gradients over ranks), so gradients equal those of one
process holding the whole batch, whatever the micro-batch size or number of ranks.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.distributed as dist
from torch.nn.utils.rnn import pad_sequence

from losses import gae_advantages, group_advantages, kl_estimate, policy_loss, value_loss, whiten
from rollout import Sample

# ---------------------------------------------------------------------------------------------
# Layout: samples -> padded tensors, per-response rows <-> (B, T-1) positions


def collate(samples: list[Sample], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded prompt+response ids (B, T), attention_mask (B, T), response_mask (B, T-1).

    response_mask[b, t] = 1 when token t+1 of row b is a response token (it is scored at position t).
    """
    lengths = [len(s.prompt_ids) + len(s.response_ids) for s in samples]
    T = max(lengths)
    input_ids = torch.full((len(samples), T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(samples), T), dtype=torch.long)
    response_mask = torch.zeros((len(samples), T - 1), dtype=torch.float32)
    for b, s in enumerate(samples):
        P, R = len(s.prompt_ids), len(s.response_ids)
        input_ids[b, : P + R] = torch.tensor(s.prompt_ids + s.response_ids)
        attention_mask[b, : P + R] = 1
        response_mask[b, P - 1 : P + R - 1] = 1
    return input_ids.to(device), attention_mask.to(device), response_mask.to(device)


def response_rows(x: torch.Tensor, samples: list[Sample]) -> list[torch.Tensor]:
    """(B, T-1) positions -> one (R_b,) row per sample: the entries scoring its response tokens."""
    return [x[b, len(s.prompt_ids) - 1 : len(s.prompt_ids) + len(s.response_ids) - 1] for b, s in enumerate(samples)]


def place_rows(rows: list[torch.Tensor], samples: list[Sample], width: int, device) -> torch.Tensor:
    """Inverse of response_rows: (B, width) float32, zeros outside the response positions."""
    out = torch.zeros(len(samples), width, device=device)
    for b, (row, s) in enumerate(zip(rows, samples)):
        start = len(s.prompt_ids) - 1
        out[b, start : start + row.shape[0]] = row.to(device)
    return out


@torch.no_grad()
def score(module, samples: list[Sample], pad_id: int, device, micro_batch_size: int) -> list[torch.Tensor]:
    """One no-grad pass of a TokenLogProbs (log-probs) or ValueModel (values) over the samples.

    Returns one (R_i,) float32 row per sample, on the CPU.
    """
    rows: list[torch.Tensor] = []
    for start in range(0, len(samples), micro_batch_size):
        batch = samples[start : start + micro_batch_size]
        ids, attn, rmask = collate(batch, pad_id, device)
        out = module(ids, attn, rmask)
        out = out[0] if isinstance(out, tuple) else out  # TokenLogProbs returns (logp, entropy)
        rows.extend(row.float().cpu() for row in response_rows(out, batch))
    return rows


# ---------------------------------------------------------------------------------------------
# Advantages


def advantage_rows(samples: list[Sample], rewards: torch.Tensor, cfg, kl_rows: list[torch.Tensor] | None = None,
                   values: list[torch.Tensor] | None = None, all_reduce=None):
    """Per-token advantages (and PPO returns) for this rank's samples.

    rewards (N,) scalar rewards; kl_rows: per-token KL rows, subtracted from the reward times
    cfg.kl_coef when cfg.kl_in == "reward" (PPO style; for GRPO / Dr. GRPO the response's summed
    penalty lowers its scalar reward). values: critic rows (PPO). Returns (advantages, returns),
    lists of (R_i,) rows; returns is None unless cfg.algo == "ppo".
    GRPO / Dr. GRPO: every token of response i gets A_i (losses.group_advantages).
    PPO: reward on the last token, GAE(gamma, lambda), whitened over all ranks' response tokens.
    With cfg.ppo_skip_uniform_batches, a batch whose rewards are all equal (over all ranks) gets zero
    advantages: it carries no reward signal, and whitening would blow the critic's noise up to unit scale.
    """
    token_rewards = []
    for s, r in zip(samples, rewards.tolist()):
        row = torch.zeros(len(s.response_ids))
        row[-1] = r
        token_rewards.append(row)
    if kl_rows is not None and cfg.kl_in == "reward":
        token_rewards = [row - cfg.kl_coef * kl for row, kl in zip(token_rewards, kl_rows)]
    if cfg.algo != "ppo":
        totals = torch.stack([row.sum() for row in token_rewards])  # = rewards without a KL penalty
        advantages = group_advantages(totals, cfg.group_size, scale_by_std=cfg.algo == "grpo")
        return [torch.full((len(s.response_ids),), a) for s, a in zip(samples, advantages.tolist())], None
    lengths = [len(s.response_ids) for s in samples]
    mask = pad_sequence([torch.ones(n) for n in lengths], batch_first=True)  # (N, R_max), left-aligned
    adv, ret = gae_advantages(pad_sequence(token_rewards, batch_first=True), pad_sequence(values, batch_first=True),
                              mask, cfg.gamma, cfg.gae_lambda)
    if cfg.whiten_advantages:
        adv = whiten(adv, mask, all_reduce)
    if cfg.ppo_skip_uniform_batches:
        moments = torch.stack([rewards.sum(), (rewards**2).sum(), torch.tensor(float(len(rewards)))]).double()
        (all_reduce or (lambda t: t))(moments)
        if moments[1] * moments[2] - moments[0] ** 2 <= 1e-9 * moments[2] ** 2:  # variance 0: all rewards equal
            adv = torch.zeros_like(adv)
    return [adv[i, :n] for i, n in enumerate(lengths)], [ret[i, :n] for i, n in enumerate(lengths)]


# ---------------------------------------------------------------------------------------------
# Sampler vs trainer: drift and truncated importance sampling


def sampler_drift(logp_old: list[torch.Tensor], samples: list[Sample]) -> dict:
    """Sums over tokens of how far the sampler's log-probs (Sample.logprobs) are from the trainer's.

    "drift_abs_sum": sum |logp_old - logp_sampler|; "drift_kl_sum": sum of the k3 estimate of
    KL(sampler || trainer) on the sampled tokens; "drift_tokens": token count. Empty when the engine
    gives no log-probs (the transformers engine samples from the trainer's own model).
    """
    if any(s.logprobs is None for s in samples):
        return {}
    sampler = [torch.tensor(s.logprobs, dtype=torch.float32) for s in samples]
    delta = torch.cat(logp_old) - torch.cat(sampler)  # log(pi_trainer / pi_sampler) per token
    return {"drift_abs_sum": delta.abs().sum().item(), "drift_kl_sum": (torch.exp(delta) - delta - 1).sum().item(),
            "drift_tokens": float(delta.numel())}


def tis_weights(logp_old: list[torch.Tensor], samples: list[Sample], cap: float) -> list[torch.Tensor]:
    """Truncated importance sampling: min(exp(logp_old - logp_sampler), cap) per token, one row per sample.

    Corrects the policy gradient for tokens sampled by an engine whose probabilities differ from
    the trainer's (Yao et al. 2025; their cap C = 2). Raises ValueError if a sample has no log-probs.
    """
    if any(s.logprobs is None for s in samples):
        raise ValueError("--tis-cap needs the sampler's log-probs: use --rollout-engine vllm (the hf engine has none)")
    return [torch.exp(old - torch.tensor(s.logprobs, dtype=torch.float32)).clamp(max=cap)
            for old, s in zip(logp_old, samples)]


# ---------------------------------------------------------------------------------------------
# Optimiser steps: mini-batches, micro-batches, gradient accumulation


def _optimiser_steps(module, optimizer, active: list[bool], micro_loss, cfg, d) -> float:
    """cfg.updates_per_batch optimiser steps over this rank's responses; returns the mean grad norm.

    micro_loss(indices, learned (b,) float, num_responses) -> the micro-batch's loss (already divided
    by num_responses, the step's global response count). Only `active` responses are run; every rank
    must run the same number of backward passes (DDP all-reduces in each), so ranks pad with inactive
    responses whose loss mask is zeroed (learned = 0). A mini-batch with nothing to run on any rank
    makes no optimiser step.
    """
    parameters = [p for p in module.parameters() if p.requires_grad]
    n = len(active)
    mini_size = math.ceil(n / cfg.updates_per_batch)
    minis = [list(range(i, min(i + mini_size, n))) for i in range(0, n, mini_size)]
    grad_norm = 0.0
    for mini in minis:
        runs = [i for i in mini if active[i]]
        count = torch.tensor([len(runs)])
        dist.all_reduce(count, op=dist.ReduceOp.MAX)
        if count.item() == 0:
            continue  # no gradient on any rank: no optimiser step
        learned = set(runs)
        runs += [i for i in mini if i not in learned][: count.item() - len(runs)]
        micros = [runs[i : i + cfg.micro_batch_size] for i in range(0, len(runs), cfg.micro_batch_size)]
        for k, micro in enumerate(micros):
            sync = contextlib.nullcontext() if k == len(micros) - 1 else module.no_sync()
            with sync:
                weight = torch.tensor([float(i in learned) for i in micro])
                loss = micro_loss(micro, weight, len(mini) * d.world_size)
                (loss * d.world_size).backward()
        grad_norm += torch.nn.utils.clip_grad_norm_(parameters, cfg.max_grad_norm).item() / len(minis)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return grad_norm


def learn(policy, optimizer, samples: list[Sample], advantages: list[torch.Tensor], in_loss: torch.Tensor, cfg, d,
          pad_id: int, logp_old: list[torch.Tensor] | None = None, logp_ref: list[torch.Tensor] | None = None,
          importance: list[torch.Tensor] | None = None) -> dict:
    """Policy update: cfg.updates_per_batch optimiser steps on this rank's samples; returns summed stats.

    policy: DDP-wrapped TokenLogProbs; advantages: (R_i,) rows; in_loss (N,) bool: responses that
    enter the loss (False drops one, e.g. a truncated response). logp_old rows: the sampling policy's
    log-probs (None: the current log-probs, detached; exact when the batch makes one optimiser step).
    logp_ref rows: the reference policy's, for the KL loss term (cfg.kl_in == "loss").
    importance rows: truncated importance-sampling weights on the surrogate (`tis_weights`), or None.
    Responses whose gradient is exactly zero (zero advantage, and no KL or entropy term) are not run.
    Logged entropy and clip fraction are over the tokens that were run.
    """
    aggregation = "max_tokens" if cfg.algo == "drgrpo" else "token_mean"
    kl_in_loss = logp_ref is not None and cfg.kl_in == "loss"
    always = kl_in_loss or cfg.entropy_coef != 0
    active = [bool(in_loss[i]) and (always or bool(advantages[i].abs().sum() > 0)) for i in range(len(samples))]
    stats = {"loss": 0.0, "clipped_tokens": 0.0, "tokens": 0.0, "entropy_sum": 0.0}

    def micro_loss(micro, weight, num_responses):
        batch = [samples[i] for i in micro]
        ids, attn, rmask = collate(batch, pad_id, d.device)
        rmask = rmask * weight.to(d.device)[:, None]
        logp, entropy = policy(ids, attn, rmask)  # (b, T-1) each
        width = logp.shape[1]
        old = logp.detach() if logp_old is None else place_rows([logp_old[i] for i in micro], batch, width, d.device)
        penalty = -cfg.entropy_coef * entropy if cfg.entropy_coef else torch.zeros_like(logp)
        if kl_in_loss:
            ref = place_rows([logp_ref[i] for i in micro], batch, width, d.device)
            penalty = penalty + cfg.kl_coef * kl_estimate(logp, ref, cfg.kl_estimator)
        adv = place_rows([advantages[i] for i in micro], batch, width, d.device)
        weights = None if importance is None else place_rows([importance[i] for i in micro], batch, width, d.device)
        loss, st = policy_loss(logp, old, adv, rmask, cfg.clip_eps, aggregation, num_responses, cfg.max_new_tokens,
                               cfg.clip_eps_high or None, penalty, weights)
        stats["loss"] += loss.item()
        stats["clipped_tokens"] += st["clipped_tokens"].item()
        stats["tokens"] += st["tokens"].item()
        stats["entropy_sum"] += (entropy.detach() * rmask).sum().item()
        return loss

    stats["grad_norm"] = _optimiser_steps(policy, optimizer, active, micro_loss, cfg, d)
    return stats


def learn_critic(critic, optimizer, samples: list[Sample], returns: list[torch.Tensor], values_old: list[torch.Tensor],
                 in_loss: torch.Tensor, cfg, d, pad_id: int) -> dict:
    """Critic update (PPO): the clipped value loss toward the GAE returns, batched like `learn`.

    critic: DDP-wrapped ValueModel; returns, values_old: (R_i,) rows. Returns summed stats:
    "value_loss", "value_clipped_tokens", "value_tokens", "value_error_sum", "critic_grad_norm".
    """
    stats = {"value_loss": 0.0, "value_clipped_tokens": 0.0, "value_tokens": 0.0, "value_error_sum": 0.0}

    def micro_loss(micro, weight, num_responses):
        batch = [samples[i] for i in micro]
        ids, attn, rmask = collate(batch, pad_id, d.device)
        rmask = rmask * weight.to(d.device)[:, None]
        values = critic(ids, attn)  # (b, T-1)
        width = values.shape[1]
        old = place_rows([values_old[i] for i in micro], batch, width, d.device)
        target = place_rows([returns[i] for i in micro], batch, width, d.device)
        loss, st = value_loss(values, old, target, rmask, cfg.value_clip, num_responses)
        stats["value_loss"] += loss.item()
        stats["value_clipped_tokens"] += st["value_clipped_tokens"].item()
        stats["value_tokens"] += st["tokens"].item()
        stats["value_error_sum"] += st["value_error_sum"].item()
        return loss

    stats["critic_grad_norm"] = _optimiser_steps(critic, optimizer, [bool(x) for x in in_loss], micro_loss, cfg, d)
    return stats
