"""Distributed, a thin layer: rank, world size, device, `print0`, and the one collective the stages use.

    d = setup_distributed()          # torchrun (env RANK / WORLD_SIZE / LOCAL_RANK) or a world of one
    all_reduce(tensor)               # in-place sum (or max) over ranks, on any backend

One process takes the same path as N: it joins a 1-rank group held in memory, so every all_reduce
runs (as a no-op) and no stage branches on "distributed or not".

Deviations, one line each:
- On CUDA the group is NCCL, which reduces only CUDA tensors; `all_reduce` moves a CPU tensor to the
  rank's device and back, so the stages keep their small statistics on the CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int
    world_size: int
    device: torch.device  # the rank's compute device: cuda:LOCAL_RANK when CUDA is available, else cpu
    is_main: bool  # rank 0: writes files and prints


def setup_distributed() -> Dist:
    """Join the torchrun group (env RANK/WORLD_SIZE), or make a 1-process group in memory.

    Backend: nccl with CUDA (one GPU per rank, set as the current device), gloo otherwise.
    """
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if "RANK" in os.environ:
        dist.init_process_group(backend)
    else:
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    rank, world_size = dist.get_rank(), dist.get_world_size()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL communicates on the current device: one GPU per rank
    return Dist(rank, world_size, device, rank == 0)


def print0(d: Dist, *args) -> None:
    """print on rank 0 only (flushed)."""
    if d.is_main:
        print(*args, flush=True)


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Sum (op "sum") or maximum (op "max") of `tensor` over all ranks, in place; returns `tensor`.

    Works on every backend: under NCCL a CPU tensor is reduced on the current CUDA device and copied
    back. Raises ValueError for another op.
    """
    ops = {"sum": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}
    if op not in ops:
        raise ValueError(f"all_reduce op {op!r}: use one of {sorted(ops)}")
    if dist.get_backend() == "nccl" and tensor.device.type != "cuda":
        on_device = tensor.to(torch.device("cuda", torch.cuda.current_device()))
        dist.all_reduce(on_device, op=ops[op])
        tensor.copy_(on_device.cpu())
    else:
        dist.all_reduce(tensor, op=ops[op])
    return tensor
