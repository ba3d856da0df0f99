"""Corpus metrics with sacreBLEU (BLEU / chrF / TER) and the per-sentence statistics that resampling needs.

Every score comes from sacreBLEU's own metric classes on detokenized text against raw references, so the
numbers and signatures match the `sacrebleu` command line. Resampling works on sacreBLEU's per-sentence
sufficient statistics (n-gram match counts), the way `sacrebleu --paired-bs` does, so a bootstrap sample
costs one score computation instead of a re-tokenization of the corpus. This is the only module that uses
sacreBLEU's private methods (pinned by the sacrebleu version bound in pyproject.toml).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric

from nmt.errors import NMTError

METRICS = {"bleu": BLEU, "chrf": CHRF}


def check_pair(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise NMTError(f"{len(hyps)} hypotheses but {len(refs)} references: line counts must match")
    if not hyps:
        raise NMTError("nothing to score: no sentences")


def corpus_scores(hyps: Sequence[str], refs: Sequence[str]) -> dict[str, Any]:
    """Cased BLEU (13a), chrF, TER and lowercased BLEU of detokenized `hyps` against one reference each.

    Returns {"bleu", "chrf", "ter", "bleu_lc": float, "bleu_detail": sacreBLEU's one-line BLEU summary
    (n-gram precisions, brevity penalty), "num_sentences": int, "signatures": {metric: signature}}.
    """
    check_pair(hyps, refs)
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


def corpus_score(hyps: Sequence[str], refs: Sequence[str], metric: str = "bleu") -> float:
    """One corpus-level score (cased BLEU or chrF)."""
    check_pair(hyps, refs)
    return float(METRICS[metric]().corpus_score(list(hyps), [list(refs)]).score)


def sentence_stats(hyps: Sequence[str], refs: Sequence[str], metric: str = "bleu") -> np.ndarray:
    """(num_sentences, num_stats) float32 sufficient statistics; they add up over sentences, so the statistics
    of any set of sentences (a resample, a group) are a sum of rows."""
    check_pair(hyps, refs)
    stats = METRICS[metric]()._extract_corpus_statistics(list(hyps), [list(refs)])
    return np.asarray(stats, dtype="float32")


def score_from_stats(stats: np.ndarray, metric: str = "bleu") -> float:
    """Corpus score of summed statistics (num_stats,)."""
    # Python floats: the counts are exact integers, and float32 arithmetic would round the score.
    return float(METRICS[metric]()._compute_score_from_stats([float(x) for x in stats]).score)


def length_stats(stats: np.ndarray) -> dict[str, float]:
    """Length ratio (hypothesis / reference tokens, sacreBLEU's 13a tokens) and brevity penalty of summed BLEU
    statistics (num_stats,): a ratio under 1 with a falling penalty tells early stopping from lost content."""
    hyp_len, ref_len = float(stats[0]), float(stats[1])  # sacreBLEU's BLEU statistics start with both lengths
    ratio = hyp_len / ref_len if ref_len else 0.0
    penalty = 1.0 if ratio >= 1.0 else (0.0 if ratio == 0.0 else math.exp(1.0 - 1.0 / ratio))
    return {"ratio": ratio, "brevity_penalty": penalty}


def resampled_scores(stats: np.ndarray, idxs: np.ndarray, metric: str = "bleu") -> np.ndarray:
    """Score of each resample: stats (num_rows, num_stats), idxs (num_samples, num_rows) row indices of each
    sample -> (num_samples,). The statistics are integer counts, so float32 sums are exact and match sacreBLEU's
    own resampling bit for bit."""
    scorer = METRICS[metric]()
    scores = np.empty(len(idxs), dtype=np.float64)
    chunk = max(1, 2_000_000 // max(1, stats.shape[0] * stats.shape[1]))  # bound the gathered array's size
    for start in range(0, len(idxs), chunk):
        sums = stats[idxs[start : start + chunk]].sum(axis=1)
        for j, s in enumerate(sums):
            scores[start + j] = scorer._compute_score_from_stats(list(s)).score
    return scores
