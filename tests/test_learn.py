"""learn.py at its seams: row layout, advantages per algorithm (GRPO, Dr. GRPO, PPO), KL in the reward."""

import pytest
import torch

from config import Config as LearnSettings  # the run's settings: learn.py reads its fields by name
from learn import advantage_rows, pairs, place_rows, response_rows
from scale.vllm_engine import sampler_drift, tis_weights
from losses import gae_advantages, group_advantages
from learn import collate
from rollout import Sample


def samples_of(lengths, prompt=3):
    return [Sample(list(range(10, 10 + prompt)), list(range(50, 50 + n)), "", "stop") for n in lengths]


def test_rows_round_trip_through_the_collated_layout():
    samples = samples_of([2, 4, 1])
    ids, attn, rmask = collate(pairs(samples), pad_id=0, device="cpu")
    assert ids.shape == (3, 7) and rmask.shape == (3, 6)
    rows = [torch.arange(1.0, 1.0 + len(s.response_ids)) for s in samples]
    placed = place_rows(rows, samples, 6, "cpu")
    assert ((placed != 0).float() == rmask).all()  # rows land exactly on the response positions
    assert [r.tolist() for r in response_rows(placed, samples)] == [r.tolist() for r in rows]
    assert ids[0, 2:5].tolist() == [12, 50, 51]  # position 2 scores the first response token


@pytest.mark.parametrize("algo", ["grpo", "drgrpo"])
def test_group_algorithms_give_every_token_its_response_advantage(algo):
    samples = samples_of([2, 3, 1, 4])
    rewards = torch.tensor([1.0, -0.5, -1.0, 1.0])
    rows, returns = advantage_rows(samples, rewards, LearnSettings(algo=algo, group_size=2))
    expected = group_advantages(rewards, 2, scale_by_std=algo == "grpo")
    assert returns is None
    for row, s, a in zip(rows, samples, expected.tolist()):
        assert row.tolist() == pytest.approx([a] * len(s.response_ids))


def test_kl_in_reward_lowers_a_response_reward_by_its_summed_penalty():
    samples = samples_of([2, 2])
    rewards = torch.tensor([1.0, 1.0])
    kl = [torch.tensor([0.5, 0.5]), torch.tensor([0.0, 0.0])]
    cfg = LearnSettings(algo="drgrpo", group_size=2, kl_coef=0.1, kl_in="reward")
    rows, _ = advantage_rows(samples, rewards, cfg, kl_rows=kl)
    # totals 1 - 0.1 * 1.0 = 0.9 and 1.0: Dr. GRPO advantages -0.05 and +0.05
    assert rows[0].tolist() == pytest.approx([-0.05, -0.05]) and rows[1].tolist() == pytest.approx([0.05, 0.05])
    loss_style, _ = advantage_rows(samples, rewards, LearnSettings(algo="drgrpo", group_size=2, kl_coef=0.1), kl_rows=kl)
    assert all((row == 0).all() for row in loss_style)  # kl_in="loss": the reward is untouched


