"""What every entry point shares: where the configs live, device choice."""

from __future__ import annotations

from pathlib import Path

import torch

from nmt.config import register_configs

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "configs")

register_configs()


def pick_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA, then Apple MPS, then CPU; anything else is passed to torch.device."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
