"""metrics.py and distributed.py on a 1-rank group: the typed sums, their reduction, and the logged ratios."""

import json

import pytest
import torch
import torch.distributed as dist

from distributed import all_reduce, setup_distributed
from learn import Batch, CriticStats, PolicyStats
from metrics import StepSums, collapse_warning, repeats_until_truncated, step_metrics, step_sums, sum_over_ranks
from reward import reflection_words
from metrics import strict_json
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
    sums, stats = sum_over_ranks(StepSums(1, 1, 1.0, 0, 3, 3, 0, 0, 0, {"wait": 0}, 0, 0, 0.0, 3,
                                          {"correct": 1, "wrong": 0}),
                                 PolicyStats(loss=0.5, tokens=3))
    assert isinstance(sums, StepSums) and sums.outcomes == {"correct": 1.0, "wrong": 0.0}
    assert sums.reflection_words == {"wait": 0.0}
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
    assert row["identical_group_frac"] == 0.0 and row["skipped_updates"] == 0 and row["loss_tokens"] == 7
    assert row["value_loss"] == 0.5 and row["value_mse"] == pytest.approx(0.2)
    assert list(row["outcome_counts"]) == list(OUTCOMES) and "sampler_drift_abs" not in row


def test_a_non_finite_value_is_written_as_null_and_named():
    line = strict_json({"step": 2, "loss": float("nan"), "grad_norm": float("inf"), "reward_mean": 0.5})
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in {line}")) == {
        "step": 2, "loss": None, "grad_norm": None, "reward_mean": 0.5, "nonfinite": ["loss", "grad_norm"]}
    assert json.loads(strict_json({"step": 1, "loss": 0.25})) == {"step": 1, "loss": 0.25}  # no flag when all finite


def test_collapse_warns_on_near_zero_entropy_or_identical_groups():
    healthy = {"step": 3, "loss_tokens": 40, "entropy": 0.6, "identical_group_frac": 0.25}
    assert collapse_warning(healthy, group_size=4) is None
    assert "entropy 1.0e-05" in collapse_warning({**healthy, "entropy": 1e-5}, group_size=4)
    # a collapsed policy learns from no token (every group identical): its logged entropy is 0 and means nothing
    collapsed = {"step": 5, "loss_tokens": 0, "entropy": 0.0, "identical_group_frac": 1.0}
    assert "step 5: every group's 4 responses are identical" in collapse_warning(collapsed, group_size=4)
    assert collapse_warning({**collapsed, "identical_group_frac": 0.5}, group_size=4) is None
    assert "has collapsed" in collapse_warning({**collapsed, "accuracy": 0.25}, group_size=4)
    solved = collapse_warning({**collapsed, "accuracy": 1.0}, group_size=4)  # all right: nothing to learn, no collapse
    assert "identical and correct: the policy has solved these prompts" in solved and "collapsed" not in solved


def test_identical_groups_are_counted_by_token_ids(group):
    same = [Sample([1], [5, 6, 2], "a", "stop"), Sample([1], [5, 6, 2], "a", "stop")]
    different = [Sample([1], [5, 6, 2], "a", "stop"), Sample([1], [5, 7, 2], "b", "stop")]
    samples = same + different
    results = [RewardResult(0.0, "wrong", "1")] * 4
    batch = Batch(samples, torch.zeros(4), torch.tensor([True] * 4), [], None, None, None, None, None, None, None)
    assert step_sums(batch, results, group_size=2).identical_groups == 1


def test_reflection_keywords_match_whole_words_only():
    assert reflection_words("Wait, let me re-examine. However, I verify it.") == {"wait", "re-examine", "however", "verify"}
    assert reflection_words("We await the verifier; rewait.") == set()  # not "wait", not "verify"
    assert reflection_words("Let me check again and double-check") == {"check again", "double-check"}


def test_repetition_until_truncation():
    loop = [7, 8, 9] * 10  # 30 tokens, truncated while looping
    assert repeats_until_truncated([1, 2, 3, 4, 5, 6] + loop, "length")
    assert not repeats_until_truncated([1, 2, 3, 4, 5, 6] + loop, "stop")  # it ended: not until truncation
    assert not repeats_until_truncated(list(range(40)), "length")
    assert not repeats_until_truncated([5] * 10, "length")  # under 16 tokens: too short to tell


