"""Checkpoints: atomic writes, safe loads, and rebuilding a model from nothing but a checkpoint file.

A checkpoint is a plain dict saved with `torch.save` (payload keys below). It carries the resolved config and the
SentencePiece model bytes, so `nmt-evaluate` and `nmt-translate` need only the file. Loading always uses
`weights_only=True`: a file that would run code when unpickled is refused, never executed.
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from nmt.config import Config
from nmt.errors import NMTError

FORMAT = "nmt-checkpoint"
VERSION = 1
REQUIRED_KEYS = ("format", "version", "config", "model", "tokenizer", "step")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write `payload` to `path` atomically: a temp file in the same directory, fsync, then rename.

    A crash (even `kill -9`) at any moment leaves either the old file or the new one, never a torn one.
    Refuses to save non-finite model weights.
    """
    path = Path(path)
    bad = non_finite_tensors(payload["model"])
    if bad:
        raise NMTError(f"refusing to save {path}: non-finite values in {bad[0]}")
    payload = {"format": FORMAT, "version": VERSION, **payload}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are meant to be shared like any output
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def non_finite_tensors(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or inf."""
    return [name for name, t in state_dict.items() if t.is_floating_point() and not torch.isfinite(t).all()]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and check a checkpoint; any problem is an NMTError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise NMTError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise NMTError(f"{path} is not a safe checkpoint: it holds objects that could run code when loaded") from e
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as e:
        raise NMTError(f"{path} is not a readable checkpoint (truncated or corrupt: {type(e).__name__})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise NMTError(f"{path} is not an nmt checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise NMTError(f"{path} has checkpoint version {payload.get('version')}, this nmt reads version {VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise NMTError(f"{path} is missing checkpoint entries: {', '.join(missing)}")
    return payload


def checkpoint_config(payload: dict[str, Any], overrides: list[str] | None = None) -> DictConfig:
    """The run's resolved Config, typed, with dotted `key=value` overrides (e.g. `model.temperature=0.5`)."""
    cfg = OmegaConf.merge(OmegaConf.structured(Config), payload["config"])
    try:
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides or []))
    except Exception as e:  # omegaconf raises several types for unknown keys and wrong types
        raise NMTError(f"bad override in {overrides}: {str(e).splitlines()[0]}") from e


@dataclass
class Loaded:
    """A model rebuilt from a checkpoint, ready for inference."""

    model: torch.nn.Module
    tokenizer: Any  # nmt.data.tokenizer.Tokenizer
    cfg: DictConfig
    path: Path
    payload: dict[str, Any]


def load_model(
    path: str | Path, device: str | torch.device = "cpu", overrides: list[str] | None = None
) -> Loaded:
    """Rebuild model + tokenizer from a checkpoint file, in eval mode on `device`."""
    from nmt.data.tokenizer import Tokenizer
    from nmt.models import build_model

    path = Path(path)
    payload = load_checkpoint(path)
    cfg = checkpoint_config(payload, overrides)
    tokenizer = Tokenizer.from_state_dict(payload["tokenizer"])
    model = build_model(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size)
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as e:
        raise NMTError(f"{path}: weights do not fit the model in its config ({str(e).splitlines()[0]})") from e
    model.to(device).eval()
    return Loaded(model=model, tokenizer=tokenizer, cfg=cfg, path=path, payload=payload)

