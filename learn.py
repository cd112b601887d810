"""The learn stage: what each `--algo` is, and from a rewarded rollout batch to optimiser steps.

The algorithms, one table (`ALGORITHMS`; formulas in losses.py and README "What the losses compute"):

| --algo | advantages | divided by the group's std | loss aggregation | critic |
| --- | --- | --- | --- | --- |
| grpo (DeepSeekMath §4.1.2) | group: r_i - mean(r) | yes | seq_mean_token_mean: 1 / len(o_i) per response | no |
| drgrpo (Liu et al. 2025, eq. 3) | group: r_i - mean(r) | no | seq_mean_token_sum_norm: 1/L_max (max_new_tokens) | no |
| ppo (SimpleRL-Zero via OpenRLHF) | GAE on the critic's values, whitened | - | seq_mean_token_mean | yes |

`--loss-agg` replaces the algorithm's aggregation (losses.AGGREGATIONS; `token_mean`: every token of the optimiser
step weighs the same, DAPO's and verl's default, which SimpleRL-Zoo trained with).

train_zero.py calls, each step:
    prepare_batch(...)    -> Batch: the no-grad passes (logp_old, logp_ref, values), KL rows, TIS weights,
                             sampler drift, and the advantages (and PPO returns)
    learn(...)            -> PolicyStats: per mini-batch (minibatches), per micro-batch collate -> log-probs ->
                             losses.policy_loss -> backward, then one clipped optimiser step; read top to bottom
    learn_critic(...)     -> CriticStats: the clipped value loss, same batching (losses.value_loss), PPO only
Their knobs are config.py's (AlgorithmSettings, OptimSettings and the rollout's group_size and max_new_tokens),
read from the run's Config; the optimiser step itself (clipping, the divergence guard) is clipped_step, below.

Per-response quantities travel as "rows": one 1-D float tensor per response with one entry per
response token (len(sample.response_ids)). collate lays samples out right-padded; `place_rows`
puts rows back at their response positions, so a row does not depend on the micro-batch it lands in.

Every micro-batch loss is divided by the global number of responses (token_mean: response tokens) in its
optimiser step and multiplied by world_size (DDP averages gradients over ranks), so gradients equal those of one
process holding the whole batch, whatever the micro-batch size or number of ranks.

Deviations, one line each:
- An optimiser step whose loss (on any rank) or global gradient norm is not finite is skipped (no weight or AdamW
  change), not taken: one bad batch would otherwise write NaN into every weight.
- The learning-rate schedule counts rollout batches (every optimiser step of a batch shares its lr), where OpenRLHF
  and HF count optimiser steps.
- The rollout batch is split into `updates_per_batch` mini-batches, one optimiser step each
  (Oat-Zero: 8); with 1, logp_old is the detached current log-prob (ratio = 1, exactly on-policy).
- Responses with zero advantage are skipped in the learn pass (exactly zero gradient), and a mini-batch
  in which every advantage is zero makes no optimiser step (AdamW momentum does not move then).
- PPO makes no policy update from a batch whose rewards are all equal (the critic still learns):
  whitening would turn critic noise into unit-scale advantages (`--no-ppo-skip-uniform-batches` restores it).
- Policy and critic learn from the same mini-batches, one after the other (SimpleRL-Zero through OpenRLHF).
- `--shuffle-minibatches` shuffles the rank's rollout batch (seeded by seed, step and rank, so a resume repeats
  it) before it is cut into mini-batches, as oat does before each update epoch; off, the slices are contiguous.
"""

from __future__ import annotations

import contextlib
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, get_args

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.nn.utils.rnn import pad_sequence

from distributed import Dist, all_reduce
from losses import gae_advantages, group_advantages, kl_estimate, policy_loss, value_loss, whiten
from model import reshard
from rollout import Sample

if TYPE_CHECKING:
    from config import Config  # the run's settings (every function here reads its fields by name)

# ---------------------------------------------------------------------------------------------
# The algorithms and their knobs

AlgoName = Literal["grpo", "drgrpo", "ppo"]


