"""train_zero.py with a reward that has variance on a random model: +1 for even-indexed responses, -0.5 for odd.

    torchrun --nproc_per_node 2 tests/parity_run.py --model TINY_DIR --shard fsdp ...   (train_zero's flags)

For tests that run training in subprocesses (torchrun, several nodes), where a monkeypatch cannot reach.
"""

import train_zero
from reward import RewardResult
from rundir import parse


def parity_rewards(responses, golds, template, rule, grader, extraction="boxed"):
    return [RewardResult(1.0, "correct", "x") if i % 2 == 0 else RewardResult(-0.5, "wrong", "y")
            for i in range(len(responses))]


if __name__ == "__main__":
    train_zero.compute_rewards = parity_rewards
    train_zero.main(parse(train_zero.Config))
