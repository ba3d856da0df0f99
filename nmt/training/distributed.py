"""Data-parallel training with torch.distributed (DDP), started by torchrun.

    torchrun --nproc_per_node=4 -m nmt.cli.train model=transformer train.max_minutes=30
    torchrun --nproc_per_node=2 $(which nmt-train) train.device=cpu      # two CPU processes, gloo backend

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT; without them training runs in one
process. Each rank gets every world_size-th batch of the same deterministic batch list (TokenBatchSampler with
num_replicas/rank), DDP averages the gradients, and only rank 0 logs, validates and writes checkpoints.
The backend is NCCL on CUDA and gloo otherwise.

Waiting and failing: the training collectives time out after `train.dist_timeout_minutes`. The long waits for
rank 0 (preparing the corpus, validating) and every object broadcast go through a gloo side group on the CPU
with a timeout of at least `SIDE_GROUP_MINUTES`, so they neither hold a GPU stream nor trip the NCCL watchdog.
A rank that fails aborts its process groups (`cleanup(info, failed=True)`) instead of destroying them, which
could block while the other ranks sit in a collective; those ranks then fail at that collective (at once with
gloo, which sees the closed connection; after the timeout with NCCL) and exit non-zero too.

A launcher that dies: torchrun starts each rank in a session of its own and stops them when it is stopped, but a
torchrun killed with SIGKILL cannot; each rank therefore asks the kernel for a SIGTERM when its parent dies
(`stop_with_launcher`), and stops as on any SIGTERM: after the current step, writing last.pt.
"""

from __future__ import annotations

import ctypes
import datetime
import os
import signal
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed import distributed_c10d

from nmt.errors import NMTError, warn
from nmt.runtime import host_values_to

SIDE_GROUP_MINUTES = 60  # rank 0 may validate (decode the valid set) this long while the other ranks wait
PR_SET_PDEATHSIG = 1  # prctl(2): the signal the kernel sends this process when its parent dies
_STARTED = (os.getpid(), os.getppid())  # this process and its parent when the module was imported


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # the process group's (nccl / gloo) under torchrun, else None
    side_group: Any = None  # the gloo group for objects and waits for rank 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device, timeout_minutes: float = 10.0) -> DistInfo:
    """Join the process group described by torchrun's environment variables (no-op when absent), with
    collectives that time out after `timeout_minutes`, and the gloo side group (see the module doc).

    Under torchrun the group is set up even for one process (so `torchrun --nproc_per_node=1` checks NCCL);
    DDP itself wraps the model only for several ranks. On CUDA each rank uses the GPU `cuda:<LOCAL_RANK>`;
    call `rank_device` for the device to train on.
    """
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo()
    stop_with_launcher()
    backend = "nccl" if device.type == "cuda" else "gloo"
    info = DistInfo(
        rank=int(os.environ["RANK"]),
        world_size=int(os.environ["WORLD_SIZE"]),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=backend,
    )
    if not dist.is_initialized():
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes),
                                device_id=torch.device("cuda", info.local_rank) if cuda else None)
    side_minutes = max(timeout_minutes, SIDE_GROUP_MINUTES)
    info.side_group = dist.new_group(backend="gloo", timeout=datetime.timedelta(minutes=side_minutes))
    return info


def stop_with_launcher() -> None:
    """Have the kernel send this process SIGTERM when its parent (the launcher) dies (Linux; a no-op elsewhere).
    NMTError when the parent has already died: the parent now is not the one it had when this module was imported
    (in this process; a process forked after the import compares with its parent at this call)."""
    if not sys.platform.startswith("linux"):
        return
    pid, parent = _STARTED
    if pid != os.getpid():
        parent = os.getppid()
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        warn(f"this rank will not stop with its launcher: prctl failed ({os.strerror(ctypes.get_errno())})")
    elif os.getppid() != parent:
        raise NMTError(f"the launcher of rank {os.environ.get('RANK', '?')} (process {parent}) has exited")


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


def loss_divisor(n_targets: int, device: torch.device, info: DistInfo) -> int | torch.Tensor:
    """What a rank divides its summed token loss by, so that the gradient DDP averages over ranks is the gradient
    of the mean loss over every rank's target tokens: the global target count / world size (a tensor on
    `device`, never synced to the host), and the rank's own count (at least 1) in one process. Dividing by the
    rank's own count instead would weight a token of a rank with short batches more than one of a rank with
    long batches."""
    if not info.enabled:
        return max(n_targets, 1)
    total = all_reduce_sum(host_values_to([n_targets], device), info)[0]
    return total.clamp(min=1.0) / info.world_size


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's `obj` on every rank (picklable objects only), through the side group: the other ranks may
    wait here as long as rank 0 validates."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=info.side_group)
    return box[0]


def barrier(info: DistInfo) -> None:
    """Wait for every rank (on the side group: rank 0 may be preparing the corpus)."""
    if info.enabled:
        dist.barrier(group=info.side_group)


def cleanup(info: DistInfo, failed: bool = False) -> None:
    """Leave the process groups: destroy them after a run that ended normally, abort them after a failure (a
    destroy could block while the other ranks wait in a collective for this one)."""
    if not (info.enabled and dist.is_initialized()):
        return
    if failed:
        distributed_c10d._abort_process_group()  # every group; torch has no public abort yet
    else:
        dist.destroy_process_group()
