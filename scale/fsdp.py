"""FSDP2 for models that do not fit one GPU (--shard fsdp): sharding, gathered weights, sharded checkpoints.

    module = fully_shard_layers(module, compute_dtype)          # model.distribute(module, "fsdp", ...) calls this
    for name, tensor in full_parameters(module): ...            # one gathered parameter at a time (weight sync, export)
    save_sharded(tmp, model, tokenizer, optimizer, d)           # checkpoint.save_checkpoint calls these
    load_sharded(checkpoint, model, optimizer)

A sharded checkpoint holds the policy as an HF directory (gathered to rank 0 one parameter at a time), and
`optimizer/` and, for PPO, `critic/` (weights and optimiser) in torch.distributed.checkpoint format, each rank
writing its own shards. Loading executes nothing: the non-tensor entries of a `.distcp` file are read with
`weights_only=True` (DCP's own planner would unpickle them in full), and a DCP `.metadata` by an unpickler that admits
only DCP's metadata records, torch.Size, torch's dtypes / layouts / memory formats and a path (METADATA_GLOBALS).
A file that names anything else, or is damaged, or is missing, stops the load with a one-line UsageError naming it.
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import torch
import torch.nn as nn

from checkpoint import _reading
from data import UsageError
from distributed import Dist


def fully_shard_layers(module: nn.Module, compute_dtype: torch.dtype = torch.float32, offload: bool = False) -> nn.Module:
    """FSDP2 over `module`: `fully_shard` on each decoder layer (the model's `_no_split_modules` classes), then on the
    root; parameters cast to compute_dtype for compute, gradients reduced in fp32; offload: parameters on the CPU
    (a no-op without CUDA). model.distribute's "fsdp" (its docstring says more). Raises ValueError when the module
    has no decoder layers."""
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    options = {"mp_policy": MixedPrecisionPolicy(param_dtype=compute_dtype, reduce_dtype=torch.float32),
               "offload_policy": CPUOffloadPolicy() if offload and torch.cuda.is_available() else OffloadPolicy()}
    layer_classes = {name for m in module.modules() for name in (getattr(m, "_no_split_modules", None) or [])}
    layers = [m for m in module.modules() if type(m).__name__ in layer_classes]
    if not layers:
        raise ValueError(f"--shard fsdp: found no decoder layers ({sorted(layer_classes)}) in {type(module).__name__}")
    for layer in layers:
        fully_shard(layer, **options)
    fully_shard(module, **options)
    return module


def full_parameters(module: nn.Module):
    """Yield (name, tensor) for each parameter of `module`, one at a time: an FSDP shard all-gathered into the
    full tensor (DTensor.full_tensor(), a collective: every rank must iterate), else the parameter, detached.
    Never more than one gathered parameter exists at once (weight sync, HF export)."""
    from torch.distributed.tensor import DTensor

    for name, parameter in module.named_parameters():
        yield name, (parameter.full_tensor() if isinstance(parameter, DTensor) else parameter).detach()


def save_sharded(path: Path, model, tokenizer, optimizer, d: Dist, critic=None, critic_optimizer=None) -> None:
    """The sharded part of checkpoint.save_checkpoint into `path`: the gathered HF export (rank 0), this rank's
    optimiser shards, and the critic's weights and optimiser (PPO). Collective."""
    export_hf(model, tokenizer, path, d)
    _save_sharded(path / "optimizer", model, optimizer)
    if critic is not None:
        _save_sharded(path / "critic", critic, critic_optimizer, with_weights=True)


def load_sharded(checkpoint: Path, model, optimizer, critic=None, critic_optimizer=None) -> None:
    """Inverse of save_sharded (the policy's weights are loaded by model.load_model from the HF export). Collective.
    Raises UsageError naming the file at fault."""
    _load_sharded(checkpoint / "optimizer", model, optimizer)
    if critic is not None:
        _load_sharded(checkpoint / "critic", critic, critic_optimizer, with_weights=True)


def export_hf(model, tokenizer, path: Path, d: Dist) -> None:
    """Write `model` as an HF directory at `path` (safetensors, fp32 master weights) from rank 0.

    FSDP-sharded parameters are gathered one at a time (full_parameters; a collective, every rank
    calls) and only rank 0 keeps them, on the CPU. The result loads with `from_pretrained`.
    """
    state = {}
    for name, tensor in full_parameters(model):
        if d.is_main:
            state[name] = tensor.to("cpu", copy=True)
    if d.is_main:
        model.save_pretrained(path, state_dict=state)
        tokenizer.save_pretrained(path)


def _sharded_state(module, optimizer, with_weights: bool) -> dict:
    """This rank's shards of the optimiser state (and the weights), as torch.distributed.checkpoint saves them."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    state = {"optimizer": get_optimizer_state_dict(module, optimizer)}
    if with_weights:
        state["model"] = get_model_state_dict(module)
    return state


def _save_sharded(path: Path, module, optimizer, with_weights: bool = False) -> None:
    """Each rank writes its shards of the optimiser state (and the weights) with torch.distributed.checkpoint."""
    import torch.distributed.checkpoint as dcp

    dcp.save(_sharded_state(module, optimizer, with_weights), checkpoint_id=str(path))


def _load_sharded(path: Path, module, optimizer, with_weights: bool = False) -> None:
    """Inverse of _save_sharded, into the (already sharded) module and its optimiser, in place; nothing in the
    directory executes (_dcp_load). Collective. Raises UsageError naming the file at fault."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    state = _sharded_state(module, optimizer, with_weights)  # the layout to load into
    _dcp_load(state, path)
    with _reading(path):  # loaded, but not this model's state
        if with_weights:
            set_model_state_dict(module, state["model"])
        set_optimizer_state_dict(module, optimizer, state["optimizer"])


# The globals a torch.distributed.checkpoint `.metadata` may name: what torch 2.13 pickles for FSDP2 policy and
# critic checkpoints (found by saving them, 1 and 2 ranks): DCP's metadata records, torch.Size, torch's dtype /
# layout / memory-format constants (a layout pickles as torch.serialization._get_layout, a table lookup) and the
# checkpoint's path. Each builds a value; none runs a command, opens a file or imports a module. Names are listed
# one by one: admitting a whole module would admit everything it imports.
METADATA_GLOBALS = {
    "torch.distributed.checkpoint.metadata": {"Metadata", "StorageMeta", "MetadataIndex", "TensorStorageMetadata",
                                              "BytesStorageMetadata", "ChunkStorageMetadata", "TensorProperties",
                                              "_MEM_FORMAT_ENCODING"},
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch": {"Size"} | {name for name, value in vars(torch).items()
                         if isinstance(value, (torch.dtype, torch.layout, torch.memory_format))},
    "torch.serialization": {"_get_layout"},
    "pathlib": {"PosixPath"},
}


