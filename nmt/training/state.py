"""What it takes to continue a run exactly where it stopped: RNG states, the data position, checkpoint files.

The data position is (epoch, index of the next batch in that epoch's deterministic batch list); `batch_stream`
replays the batch lists from there, so a resumed run sees the same batches in the same order as an
uninterrupted one. Checkpoint files: one payload is written once (atomically, by `save_checkpoint`) and hard-
linked under its other names (best.pt, last.pt, step-<n>.pt); only the newest `keep_last` step files stay.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, Dataset

from nmt.errors import NMTError
from nmt.training.checkpoint import save_checkpoint

Tensor = torch.Tensor


# RNG -----------------------------------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU and CUDA generator states as plain types (loadable with weights_only=True)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# Data position -------------------------------------------------------------------------------------------------
class EpochBatches(Dataset):
    """Batch i of one epoch's batch list, collated (map-style, so DataLoader workers can build batches)."""

    def __init__(self, batches: list[list[int]], src_ids: list[list[int]], tgt_ids: list[list[int]]) -> None:
        self.batches, self.src_ids, self.tgt_ids = batches, src_ids, tgt_ids

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> Any:
        from nmt.data.batching import collate

        rows = list(self.batches[i])
        return collate([self.src_ids[r] for r in rows], [self.tgt_ids[r] for r in rows], rows)


def batch_stream(
    sampler: Any,
    src_ids: list[list[int]],
    tgt_ids: list[list[int]],
    epoch: int,
    start: int,
    max_epochs: int = 0,
    num_workers: int = 0,
    seed: int = 1,
    pin_memory: bool = False,
) -> Iterator[tuple[int, int, int, Any]]:
    """(epoch, index, batches in that epoch, Batch) from position (epoch, start) on, until `max_epochs`
    epochs are done (forever when 0). `sampler.batches(e)` is this rank's deterministic batch list of epoch e."""
    while max_epochs <= 0 or epoch < max_epochs:
        batches = sampler.batches(epoch)
        loader = DataLoader(
            EpochBatches(batches, src_ids, tgt_ids),
            batch_size=None,
            sampler=range(start, len(batches)),
            num_workers=num_workers,
            pin_memory=pin_memory,  # Batch.pin_memory: page-locked, so GPU copies can be non_blocking
            # Its own generator: creating an iterator must not draw from the global RNG (dropout masks), or a
            # run resumed mid-epoch would diverge from an uninterrupted one.
            generator=torch.Generator().manual_seed(seed + epoch),
        )
        for offset, batch in enumerate(loader):
            yield epoch, start + offset, len(batches), batch
        epoch, start = epoch + 1, 0


# Checkpoint files ----------------------------------------------------------------------------------------------
def link_or_copy(src: Path, dst: Path, payload: dict[str, Any]) -> None:
    """Make `dst` another name of the finished checkpoint `src` (atomic); write it again where links fail."""
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        tmp.unlink(missing_ok=True)
        save_checkpoint(dst, payload)


def save_under(run_dir: Path, names: list[str], payload: dict[str, Any], keep_last: int) -> None:
    """Write `payload` as run_dir/names[0], link the other names to it, keep the newest `keep_last` step files."""
    if not names:
        return
    first = run_dir / names[0]
    save_checkpoint(first, payload)
    for name in names[1:]:
        link_or_copy(first, run_dir / name, payload)
    steps = sorted(run_dir.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    for old in steps[: max(0, len(steps) - keep_last)]:
        old.unlink(missing_ok=True)


def resume_path(resume: str, run_dir: Path) -> Path | None:
    """train.resume: `auto` -> run_dir/last.pt if present, `never` -> None, else a checkpoint or run dir."""
    if resume == "never":
        return None
    if resume == "auto":
        last = run_dir / "last.pt"
        return last if last.exists() else None
    path = Path(resume)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise NMTError(f"train.resume: no checkpoint at {path}")
    return path


def check_resumable(payload: dict[str, Any], path: Path, model_cfg: DictConfig, tokenizer: Any) -> None:
    """A checkpoint continues only the same model on the same vocabulary; anything else is a user error."""
    from nmt.data.tokenizer import Tokenizer

    saved = payload["config"]["model"]
    current = OmegaConf.to_container(model_cfg, resolve=True)
    diff = [f"model.{k}: {saved.get(k)!r} -> {v!r}" for k, v in current.items() if saved.get(k) != v]
    if diff:
        raise NMTError(f"cannot resume {path}: the model config changed ({'; '.join(diff)})")
    if Tokenizer.from_state_dict(payload["tokenizer"]).sha256 != tokenizer.sha256:
        raise NMTError(f"cannot resume {path}: it was trained with a different tokenizer (data config changed)")
