"""Loading a checkpoint executes nothing, FSDP included, and a damaged file is a one-line UsageError naming it.

Real checkpoints of a tiny model, written by save_checkpoint in a 1-process group: single-process (what sft.py
writes too), with a PPO critic, and FSDP2-sharded without and with a critic. Into every file load_checkpoint
reads goes either a payload (a pickle whose loading would make a directory) or a truncation.
"""

import io
import os
import pickle
import re
import shutil

import pytest
import torch
import torch.distributed as dist
from torch.distributed.checkpoint.metadata import BytesStorageMetadata

from checkpoint import load_checkpoint, save_checkpoint
from conftest import make_tiny_model
from data import UsageError
from distributed import setup_distributed
from model import ValueModel, distribute, is_sharded, local_shard

VOCAB = 64
CONFIG = {"lr": 1e-3}
# the files load_checkpoint reads, by kind of checkpoint (trainer_state.json: test_checkpoint.py)
FILES = {
    "single": ["optimizer.pt", "rng_rank0.pt"],
    "single_critic": ["optimizer.pt", "critic.pt", "critic_optimizer.pt", "rng_rank0.pt"],
    "fsdp": ["optimizer/.metadata", "optimizer/__0_0.distcp", "rng_rank0.pt"],
    "fsdp_critic": ["optimizer/.metadata", "optimizer/__0_0.distcp", "critic/.metadata", "critic/__0_0.distcp",
                    "rng_rank0.pt"],
}
CASES = [(kind, name) for kind, names in FILES.items() for name in names]


class RunsCode:
    """A pickled object whose loading would run code (os.mkdir(marker)): what a crafted checkpoint file carries."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


class NoTokenizer:
    """save_checkpoint saves the tokenizer beside the policy; no test here reads it."""

    def save_pretrained(self, path):
        pass


@pytest.fixture(scope="module")
def group():
    d = setup_distributed()  # a 1-process gloo group: save_checkpoint and FSDP2 need one
    yield d
    dist.destroy_process_group()


def trainer(kind: str, seed: int, lr: float = CONFIG["lr"]):
    """(policy, its AdamW, critic, its AdamW) for `kind`; the critic None without "critic"; FSDP2-sharded for fsdp."""
    policy = make_tiny_model(VOCAB, seed)
    critic = ValueModel(make_tiny_model(VOCAB, seed + 1)) if kind.endswith("critic") else None
    if kind.startswith("fsdp"):
        distribute(policy, "fsdp")
        if critic is not None:
            distribute(critic, "fsdp")
        assert is_sharded(policy)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=lr)
    critic_optimizer = torch.optim.AdamW(critic.parameters(), lr=lr) if critic is not None else None
    return policy, optimizer, critic, critic_optimizer


def adamw_step(optimizer):
    """One step on made-up gradients (no forward pass), so the state holds tensors: step, exp_avg, exp_avg_sq."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            parameter.grad = torch.ones_like(parameter)
    optimizer.step()


@pytest.fixture(scope="module")
def checkpoints(group, tmp_path_factory):
    """{kind: (checkpoint directory, the trainer that wrote it after one AdamW step)}; tests copy, never change them."""
    written = {}
    for kind in FILES:
        policy, optimizer, critic, critic_optimizer = trainer(kind, seed=0)
        adamw_step(optimizer)
        if critic is not None:
            adamw_step(critic_optimizer)
        out_dir = tmp_path_factory.mktemp(kind)
        checkpoint = save_checkpoint(out_dir, 1, policy, NoTokenizer(), optimizer, CONFIG, group, critic,
                                     critic_optimizer)
        written[kind] = (checkpoint, (policy, optimizer, critic, critic_optimizer))
    return written


def copy_of(checkpoints, kind, tmp_path):
    checkpoint = tmp_path / "checkpoints" / "step_000001"
    shutil.copytree(checkpoints[kind][0], checkpoint)
    return checkpoint


def load(checkpoint, kind, group):
    """load_checkpoint into a fresh trainer of `kind` (other weights, another learning rate); returns the trainer."""
    fresh = trainer(kind, seed=7, lr=0.5)
    load_checkpoint(checkpoint, CONFIG, group, *fresh)
    return fresh


def plant(path, marker):
    """Put RunsCode(marker) into the file at `path` as an attacker who controls the checkpoint would."""
    if path.suffix == ".pt":
        torch.save(RunsCode(marker), path)
    elif path.name == ".metadata":  # inside DCP's real metadata, so that all else about it is sound
        metadata = pickle.loads(path.read_bytes())
        metadata.planner_data = RunsCode(marker)
        path.write_bytes(pickle.dumps(metadata))
    else:
        plant_in_non_tensor_entries(path, marker)


