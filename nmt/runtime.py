"""Where code runs: device choice, CPU threads, seeding and RNG state, and a description of the hardware."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nmt.config import CHOICES
from nmt.errors import NMTError, warn

# A state dict, as `state_dict()` returns and `load_state_dict()` takes (torch's convention, also for the tokenizer,
# the schedule, the RNG states and a checkpoint's payload): names to tensors and plain values, free-form by nature,
# saved with torch.save and loaded with weights_only=True.
StateDict = dict[str, Any]


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA, then Apple MPS, then CPU. A named device that this machine lacks is an NMTError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise NMTError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:<index> or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise NMTError(f"device {name!r} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise NMTError(f"device {name!r} requested but this machine has {torch.cuda.device_count()} "
                           f"CUDA device(s)")
    elif device.type == "mps" and not _mps_available():
        raise NMTError(f"device {name!r} requested but Apple MPS is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise NMTError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:<index> or mps")
    return device


def _mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def set_threads(threads: int) -> None:
    """torch CPU threads; 0 keeps torch's default (one per core)."""
    if threads < 0:
        raise NMTError(f"cpu threads must not be negative, got {threads}")
    if threads > 0:
        torch.set_num_threads(threads)


def release_freed_memory() -> None:
    """Give the pages of freed heap memory back to the OS (glibc's malloc_trim; nothing where there is none).

    glibc keeps freed blocks under 32 MB in the process's heap for reuse, so arrays of a corpus's size that are
    allocated and freed (sorting an epoch's batches) stay resident in every rank and data worker although nothing
    uses them: 50-250 MB at 1-4M pairs (docs/benchmarks.md)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def use_deterministic_algorithms() -> None:
    """Deterministic kernels from now on, process-wide (train.deterministic): torch raises on an op that has
    none; cuBLAS gets the fixed workspace it needs for repeatable sums (CUBLAS_WORKSPACE_CONFIG, read when cuBLAS
    starts, so call this before the first CUDA matmul); cuDNN uses deterministic algorithms, not benchmarked ones.
    CPU kernels are deterministic already: CPU results do not change."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def decode_precision(precision: str, device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """The context a search runs in, for decode.precision on `device`. On CUDA: fp32 and tf32 set whether matmuls
    and cuDNN may use TF32 (off / on; the trainer turns TF32 on for training, so fp32 must turn it off), bf16 runs
    the model under bf16 autocast (the search still scores in fp32); the flags are restored on exit. On other
    devices decoding stays fp32: tf32 / bf16 are ignored with one warning. An unknown value is an NMTError naming
    the valid ones."""
    valid = CHOICES["decode.precision"]
    if precision not in valid:
        raise NMTError(f"unknown decode.precision={precision!r}; valid values: {', '.join(valid)}")
    if device.type != "cuda":
        if precision != "fp32":
            warn(f"decode.precision={precision} applies on CUDA only; decoding on {device.type} in fp32")
        return contextlib.nullcontext()
    if precision == "bf16":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return _tf32(precision == "tf32")


@contextlib.contextmanager
def _tf32(allowed: bool) -> Iterator[None]:
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def host_values_to(values: list[float], device: torch.device) -> torch.Tensor:
    """Python numbers as a float64 tensor (n,) on `device`, without waiting for the device: on CUDA through
    pinned memory and a non-blocking copy (a copy from pageable memory would wait for the queued kernels)."""
    tensor = torch.tensor(values, dtype=torch.float64)
    return tensor.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else tensor


def rng_state() -> StateDict:
    """Python, NumPy, torch CPU and CUDA generator states as plain types (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: StateDict = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: StateDict) -> None:
    """Restore what `rng_state` returned."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (a CUDA device; nothing to wait for elsewhere), before reading a clock."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def hardware(workers: int = 1, threads: int = 0, device: torch.device | None = None) -> dict[str, Any]:
    """Where numbers were measured: CPU model, cores, GPU, platform, torch and Python versions, process layout,
    and the load average (1, 5, 15 minutes; None where the OS has none) when it was read.

    gpu: the name of `device` (None for a device that is not CUDA); without a device, GPU 0 if there is one.
    """
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if device is None:
        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    else:
        gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    try:
        load_average: list[float] | None = list(os.getloadavg())
    except OSError:
        load_average = None
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "gpu": gpu,
        "platform": platform.platform(),
        "load_average": load_average,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "workers": workers,
        "threads_per_worker": threads,
    }


def hardware_line(hw: dict[str, Any]) -> str:
    gpu = hw["gpu"] or "no GPU"
    threads = hw["threads_per_worker"] or "default"
    return (f"{hw['cpu']} ({hw['cpu_count']} cores), {gpu}; torch {hw['torch']}, Python {hw['python']}; "
            f"{hw['workers']} process(es) side by side, {threads} torch thread(s) each")