@dataclass(frozen=True)
class Algorithm:
    advantages: Literal["group", "gae"]  # group-relative r_i - mean(r), or GAE over a critic's values
    scale_by_std: bool  # group advantages divided by (std of the group's rewards + 1e-6)
    aggregation: Literal["seq_mean_token_mean", "seq_mean_token_sum_norm"]  # 1/|o_i| per response, or 1/L_max
    critic: bool  # a value model learns beside the policy


ALGORITHMS: dict[str, Algorithm] = {
    "grpo": Algorithm(advantages="group", scale_by_std=True, aggregation="seq_mean_token_mean", critic=False),
    "drgrpo": Algorithm(advantages="group", scale_by_std=False, aggregation="seq_mean_token_sum_norm", critic=False),
    "ppo": Algorithm(advantages="gae", scale_by_std=False, aggregation="seq_mean_token_mean", critic=True),
}
assert set(get_args(AlgoName)) == set(ALGORITHMS), "every --algo choice has a row in ALGORITHMS"


# ---------------------------------------------------------------------------------------------
# Layout: samples -> padded tensors, per-response rows <-> (B, T-1) positions


def pairs(samples: list[Sample]) -> list[tuple[list[int], list[int]]]:
    """(prompt_ids, response_ids) of each sample: what collate and score lay out."""
    return [(s.prompt_ids, s.response_ids) for s in samples]


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int,
            device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded prompt+response ids (B, T) long, attention_mask (B, T) long, response_mask (B, T-1) float32.

    pairs: (prompt_ids, response_ids) per row (an RL sample's response, an SFT pair's target).
    response_mask[b, t] = 1 when token t+1 of row b is a response token (it is scored at position t).
    """
    lengths = [len(p) + len(r) for p, r in pairs]
    T = max(lengths)
    input_ids = torch.full((len(pairs), T), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(pairs), T), dtype=torch.long)
    response_mask = torch.zeros((len(pairs), T - 1), dtype=torch.float32)
    for b, (prompt, response) in enumerate(pairs):
        P, R = len(prompt), len(response)
        input_ids[b, : P + R] = torch.tensor(prompt + response)
        attention_mask[b, : P + R] = 1
        response_mask[b, P - 1 : P + R - 1] = 1
    return input_ids.to(device), attention_mask.to(device), response_mask.to(device)


@torch.no_grad()
def score(module, pairs: list[tuple[list[int], list[int]]], pad_id: int, device,
          micro_batch_size: int) -> list[torch.Tensor]:
    """One no-grad pass of a TokenLogProbs (log-probs) or ValueModel (values) over (prompt_ids, response_ids) pairs.

    Returns one (len(response_ids),) float32 row per pair, on the CPU: the entries scoring its response tokens.
    An FSDP module (distribute) is called on every rank alike (same pair count per rank) and resharded
    afterwards: FSDP2 keeps the root's parameters gathered after a forward, and gathered outside autograd they
    would take no gradient. Training's no-grad passes (logp_old, logp_ref, values) and sft.py's eval_loss.
    """
    rows: list[torch.Tensor] = []
    for start in range(0, len(pairs), micro_batch_size):
        batch = pairs[start : start + micro_batch_size]
        ids, attn, rmask = collate(batch, pad_id, device)
        out = module(ids, attn, rmask)
        out = out[0] if isinstance(out, tuple) else out  # TokenLogProbs returns (logp, entropy)
        rows.extend(out[b, len(p) - 1 : len(p) + len(r) - 1].float().cpu() for b, (p, r) in enumerate(batch))
    reshard(module)
    return rows


@contextlib.contextmanager
def no_gradient_sync(module: torch.nn.Module, skip: bool = True):
    """Accumulate gradients locally (no all-reduce / reduce-scatter) inside the context when `skip`; for the
    micro-batches before the last one of an optimiser step. DDP: no_sync(); FSDP2: set_requires_gradient_sync."""
    if not skip:
        yield
    elif isinstance(module, DistributedDataParallel):
        with module.no_sync():
            yield
    else:
        module.set_requires_gradient_sync(False)
        try:
            yield
        finally:
            module.set_requires_gradient_sync(True)


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


# ---------------------------------------------------------------------------------------------
# Advantages


def advantage_rows(samples: list[Sample], rewards: torch.Tensor, settings: Config,
                   kl_rows: list[torch.Tensor] | None = None, values: list[torch.Tensor] | None = None,
                   all_reduce=None):
    """Per-token advantages (and PPO returns) for this rank's samples, as ALGORITHMS[settings.algo] says.

    rewards (N,) scalar rewards; kl_rows: per-token KL rows, subtracted from the reward times
    settings.kl_coef when settings.kl_in == "reward" (PPO style; for group advantages the response's
    summed penalty lowers its scalar reward). values: critic rows (PPO). all_reduce: in-place sum over
    ranks (distributed.all_reduce), None for one process. Returns (advantages, returns), lists of (R_i,)
    rows; returns is None unless the algorithm has a critic.
    Group advantages: every token of response i gets A_i (losses.group_advantages).
    GAE: reward on the last token, GAE(gamma, lambda), whitened over all ranks' response tokens.
    With settings.ppo_skip_uniform_batches, a batch whose rewards are all equal (over all ranks) gets zero
    advantages: it carries no reward signal, and whitening would blow the critic's noise up to unit scale.
    """
    algorithm = ALGORITHMS[settings.algo]
    token_rewards = []
    for s, r in zip(samples, rewards.tolist()):
        row = torch.zeros(len(s.response_ids))
        row[-1] = r
        token_rewards.append(row)
    if kl_rows is not None and settings.kl_in == "reward":
        token_rewards = [row - settings.kl_coef * kl for row, kl in zip(token_rewards, kl_rows)]
    if algorithm.advantages == "group":
        totals = torch.stack([row.sum() for row in token_rewards])  # = rewards without a KL penalty
        advantages = group_advantages(totals, settings.group_size, scale_by_std=algorithm.scale_by_std)
        return [torch.full((len(s.response_ids),), a) for s, a in zip(samples, advantages.tolist())], None
    lengths = [len(s.response_ids) for s in samples]
    mask = pad_sequence([torch.ones(n) for n in lengths], batch_first=True)  # (N, R_max), left-aligned
    adv, ret = gae_advantages(pad_sequence(token_rewards, batch_first=True), pad_sequence(values, batch_first=True),
                              mask, settings.gamma, settings.gae_lambda)
    if settings.whiten_advantages:
        adv = whiten(adv, mask, all_reduce)
    if settings.ppo_skip_uniform_batches:
        moments = torch.stack([rewards.sum(), (rewards**2).sum(), torch.tensor(float(len(rewards)))]).double()
        (all_reduce or (lambda t: t))(moments)
        if moments[1] * moments[2] - moments[0] ** 2 <= 1e-9 * moments[2] ** 2:  # variance 0: all rewards equal
            adv = torch.zeros_like(adv)
    return [adv[i, :n] for i, n in enumerate(lengths)], [ret[i, :n] for i, n in enumerate(lengths)]


# ---------------------------------------------------------------------------------------------
# The batch: everything the update needs, from no-grad passes before it


@dataclass
class Batch:
    """One rank's rewarded rollout batch, ready to learn from. Rows: one (R_i,) float32 CPU tensor per response."""

    samples: list[Sample]
    rewards: torch.Tensor  # (N,) float32 scalar rewards (after --truncated zero_reward)
    in_loss: torch.Tensor  # (N,) bool: the response enters the loss (False: a truncated one under --truncated drop)
    advantages: list[torch.Tensor]  # rows
    returns: list[torch.Tensor] | None  # rows: the critic's targets (GAE returns); None without a critic
    values: list[torch.Tensor] | None  # rows: the critic's values before the update; None without a critic
    logp_old: list[torch.Tensor] | None  # rows: the rollout policy's log-probs; None: learn() detaches its own
    logp_ref: list[torch.Tensor] | None  # rows: the reference policy's log-probs; None without --kl-coef
    kl_rows: list[torch.Tensor] | None  # rows: per-token KL estimate, rollout policy vs reference
    importance: list[torch.Tensor] | None  # rows: TIS weights (--tis-cap), else None
    drift: object | None  # scale.vllm_engine.DriftSums: sampler vs trainer (engines with log-probs), else None
    order: list[int] | None = None  # the order in which responses are cut into mini-batches (None: as they are)


