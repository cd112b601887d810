"""losses.py at its seams: the fused log-prob kernel against naive, hand-computed advantages and losses."""

import math

import pytest
import torch

from losses import (
    chunked_logprobs_entropy,
    gae_advantages,
    group_advantages,
    kl_estimate,
    policy_loss,
    value_loss,
    whiten,
)
from model import ValueModel


def naive(hidden, weight, targets, temperature):
    logits = hidden @ weight.T / temperature
    log_probs = torch.log_softmax(logits, dim=-1)
    logp = log_probs.gather(1, targets[:, None]).squeeze(1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return logp, entropy


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("in_loss", ["both", "logp", "entropy"])  # "logp" takes the one-buffer backward
def test_fused_logprob_matches_naive_fp32(chunk_size, temperature, in_loss):
    torch.manual_seed(0)
    N, H, V = 37, 16, 301
    hidden = torch.randn(N, H, requires_grad=True)
    weight = torch.randn(V, H, requires_grad=True)
    targets = torch.randint(0, V, (N,))
    grad_logp, grad_entropy = torch.randn(N), torch.randn(N)

    def loss(logp, entropy):
        terms = {"logp": (logp * grad_logp).sum(), "entropy": (entropy * grad_entropy).sum()}
        return terms["logp"] + terms["entropy"] if in_loss == "both" else terms[in_loss]

    logp, entropy = chunked_logprobs_entropy(hidden, weight, targets, temperature, chunk_size)
    loss(logp, entropy).backward()
    g_hidden, g_weight = hidden.grad.clone(), weight.grad.clone()
    hidden.grad = weight.grad = None

    ref_logp, ref_entropy = naive(hidden, weight, targets, temperature)
    loss(ref_logp, ref_entropy).backward()
    torch.testing.assert_close(logp, ref_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy, ref_entropy, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_hidden, hidden.grad, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(g_weight, weight.grad, atol=1e-5, rtol=1e-5)


def test_fused_logprob_entropy_gradcheck_fp64():
    """Finite differences in fp64 for both outputs, the entropy's gradient included."""
    torch.manual_seed(1)
    hidden = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(9, 4, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(0, 9, (5,))
    assert torch.autograd.gradcheck(lambda h, w: chunked_logprobs_entropy(h, w, targets, 0.8, 2), (hidden, weight))
    for output in (0, 1):  # one output alone in the loss: the other's gradient arrives as None
        assert torch.autograd.gradcheck(lambda h, w: chunked_logprobs_entropy(h, w, targets, 0.8, 2)[output],
                                        (hidden, weight))
    logp, entropy = chunked_logprobs_entropy(hidden, weight, targets, 0.8, 2)
    ref_logp, ref_entropy = naive(hidden, weight, targets, 0.8)
    torch.testing.assert_close(logp, ref_logp)
    torch.testing.assert_close(entropy, ref_entropy)


def test_fused_logprob_rejects_bad_shapes():
    with pytest.raises(ValueError, match="hidden"):
        chunked_logprobs_entropy(torch.randn(3, 4), torch.randn(5, 3), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        chunked_logprobs_entropy(torch.randn(3, 4), torch.randn(5, 4), torch.zeros(3, dtype=torch.long), 0.0)


def test_grpo_advantages_hand_computed():
    rewards = torch.tensor([1.0, -1.0, -0.5, -0.5, 1.0, 1.0])  # groups of 2: [1,-1], [-.5,-.5], [1,1]
    adv = group_advantages(rewards, group_size=2, scale_by_std=True)
    std = torch.tensor([1.0, -1.0]).std().item()  # sqrt(2), Bessel-corrected
    expected = torch.tensor([1 / (std + 1e-6), -1 / (std + 1e-6), 0, 0, 0, 0])
    torch.testing.assert_close(adv, expected)


def test_drgrpo_advantages_hand_computed():
    rewards = torch.tensor([1.0, -0.5, -1.0, 1.0, 1.0, 1.0])  # groups of 3: mean -1/6, mean 1
    adv = group_advantages(rewards, group_size=3, scale_by_std=False)
    torch.testing.assert_close(adv, torch.tensor([7 / 6, -1 / 3, -5 / 6, 0.0, 0.0, 0.0]))


def test_advantages_reject_ragged_groups():
    with pytest.raises(ValueError, match="groups of 4"):
        group_advantages(torch.zeros(6), group_size=4, scale_by_std=False)


def _two_responses():
    # response 0 has 2 tokens, response 1 has 3 tokens; logp_old = 0
    logp = torch.tensor([[0.1, -0.5, 0.0], [0.0, 0.3, 0.05]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    advantages = torch.tensor([2.0, -1.0])
    return logp, torch.zeros_like(logp), advantages, mask


def test_policy_loss_grpo_hand_computed():
    logp, logp_old, adv, mask = _two_responses()
    loss, stats = policy_loss(logp, logp_old, adv, mask, clip_eps=0.2, aggregation="seq_mean_token_mean", num_responses=2)
    r = torch.exp(logp)
    # response 0 (A=2): min(r*2, clip(r)*2): r=1.105 -> 2.2103; r=0.6065 -> clip 0.8 -> min(1.213, 1.6) = 1.2131
    s0 = (min(r[0, 0] * 2, 1.2 * 2 if r[0, 0] > 1.2 else r[0, 0] * 2) + min(r[0, 1] * 2, 0.8 * 2)) / 2
    # response 1 (A=-1): min(-r, -clip(r)): r=1, 1.3499 -> -1.3499 (unclipped is smaller), 1.0513
    s1 = (-1.0 + min(-r[1, 1], -1.2) + min(-r[1, 2], -r[1, 2])) / 3
    expected = -(s0 + s1) / 2
    torch.testing.assert_close(loss, torch.tensor(float(expected)))
    assert stats["tokens"].item() == 5 and stats["clipped_tokens"].item() == 2  # 0.6065 and 1.3499


def test_policy_loss_drgrpo_hand_computed():
    logp, logp_old, adv, mask = _two_responses()
    logp = logp_old.clone()  # ratio 1: loss = -(1/N) sum_i A_i |o_i| / L_max
    loss, _ = policy_loss(logp, logp_old, adv, mask, 0.2, "seq_mean_token_sum_norm", num_responses=2, max_new_tokens=4)
    torch.testing.assert_close(loss, torch.tensor(-(2.0 * 2 + -1.0 * 3) / 4 / 2))


def test_policy_loss_token_mean_hand_computed():
    """DAPO / verl token-mean: every token weighs the same, whatever its response's length:
    loss = -(sum over all tokens of the surrogate) / (tokens in the step). Ratio 1: -(2 * 2 + -1 * 3) / 5."""
    logp, logp_old, adv, mask = _two_responses()
    loss, _ = policy_loss(logp_old.clone(), logp_old, adv, mask, 0.2, "token_mean", num_responses=2, num_tokens=5)
    torch.testing.assert_close(loss, torch.tensor(-(2.0 * 2 + -1.0 * 3) / 5))
    per_response, _ = policy_loss(logp_old.clone(), logp_old, adv, mask, 0.2, "seq_mean_token_mean", num_responses=2)
    torch.testing.assert_close(per_response, torch.tensor(-(2.0 * 2 / 2 + -1.0 * 3 / 3) / 2))  # GRPO: 1/|o_i| first
    with pytest.raises(ValueError, match="num_tokens"):
        policy_loss(logp, logp_old, adv, mask, 0.2, "token_mean", 2)


def test_policy_loss_rejects_unknown_aggregation():
    logp, logp_old, adv, mask = _two_responses()
    with pytest.raises(ValueError, match="aggregation"):
        policy_loss(logp, logp_old, adv, mask, 0.2, "sum", 2)
    with pytest.raises(ValueError, match="max_new_tokens"):
        policy_loss(logp, logp_old, adv, mask, 0.2, "seq_mean_token_sum_norm", 2)


@pytest.mark.parametrize("aggregation", ["seq_mean_token_mean", "seq_mean_token_sum_norm", "token_mean"])
def test_loss_and_grad_independent_of_micro_batch_size(aggregation):
    torch.manual_seed(0)
    B, T = 8, 6
    theta = torch.randn(B, T, requires_grad=True)
    logp_old = torch.randn(B, T) * 0.1
    mask = (torch.rand(B, T) > 0.3).float()
    adv = torch.randn(B)

    def accumulate(micro):
        theta.grad = None
        total = 0.0
        for start in range(0, B, micro):
            sl = slice(start, start + micro)
            loss, _ = policy_loss(logp_old[sl] + 0.1 * theta[sl], logp_old[sl], adv[sl], mask[sl], 0.2, aggregation,
                                  num_responses=B, max_new_tokens=T, num_tokens=mask.sum().item())
            loss.backward()
            total += loss.item()
        return total, theta.grad.clone()

    full_loss, full_grad = accumulate(B)
    for micro in (1, 3, 4):
        loss, grad = accumulate(micro)
        assert loss == pytest.approx(full_loss, abs=1e-6)
        torch.testing.assert_close(grad, full_grad)


def test_kl_clamp_bounds_the_estimate_as_verl_does():
    """log-ratios 20, -15, 0.5: k3 = exp(-x) + x - 1 is ~19, ~3.3e6 and 0.1065; clamped to 10, 10 and unchanged."""
    logp, logp_ref = torch.tensor([[0.0, 0.0, -1.0]]), torch.tensor([[-20.0, 15.0, -1.5]])
    free = kl_estimate(logp, logp_ref, "k3")
    assert free[0, 0].item() == pytest.approx(19.0) and free[0, 1].item() > 3e6
    clamped = kl_estimate(logp, logp_ref, "k3", clamp=10.0)
    assert clamped[0, :2].tolist() == [10.0, 10.0] and clamped[0, 2].item() == pytest.approx(math.exp(-0.5) - 0.5)
    assert kl_estimate(logp, logp_ref, "k1", clamp=10.0)[0].tolist() == [10.0, -10.0, 0.5]


def test_kl_estimators_closed_forms():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.1]])
    logp_ref = torch.tensor([[-1.5, -1.0], [-0.5, -3.0]])
    d = logp - logp_ref
    torch.testing.assert_close(kl_estimate(logp, logp_ref, "k1"), d)
    torch.testing.assert_close(kl_estimate(logp, logp_ref, "k2"), 0.5 * d**2)
    torch.testing.assert_close(kl_estimate(logp, logp_ref, "k3"), torch.exp(-d) + d - 1)
    assert (kl_estimate(logp, logp_ref, "k3") >= 0).all() and kl_estimate(logp, logp, "k3").abs().max() == 0
    with pytest.raises(ValueError, match="k4"):
        kl_estimate(logp, logp_ref, "k4")


def test_kl_estimators_are_unbiased_or_consistent_on_samples():
    # Monte-Carlo over tokens sampled from p: E_p[k1] = E_p[k3] = KL(p || q); k2 is close for nearby p, q.
    torch.manual_seed(0)
    p = torch.softmax(torch.randn(50), 0)
    q = torch.softmax(torch.log(p) + 0.1 * torch.randn(50), 0)
    tokens = torch.multinomial(p, 400_000, replacement=True)
    logp, logq = torch.log(p)[tokens], torch.log(q)[tokens]
    exact = (p * (p.log() - q.log())).sum()
    for estimator, tol in (("k1", 2e-3), ("k3", 2e-3), ("k2", 2e-3)):
        assert kl_estimate(logp, logq, estimator).mean().item() == pytest.approx(exact.item(), abs=tol), estimator


def test_clip_higher_uses_separate_bounds():
    logp_old = torch.zeros(1, 3)
    ratio = torch.tensor([[0.7, 1.25, 1.35]])
    mask = torch.ones(1, 3)
    # positive advantage: only the upper bound binds; eps_high 0.28 clips 1.35 to 1.28 but not 1.25
    loss, stats = policy_loss(ratio.log(), logp_old, torch.tensor([1.0]), mask, 0.2, "seq_mean_token_mean", 1,
                              clip_eps_high=0.28)
    torch.testing.assert_close(loss, torch.tensor(-(0.7 + 1.25 + 1.28) / 3))
    assert stats["clipped_tokens"].item() == 2  # 0.7 < 0.8 and 1.35 > 1.28
    loss_sym, _ = policy_loss(ratio.log(), logp_old, torch.tensor([1.0]), mask, 0.2, "seq_mean_token_mean", 1)
    torch.testing.assert_close(loss_sym, torch.tensor(-(0.7 + 1.2 + 1.2) / 3))


def test_per_token_penalty_is_aggregated_like_the_surrogate():
    logp = torch.zeros(2, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    penalty = torch.tensor([[0.3, 0.1, 9.0], [0.2, 0.2, 0.2]])  # the 9.0 is masked out
    loss, _ = policy_loss(logp, logp, torch.zeros(2), mask, 0.2, "seq_mean_token_mean", 2, per_token_penalty=penalty)
    torch.testing.assert_close(loss, torch.tensor((0.4 / 2 + 0.6 / 3) / 2))
    loss, _ = policy_loss(logp, logp, torch.zeros(2), mask, 0.2, "seq_mean_token_sum_norm", 2, max_new_tokens=4,
                          per_token_penalty=penalty)
    torch.testing.assert_close(loss, torch.tensor((0.4 + 0.6) / 4 / 2))


# ---------------------------------------------------------------------------------------------
# PPO: GAE, whitening, value loss, per-token advantages


def test_gae_hand_computed_gamma_1_lambda_095():
    # one response of 3 tokens, reward 1 on the last token; values 0.5, 0.2, -0.1; then a padded slot
    rewards = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, -0.1, 7.0]])  # 7.0 sits outside the mask and must not leak in
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=0.95)
    d2 = 1.0 + 0.0 - (-0.1)  # delta_2 = r_2 + V_3 (terminal: 0) - V_2 = 1.1
    d1 = 0.0 + (-0.1) - 0.2  # -0.3
    d0 = 0.0 + 0.2 - 0.5  # -0.3
    a2 = d2
    a1 = d1 + 0.95 * a2
    a0 = d0 + 0.95 * a1
    torch.testing.assert_close(adv, torch.tensor([[a0, a1, a2, 0.0]]))
    torch.testing.assert_close(ret, torch.tensor([[a0 + 0.5, a1 + 0.2, a2 - 0.1, 0.0]]))


