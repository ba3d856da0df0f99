"""Validation during training: teacher-forced loss/perplexity, decoded BLEU/chrF, attention plots, samples.

Runs on rank 0 only, on the bare model (not the DDP or compiled wrapper), in eval mode and without gradients.
"""

from __future__ import annotations

import math
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import torch

from nmt.config import PAD_ID, DecodeConfig
from nmt.data.batching import Batch, TokenBatchSampler, collate
from nmt.decoding.search import translate
from nmt.metrics.scores import VALIDATED, corpus_scores
from nmt.models.base import Seq2Seq
from nmt.plots import plot_attention
from nmt.training.run_log import RunLogger, samples_markdown
from nmt.training.step import sequence_loss

NUM_TEXT_SAMPLES = 5


@dataclass
class ValidSet:
    """The (possibly truncated) valid split: raw text for BLEU, ids for the loss."""

    sources: list[str]
    references: list[str]
    src_ids: list[list[int]]
    tgt_ids: list[list[int]]
    batches: list[list[int]] = field(default_factory=list)

    @classmethod
    def build(cls, sources: list[str], references: list[str], tokenizer: Any, batch_tokens: int) -> ValidSet:
        """From text, encoded with `tokenizer` (a corpus's valid split comes encoded: `from_ids`)."""
        return cls.from_ids(sources, references, tokenizer.encode_src(sources), tokenizer.encode_tgt(references),
                            batch_tokens)

    @classmethod
    def from_ids(cls, sources: list[str], references: list[str], src_ids: list[list[int]], tgt_ids: list[list[int]],
                 batch_tokens: int) -> ValidSet:
        """From text and its ids, row for row; the batches are cut in order (no shuffling)."""
        sampler = TokenBatchSampler([len(s) for s in src_ids], [len(t) for t in tgt_ids], batch_tokens, shuffle=False)
        return cls(sources, references, src_ids, tgt_ids, list(sampler))

    def __len__(self) -> int:
        return len(self.sources)

    def batch(self, rows: list[int]) -> Batch:
        return collate([self.src_ids[i] for i in rows], [self.tgt_ids[i] for i in rows], rows)


@torch.no_grad()
def valid_loss(model: Seq2Seq, valid: ValidSet, device: torch.device, autocast: AbstractContextManager[Any]) -> float:
    """Mean token cross-entropy (no label smoothing, so exp() is the perplexity) over the valid set."""
    total, tokens = 0.0, 0
    for rows in valid.batches:
        batch = valid.batch(rows).to(device)
        with autocast:
            logits = model(batch.src, batch.src_lens, batch.tgt_in)  # (B, T, V)
        total += sequence_loss(logits, batch.tgt_out).item()
        tokens += int((batch.tgt_out != PAD_ID).sum())
    return total / max(tokens, 1)


def _labels(pieces: list[str], size: int) -> list[str]:
    return (pieces + ["</s>"] + [""] * size)[:size]


@torch.no_grad()
def log_attention(
    model: Seq2Seq, valid: ValidSet, tokenizer: Any, count: int, device: torch.device, log: RunLogger, step: int
) -> int:
    """Heatmaps of teacher-forced attention for the first `count` valid sentences; returns how many were drawn."""
    rows = list(range(min(count, len(valid))))
    if not rows or log.writer is None:
        return 0
    batch = valid.batch(rows).to(device)
    attention = model.forward_attention(batch.src, batch.src_lens, batch.tgt_in)  # (B, T, S) or None
    if attention is None:
        return 0
    for k, row in enumerate(rows):
        src_len = int(batch.src_lens[k])
        tgt_len = len(valid.tgt_ids[row]) + 1  # output positions: the pieces, then EOS
        weights = attention[k, :tgt_len, :src_len]
        figure = plot_attention(
            weights,
            _labels(tokenizer.src_pieces(valid.sources[row]), src_len),
            _labels(tokenizer.tgt_pieces(valid.references[row]), tgt_len),
        )
        log.figure(f"attention/{row}", figure, step)
    return len(rows)


def validate(
    model: Seq2Seq,
    valid: ValidSet,
    tokenizer: Any,
    decode_cfg: DecodeConfig,
    device: torch.device,
    autocast: AbstractContextManager[Any],
    log: RunLogger,
    step: int,
    attention_samples: int,
) -> dict[str, float]:
    """Loss, perplexity and the validated metrics (`MetricSpec.validate`: BLEU, chrF) on `valid`, keyed by name
    (nmt.training.run_log.METRIC_TAGS names their TensorBoard tags); also writes attention plots and samples to
    TensorBoard."""
    was_training = model.training
    model.eval()
    start = time.monotonic()
    try:
        loss = valid_loss(model, valid, device, autocast)  # in the training precision, as the training loss
        # Decoded in decode.precision (translate applies it), not in the training autocast: valid BLEU is then
        # the BLEU nmt-evaluate gives the same checkpoint with the same decode config.
        with torch.no_grad():
            translations = translate(model, tokenizer, valid.sources, decode_cfg, device)
        scores = corpus_scores(translations.hypotheses, valid.references)
        log_attention(model, valid, tokenizer, attention_samples, device, log, step)
    finally:
        model.train(was_training)
    n = NUM_TEXT_SAMPLES
    log.text(
        "valid/samples",
        samples_markdown(valid.sources[:n], translations.hypotheses[:n], valid.references[:n]),
        step,
    )
    return {
        "valid_loss": loss,
        "valid_ppl": math.exp(min(loss, 50.0)),
        **{m.name: scores.score(m.name) for m in VALIDATED},
        "valid_seconds": time.monotonic() - start,
    }


def metrics_text(result: dict[str, float]) -> str:
    """The validated metrics of a `validate` result for a log line: "BLEU 12.34 | chrF 45.67"."""
    return " | ".join(f"{m.column} {result[m.name]:.2f}" for m in VALIDATED)