class _MetadataUnpickler(pickle.Unpickler):
    """An unpickler that resolves only METADATA_GLOBALS; any other global raises UnpicklingError naming it."""

    def find_class(self, module: str, name: str):
        if name not in METADATA_GLOBALS.get(module, ()):
            raise pickle.UnpicklingError(f"unsupported GLOBAL {module}.{name}")
        return super().find_class(module, name)


def _read_dcp_metadata(path: Path):
    """The torch.distributed.checkpoint Metadata in `path` (a directory's `.metadata`), by _MetadataUnpickler.

    Raises UsageError naming `path`: missing, damaged, naming a global outside METADATA_GLOBALS, or pointing at
    data files outside its directory.
    """
    from torch.distributed.checkpoint.metadata import Metadata

    with _reading(path), open(path, "rb") as f:
        metadata = _MetadataUnpickler(f).load()
        if not isinstance(metadata, Metadata):
            raise UsageError(f"{path}: not torch.distributed.checkpoint metadata; the checkpoint is damaged")
        files = {info.relative_path for info in metadata.storage_data.values()}
        if not all(isinstance(name, str) and name == Path(name).name and name not in ("", ".", "..") for name in files):
            raise UsageError(f"{path}: names data files outside {path.parent} ({sorted(map(str, files))}); refused")
    return metadata


def _dcp_load(state: dict, path: Path) -> None:
    """dcp.load(state) from the directory `path`, in place, executing nothing. Collective.

    Follows dcp.FileSystemReader and DefaultLoadPlanner with three changes: `.metadata` is read by
    _read_dcp_metadata (DCP unpickles it in full); the non-tensor entries of the `.distcp` files (the optimiser's
    param_groups) are loaded with weights_only=True (DefaultLoadPlanner.load_bytes uses weights_only=False; the
    tensors already load weights-only); each data file's failure names it. The classes are made here so that
    `import checkpoint` does not import torch.distributed.checkpoint (0.7 s).
    Raises UsageError naming the file at fault (the directory when DCP cannot tell which).
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint._traverse import set_element
    from torch.distributed.checkpoint.metadata import StorageMeta
    from torch.futures import Future

    metadata = _read_dcp_metadata(path / ".metadata")  # before any collective: every rank refuses alike

    class Reader(dcp.FileSystemReader):
        def read_metadata(self):
            metadata.storage_meta = metadata.storage_meta or StorageMeta()
            metadata.storage_meta.load_id = self.load_id  # as FileSystemReader.read_metadata
            return metadata

        def read_data(self, plan, planner):
            by_file = {}
            for item in plan.items:
                by_file.setdefault(self.storage_data[item.storage_index].relative_path, []).append(item)
            for name, items in by_file.items():
                with _reading(path / name):
                    super().read_data(dataclasses.replace(plan, items=items), planner).wait()
            done = Future()
            done.set_result(None)
            return done

    class WeightsOnlyPlanner(dcp.DefaultLoadPlanner):
        def load_bytes(self, read_item, value):
            loaded = torch.load(value, weights_only=True)
            if self.flatten_state_dict:
                set_element(self.original_state_dict, self.mappings[read_item.dest_index.fqn], loaded)
            else:
                self.state_dict[read_item.dest_index.fqn] = loaded

    try:
        dcp.load(state, storage_reader=Reader(path), planner=WeightsOnlyPlanner())
    except dcp.CheckpointException as e:  # every rank's failures, on every rank
        errors = [error for error, _ in e.failures.values()]
        named = next((error for error in errors if isinstance(error, UsageError)), None)
        if named is not None:
            raise named from None
        with _reading(path):  # DCP could not tell which file: the first failure, as a UsageError naming the directory
            raise errors[0] from None