def test_gae_with_lambda_1_gives_monte_carlo_returns_and_gamma_discounts():
    rewards = torch.tensor([[0.1, -0.2, 1.0], [0.0, 2.0, 0.0]])
    values = torch.tensor([[0.3, 0.1, 0.4], [1.0, -1.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    adv, ret = gae_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(ret, torch.tensor([[0.9, 0.8, 1.0], [2.0, 2.0, 0.0]]))  # reward-to-go
    torch.testing.assert_close(adv, ret - values * mask)
    adv, _ = gae_advantages(rewards, values, mask, gamma=0.5, lam=0.0)  # one-step TD errors
    expected = torch.tensor([[0.1 + 0.5 * 0.1 - 0.3, -0.2 + 0.5 * 0.4 - 0.1, 1.0 - 0.4], [0.0 - 0.5 - 1.0, 2.0 + 1.0, 0]])
    torch.testing.assert_close(adv, expected)


def test_whiten_is_masked_and_reduces_over_ranks():
    x = torch.tensor([[1.0, 2.0, 3.0, 100.0], [4.0, 5.0, 6.0, -100.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    out = whiten(x, mask)
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    expected = (values - 3.5) / torch.sqrt(values.var(unbiased=False) + 1e-8)
    torch.testing.assert_close(out[:, :3].reshape(-1), expected)
    assert (out[:, 3] == 0).all()
    # Two "ranks" holding one row each: an all_reduce that adds the other rank's partial sums in the
    # order whiten calls it (first [sum, count], then the sum of squares) gives the same result.
    other = {"calls": 0}

    def fake_all_reduce_for_row0(t):
        if other["calls"] == 0:
            t += torch.tensor([15.0, 3.0], dtype=t.dtype)  # row 1's sum and count
        else:
            t += ((torch.tensor([4.0, 5.0, 6.0]) - 3.5) ** 2).sum().double()  # row 1's squares at the global mean
        other["calls"] += 1

    torch.testing.assert_close(whiten(x[:1], mask[:1], fake_all_reduce_for_row0), out[:1])


def test_value_loss_clipping_hand_computed():
    values_old = torch.tensor([[0.0, 0.0, 0.0]])
    values = torch.tensor([[0.5, -0.1, 0.3]], requires_grad=True)
    returns = torch.tensor([[1.0, 1.0, -1.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    loss, stats = value_loss(values, values_old, returns, mask, clip_value=0.2, num_responses=2)
    # token 0: V 0.5 clipped to 0.2: max((0.5-1)^2, (0.2-1)^2) = 0.64 (the clipped error is larger)
    # token 1: V -0.1 inside the clip: (-0.1-1)^2 = 1.21
    # token 2: V 0.3 clipped to 0.2: max((0.3+1)^2, (0.2+1)^2) = 1.69 (the unclipped error is larger)
    expected = 0.5 * (0.64 + 1.21 + 1.69) / 3 / 2
    torch.testing.assert_close(loss, torch.tensor(expected))
    assert stats["value_clipped_tokens"].item() == 2 and stats["tokens"].item() == 3
    loss.backward()
    # token 0's max is the clipped term, constant in V: no gradient; tokens 1, 2 get 0.5 * 2 (V - R) / 3 / 2
    torch.testing.assert_close(values.grad, torch.tensor([[0.0, (-0.1 - 1.0) / 6, (0.3 + 1.0) / 6]]))
    unclipped, _ = value_loss(values.detach(), values_old, returns, mask, clip_value=0.0, num_responses=2)
    torch.testing.assert_close(unclipped, torch.tensor(0.5 * (0.25 + 1.21 + 1.69) / 3 / 2))


def test_policy_loss_takes_per_token_advantages():
    logp, logp_old, adv, mask = _two_responses()
    per_token = adv[:, None].expand_as(logp).clone()
    scalar, _ = policy_loss(logp, logp_old, adv, mask, 0.2, "seq_mean_token_mean", 2)
    tokenwise, _ = policy_loss(logp, logp_old, per_token, mask, 0.2, "seq_mean_token_mean", 2)
    torch.testing.assert_close(scalar, tokenwise)
    per_token[0, 0] = 0.0  # a token with zero advantage contributes nothing to the surrogate
    changed, _ = policy_loss(logp, logp_old, per_token, mask, 0.2, "seq_mean_token_mean", 2)
    r00 = torch.exp(logp[0, 0])
    torch.testing.assert_close(changed, scalar + min(r00 * 2, torch.tensor(1.2) * 2) / 2 / 2)


def test_value_model_starts_at_zero_and_learns(tiny_model):
    critic = ValueModel(tiny_model)
    ids = torch.randint(3, 100, (2, 7))
    values = critic(ids, torch.ones_like(ids))
    assert values.shape == (2, 6) and values.dtype == torch.float32 and values.abs().max() == 0
    values.sum().backward()
    assert critic.head.weight.grad.abs().sum() > 0  # the head learns first; the backbone follows once it is nonzero


def test_importance_weights_scale_the_surrogate_not_the_penalty():
    logp, logp_old, adv, mask = _two_responses()
    weights = torch.tensor([[0.5, 2.0, 1.0], [1.0, 1.0, 0.0]])
    penalty = torch.full_like(logp, 0.1)
    plain, _ = policy_loss(logp, logp_old, adv, mask, 0.2, "seq_mean_token_mean", 2)
    weighted, _ = policy_loss(logp, logp_old, adv, mask, 0.2, "seq_mean_token_mean", 2, importance_weights=weights)
    with_penalty, _ = policy_loss(logp, logp_old, adv, mask, 0.2, "seq_mean_token_mean", 2, per_token_penalty=penalty,
                                  importance_weights=weights)
    r = torch.exp(logp)
    s0 = (0.5 * min(r[0, 0] * 2, 1.2 * 2) + 2.0 * min(r[0, 1] * 2, 0.8 * 2)) / 2
    s1 = (-1.0 + min(-r[1, 1], -1.2) + 0.0) / 3
    torch.testing.assert_close(weighted, -(s0 + s1) / 2)
    torch.testing.assert_close(with_penalty, weighted + 0.1)  # each response averages 0.1 per token
    assert not torch.isclose(plain, weighted)