def test_ppo_puts_the_reward_on_the_last_token_and_whitens():
    samples = samples_of([3, 2])
    rewards = torch.tensor([1.0, -1.0])
    values = [torch.tensor([0.1, 0.2, 0.3]), torch.tensor([-0.2, 0.0])]
    kl = [torch.tensor([0.1, 0.0, 0.2]), torch.tensor([0.3, 0.1])]
    cfg = LearnSettings(algo="ppo", group_size=2, kl_coef=0.5, kl_in="reward", whiten_advantages=False)
    adv, ret = advantage_rows(samples, rewards, cfg, kl_rows=kl, values=values)
    token_rewards = torch.tensor([[-0.05, 0.0, 1.0 - 0.1], [-0.15, -1.0 - 0.05, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    padded_values = torch.tensor([[0.1, 0.2, 0.3], [-0.2, 0.0, 0.0]])
    expected_adv, expected_ret = gae_advantages(token_rewards, padded_values, mask, 1.0, 0.95)
    torch.testing.assert_close(torch.cat(adv), expected_adv[mask.bool()])
    torch.testing.assert_close(torch.cat(ret), expected_ret[mask.bool()])
    whitened, _ = advantage_rows(samples, rewards, LearnSettings(algo="ppo", group_size=2, kl_coef=0.5, kl_in="reward"),
                                 kl_rows=kl, values=values)
    flat = torch.cat(whitened)
    assert flat.mean().item() == pytest.approx(0.0, abs=1e-6) and flat.var(unbiased=False).item() == pytest.approx(1.0, abs=1e-5)


def test_sampler_drift_and_truncated_importance_weights():
    samples = samples_of([2, 1])
    samples[0].logprobs, samples[1].logprobs = [-1.0, -2.0], [-0.5]
    logp_old = [torch.tensor([-1.0, -1.0]), torch.tensor([-0.6])]
    drift = sampler_drift(logp_old, samples)
    delta = torch.tensor([0.0, 1.0, -0.1])
    assert drift.tokens == 3 and drift.abs_sum == pytest.approx(1.1)
    assert drift.kl_sum == pytest.approx((torch.exp(delta) - delta - 1).sum().item())
    weights = tis_weights(logp_old, samples, cap=2.0)
    assert weights[0].tolist() == pytest.approx([1.0, 2.0])  # exp(1) = 2.72 is capped at 2
    assert weights[1].tolist() == pytest.approx([torch.exp(torch.tensor(-0.1)).item()])
    samples[1].logprobs = None  # the transformers engine: no sampler log-probs
    assert sampler_drift(logp_old, samples) is None
    with pytest.raises(ValueError, match="rollout-engine vllm"):
        tis_weights(logp_old, samples, cap=2.0)


def test_ppo_batch_with_all_equal_rewards_gets_zero_advantages_unless_asked():
    samples = samples_of([3, 2])
    values = [torch.tensor([0.1, 0.2, 0.3]), torch.tensor([-0.2, 0.0])]
    rows, returns = advantage_rows(samples, torch.tensor([-1.0, -1.0]), LearnSettings(algo="ppo", group_size=2), values=values)
    assert all((row == 0).all() for row in rows) and torch.cat(returns).abs().sum() > 0  # the critic still has targets
    rows, _ = advantage_rows(samples, torch.tensor([-1.0, -1.0]),
                             LearnSettings(algo="ppo", group_size=2, ppo_skip_uniform_batches=False), values=values)
    assert torch.cat(rows).abs().sum() > 0  # whitened critic noise
    rows, _ = advantage_rows(samples, torch.tensor([-1.0, -0.5]), LearnSettings(algo="ppo", group_size=2), values=values)
    assert torch.cat(rows).abs().sum() > 0


@pytest.mark.parametrize("poison", ["loss", "gradient"])
def test_a_non_finite_loss_or_gradient_skips_the_optimiser_step(poison, tiny_model, monkeypatch):
    """Two mini-batches, the first poisoned (a NaN loss, or a finite loss with a NaN gradient): learn skips its
    optimiser step (weights and AdamW state unchanged), counts it, logs its NaN norm in the mean, and steps the other."""
    from distributed import setup_distributed
    import torch.distributed as dist
    import learn as learn_module
    from learn import Batch, learn
    from losses import TokenLogProbs

    d = setup_distributed()
    try:
        policy = TokenLogProbs(tiny_model)
        optimizer = torch.optim.AdamW(policy.parameters(), lr=0.1)
        before = [p.detach().clone() for p in policy.parameters()]
        samples = samples_of([2, 3, 1, 2])
        batch = Batch(samples, torch.zeros(4), torch.ones(4, dtype=torch.bool),
                      [torch.full((len(s.response_ids),), a) for s, a in zip(samples, [1.0, -1.0, 1.0, -1.0])],
                      None, None, None, None, None, None, None)
        real_loss, calls = learn_module.policy_loss, []

        def poisoned_loss(*args, **kwargs):
            loss, stats = real_loss(*args, **kwargs)
            calls.append(1)
            if len(calls) == 1 and poison == "loss":
                return loss * float("nan"), stats
            if len(calls) == 1:  # a finite loss whose gradient is NaN
                loss.register_hook(lambda g: g * float("nan"))
            return loss, stats

        monkeypatch.setattr(learn_module, "policy_loss", poisoned_loss)
        stats = learn(policy, optimizer, batch, LearnSettings(micro_batch_size=8, updates_per_batch=2), d, 0)
        assert stats.skipped_updates == 1 and len(calls) == 2 and stats.grad_norm != stats.grad_norm  # NaN in the mean
        assert all(torch.isfinite(p).all() for p in policy.parameters())
        assert any((p != b).any() for p, b in zip(policy.parameters(), before))  # the healthy mini-batch stepped
        assert all(optimizer.state[p]["step"].item() == 1 for p in policy.parameters())  # and only it
    finally:
        dist.destroy_process_group()


def test_flag_problems_of_the_learn_stage():
    from rundir import settings_problems

    assert settings_problems(LearnSettings()) == []
    problems = settings_problems(LearnSettings(group_size=1, micro_batch_size=0, max_new_tokens=0, clip_eps=-0.1))
    assert "--micro-batch-size 0: must be at least 1" in problems and "--max-new-tokens 0: must be at least 1" in problems
    assert "--clip-eps -0.1: must be > 0" in problems
    assert any(p.startswith("--group-size 1 with --algo drgrpo: a group of one sample has advantage") for p in problems)
    assert settings_problems(LearnSettings(algo="ppo", group_size=1)) == []  # PPO's GAE advantages need no group


def test_minibatch_order_is_a_seeded_shuffle_only_when_asked():
    from learn import minibatch_order

    assert minibatch_order(6, LearnSettings(), seed=3) == list(range(6))
    shuffled = minibatch_order(16, LearnSettings(shuffle_minibatches=True), seed=3)
    assert sorted(shuffled) == list(range(16)) and shuffled != list(range(16))
    assert shuffled == minibatch_order(16, LearnSettings(shuffle_minibatches=True), seed=3)  # a resume repeats it
    assert shuffled != minibatch_order(16, LearnSettings(shuffle_minibatches=True), seed=4)


def test_mini_batches_follow_the_order_and_token_mean_gets_the_steps_token_count():
    """minibatches cuts `order` into updates_per_batch mini-batches of micro-batches; with `tokens` each mini-batch
    carries its token count (summed over ranks: one rank here); a mini-batch with nothing active is left out, but
    counts in how many were cut (the logged grad norm is a mean over all of them)."""
    from distributed import setup_distributed
    import torch.distributed as dist
    from learn import MiniBatch, minibatches

    d = setup_distributed()
    try:
        settings = LearnSettings(micro_batch_size=1, updates_per_batch=2)
        minis, cut = minibatches([True] * 4, settings, d, order=[3, 0, 2, 1], tokens=[5, 0, 7, 2])
        assert cut == 2 and minis == [MiniBatch([[3], [0]], {3, 0}, 2, 7.0), MiniBatch([[2], [1]], {2, 1}, 2, 7.0)]
        minis, cut = minibatches([False, True, False, False], LearnSettings(updates_per_batch=2), d)
        assert cut == 2 and minis == [MiniBatch([[1]], {1}, 2, None)]
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("logprob_temperature, expected", [("sampling", 0.6), ("1", 1.0)])
def test_logprob_temperature_sets_the_ratio_and_kl_temperature(tiny_model_dir, tmp_path, logprob_temperature,
                                                               expected):
    """--logprob-temperature 1 scores the policy and the KL reference at temperature 1 whatever the sampling
    temperature (OpenRLHF v0, SimpleRL-Zero: sampling at 0.6); the default scores them at it."""
    from distributed import setup_distributed
    import torch.distributed as dist
    from train_zero import Config, build_models

    d = setup_distributed()
    try:
        cfg = Config(model=tiny_model_dir, temperature=0.6, kl_coef=0.1, logprob_temperature=logprob_temperature,
                     dtype="float32")
        m = build_models(cfg, d, None)
        assert m.policy.module.temperature == expected and m.reference.temperature == expected
    finally:
        dist.destroy_process_group()
