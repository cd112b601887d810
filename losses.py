"""Advantages, policy and value losses, KL estimators, and the memory-light per-token log-prob kernel with the
policy's forward around it (TokenLogProbs: a causal LM -> per-token log-probs and entropy).

What this file computes (the notation of docs/papers.md §3): a prompt has G = group_size
sampled responses with scalar rewards r_i; every token of response i gets the same advantage A_i;
ratio = exp(logp - logp_old) per token; eps = clip_eps.

- GRPO advantage (DeepSeekMath, Shao et al. 2024, §4.1.2): A_i = (r_i - mean(r)) / (std(r) + 1e-6).
- Dr. GRPO advantage (Liu et al. 2025, "Understanding R1-Zero-Like Training", eq. 3): A_i = r_i - mean(r).
- Clipped surrogate per token (PPO, Schulman et al. 2017): min(ratio * A, clip(ratio, 1-eps, 1+eps) * A).
- Aggregation (verl's names, AGGREGATIONS): GRPO takes a token mean per response (1/|o_i|,
  "seq_mean_token_mean"); Dr. GRPO divides every response's token sum by one constant, the generation budget
  L_max = max_new_tokens ("seq_mean_token_sum_norm"). Both are then averaged over the *global* number of
  responses in the optimiser step. "token_mean" (DAPO, Yu et al. 2025, eq. 8; verl's default, used by
  SimpleRL-Zoo) divides the sum over all tokens by the global number of response tokens in the step. Every
  mode is global, so the loss and its gradients do not change with micro-batch size, gradient accumulation
  or the number of ranks.
- Log-probs come from the last hidden states and the lm_head weight in chunks of tokens, with a
  custom autograd backward that recomputes each chunk's logits, so the [tokens, vocab] logits never
  exist in full (as Liger-Kernel's fused linear cross-entropy does, in plain PyTorch, no Triton).
  Per-token entropy comes out of the same pass, with its gradient.
- PPO (SimpleRL-Zero, via OpenRLHF): a critic (model.ValueModel) gives per-token values; the reward sits
  on the last response token (minus an optional per-token KL penalty); GAE (gamma, lambda) gives
  per-token advantages, whitened over the batch; the value loss is clipped around the old values.
- Optional: DAPO clip-higher (eps_low, eps_high), a per-token KL term to a reference policy
  (k1 / k2 / k3 estimators, Schulman 2020) and an entropy bonus, both aggregated like the surrogate.

Deviations, one line each:
- std in the GRPO advantage is the unbiased (Bessel-corrected) group std, as TRL and verl compute it.
- The GRPO per-response mean divides by the masked response length, which includes the EOS token.
- Log-probs are taken at the sampling temperature (logits / T), so the ratio is on-policy (docs/papers.md §3).
- Clip fraction counts tokens whose ratio is outside [1 - eps_low, 1 + eps_high], whatever the sign of A.
- "token_mean" averages over the optimiser step's tokens on all ranks; verl averages each micro-batch's tokens
  and then the micro-batches (the same when a mini-batch is one micro-batch).
"""

from __future__ import annotations

import torch

# ---------------------------------------------------------------------------------------------
# Fused chunked log-prob + entropy


