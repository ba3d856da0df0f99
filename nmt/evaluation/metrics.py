"""Corpus metrics with sacreBLEU: BLEU / chrF / TER, BLEU by source length, bootstrap intervals, paired tests.

Every score comes from sacreBLEU's own metric classes on detokenized text against raw references, so the
numbers and signatures match the `sacrebleu` command line. Resampling works on sacreBLEU's per-sentence
sufficient statistics (n-gram match counts), the way `sacrebleu --paired-bs` does, so a bootstrap sample
costs one score computation instead of a re-tokenization of the corpus.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric
from sacrebleu.significance import _compute_p_value

from nmt.errors import NMTError

DEFAULT_EDGES: tuple[int, ...] = (0, 10, 20, 30, 40, 50)
# Below this many sentences a bucket's BLEU swings by several points between resamples.
FEW_SENTENCES = 50
# sacreBLEU's own default seed (SACREBLEU_SEED), so our intervals reproduce `sacrebleu --paired-bs`.
BOOTSTRAP_SEED = 12345

_METRICS = {"bleu": BLEU, "chrf": CHRF}


def _check_pair(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise NMTError(f"{len(hyps)} hypotheses but {len(refs)} references: line counts must match")
    if not hyps:
        raise NMTError("nothing to score: no sentences")


def corpus_scores(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Any]:
    """Cased BLEU (13a), chrF, TER and lowercased BLEU of detokenized `hyps` against one reference each.

    Returns {"bleu", "chrf", "ter", "bleu_lc": float, "bleu_detail": sacreBLEU's one-line BLEU summary
    (n-gram precisions, brevity penalty), "num_sentences": int, "signatures": {metric: signature}}.
    """
    _check_pair(hyps, refs)
    hyps, ref_streams = list(hyps), [list(refs)]
    metrics: dict[str, Metric] = {
        "bleu": BLEU(),
        "chrf": CHRF(),
        "ter": TER(),
        "bleu_lc": BLEU(lowercase=True),
    }
    out: dict[str, Any] = {"num_sentences": len(hyps), "signatures": {}}
    for name, metric in metrics.items():
        score = metric.corpus_score(hyps, ref_streams)
        out[name] = float(score.score)
        out["signatures"][name] = str(metric.get_signature())
        if name == "bleu":
            out["bleu_detail"] = str(score)
    return out


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


def resampled_scores(metric: Metric, stats: np.ndarray, idxs: np.ndarray) -> np.ndarray:
    """Metric score of each bootstrap sample.

    stats: (num_sentences, num_stats) sufficient statistics; idxs: (num_samples, num_sentences) sentence
    indices of each sample. Returns (num_samples,). The statistics are integer counts, so float32 sums are
    exact and match sacreBLEU's own resampling bit for bit.
    """
    scores = np.empty(len(idxs), dtype=np.float64)
    chunk = max(1, 2_000_000 // max(1, stats.shape[0] * stats.shape[1]))  # bound the gathered array's size
    for start in range(0, len(idxs), chunk):
        sums = stats[idxs[start : start + chunk]].sum(axis=1)
        for j, s in enumerate(sums):
            scores[start + j] = metric._compute_score_from_stats(s).score
    return scores


def sentence_stats(metric: Metric, hyps: Sequence[str], refs: Sequence[str]) -> tuple[float, np.ndarray]:
    """Corpus score (from the exact integer counts) and the (num_sentences, num_stats) float32 statistics."""
    stats = metric._extract_corpus_statistics(list(hyps), [list(refs)])
    return float(metric._aggregate_and_compute(stats).score), np.asarray(stats, dtype="float32")


def bootstrap_interval(
    hyps: Sequence[str],
    refs: Sequence[str],
    n_samples: int = 1000,
    seed: int = BOOTSTRAP_SEED,
    metric: str = "bleu",
) -> tuple[float, float]:
    """95% percentile interval of the corpus score over `n_samples` resamplings of the sentences."""
    _check_pair(hyps, refs)
    scorer = _METRICS[metric]()
    _, stats = sentence_stats(scorer, hyps, refs)
    rng = np.random.default_rng(seed)
    idxs = rng.choice(len(hyps), size=(n_samples, len(hyps)), replace=True)
    scores = resampled_scores(scorer, stats, idxs)
    lo, hi = np.percentile(scores, [2.5, 97.5])
    return float(lo), float(hi)


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
    _check_pair(hyps, refs)
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
            row["bleu"] = float(BLEU().corpus_score(bh, [br]).score)
            row["chrf"] = float(CHRF().corpus_score(bh, [br]).score)
            if n_samples > 0:
                row["bleu_ci"] = list(bootstrap_interval(bh, br, n_samples, seed))
        rows.append(row)
    return rows


def paired_bootstrap(
    hyps: Sequence[str],
    base_hyps: Sequence[str],
    refs: Sequence[str],
    n_samples: int = 1000,
    seed: int = BOOTSTRAP_SEED,
    metric: str = "bleu",
) -> dict[str, Any]:
    """Paired bootstrap resampling (Koehn 2004) of a system against a baseline on the same references.

    Follows sacreBLEU's `--paired-bs` test (same resampling indices for a seed, same p-value statistic),
    and adds the 95% interval of the difference system - baseline from the same samples.
    Returns {"metric", "system", "baseline", "difference", "difference_ci": [lo, hi], "p_value",
    "system_ci", "baseline_ci", "n_samples", "seed", "count"}.
    """
    _check_pair(hyps, refs)
    _check_pair(base_hyps, refs)
    scorer = _METRICS[metric]()
    sys_score, sys_stats = sentence_stats(scorer, hyps, refs)
    base_score, base_stats = sentence_stats(scorer, base_hyps, refs)

    rng = np.random.default_rng(seed)
    idxs = rng.choice(len(hyps), size=(n_samples, len(hyps)), replace=True)
    sys_samples = resampled_scores(scorer, sys_stats, idxs)
    base_samples = resampled_scores(scorer, base_stats, idxs)

    observed = abs(sys_score - base_score)
    sample_diffs = np.abs(sys_samples - base_samples)
    # sacreBLEU counts samples strictly above the observed difference, which scores a system against an
    # identical copy of itself as p = 1/(n+1) "significant". Equal outputs are no evidence of a difference.
    if np.array_equal(sys_stats, base_stats):
        p_value = 1.0
    else:
        p_value = float(_compute_p_value(sample_diffs - sample_diffs.mean(), observed))
    diffs = sys_samples - base_samples
    return {
        "metric": metric,
        "count": len(hyps),
        "system": float(sys_score),
        "baseline": float(base_score),
        "difference": float(sys_score - base_score),
        "difference_ci": [float(x) for x in np.percentile(diffs, [2.5, 97.5])],
        "p_value": p_value,
        "system_ci": [float(x) for x in np.percentile(sys_samples, [2.5, 97.5])],
        "baseline_ci": [float(x) for x in np.percentile(base_samples, [2.5, 97.5])],
        "n_samples": n_samples,
        "seed": seed,
    }


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