def test_per_keyword_rates_and_lengths_of_correct_and_wrong(group):
    samples = [Sample([1], [5, 6, 2], "Wait, 4", "stop"), Sample([1], [5, 6, 7, 8, 9], "await x", "stop"),
               Sample([1], [5] * 20, "however however", "length"), Sample([1], [5, 2], "4", "stop")]
    results = [RewardResult(1.0, "correct", "4"), RewardResult(-0.5, "wrong", "x"),
               RewardResult(-1.0, "no_answer", None), RewardResult(1.0, "correct", "4")]
    batch = Batch(samples, torch.tensor([1.0, -0.5, -1.0, 1.0]), torch.tensor([True] * 4), [], None, None, None, None,
                  None, None, None)
    row = step_metrics(step_sums(batch, results, group_size=2), PolicyStats(), None, None, group)
    assert row["reflection/wait"] == 0.25 and row["reflection/however"] == 0.25 and row["reflection/verify"] == 0
    assert row["reflection_rate"] == 0.5  # "await" is not "wait"
    assert row["response_length_correct"] == 2.5 and row["response_length_wrong"] == 12.5  # (3 + 2) / 2, (5 + 20) / 2
    assert row["repetition_rate"] == 0.25
    none_right = step_metrics(step_sums(batch, [results[1]] * 4, group_size=2), PolicyStats(), None, None, group)
    assert none_right["response_length_correct"] is None


# ---------------------------------------------------------------------------------------------
# Learn-phase FLOPs and MFU


def hooked_tiny_model():
    """A tiny Llama with eager attention (torch's FlopCounterMode sees its attention matmuls, not CPU sdpa's),
    wrapped as the trainer wraps the policy, and a LearnFlops watching it."""
    from conftest import make_tiny_model
    from scale.mfu import LearnFlops
    from losses import TokenLogProbs

    lm = make_tiny_model(1000)
    lm.config._attn_implementation = "eager"
    policy = TokenLogProbs(lm)
    flops = LearnFlops(lm)
    flops.watch(policy)
    return lm, policy, flops


def test_learn_flops_agree_with_torch_flop_counter():
    """The count from the attention masks against torch.utils.flop_counter on the same pass: equal within 2 % (the
    counter also counts the rotary embedding's small matmuls; the norms' weights count here, not there)."""
    from torch.utils.flop_counter import FlopCounterMode

    _, policy, flops = hooked_tiny_model()
    ids = torch.randint(0, 1000, (3, 40))
    attn, score_mask = torch.ones(3, 40, dtype=torch.long), torch.zeros(3, 39)
    score_mask[:, 10:] = 1  # 29 response tokens each: the output projection runs on these only
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        policy(ids, attn, score_mask)
    forward = flops.take()
    assert forward == pytest.approx(counter.get_total_flops(), rel=0.02)
    with FlopCounterMode(display=False) as counter_grad:
        logp, _ = policy(ids, attn, score_mask)
        logp.sum().backward()
    assert flops.take() == 3 * forward  # forward and backward
    assert counter_grad.get_total_flops() == pytest.approx(3 * counter.get_total_flops(), rel=0.02)
    assert flops.take() == 0.0  # take() resets


def test_learn_flops_count_real_tokens_only():
    """Left padding is not counted; the output projection counts the scored tokens; by hand on nanoGPT's terms."""
    lm, policy, flops = hooked_tiny_model()
    attn = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    score_mask = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 1, 1, 1]])
    with torch.no_grad():
        policy(torch.randint(0, 1000, (2, 6)), attn, score_mask)
    body = sum(p.numel() for p in lm.parameters()) - 1000 * 32  # tied embeddings: the table once, no lookup cost
    expected = 2 * body * (4 + 6) + 2 * 1000 * 32 * 5 + 4 * 2 * 32 * (4**2 + 6**2)
    assert flops.take() == pytest.approx(expected, rel=1e-12)


def test_peak_tflops_given_detected_or_unknown(monkeypatch):
    from scale.mfu import peak_tflops

    assert peak_tflops(torch.device("cpu"), 0.0) is None and peak_tflops(torch.device("cpu"), 12.5) == 12.5
    for name, peak in [("NVIDIA H200", 989.4), ("NVIDIA H100 80GB HBM3", 989.4), ("NVIDIA H100 PCIe", 756.0),
                       ("NVIDIA A100-SXM4-80GB", 312.0), ("NVIDIA L40S", 362.1), ("NVIDIA L4", 121.0), ("Tesla T4", None)]:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None, name=name: name)
        assert peak_tflops(torch.device("cuda", 0)) == peak, name


def test_mfu_divides_flops_by_time_and_peak(group, tiny_model):
    from metrics import learn_tokens_per_s
    from rollout import Sample
    from scale.mfu import LearnFlops, learn_flops

    flops = LearnFlops(tiny_model, peak=1.0)
    flops.pending = [torch.tensor(2e12, dtype=torch.float64)]  # 2 TFLOP in 4 s on a 1 TFLOP/s device
    assert flops.utilisation(4.0, group) == 0.5 and flops.take() == 0.0
    samples = [Sample([1] * 3000, [2] * 2000, "", "stop")]
    assert learn_tokens_per_s(samples, 4.0) == 1250.0
    assert learn_flops(tiny_model, tiny_model, None, None, torch.device("cpu")) is None  # no peak, no mfu