class _ChunkedLogProbEntropy(torch.autograd.Function):
    """log p(target) and entropy of softmax(hidden @ weight.T / T), chunk by chunk of tokens."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, chunk_size):
        n_tokens = hidden.shape[0]
        compute = torch.promote_types(hidden.dtype, torch.float32)  # bf16 -> fp32, fp64 stays fp64
        logp = torch.empty(n_tokens, dtype=compute, device=hidden.device)
        entropy = torch.empty_like(logp)
        lse = torch.empty_like(logp)
        # Two (chunk, V) work buffers, reused for every chunk: no per-chunk allocation or page faults.
        log_probs_buf = torch.empty(min(chunk_size, n_tokens), weight.shape[0], dtype=compute, device=hidden.device)
        probs_buf = torch.empty_like(log_probs_buf)
        for start in range(0, n_tokens, chunk_size):
            end = min(start + chunk_size, n_tokens)
            log_probs, probs = log_probs_buf[: end - start], probs_buf[: end - start]
            # log_probs = z - lse; probs = exp(z - max z), unnormalised: p = probs / sum_exp (no second exp pass)
            lse[start:end], sum_exp = _chunk_log_probs(hidden[start:end], weight, temperature, log_probs, probs)
            logp[start:end] = log_probs.gather(1, targets[start:end, None]).squeeze(1)
            entropy[start:end] = -torch.bmm(probs[:, None, :], log_probs[:, :, None]).view(-1) / sum_exp  # -sum p log p
        ctx.save_for_backward(hidden, weight, targets, lse, entropy)
        ctx.temperature, ctx.chunk_size = temperature, chunk_size
        ctx.set_materialize_grads(False)  # an output outside the loss gets grad None, not a zero tensor
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):
        hidden, weight, targets, lse, entropy = ctx.saved_tensors
        temperature, chunk_size = ctx.temperature, ctx.chunk_size
        compute = lse.dtype
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = torch.zeros_like(weight, dtype=compute) if ctx.needs_input_grad[1] else None
        if grad_logp is None and grad_entropy is None:
            return None, None, None, None, None
        grad_logp = torch.zeros_like(lse) if grad_logp is None else grad_logp.to(compute)
        log_probs_buf = torch.empty(min(chunk_size, hidden.shape[0]), weight.shape[0], dtype=compute,
                                    device=hidden.device)
        # Without an entropy gradient (the usual case), grad_z is made in place from log_probs: one
        # (chunk, V) buffer instead of two, so a chunk twice as large fits the same memory.
        grad_buf = log_probs_buf if grad_entropy is None else torch.empty_like(log_probs_buf)
        for start in range(0, hidden.shape[0], chunk_size):
            end = min(start + chunk_size, hidden.shape[0])
            log_probs, grad_z = log_probs_buf[: end - start], grad_buf[: end - start]
            _chunk_log_probs(hidden[start:end], weight, temperature, log_probs, None, lse[start:end])
            g_logp = grad_logp[start:end, None]
            # d logp_t / d z = onehot(t) - p ;  d H / d z = -p (log p + H); z = logits / T
            # grad_z = -p * (g_logp + g_entropy * (log p + H)) + onehot(t) * g_logp, all in place
            if grad_entropy is None:
                grad_z.exp_().mul_(g_logp).neg_()  # grad_z is log_probs: -p * g_logp
            else:
                torch.exp(log_probs, out=grad_z)
                g_entropy = grad_entropy[start:end, None].to(compute)
                log_probs.add_(entropy[start:end, None]).mul_(g_entropy).add_(g_logp)
                grad_z.mul_(log_probs).neg_()
            grad_z.scatter_add_(1, targets[start:end, None], g_logp)
            if temperature != 1.0:
                grad_z.div_(temperature)
            grad_z_cast = grad_z.to(hidden.dtype)
            if grad_hidden is not None:
                torch.matmul(grad_z_cast, weight, out=grad_hidden[start:end]) if hidden.dtype == grad_hidden.dtype \
                    else grad_hidden[start:end].copy_(grad_z_cast @ weight)
            if grad_weight is not None and hidden.is_cuda and hidden.dtype != compute:
                # CUDA: the bf16 tensor-core product, accumulated into the fp32 gradient (mm's out_dtype); an
                # fp32 product here ran at ~50 TFLOP/s on an H200 and took 60% of the kernel's time
                torch.addmm(grad_weight, grad_z_cast.T, hidden[start:end], out_dtype=compute, out=grad_weight)
            elif grad_weight is not None:
                grad_weight.addmm_(grad_z.T, hidden[start:end].to(compute))
        if grad_weight is not None:
            grad_weight = grad_weight.to(weight.dtype)
        return grad_hidden, grad_weight, None, None, None


def _chunk_log_probs(hidden, weight, temperature, out, scratch, lse=None):
    """out = log_softmax(hidden @ weight.T / T) of one chunk, computed in `out` (C, V) in place.

    Without `lse`, it is computed and returned with sum_exp, both (C,): scratch is left holding
    exp(z - max z) per row, whose row sums are sum_exp (so softmax = scratch / sum_exp). With `lse`: None.
    """
    if hidden.dtype == out.dtype:
        torch.matmul(hidden, weight.T, out=out)
    elif hidden.is_cuda:  # bf16 product written straight into the fp32 buffer (no bf16 (C, V) temporary)
        torch.mm(hidden, weight.T, out_dtype=out.dtype, out=out)
    else:
        out.copy_(hidden @ weight.T)
    if temperature != 1.0:
        out.div_(temperature)
    if lse is not None:
        out.sub_(lse[:, None])
        return None
    row_max = out.max(dim=1, keepdim=True).values  # (C, 1)
    torch.sub(out, row_max, out=scratch)
    scratch.exp_()
    sum_exp = scratch.sum(dim=1)
    lse = sum_exp.log().add_(row_max.view(-1))
    out.sub_(lse[:, None])
    return lse, sum_exp


def chunked_logprobs_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    temperature: float = 1.0,
    chunk_size: int = 1024,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-prob of `targets` and entropy, without materialising all logits.

    Args:
        hidden: (N, H) final hidden states (after the last norm), any float dtype.
        weight: (V, H) lm_head weight, same dtype as `hidden`.
        targets: (N,) int64 token ids in [0, V).
        temperature: logits are divided by it (> 0), as during sampling.
        chunk_size: tokens per chunk; peak extra memory is about chunk_size * V * 4 bytes x 3.
    Returns:
        (logp, entropy), each (N,) in nats, float32 (float64 for float64 inputs); both differentiable
        w.r.t. hidden and weight.
    Raises:
        ValueError: on mismatched shapes or a non-positive temperature / chunk size.
    Follows the fused linear cross-entropy idea of Liger-Kernel (Hsu et al. 2024), in plain PyTorch.
    """
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"hidden (N, H) and weight (V, H) expected, got {tuple(hidden.shape)} and "
                         f"{tuple(weight.shape)}")
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"targets must be ({hidden.shape[0]},), got {tuple(targets.shape)}")
    if temperature <= 0 or chunk_size <= 0:
        raise ValueError(f"temperature and chunk_size must be > 0, got {temperature}, {chunk_size}")
    return _ChunkedLogProbEntropy.apply(hidden, weight, targets.long(), float(temperature), int(chunk_size))


