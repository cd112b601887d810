"""metrics.py and distributed.py on a 1-rank group: the typed sums, their reduction, and the logged ratios."""

import pytest
import torch
import torch.distributed as dist

from distributed import all_reduce, setup_distributed
from learn import Batch, CriticStats, PolicyStats
from metrics import StepSums, step_metrics, step_sums, sum_over_ranks
from reward import OUTCOMES, RewardResult
from rollout import Sample


@pytest.fixture
def group():
    d = setup_distributed()
    yield d
    dist.destroy_process_group()


def test_all_reduce_sums_or_maxes_in_place_and_names_a_bad_op(group):
    t = torch.tensor([1.0, 2.0])
    assert all_reduce(t) is t and t.tolist() == [1.0, 2.0]
    assert all_reduce(torch.tensor([3]), op="max").item() == 3
    with pytest.raises(ValueError, match="'mean'"):
        all_reduce(t, op="mean")


def test_sum_over_ranks_keeps_types_and_dict_keys(group):
    sums, stats = sum_over_ranks(StepSums(1, 1, 1.0, 0, 3, 3, 0, 0, 0.0, 3, {"correct": 1, "wrong": 0}),
                                 PolicyStats(loss=0.5, tokens=3))
    assert isinstance(sums, StepSums) and sums.outcomes == {"correct": 1.0, "wrong": 0.0}
    assert isinstance(stats, PolicyStats) and stats.loss == 0.5 and stats.tokens == 3.0


def test_step_metrics_by_hand(group):
    samples = [Sample([1], [5, 6, 2], "wait, 4", "stop"), Sample([1], [5, 6, 7, 8], "x", "length")]
    results = [RewardResult(1.0, "correct", "4"), RewardResult(-1.0, "no_answer", None)]
    batch = Batch(samples, torch.tensor([1.0, -1.0]), torch.tensor([True, True]), [], None, None, None, None,
                  [torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0.0, 0.0, 0.0, 0.4])], None, None)
    policy = PolicyStats(loss=-0.25, clipped_tokens=1, tokens=7, entropy_sum=3.5, grad_norm=2.0)
    critic = CriticStats(loss=0.5, clipped_tokens=0, tokens=7, error_sum=1.4, grad_norm=1.0)
    row = step_metrics(step_sums(batch, results, group_size=2), policy, critic, None, group)
    assert row["reward_mean"] == 0.0 and row["accuracy"] == 0.5 and row["answer_rate"] == 0.5
    assert row["response_length_mean"] == 3.5 and row["response_length_max"] == 4 and row["truncation_rate"] == 0.5
    assert row["clip_fraction"] == pytest.approx(1 / 7) and row["entropy"] == 0.5
    assert row["kl"] == pytest.approx(1.0 / 7) and row["reflection_rate"] == 0.5
    assert row["loss"] == -0.25 and row["grad_norm"] == 2.0 and row["zero_adv_group_frac"] == 0.0
    assert row["value_loss"] == 0.5 and row["value_mse"] == pytest.approx(0.2)
    assert list(row["outcome_counts"]) == list(OUTCOMES) and "sampler_drift_abs" not in row
