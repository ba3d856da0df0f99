"""Data-parallel training with torch.distributed (DDP), started by torchrun.

    torchrun --nproc_per_node=4 -m nmt.cli.train model=transformer train.max_minutes=30
    torchrun --nproc_per_node=2 $(which nmt-train) train.device=cpu      # two CPU processes, gloo backend

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; without them training runs in one
process. Each rank gets every world_size-th batch of the same deterministic batch list (TokenBatchSampler with
num_replicas/rank), DDP averages the gradients, and only rank 0 logs, validates and writes checkpoints.
The backend is NCCL on CUDA and gloo otherwise.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # the process group's (nccl / gloo) under torchrun, else None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group described by torchrun's environment variables (no-op when absent).

    Under torchrun the group is set up even for one process (so `torchrun --nproc_per_node=1` checks NCCL);
    DDP itself wraps the model only for several ranks. On CUDA each rank uses the GPU `cuda:<LOCAL_RANK>`;
    call `rank_device` for the device to train on.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    backend = "nccl" if device.type == "cuda" else "gloo"
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=backend,
    )
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(info.local_rank)
        # Long timeout: rank 0 validates (decoding the valid set) while the others wait at a collective.
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=60))
    return info


def rank_device(device: torch.device, info: DistInfo) -> torch.device:
    """The device of this rank: `cuda:<local_rank>` for a distributed CUDA run, `device` otherwise."""
    if info.enabled and device.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return device


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum `tensor` over ranks in place (no-op for one process)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every rank (picklable objects only)."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
