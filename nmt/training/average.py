"""Checkpoint averaging: the element-wise mean of the weights of several checkpoints of one run.

Averaging the last few checkpoints of a run usually gives a model a little better than any one of them
(Vaswani et al. 2017 average the last 5 or 20). Used by `nmt-evaluate average_last=k` and `nmt-average`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nmt.errors import NMTError
from nmt.training.checkpoint import load_checkpoint, save_checkpoint

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
        step = int(load_checkpoint(last)["step"])
        found.setdefault(step, last)
    if len(found) < k:
        names = ", ".join(p.name for _, p in sorted(found.items())) or "none"
        raise NMTError(f"{run_dir} has {len(found)} checkpoints to average ({names}), fewer than {k}")
    return [p for _, p in sorted(found.items())[-k:]]


def average_checkpoints(paths: Sequence[str | Path]) -> dict[str, Any]:
    """A checkpoint payload whose weights are the mean of the given checkpoints' weights.

    All checkpoints must hold the same model (same config, parameter names and shapes) and tokenizer.
    Floating-point tensors are averaged in float64 and cast back; other tensors (counters) are taken from
    the last checkpoint. The payload is the last checkpoint's, without optimizer/scheduler/RNG state (an
    average is for evaluation, not for resuming), plus "averaged_from": the paths as strings.
    Only one checkpoint is held in memory at a time besides the running sum.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise NMTError("no checkpoints to average")
    total: dict[str, torch.Tensor] = {}
    first: dict[str, Any] | None = None
    payload: dict[str, Any] = {}
    for path in paths:
        payload = load_checkpoint(path)
        weights = payload["model"]
        if first is None:
            first = {"model": payload["config"].get("model"), "tokenizer": _tokenizer_hash(payload),
                     "shapes": {name: tuple(t.shape) for name, t in weights.items()}, "path": path}
            total = {name: t.to(torch.float64) for name, t in weights.items() if t.is_floating_point()}
            continue
        _check_compatible(first, payload, path)
        for name in total:
            total[name] += weights[name].to(torch.float64)
    n = len(paths)
    averaged = {
        name: (total[name] / n).to(t.dtype) if name in total else t.clone() for name, t in payload["model"].items()
    }
    out = dict(payload)
    out.update(model=averaged, optimizer=None, scheduler=None, scaler=None, rng=None)
    out["averaged_from"] = [str(p) for p in paths]
    return out


def _tokenizer_hash(payload: dict[str, Any]) -> tuple[Any, Any]:
    tok = payload.get("tokenizer") or {}
    return tok.get("src_sha256"), tok.get("tgt_sha256")


def _check_compatible(first: dict[str, Any], payload: dict[str, Any], path: Path) -> None:
    where = f"cannot average {first['path']} with {path}"
    if payload["config"].get("model") != first["model"]:
        raise NMTError(f"{where}: different model configs")
    if _tokenizer_hash(payload) != first["tokenizer"]:
        raise NMTError(f"{where}: different tokenizers")
    shapes = {name: tuple(t.shape) for name, t in payload["model"].items()}
    if shapes != first["shapes"]:
        diff = sorted(set(shapes.items()) ^ set(first["shapes"].items()))
        raise NMTError(f"{where}: parameters differ ({diff[0][0]}{' ...' if len(diff) > 1 else ''})")


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
    save_checkpoint(output, average_checkpoints(paths))
    return output, paths
