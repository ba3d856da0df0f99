"""Checkpoint averaging: the element-wise mean of the weights of several checkpoints of one run.

Averaging the last few checkpoints of a run usually gives a model a little better than any one of them
(Vaswani et al. 2017 average the last 5 or 20). Used by `nmt-evaluate average_last=k` and `nmt-average`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from nmt.errors import NMTError
from nmt.training.checkpoint import Checkpoint, checkpoint_config

_STEP_FILE = re.compile(r"^step-(\d+)\.pt$")


def last_checkpoints(run_dir: str | Path, k: int) -> list[Path]:
    """The run's `k` newest checkpoints, oldest first: its step-<n>.pt files, plus last.pt when it holds a
    newer step than all of them (a run stopped between saves). Links of one payload count once."""
    run_dir = Path(run_dir)
    if k < 1:
        raise NMTError(f"need at least one checkpoint to average, got k={k}")
    if not run_dir.is_dir():
        raise NMTError(f"run directory not found: {run_dir}")
    found = {
        int(m.group(1)): p for p in run_dir.glob("step-*.pt") if (m := _STEP_FILE.match(p.name)) is not None
    }
    last = run_dir / "last.pt"
    if last.is_file():
        found.setdefault(Checkpoint.load(last).step, last)
    if len(found) < k:
        names = ", ".join(p.name for _, p in sorted(found.items())) or "none"
        raise NMTError(f"{run_dir} has {len(found)} checkpoints to average ({names}), fewer than {k}")
    return [p for _, p in sorted(found.items())[-k:]]


@dataclass(frozen=True)
class _Fingerprint:
    """What checkpoints must share to be averaged: model config, tokenizer and parameter shapes."""

    path: Path
    model_config: Any
    tokenizer: tuple[Any, Any]
    shapes: dict[str, tuple[int, ...]]

    @classmethod
    def of(cls, checkpoint: Checkpoint, path: Path) -> _Fingerprint:
        model_config = OmegaConf.to_container(checkpoint_config(checkpoint).model, resolve=True)
        tokenizer = checkpoint.tokenizer.get("src_sha256"), checkpoint.tokenizer.get("tgt_sha256")
        return cls(path, model_config, tokenizer, {name: tuple(t.shape) for name, t in checkpoint.model.items()})

    def check(self, other: _Fingerprint) -> None:
        where = f"cannot average {self.path} with {other.path}"
        if other.model_config != self.model_config:
            raise NMTError(f"{where}: different model configs")
        if other.tokenizer != self.tokenizer:
            raise NMTError(f"{where}: different tokenizers")
        if other.shapes != self.shapes:
            diff = sorted(set(other.shapes.items()) ^ set(self.shapes.items()))
            raise NMTError(f"{where}: parameters differ ({diff[0][0]}{' ...' if len(diff) > 1 else ''})")


def average_checkpoints(paths: Sequence[str | Path]) -> Checkpoint:
    """A checkpoint whose weights are the mean of the given checkpoints' weights.

    All checkpoints must hold the same model (same config, parameter names and shapes) and tokenizer.
    Floating-point tensors are averaged in float64 and cast back; other tensors (counters) are taken from
    the last checkpoint. The rest is the last checkpoint's, without optimizer, schedule and RNG states (an
    average is for evaluation, not for resuming), and with `averaged_from`: the paths as strings.
    Only one checkpoint is held in memory at a time besides the running sum.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise NMTError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    first: _Fingerprint | None = None
    for path in paths:
        checkpoint = Checkpoint.load(path)
        if first is None:
            first = _Fingerprint.of(checkpoint, path)
            total = {name: t.to(torch.float64) for name, t in checkpoint.model.items() if t.is_floating_point()}
            continue
        first.check(_Fingerprint.of(checkpoint, path))
        for name in total:
            total[name] += checkpoint.model[name].to(torch.float64)
    n = len(paths)
    averaged = {
        name: (total[name] / n).to(t.dtype) if name in total else t.clone() for name, t in checkpoint.model.items()
    }
    return replace(checkpoint, model=averaged, optimizer=None, scheduler=None,
                   state=replace(checkpoint.state, rng=None), averaged_from=[str(p) for p in paths])


def average_into(paths: list[Path], last: int = 5, output: Path | None = None) -> tuple[Path, list[Path]]:
    """Average one run directory's last `last` checkpoints (default output <run>/averaged-last<k>.pt) or two or
    more checkpoint files (output required) and save the result; returns (output, averaged files)."""
    if len(paths) == 1 and paths[0].is_dir():
        run_dir = paths[0]
        paths = last_checkpoints(run_dir, last)
        output = output or run_dir / f"averaged-last{len(paths)}.pt"
    else:
        if len(paths) < 2:
            raise NMTError(f"give a run directory or at least two checkpoint files, got {paths[0]}")
        if output is None:
            raise NMTError("--output is needed when averaging checkpoint files")
    run_names = output.name in ("last.pt", "best.pt") or output.name.startswith("step-")
    if run_names or output.resolve() in {p.resolve() for p in paths}:
        raise NMTError(f"refusing to write the average to {output}: pick a name that is not a run checkpoint")
    average_checkpoints(paths).save(output)
    return output, paths