# ---------------------------------------------------------------------------------------------
# The policy's forward: a causal LM -> per-token log-probs and entropy through the kernel


def autocast(device: torch.device, dtype: torch.dtype):
    """bf16 compute for the decoder's matmuls with fp32 master weights; a no-op context for fp32."""
    return torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)


class TokenLogProbs(torch.nn.Module):
    """Wraps a transformers causal LM so that forward() returns per-token log-probs and entropy.

    All parameters (decoder and lm_head) are used inside forward, so DDP / FSDP can wrap this module and
    see every gradient. forward(input_ids (B, T), attention_mask (B, T)) returns (logp, entropy),
    each (B, T-1) float32: position t scores token t+1 given tokens <= t. Only positions where
    `score_mask` (B, T-1) is true are computed (the response tokens); the others are 0.
    compute_dtype: the decoder runs under autocast in it (bfloat16), or plainly (float32); the log-prob
    kernel then takes the hidden states and lm_head in that dtype and keeps its log-sum-exp in fp32.
    """

    def __init__(self, lm: torch.nn.Module, temperature: float = 1.0, chunk_size: int = 1024,
                 compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.lm = lm
        self.temperature = temperature
        self.chunk_size = chunk_size
        self.compute_dtype = compute_dtype

    def forward(self, input_ids, attention_mask, score_mask):
        with autocast(input_ids.device, self.compute_dtype):
            hidden = self.lm.base_model(input_ids=input_ids,
                                        attention_mask=attention_mask).last_hidden_state  # (B, T, H)
        hidden = hidden[:, :-1]  # (B, T-1, H)
        targets = input_ids[:, 1:]  # (B, T-1)
        weight = self.lm.get_output_embeddings().weight.to(hidden.dtype)  # (V, H); a no-op unless autocast cast hidden
        picked = score_mask.bool()
        logp_flat, entropy_flat = chunked_logprobs_entropy(
            hidden[picked], weight, targets[picked], self.temperature, self.chunk_size
        )
        logp = torch.zeros(targets.shape, dtype=torch.float32, device=hidden.device)
        entropy = torch.zeros_like(logp)
        logp = logp.masked_scatter(picked, logp_flat)
        entropy = entropy.masked_scatter(picked, entropy_flat)
        return logp, entropy


# ---------------------------------------------------------------------------------------------
# Advantages


def group_advantages(rewards: torch.Tensor, group_size: int, scale_by_std: bool, eps: float = 1e-6) -> torch.Tensor:
    """Group-relative advantages: GRPO (scale_by_std=True) or Dr. GRPO (scale_by_std=False).

    Args:
        rewards: (N,) float, N = num_groups * group_size, each group's responses contiguous.
        group_size: G, responses per prompt (>= 1).
        scale_by_std: divide by (std + eps), GRPO; False is Dr. GRPO's unbiased form.
    Returns:
        (N,) float advantages. A group of identical rewards gives zeros.
    Raises:
        ValueError: if N is not a multiple of group_size.
    Follows DeepSeekMath §4.1.2 (GRPO) and Liu et al. 2025 eq. 3 (Dr. GRPO).
    """
    if group_size < 1 or rewards.dim() != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards of shape {tuple(rewards.shape)} do not split into groups of {group_size}")
    grouped = rewards.view(-1, group_size).float()  # (num_groups, G)
    advantages = grouped - grouped.mean(dim=1, keepdim=True)
    if scale_by_std:
        std = grouped.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(advantages)
        advantages = advantages / (std + eps)
    return advantages.view(-1)


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, response_mask: torch.Tensor, gamma: float = 1.0,
                   lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over each response's tokens (PPO's advantage).

    Args:
        rewards: (B, L) float per-token rewards (the scalar reward on the last response token,
            optionally minus a per-token KL penalty).
        values: (B, L) float critic values V_t, taken before each response token was generated.
        response_mask: (B, L) {0,1}, 1 on each row's response tokens (one contiguous run per row).
        gamma, lam: discount and GAE lambda (SimpleRL-Zero: 1.0 and 0.95).
    Returns:
        advantages (B, L) and returns (B, L) = advantages + values, both 0 outside the mask.
        delta_t = r_t + gamma V_{t+1} - V_t (V after the last token is 0: the episode ends);
        A_t = delta_t + gamma lam A_{t+1}.
    Follows Schulman et al. 2016 ("High-dimensional continuous control using GAE"), as in OpenRLHF.
    """
    mask = response_mask.float()
    values = values.float() * mask
    rewards = rewards.float() * mask
    advantages = torch.zeros_like(values)
    last = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        next_value = values[:, t + 1] if t + 1 < values.shape[1] else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def whiten(x: torch.Tensor, mask: torch.Tensor, all_reduce=None, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over the masked entries; 0 where mask is 0.

    x, mask: same shape. all_reduce: optional in-place sum over ranks (e.g. torch.distributed.all_reduce),
    so the mean and the (biased) variance are those of the whole batch on every rank. As OpenRLHF's
    masked_whiten, used for PPO advantages.
    """
    mask = mask.float()
    reduce = all_reduce or (lambda t: t)
    sums = torch.stack([(x * mask).sum(), mask.sum()]).double()
    reduce(sums)
    mean = sums[0] / sums[1].clamp(min=1)
    square = (((x - mean) ** 2) * mask).sum().double().reshape(1)
    reduce(square)
    var = square[0] / sums[1].clamp(min=1)
    return ((x - mean) * torch.rsqrt(var + eps)).to(x.dtype) * mask


