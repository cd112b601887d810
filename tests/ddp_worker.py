"""Run one `learn` step on a fixed batch, split over however many ranks launched it.

    python tests/ddp_worker.py MODEL_DIR OUT_FILE MICRO_BATCH ALGO [SHARD [--gradient-checkpointing]]
    torchrun --nproc_per_node 2 tests/ddp_worker.py MODEL_DIR OUT_FILE MICRO_BATCH ALGO [SHARD ...]

Writes (rank 0) the parameter update of one SGD step (lr 1, so update = -gradient) and the metrics row
that train_zero.py would log for the step (metrics.step_metrics, the same reduction over ranks), for
tests/test_train.py to compare across world sizes and micro-batch sizes. ALGO ppo also runs the critic
(GAE advantages whitened over all ranks, then one critic step) and writes its update. SHARD: ddp (default)
or fsdp (model.distribute); the update is read through scale.fsdp.full_parameters, as the HF export is.
"""

import sys

import torch
import torch.distributed as dist

from distributed import setup_distributed
from config import Config
from learn import learn, learn_critic, prepare_batch
from metrics import step_metrics, step_sums
from scale.fsdp import full_parameters
from losses import TokenLogProbs
from model import (ValueModel, distribute, enable_gradient_checkpointing, load_model,
                   unwrap)
from reward import RewardResult
from rollout import Sample


def fixed_batch(num_groups=2, group_size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    samples = []
    for _ in range(num_groups * group_size):
        prompt = torch.randint(3, 1000, (int(torch.randint(2, 6, (1,), generator=g)),), generator=g).tolist()
        response = torch.randint(3, 1000, (int(torch.randint(1, 7, (1,), generator=g)),), generator=g).tolist()
        samples.append(Sample(prompt, response + [2], "", "stop"))
    rewards = torch.randint(-1, 2, (len(samples),), generator=g).float()
    return samples, rewards


if __name__ == "__main__":
    model_dir, out_file, micro, algo = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    shard = sys.argv[5] if len(sys.argv) > 5 else "ddp"
    d = setup_distributed()
    model, tokenizer = load_model(model_dir)
    if "--gradient-checkpointing" in sys.argv:
        enable_gradient_checkpointing(model)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    algo, _, aggregation = algo.partition("+")  # e.g. grpo+token_mean: the algorithm with another --loss-agg
    settings = Config(algo=algo, group_size=4, micro_batch_size=micro, max_new_tokens=8, loss_agg=aggregation or "algo",
                      max_grad_norm=1e9)
    samples, rewards = fixed_batch()
    per_rank = len(samples) // d.world_size  # whole groups per rank: 8 samples / 2 ranks = one group each
    mine = slice(d.rank * per_rank, (d.rank + 1) * per_rank)
    samples, rewards = samples[mine], rewards[mine]
    results = [RewardResult(r, "correct" if r > 0 else "wrong", "x") for r in rewards.tolist()]
    critic = value_model = None
    if algo == "ppo":
        value_model = ValueModel(load_model(model_dir)[0])
        torch.nn.init.normal_(value_model.head.weight, std=0.1, generator=torch.Generator().manual_seed(0))  # nonzero values
        critic_before = {k: v.detach().clone() for k, v in value_model.named_parameters()}
        critic = distribute(value_model, shard)
    policy = distribute(TokenLogProbs(model), shard)
    batch = prepare_batch(samples, rewards.tolist(), unwrap(policy), None, value_model, settings, 2, d)
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    policy_stats = learn(policy, optimizer, batch, settings, d, pad_id=2)
    critic_stats = None
    if critic is not None:
        critic_optimizer = torch.optim.SGD(critic.parameters(), lr=1.0)
        critic_stats = learn_critic(critic, critic_optimizer, batch, settings, d, pad_id=2)
    row = step_metrics(step_sums(batch, results, settings.group_size), policy_stats, critic_stats, None, d)
    update = {k: v.clone() - before[k] for k, v in full_parameters(model)}  # collective under FSDP
    if critic is not None:
        update.update({f"critic.{k}": v.clone() - critic_before[k] for k, v in full_parameters(value_model)})
    if d.is_main:
        torch.save({"row": row, "update": update}, out_file)
    del policy, critic  # free DDP's reducers (and their gloo work) while the group is alive
    dist.barrier()
    dist.destroy_process_group()
