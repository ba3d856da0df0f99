"""COMET (Rei et al. 2020): a trained model scores each translation given its source and reference. The optional
`comet` extra (unbabel-comet); `nmt-evaluate comet_model=<path or hub name>` adds it to an evaluation.

    model = load_comet("Unbabel/wmt22-comet-da")        # or a path: <dir> or <dir>/checkpoints/model.ckpt
    scores = segment_scores(model, sources, hyps, refs, cache_dir)   # (num_sentences,) float64

The corpus score is the mean of the segment scores, and the paired tests and length buckets resample those
scores directly (nmt.metrics.scores.segment_stats). Scoring runs on the CPU, in small batches; its segment scores
are cached in `cache_dir` under the sha256 of (model, sources, hypotheses, references), so evaluating the same
hypotheses again does not run the model.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nmt.data.sources import hub_endpoint, offline_requested, probe_hub
from nmt.errors import NMTError
from nmt.io import canonical_json, read_json, write_json

EXTRA_MISSING = "comet_model needs the comet extra: pip install 'nmt-bottleneck[comet]'"
BATCH_SIZE = 8  # sentences a forward pass on the CPU: COMET's encoders are large
CHECKPOINT = Path("checkpoints") / "model.ckpt"  # COMET's layout: <dir>/checkpoints/model.ckpt, <dir>/hparams.yaml
HUB_NAME = re.compile(r"[\w.-]+/[\w.-]+")  # "Unbabel/wmt22-comet-da"


@dataclass
class Comet:
    """A loaded COMET model: `name` as the user gave it (the report prints it), its checkpoint file, the model."""

    name: str
    checkpoint: Path
    model: Any  # comet.models.CometModel

    @property
    def key(self) -> str:
        """What identifies its scores in the cache: the checkpoint file, its size and modification time."""
        stat = self.checkpoint.stat()
        return f"{self.checkpoint}:{stat.st_size}:{stat.st_mtime_ns}"


def comet_checkpoint(name: str) -> tuple[Path, bool]:
    """The checkpoint file of a COMET model, and whether the hub is out of reach (load its encoder's files from
    the cache only). `name`: a checkpoint file with hparams.yaml one folder up, a directory holding
    checkpoints/model.ckpt, or a hub name (from the Hugging Face cache, else downloaded)."""
    path = Path(name).expanduser()
    if path.exists():
        checkpoint = (path / CHECKPOINT if path.is_dir() else path).resolve()
        if not checkpoint.is_file() or not (checkpoint.parents[1] / "hparams.yaml").is_file():
            raise NMTError(f"{name} is not a COMET checkpoint: expected <dir>/{CHECKPOINT} and <dir>/hparams.yaml")
        return checkpoint, False
    if not HUB_NAME.fullmatch(name):
        raise NMTError(f"COMET model not found: {name} (give a COMET checkpoint or a hub name such as "
                       f"Unbabel/wmt22-comet-da)")
    from huggingface_hub import snapshot_download  # only for hub names

    offline = offline_requested()
    unreachable = None if offline else probe_hub(hub_endpoint())
    try:
        snapshot = snapshot_download(repo_id=name, cache_dir=os.environ.get("HF_HUB_CACHE") or None,
                                     local_files_only=bool(offline or unreachable))
    except Exception as e:  # not in the cache, no network, no such repository
        if offline or unreachable:
            why = f"{offline}=1" if offline else f"the hub cannot be reached: {unreachable}"
        else:
            why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NMTError(f"COMET model {name} is not in the Hugging Face cache and cannot be downloaded ({why}); "
                       f"give the path of a downloaded COMET model") from None
    return (Path(snapshot) / CHECKPOINT).resolve(), bool(offline or unreachable)


def load_comet(name: str) -> Comet:
    """The COMET model `name` (see `comet_checkpoint`), on the CPU; one line when it cannot be had."""
    checkpoint, offline = comet_checkpoint(name)
    try:
        from comet import load_from_checkpoint  # the optional extra, heavy to import
    except ImportError:
        raise NMTError(EXTRA_MISSING) from None
    quiet()
    try:
        model = load_from_checkpoint(str(checkpoint), local_files_only=offline)
    except Exception as e:  # a damaged checkpoint, an encoder that is not there: COMET's own message, first line
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NMTError(f"cannot load the COMET model {name}: {reason}") from None
    return Comet(name, checkpoint, model)


def quiet() -> None:
    """Lightning's start-up banners (devices, tips) stay out of nmt's console."""
    for logger in ("lightning", "lightning.pytorch", "pytorch_lightning", "comet"):
        logging.getLogger(logger).setLevel(logging.WARNING)


def cache_key(comet: Comet, sources: Sequence[str], hyps: Sequence[str], refs: Sequence[str]) -> str:
    text = canonical_json([comet.key, list(sources), list(hyps), list(refs)])
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def segment_scores(comet: Comet, sources: Sequence[str], hyps: Sequence[str], refs: Sequence[str],
                   cache_dir: str | Path) -> np.ndarray:
    """COMET score of each hypothesis given its source and reference: (num_sentences,) float64. Read from
    `cache_dir`/<sha256>.json when these sentences were scored with this model before, else computed and
    written there."""
    if not len(sources) == len(hyps) == len(refs):
        raise NMTError(f"COMET needs one source and one reference a hypothesis, got {len(sources)} sources, "
                       f"{len(hyps)} hypotheses and {len(refs)} references")
    path = Path(cache_dir) / f"{cache_key(comet, sources, hyps, refs)}.json"
    try:
        cached = read_json(path) if path.is_file() else None
    except NMTError:  # a damaged cache file: scored again and rewritten
        cached = None
    if isinstance(cached, dict) and len(cached.get("scores", [])) == len(hyps):
        return np.asarray(cached["scores"], dtype=np.float64)
    samples = [{"src": s, "mt": h, "ref": r} for s, h, r in zip(sources, hyps, refs, strict=True)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's notes on data loaders and deprecations, not the user's
        prediction = comet.model.predict(samples, batch_size=BATCH_SIZE, gpus=0, progress_bar=False)
    scores = np.asarray(prediction.scores, dtype=np.float64)
    write_json(path, {"model": comet.name, "scores": scores.tolist()})
    return scores