# ---------------------------------------------------------------------------------------------
# Policy loss


AGGREGATIONS = ("seq_mean_token_mean", "seq_mean_token_sum_norm", "token_mean")  # policy_loss's modes


def policy_loss(
    logp: torch.Tensor,
    logp_old: torch.Tensor,
    advantages: torch.Tensor,
    response_mask: torch.Tensor,
    clip_eps: float,
    aggregation: str,
    num_responses: int,
    max_new_tokens: int | None = None,
    clip_eps_high: float | None = None,
    per_token_penalty: torch.Tensor | None = None,
    importance_weights: torch.Tensor | None = None,
    num_tokens: float | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped surrogate loss of one micro-batch, scaled for an optimiser step of `num_responses`.

    Args:
        logp: (B, T) float32 log-probs under the current policy (differentiable).
        logp_old: (B, T) float32 log-probs under the sampling policy (no grad).
        advantages: (B,) float, one per response (GRPO, Dr. GRPO), or (B, T) per token (PPO with GAE).
        response_mask: (B, T) {0,1}, 1 on response tokens (through EOS).
        clip_eps: the PPO clip range eps (ratio clipped to [1-eps, 1+eps]).
        aggregation: one of AGGREGATIONS: "seq_mean_token_mean" (GRPO, PPO: (1/N) sum_i sum_t / |o_i|),
            "seq_mean_token_sum_norm" (Dr. GRPO: (1/N) sum_i sum_t / max_new_tokens), "token_mean" (DAPO, verl:
            sum_i sum_t / num_tokens).
        num_responses: N, responses in the whole optimiser step, over all micro-batches and ranks.
        max_new_tokens: L_max, required for "seq_mean_token_sum_norm".
        num_tokens: response tokens in the whole optimiser step, over all micro-batches and ranks (response_mask
            summed), required for "token_mean".
        clip_eps_high: upper clip range (DAPO clip-higher: ratio clipped to [1-clip_eps, 1+clip_eps_high]);
            None uses clip_eps.
        per_token_penalty: (B, T) float added to the per-token loss before aggregation, e.g.
            kl_coef * kl - entropy_coef * entropy (GRPO's KL loss term, an entropy bonus).
        importance_weights: (B, T) float, no grad, multiplying the clipped surrogate per token:
            truncated importance sampling, min(pi_old / pi_sampler, C), when the sampler (vLLM)
            and the trainer disagree (Yao et al. 2025, "Your efficient RL framework secretly brings
            you off-policy RL training").
    Returns:
        loss (scalar; summing it over the step's micro-batches gives the step loss, -(1/N) sum_i ...),
        and detached sums for logging: "clipped_tokens", "tokens".
    Raises:
        ValueError: unknown aggregation, or "seq_mean_token_sum_norm" without max_new_tokens, or "token_mean"
            without num_tokens.
    Follows docs/papers.md §3 (GRPO, Dr. GRPO losses).
    """
    mask = response_mask.float()
    ratio = torch.exp(logp - logp_old)  # (B, T)
    adv = advantages[:, None] if advantages.dim() == 1 else advantages  # (B, 1) or (B, T)
    high = clip_eps if clip_eps_high is None else clip_eps_high
    surrogate = torch.min(ratio * adv, torch.clamp(ratio, 1 - clip_eps, 1 + high) * adv)
    if importance_weights is not None:
        surrogate = surrogate * importance_weights
    per_token = -surrogate if per_token_penalty is None else per_token_penalty - surrogate
    per_token = per_token * mask
    if aggregation == "seq_mean_token_mean":
        loss = (per_token.sum(1) / mask.sum(1).clamp(min=1)).sum() / num_responses
    elif aggregation == "seq_mean_token_sum_norm":
        if not max_new_tokens:
            raise ValueError("aggregation 'seq_mean_token_sum_norm' (Dr. GRPO) needs max_new_tokens")
        loss = (per_token.sum(1) / max_new_tokens).sum() / num_responses
    elif aggregation == "token_mean":
        if not num_tokens:
            raise ValueError("aggregation 'token_mean' needs num_tokens, the optimiser step's response tokens")
        loss = per_token.sum() / num_tokens
    else:
        raise ValueError(f"unknown aggregation {aggregation!r}: use one of {', '.join(AGGREGATIONS)}")
    with torch.no_grad():
        clipped = ((ratio < 1 - clip_eps) | (ratio > 1 + high)).float() * mask
        stats = {"clipped_tokens": clipped.sum(), "tokens": mask.sum()}
    return loss, stats


def value_loss(values: torch.Tensor, values_old: torch.Tensor, returns: torch.Tensor, response_mask: torch.Tensor,
               clip_value: float, num_responses: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Clipped value loss of one micro-batch, scaled for an optimiser step of `num_responses`.

    Args:
        values: (B, T) float32 critic values (differentiable); values_old: (B, T) the critic's values
            when the batch was scored (no grad); returns: (B, T) GAE returns (targets).
        response_mask: (B, T) {0,1}; clip_value: the clipped value may move at most this far from
            values_old (SimpleRL-Zero: 0.2); 0 disables clipping.
        num_responses: responses in the whole optimiser step, over micro-batches and ranks.
    Returns:
        loss = (1/N) sum_i 0.5 * mean_t max((V - R)^2, (V_clip - R)^2), V_clip = V_old + clip(V - V_old, -c, c)
        (a token mean per response, then a mean over responses, as OpenRLHF's ValueLoss), and
        detached sums for logging: "value_clipped_tokens", "tokens", "value_error_sum" (sum (V - R)^2).
    Follows PPO2 (OpenAI baselines) value clipping, as used by SimpleRL-Zero through OpenRLHF.
    """
    mask = response_mask.float()
    error = (values - returns) ** 2
    if clip_value > 0:
        clipped_values = values_old + torch.clamp(values - values_old, -clip_value, clip_value)
        per_token = torch.max(error, (clipped_values - returns) ** 2)
    else:
        per_token = error
    per_response = 0.5 * (per_token * mask).sum(1) / mask.sum(1).clamp(min=1)
    loss = per_response.sum() / num_responses
    with torch.no_grad():
        moved = ((values - values_old).abs() > clip_value).float() * mask
        clipped = moved if clip_value > 0 else torch.zeros_like(mask)
        stats = {"value_clipped_tokens": clipped.sum(), "tokens": mask.sum(), "value_error_sum": (error * mask).sum()}
    return loss, stats


# ---------------------------------------------------------------------------------------------
# KL to a reference policy


def kl_estimate(logp: torch.Tensor, logp_ref: torch.Tensor, estimator: str, clamp: float = 0.0) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from log-probs of the sampled tokens.

    Args:
        logp: (B, T) float32 log-probs under the policy (differentiable or not).
        logp_ref: (B, T) float32 log-probs under the reference policy (no grad).
        estimator: "k1" = logp - logp_ref; "k2" = 0.5 (logp - logp_ref)^2;
            "k3" = exp(logp_ref - logp) - (logp_ref - logp) - 1 (>= 0, unbiased, low variance).
        clamp: > 0 clamps the estimate to [-clamp, clamp] (verl's low_var_kl clamps k3 to [-10, 10]; its
            gradient is 0 where it clamps); 0 leaves it unclamped.
    Returns:
        (B, T) float32; average it over sampled tokens to estimate the KL in nats.
    Raises:
        ValueError: unknown estimator.
    Follows Schulman, "Approximating KL divergence" (2020); k3 is GRPO's and SimpleRL-Zoo's "low_var_kl".
    """
    log_ratio = logp - logp_ref
    if estimator == "k1":
        kl = log_ratio
    elif estimator == "k2":
        kl = 0.5 * log_ratio**2
    elif estimator == "k3":
        kl = torch.exp(-log_ratio) + log_ratio - 1
    else:
        raise ValueError(f"unknown KL estimator {estimator!r}: use k1, k2 or k3")
    return kl.clamp(-clamp, clamp) if clamp > 0 else kl
