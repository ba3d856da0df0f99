"""The timing child of scripts/bench_against.py: training tokens/s of whichever nmt package comes first on
sys.path (the checked-out revision's, or this one's).

    PYTHONPATH=<source tree> python -P scripts/revision_probe.py MODEL_YAML BATCHES_FILE WARMUP THREADS

Prints one JSON line, {"tokens_per_s": ...}. It times the package's own training step
(nmt.training.step.train_step) and, for a revision from before that step existed, the same work written out
here. It needs only what every revision of nmt has had: nmt.config (compose_config, or the flat ModelConfig before
it) and nmt.models.build_model.
Run with `python -P`, so that this file's folder does not come first on sys.path.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from nmt import config as nmt_config
from nmt.models import build_model

try:
    from nmt.training.step import train_step
except ImportError:  # a revision from before the one training step
    train_step = None

LABEL_SMOOTHING, CLIP_NORM = 0.1, 1.0  # train.label_smoothing and train.clip_norm defaults
PAD_ID = 0


class ProbeBatch:
    """The fields of nmt.data.batching.Batch a training step reads, from plain tensors (every revision's Batch
    class may differ); the tensors stay on the CPU, as the probe does."""

    def __init__(self, src: torch.Tensor, src_lens: torch.Tensor, tgt_in: torch.Tensor, tgt_out: torch.Tensor,
                 num_tokens: int) -> None:
        self.src, self.src_lens, self.tgt_in, self.tgt_out, self.num_tokens = src, src_lens, tgt_in, tgt_out, num_tokens
        self.num_tgt_tokens = int((tgt_out != PAD_ID).sum())

    def to(self, device: torch.device, non_blocking: bool = False) -> ProbeBatch:
        return self


def legacy_train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, batches: list[ProbeBatch]) -> None:
    """nmt.training.step.train_step's work, for revisions without it: the mean label-smoothed token loss,
    backward, clipping, the optimizer step."""
    total = torch.zeros(())
    for b in batches:
        logits = model(b.src, b.src_lens, b.tgt_in)  # (B, T, V)
        total = total + F.cross_entropy(logits.float().flatten(0, 1), b.tgt_out.flatten(), ignore_index=PAD_ID,
                                        label_smoothing=LABEL_SMOOTHING, reduction="sum")
    (total / max(sum(b.num_tgt_tokens for b in batches), 1)).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP_NORM)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def load_preset(path: Path) -> DictConfig:
    """A model preset YAML with its Hydra defaults list resolved: entries name sibling presets, merged in order,
    the file itself where `_self_` stands (at the end when absent)."""
    node = OmegaConf.load(path)
    defaults = list(node.pop("defaults", []))
    if "_self_" not in defaults:
        defaults.append("_self_")
    merged = OmegaConf.create()
    for entry in defaults:
        merged = OmegaConf.merge(merged, node if entry == "_self_" else load_preset(path.with_name(f"{entry}.yaml")))
    return merged


def model_config(model_yaml: Path) -> DictConfig:
    """The model config of a preset (configs/model/<name>.yaml) as the package composes it, or, for a revision
    without nmt.config.compose_config, merged by hand into its flat ModelConfig."""
    if hasattr(nmt_config, "compose_config"):
        return nmt_config.compose_config("config", [f"model={model_yaml.stem}"], str(model_yaml.parents[1])).model
    return OmegaConf.merge(OmegaConf.structured(nmt_config.ModelConfig), load_preset(model_yaml))


def tokens_per_second(model_yaml: Path, batches_file: Path, warmup: int) -> float:
    """Train a freshly seeded model of `model_yaml` on the saved batches; real tokens/s after `warmup` steps."""
    data: dict[str, Any] = torch.load(batches_file)
    cfg = model_config(model_yaml)
    torch.manual_seed(1)
    model = build_model(cfg, data["vocab"][0], data["vocab"][1])
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98))
    device = torch.device("cpu")
    tokens, start = 0, 0.0
    for i, fields in enumerate(data["batches"]):
        if i == warmup:
            start = time.perf_counter()
        batch = ProbeBatch(*fields)
        if train_step is None:
            legacy_train_step(model, optimizer, [batch])
        else:
            train_step(model, optimizer, [batch], device, LABEL_SMOOTHING, CLIP_NORM)
        if i >= warmup:
            tokens += batch.num_tokens
    return tokens / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    model_yaml, batches_file, warmup, threads = Path(argv[0]), Path(argv[1]), int(argv[2]), int(argv[3])
    torch.set_num_threads(threads)
    print(json.dumps({"tokens_per_s": tokens_per_second(model_yaml, batches_file, warmup)}))


if __name__ == "__main__":
    main(sys.argv[1:])
