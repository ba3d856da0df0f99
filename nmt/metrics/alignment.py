"""Does attention align? The segment-alignment score of teacher-forced attention on joined examples.

A level-k example joins k consecutive sentences on both sides, so the source and target boundaries of each
sentence are known. An attention model that aligns puts the attention of sentence j's target tokens on source
sentence j; one that does not spreads it (uniform attention scores about 1/k).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nmt.errors import NMTError

Spans = Sequence[tuple[int, int]]  # the k sentences of one example as [start, end) token indices, in order


def segment_alignment(attention: np.ndarray, src_spans: Sequence[Spans], tgt_spans: Sequence[Spans]) -> np.ndarray:
    """Per example, the share of the attention mass of sentence j's target tokens that falls on source sentence
    j, averaged over the k sentences.

    attention: (batch, tgt_len, src_len) teacher-forced attention weights (rows sum to 1 over the real source
    positions; padding rows and columns are never read), or (tgt_len, src_len) for one example; a CPU torch
    tensor works too (detached). src_spans, tgt_spans: per example, its k sentences' [start, end) token indices
    on each side, the same k on both. Source tokens outside every span (an end-of-sentence token) count in the
    row's mass but for no sentence. Returns (batch,) scores in [0, 1]: 1 for attention inside the sentence's own
    source, about 1/k for uniform attention, 0 for attention on other sentences only; average them with `.mean()`.
    """
    weights = np.asarray(attention, dtype=np.float64)
    if weights.ndim == 2:
        weights = weights[None]
    if weights.ndim != 3 or not len(src_spans) == len(tgt_spans) == len(weights):
        raise NMTError(f"segment_alignment needs (batch, tgt_len, src_len) attention and spans for each example, "
                       f"got attention of shape {weights.shape}, {len(src_spans)} source and {len(tgt_spans)} "
                       f"target span lists")
    scores = np.empty(len(weights))
    for b, (example, src, tgt) in enumerate(zip(weights, src_spans, tgt_spans, strict=True)):
        if len(src) != len(tgt) or not src:
            raise NMTError(f"example {b}: {len(src)} source and {len(tgt)} target sentences; they must match")
        shares = []
        for (s0, s1), (t0, t1) in zip(src, tgt, strict=True):
            rows = example[t0:t1]  # (sentence's target tokens, src_len)
            mass = rows.sum()
            shares.append(rows[:, s0:s1].sum() / mass if mass > 0 else 0.0)
        scores[b] = np.mean(shares)
    return scores