def minibatch_order(n: int, settings: Config, seed: int) -> list[int]:
    """range(n), or with settings.shuffle_minibatches a random.Random(seed) shuffle of it (train_zero seeds it by
    seed, step and rank: a pure function of the step, so a resumed run cuts the same mini-batches)."""
    order = list(range(n))
    if settings.shuffle_minibatches:
        random.Random(seed).shuffle(order)
    return order


def prepare_batch(samples: list[Sample], scores: list[float], policy, reference, critic, settings: Config,
                  pad_id: int, d: Dist, shuffle_seed: int = 0) -> Batch:
    """The no-grad passes before the update, then the advantages: a Batch for `learn` and `learn_critic`.

    policy, reference: TokenLogProbs modules (model.unwrap of the trained ones; reference None without a KL term);
    critic: the ValueModel, or None. scores: the reward of each sample, in order.
    logp_old is scored when the update needs it (several optimiser steps per batch, or a KL term) or the
    engine returned the sampler's log-probs (drift, TIS); with one optimiser step the update uses its own
    log-probs, detached (the same numbers, one pass fewer). shuffle_seed: seeds the mini-batch order
    (minibatch_order) under --shuffle-minibatches.
    """
    rewards = torch.tensor(scores)
    truncated = torch.tensor([s.finish_reason == "length" for s in samples])
    if settings.truncated == "zero_reward":
        rewards[truncated] = 0.0
    in_loss = ~truncated if settings.truncated == "drop" else torch.ones_like(truncated)
    mb = settings.micro_batch_size
    need_old, from_sampler = settings.updates_per_batch > 1 or reference is not None, samples[0].logprobs is not None
    logp_old = score(policy, pairs(samples), pad_id, d.device, mb) if need_old or from_sampler else None
    drift = importance = None
    if from_sampler or settings.tis_cap > 0:  # an engine with its own log-probs (vLLM): trainer vs sampler
        from scale.vllm_engine import sampler_drift, tis_weights

        drift = sampler_drift(logp_old, samples) if from_sampler else None
        importance = tis_weights(logp_old, samples, settings.tis_cap) if settings.tis_cap > 0 else None
    logp_ref = score(reference, pairs(samples), pad_id, d.device, mb) if reference is not None else None
    kl_rows = None if logp_ref is None else [kl_estimate(a, b, settings.kl_estimator, settings.kl_clamp)
                                             for a, b in zip(logp_old, logp_ref)]
    values = score(critic, pairs(samples), pad_id, d.device, mb) if critic is not None else None
    advantages, returns = advantage_rows(samples, rewards, settings, kl_rows, values, all_reduce)
    return Batch(samples, rewards, in_loss, advantages, returns, values, logp_old if need_old else None, logp_ref,
                 kl_rows, importance, drift, minibatch_order(len(samples), settings, shuffle_seed))


