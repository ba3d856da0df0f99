"""Scores by source length (the view of Bahdanau et al. 2015, Fig. 2): length buckets, BLEU per bucket with
bootstrap intervals, and paired tests per bucket."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nmt.errors import NMTError
from nmt.metrics.scores import check_pair, corpus_score
from nmt.metrics.significance import BOOTSTRAP_SEED, bootstrap_interval, paired_bootstrap

DEFAULT_EDGES: tuple[int, ...] = (0, 10, 20, 30, 40, 50)
# Below this many sentences a bucket's BLEU swings by several points between resamples.
FEW_SENTENCES = 50


def length_buckets(edges: Sequence[int] = DEFAULT_EDGES) -> list[tuple[int, int | None]]:
    """[lo, hi) ranges of source length in words from sorted `edges`; the last is [edges[-1], inf)."""
    edges = [int(e) for e in edges]
    if not edges or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise NMTError(f"length edges must start at 0 and increase strictly, got {edges}")
    return [(lo, hi) for lo, hi in zip(edges, edges[1:], strict=False)] + [(edges[-1], None)]


def bucket_label(lo: int, hi: int | None) -> str:
    return f"{lo}+" if hi is None else f"{lo}-{hi}"


def assign_buckets(sources: Sequence[str], edges: Sequence[int] = DEFAULT_EDGES) -> list[int]:
    """Bucket index of each source sentence by its length in whitespace-separated words."""
    lows = np.asarray([lo for lo, _ in length_buckets(edges)])
    lengths = np.asarray([len(s.split()) for s in sources], dtype=np.int64)
    return (np.searchsorted(lows, lengths, side="right") - 1).tolist()


def bleu_by_length(
    sources: Sequence[str],
    hyps: Sequence[str],
    refs: Sequence[str],
    edges: Sequence[int] = DEFAULT_EDGES,
    n_samples: int = 1000,
    seed: int = BOOTSTRAP_SEED,
) -> list[dict[str, Any]]:
    """BLEU and chrF per source-length bucket (the view of Bahdanau et al. 2015, Fig. 2).

    Returns one dict per bucket, empty ones included: {"label", "lo", "hi" (None for the last), "count",
    "bleu", "chrf" (None when empty), "bleu_ci": [lo, hi] 95% bootstrap interval or None, "few": count <
    FEW_SENTENCES}. `n_samples=0` skips the intervals.
    """
    check_pair(hyps, refs)
    if len(sources) != len(hyps):
        raise NMTError(f"{len(sources)} sources but {len(hyps)} hypotheses: line counts must match")
    which = assign_buckets(sources, edges)
    rows = []
    for b, (lo, hi) in enumerate(length_buckets(edges)):
        members = [i for i, w in enumerate(which) if w == b]
        row: dict[str, Any] = {
            "label": bucket_label(lo, hi),
            "lo": lo,
            "hi": hi,
            "count": len(members),
            "bleu": None,
            "chrf": None,
            "bleu_ci": None,
            "few": len(members) < FEW_SENTENCES,
        }
        if members:
            bh, br = [hyps[i] for i in members], [refs[i] for i in members]
            row["bleu"] = corpus_score(bh, br, "bleu")
            row["chrf"] = corpus_score(bh, br, "chrf")
            if n_samples > 0:
                row["bleu_ci"] = list(bootstrap_interval(bh, br, n_samples, seed))
        rows.append(row)
    return rows


def paired_bootstrap_by_length(
    sources: Sequence[str],
    hyps: Sequence[str],
    base_hyps: Sequence[str],
    refs: Sequence[str],
    edges: Sequence[int] = DEFAULT_EDGES,
    n_samples: int = 1000,
    seed: int = BOOTSTRAP_SEED,
) -> list[dict[str, Any]]:
    """`paired_bootstrap` within each source-length bucket; empty buckets get count 0 and no scores."""
    if not (len(sources) == len(hyps) == len(base_hyps) == len(refs)):
        raise NMTError(
            f"line counts differ: {len(sources)} sources, {len(hyps)} hypotheses, "
            f"{len(base_hyps)} baseline hypotheses, {len(refs)} references"
        )
    which = assign_buckets(sources, edges)
    rows = []
    for b, (lo, hi) in enumerate(length_buckets(edges)):
        members = [i for i, w in enumerate(which) if w == b]
        row: dict[str, Any] = {"label": bucket_label(lo, hi), "lo": lo, "hi": hi, "count": len(members)}
        if members:
            row.update(
                paired_bootstrap(
                    [hyps[i] for i in members],
                    [base_hyps[i] for i in members],
                    [refs[i] for i in members],
                    n_samples,
                    seed,
                )
            )
        row["few"] = len(members) < FEW_SENTENCES
        rows.append(row)
    return rows