def plant_in_non_tensor_entries(path, marker):
    """Replace each non-tensor entry of a .distcp file (the optimiser's param_groups, which DCP unpickles) with
    RunsCode(marker) and point the directory's .metadata at the new offsets; tensor entries stay as they are."""
    metadata_path = path.parent / ".metadata"
    metadata = pickle.loads(metadata_path.read_bytes())
    assert {info.relative_path for info in metadata.storage_data.values()} == {path.name}  # one rank, one file
    data, payload, out = path.read_bytes(), torch_bytes(RunsCode(marker)), bytearray()
    for index, info in sorted(metadata.storage_data.items(), key=lambda entry: entry[1].offset):
        non_tensor = isinstance(metadata.state_dict_metadata[index.fqn], BytesStorageMetadata)
        chunk = payload if non_tensor else data[info.offset:info.offset + info.length]
        info.offset, info.length = len(out), len(chunk)
        out += chunk
    path.write_bytes(out)
    metadata_path.write_bytes(pickle.dumps(metadata))


def torch_bytes(value) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("kind, name", CASES)
def test_a_payload_in_any_file_is_refused_and_never_runs(checkpoints, group, tmp_path, kind, name):
    checkpoint, marker = copy_of(checkpoints, kind, tmp_path), tmp_path / "ran"
    plant(checkpoint / name, marker)
    with pytest.raises(UsageError) as refusal:
        load(checkpoint, kind, group)
    assert str(refusal.value) == f"{checkpoint / name}: refused: it would run code on load (pickled global posix.mkdir)"
    assert not marker.exists()


@pytest.mark.parametrize("kind, name", CASES)
def test_a_truncated_file_is_a_one_line_error_naming_it(checkpoints, group, tmp_path, kind, name):
    checkpoint = copy_of(checkpoints, kind, tmp_path)
    path = checkpoint / name
    path.write_bytes(path.read_bytes()[:5])
    with pytest.raises(UsageError) as damage:
        load(checkpoint, kind, group)
    message = str(damage.value)
    assert message.startswith(f"{path}: damaged (") and "\n" not in message


@pytest.mark.parametrize("kind, name", [("single_critic", "critic.pt"), ("fsdp_critic", "critic/.metadata")])
def test_a_missing_file_is_a_one_line_error_naming_it(checkpoints, group, tmp_path, kind, name):
    checkpoint = copy_of(checkpoints, kind, tmp_path)
    (checkpoint / name).unlink()
    with pytest.raises(UsageError, match=re.escape(f"{checkpoint / name}: cannot be read (No such file")):
        load(checkpoint, kind, group)


@pytest.mark.parametrize("kind", FILES)
def test_an_untampered_checkpoint_loads(checkpoints, group, tmp_path, kind):
    checkpoint = copy_of(checkpoints, kind, tmp_path)
    _, (_, saved_optimizer, saved_critic, saved_critic_optimizer) = checkpoints[kind]
    _, optimizer, critic, critic_optimizer = load(checkpoint, kind, group)
    pairs = [(saved_optimizer, optimizer)] + ([(saved_critic_optimizer, critic_optimizer)] if critic else [])
    for saved, loaded in pairs:
        saved_params, loaded_params = saved.param_groups[0]["params"], loaded.param_groups[0]["params"]
        assert len(loaded.state) == len(saved_params) == len(loaded_params)
        for p, q in zip(saved_params, loaded_params):
            assert saved.state[p].keys() == loaded.state[q].keys()
            for key in saved.state[p]:
                assert torch.equal(local_shard(saved.state[p][key]), local_shard(loaded.state[q][key]))
        assert loaded.param_groups[0]["lr"] == CONFIG["lr"]
    if critic is not None:
        for p, q in zip(saved_critic.parameters(), critic.parameters()):
            assert torch.equal(local_shard(p), local_shard(q))
    assert torch.equal(torch.get_rng_state(), torch.load(checkpoint / "rng_rank0.pt", weights_only=True)["torch"])


def test_metadata_that_points_outside_its_directory_is_refused(checkpoints, group, tmp_path):
    checkpoint = copy_of(checkpoints, "fsdp", tmp_path)
    path = checkpoint / "optimizer" / ".metadata"
    metadata = pickle.loads(path.read_bytes())
    next(iter(metadata.storage_data.values())).relative_path = "../../../elsewhere.distcp"
    path.write_bytes(pickle.dumps(metadata))
    with pytest.raises(UsageError, match=re.escape(f"{path}: names data files outside {path.parent}")):
        load(checkpoint, "fsdp", group)