# ---------------------------------------------------------------------------------------------
# The optimiser: AdamW, the learning rate of each step, the clipped step and its divergence guard


def lr_factor(step: int, settings: Config) -> float:
    """The learning-rate multiplier of step `step` (0-based) for the settings' steps, warmup_ratio, lr_schedule and
    min_lr_ratio: linear warmup over round(warmup_ratio x steps) steps ((step + 1) / warmup), then 1 (constant) or
    a cosine from 1 down to min_lr_ratio at the last step, as OpenRLHF's cosine_with_min_lr (SimpleRL-Zero) and HF's
    get_cosine_with_min_lr_schedule_with_warmup. A pure function of the step, so --resume continues it exactly
    (checkpoint.check_resume_config refuses a new --steps when the schedule depends on it)."""
    warmup = round(settings.warmup_ratio * settings.steps)
    if step < warmup:
        return (step + 1) / warmup
    if settings.lr_schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, settings.steps - warmup - 1)
    return settings.min_lr_ratio + (1 - settings.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def adamw(module: torch.nn.Module, settings: Config, critic: bool = False) -> torch.optim.AdamW:
    """torch.optim.AdamW over `module`'s parameters (plain, DDP- or FSDP2-wrapped) at settings.lr (the PPO critic's:
    settings.critic_lr) with the settings' adam_betas, adam_eps and weight_decay. fused=True: one kernel per
    parameter, so no multi-tensor temporaries (2.5 GB less peak at 1.5B on an H200: docs/scaling.md); also on CPU
    and DTensor."""
    lr = settings.critic_lr if critic else settings.lr
    return torch.optim.AdamW(module.parameters(), lr=lr, betas=settings.adam_betas, eps=settings.adam_eps,
                             weight_decay=settings.weight_decay, fused=True)


def set_lr(optimizer: torch.optim.Optimizer | None, lr: float) -> None:
    """Set every parameter group's learning rate (a None optimiser is skipped)."""
    for group in optimizer.param_groups if optimizer else ():
        group["lr"] = lr


def clipped_step(parameters: list[torch.nn.Parameter], optimizer: torch.optim.Optimizer, max_grad_norm: float,
                 loss_finite: bool = True) -> tuple[float, bool]:
    """Clip the accumulated gradients to max_grad_norm (global L2 norm over all ranks) and take the optimiser step,
    unless the loss on any rank (loss_finite False) or the norm is not finite: then the step is skipped (weights and
    AdamW state unchanged). Gradients are zeroed either way. Collective: every rank calls it.

    Returns (the norm before clipping, equal on every rank; whether the step was skipped). Raises ValueError for
    max_grad_norm <= 0 (clip_grad_norm_ would scale the gradients by a negative or infinite coefficient).
    """
    if not max_grad_norm > 0:
        raise ValueError(f"max_grad_norm {max_grad_norm}: must be > 0")
    norm = torch.nn.utils.clip_grad_norm_(parameters, max_grad_norm)
    norm = (norm.full_tensor() if hasattr(norm, "full_tensor") else norm).item()  # FSDP: a DTensor, reduced in full
    skipped = bool(all_reduce(torch.tensor([float(not (loss_finite and math.isfinite(norm)))]), op="max").item())
    if not skipped:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm, skipped


class Diverged(RuntimeError):
    """--max-bad-steps steps in a row had a non-finite loss or gradient norm: the run stops (no checkpoint of them)."""


class DivergenceGuard:
    """Counts steps in a row with a skipped optimiser step; check() raises Diverged at max_bad_steps of them."""

    def __init__(self, max_bad_steps: int):
        self.max_bad_steps, self.in_a_row = max_bad_steps, 0

    def check(self, step: int, skipped: bool) -> None:
        """step: 0-based; skipped: this step skipped an update (clipped_step). Raises Diverged naming the steps."""
        self.in_a_row = self.in_a_row + 1 if skipped else 0
        if self.in_a_row >= self.max_bad_steps:
            raise Diverged(f"step {step + 1}: {self.in_a_row} steps in a row (since step {step + 2 - self.in_a_row}) "
                           f"with a non-finite loss or gradient norm (--max-bad-steps {self.max_bad_steps}); their "
                           f"optimiser steps were skipped, so every checkpoint holds finite weights; start again "
                           f"with a lower --lr (into another --out-dir, or --overwrite)")


# ---------------------------------------------------------------------------------------------
# The update: mini-batches, micro-batches, gradient accumulation, one clipped step per mini-batch


@dataclass
class PolicyStats:
    """One policy update on one rank: sums over its micro-batches (metrics.py sums them over ranks)."""

    loss: float = 0.0  # this rank's share (micro-batch losses are divided by the global N), summed over optimiser steps
    clipped_tokens: float = 0.0  # tokens whose ratio left the clip range
    tokens: float = 0.0  # tokens in the loss
    entropy_sum: float = 0.0  # policy entropy summed over those tokens (nats)
    grad_norm: float = 0.0  # global grad norm before clipping, mean over the optimiser steps (equal on every rank)
    skipped_updates: float = 0.0  # optimiser steps skipped for a non-finite loss or grad norm (equal on every rank)


@dataclass
class CriticStats:
    """One critic update on one rank, like PolicyStats."""

    loss: float = 0.0  # this rank's share of the value loss, summed over optimiser steps
    clipped_tokens: float = 0.0  # tokens whose value moved past --value-clip
    tokens: float = 0.0  # tokens in the loss
    error_sum: float = 0.0  # sum of (V_old - return)^2 over those tokens
    grad_norm: float = 0.0  # as PolicyStats.grad_norm
    skipped_updates: float = 0.0  # as PolicyStats.skipped_updates


@dataclass
class MiniBatch:
    """One optimiser step's share of this rank's responses, cut before the update (minibatches)."""

    micro_batches: list[list[int]]  # response indices per forward/backward
    learned: set[int]  # the responses whose loss counts (the rest pad the rank to the others' backward count)
    num_responses: int  # responses in the optimiser step over all ranks: the loss divisor
    num_tokens: float | None  # their response tokens in the loss over all ranks (token_mean), else None


def minibatches(active: list[bool], settings: Config, d: Dist, order: list[int] | None = None,
                tokens: list[int] | None = None) -> tuple[list[MiniBatch], int]:
    """Cut this rank's responses (in `order`, default as they are) into settings.updates_per_batch mini-batches and
    those into micro-batches of settings.micro_batch_size; returns (the mini-batches to run, how many were cut).

    Only `active` responses are run. Every rank must run the same number of backward passes (DDP all-reduces in
    each), so a rank pads with inactive responses of its mini-batch, whose loss mask learn zeroes. A mini-batch with
    nothing to run on any rank is left out: no optimiser step. tokens: each response's tokens in the loss
    (token_mean); None otherwise. Collective (one all_reduce per mini-batch).
    """
    order = list(range(len(active))) if order is None else order
    mini_size = math.ceil(len(order) / settings.updates_per_batch)
    cut = [order[i : i + mini_size] for i in range(0, len(order), mini_size)]
    out = []
    for mini in cut:
        runs = [i for i in mini if active[i]]
        count = int(all_reduce(torch.tensor([len(runs)]), op="max").item())
        if count == 0:
            continue  # no gradient on any rank: no optimiser step
        learned = set(runs)
        runs += [i for i in mini if i not in learned][: count - len(runs)]
        num_tokens = None if tokens is None else all_reduce(torch.tensor([float(sum(tokens[i] for i in mini))])).item()
        size = settings.micro_batch_size
        out.append(MiniBatch([runs[i : i + size] for i in range(0, len(runs), size)], learned, len(mini) * d.world_size,
                             num_tokens))
    return out, len(cut)


def micro_batch(micro: list[int], mini: MiniBatch, samples: list[Sample], pad_id: int, device):
    """A micro-batch's samples and collated tensors, response_mask zero on padding responses (not mini.learned)."""
    part = [samples[i] for i in micro]
    ids, attn, response_mask = collate(pairs(part), pad_id, device)
    learned = torch.tensor([float(i in mini.learned) for i in micro], device=device)
    return part, ids, attn, response_mask * learned[:, None]


def learn(policy, optimizer, batch: Batch, settings: Config, d: Dist, pad_id: int) -> PolicyStats:
    """The policy update: settings.updates_per_batch optimiser steps on this rank's batch.

    Each mini-batch: for each micro-batch, collate -> log-probs (the fused kernel) -> loss -> backward; then one
    clipped optimiser step (clipped_step: gradients clipped to settings.max_grad_norm; a mini-batch whose loss on any
    rank or gradient norm is not finite is skipped, counted in skipped_updates, and its NaN / inf norm enters the
    logged mean).
    policy: TokenLogProbs wrapped by model.distribute (DDP or FSDP). Uses batch.advantages, batch.in_loss,
    batch.logp_old (None: the current log-probs, detached; exact when the batch makes one optimiser step),
    batch.logp_ref (the KL loss term, settings.kl_in == "loss") and batch.importance (TIS weights on the surrogate).
    Losses are scaled as the module docstring says. Responses whose gradient is exactly zero (zero advantage, and no
    KL or entropy term) are not run; logged entropy and clip fraction are over those run.
    """
    samples, advantages = batch.samples, batch.advantages
    aggregation = ALGORITHMS[settings.algo].aggregation if settings.loss_agg == "algo" else settings.loss_agg
    kl_in_loss = batch.logp_ref is not None and settings.kl_in == "loss"
    always = kl_in_loss or settings.entropy_coef != 0
    active = [bool(batch.in_loss[i]) and (always or bool(advantages[i].abs().sum() > 0)) for i in range(len(samples))]
    tokens = [len(s.response_ids) * bool(batch.in_loss[i]) for i, s in enumerate(samples)] \
        if aggregation == "token_mean" else None
    parameters = [p for p in policy.parameters() if p.requires_grad]
    stats = PolicyStats()
    minis, cut = minibatches(active, settings, d, batch.order, tokens)
    for mini in minis:
        finite = True
        for k, micro in enumerate(mini.micro_batches):
            with no_gradient_sync(policy, skip=k < len(mini.micro_batches) - 1):  # gradients reduced after the last
                part, ids, attn, response_mask = micro_batch(micro, mini, samples, pad_id, d.device)
                logp, entropy = policy(ids, attn, response_mask)  # (b, T-1) each

                def rows(per_response):  # this micro-batch's rows at their (b, T-1) positions
                    return place_rows([per_response[i] for i in micro], part, logp.shape[1], d.device)

                old = logp.detach() if batch.logp_old is None else rows(batch.logp_old)
                penalty = -settings.entropy_coef * entropy if settings.entropy_coef else torch.zeros_like(logp)
                if kl_in_loss:
                    kl = kl_estimate(logp, rows(batch.logp_ref), settings.kl_estimator, settings.kl_clamp)
                    penalty = penalty + settings.kl_coef * kl
                weights = None if batch.importance is None else rows(batch.importance)
                loss, st = policy_loss(logp, old, rows(advantages), response_mask, settings.clip_eps, aggregation,
                                       mini.num_responses, settings.max_new_tokens, settings.clip_eps_high or None,
                                       penalty, weights, mini.num_tokens)
                stats.loss += loss.item()
                stats.clipped_tokens += st["clipped_tokens"].item()
                stats.tokens += st["tokens"].item()
                stats.entropy_sum += (entropy.detach() * response_mask).sum().item()
                finite = finite and math.isfinite(loss.item())
                (loss * d.world_size).backward()
        norm, bad = clipped_step(parameters, optimizer, settings.max_grad_norm, finite)  # norm equal on every rank
        stats.grad_norm += norm / cut
        stats.skipped_updates += bad
    return stats


def learn_critic(critic, optimizer, batch: Batch, settings: Config, d: Dist, pad_id: int) -> CriticStats:
    """The critic update (PPO): the clipped value loss toward batch.returns around batch.values, on the policy's
    mini- and micro-batches (minibatches), each mini-batch one clipped optimiser step as in `learn`.

    critic: ValueModel wrapped by model.distribute. Every response in the loss (batch.in_loss) is run.
    """
    samples = batch.samples
    parameters = [p for p in critic.parameters() if p.requires_grad]
    stats = CriticStats()
    minis, cut = minibatches([bool(x) for x in batch.in_loss], settings, d, batch.order)
    for mini in minis:
        finite = True
        for k, micro in enumerate(mini.micro_batches):
            with no_gradient_sync(critic, skip=k < len(mini.micro_batches) - 1):
                part, ids, attn, response_mask = micro_batch(micro, mini, samples, pad_id, d.device)
                values = critic(ids, attn)  # (b, T-1)

                def rows(per_response):
                    return place_rows([per_response[i] for i in micro], part, values.shape[1], d.device)

                loss, st = value_loss(values, rows(batch.values), rows(batch.returns), response_mask,
                                      settings.value_clip, mini.num_responses)
                stats.loss += loss.item()
                stats.clipped_tokens += st["value_clipped_tokens"].item()
                stats.tokens += st["tokens"].item()
                stats.error_sum += st["value_error_sum"].item()
                finite = finite and math.isfinite(loss.item())
                (loss * d.world_size).backward()
        norm, bad = clipped_step(parameters, optimizer, settings.max_grad_norm, finite)
        stats.grad_norm += norm / cut
        stats.skipped_updates += bad
    return stats
