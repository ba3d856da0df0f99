"""Scores by source length (the view of Bahdanau et al. 2015, Fig. 2): length buckets, BLEU per bucket with
bootstrap intervals, paired tests per bucket, and the rise of reference NLL with length (`nll_rise_by_length`).
Buckets go by the source, so a sentence with several references (nmt.metrics.scores.References) falls in one
bucket and is scored there against all of them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self

import numpy as np

from nmt.errors import NMTError
from nmt.io import Record, fields_from_json
from nmt.metrics.scores import References, check_pair, corpus_score
from nmt.metrics.significance import (
    BOOTSTRAP_SEED,
    PairedTest,
    bootstrap_indices,
    bootstrap_interval,
    centred_p_value,
    paired_bootstrap,
    paired_stats_test,
    percentile_interval,
)

DEFAULT_EDGES: tuple[int, ...] = (0, 10, 20, 30, 40, 50)
# Below this many sentences a bucket's BLEU swings by several points between resamples.
FEW_SENTENCES = 50


@dataclass
class LengthRow(Record):
    """One source-length bucket of one system (`bleu_by_length`): its sentences' BLEU and chrF (None when the
    bucket is empty), BLEU's 95% bootstrap interval (None when empty or not resampled), and the mean of their COMET
    segment scores when COMET was computed (left out of the file otherwise)."""

    label: str  # "10-20", "50+"
    lo: int
    hi: int | None  # None for the last bucket
    count: int
    bleu: float | None
    chrf: float | None
    bleu_ci: list[float] | None
    few: bool  # count < FEW_SENTENCES: a noisy BLEU
    comet: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items() if k != "comet" or v is not None}


@dataclass
class PairedBucket(Record):
    """`paired_bootstrap` within one source-length bucket; `test` is None for an empty bucket.

    Written flat, as it always was: {"label", "lo", "hi", "count", the test's fields (none when empty), "few"}."""

    label: str
    lo: int
    hi: int | None
    count: int
    few: bool
    test: PairedTest | None = None

    def to_dict(self) -> dict[str, Any]:
        head = {"label": self.label, "lo": self.lo, "hi": self.hi, "count": self.count}
        return head | (self.test.to_dict() if self.test is not None else {}) | {"few": self.few}

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        row = fields_from_json(cls, data)
        row.test = PairedTest.from_dict(data) if "difference" in data else None
        return row


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
    refs: References,
    edges: Sequence[int] = DEFAULT_EDGES,
    n_samples: int = 1000,
    seed: int = BOOTSTRAP_SEED,
    comet: Sequence[float] | None = None,
) -> list[LengthRow]:
    """BLEU and chrF per source-length bucket (the view of Bahdanau et al. 2015, Fig. 2): one row per bucket,
    empty ones included. `n_samples=0` skips the intervals. `comet`: the COMET segment scores (num_sentences,),
    whose mean in each bucket is its row's `comet`."""
    check_pair(hyps, refs)
    if len(sources) != len(hyps):
        raise NMTError(f"{len(sources)} sources but {len(hyps)} hypotheses: line counts must match")
    which = assign_buckets(sources, edges)
    rows = []
    for b, (lo, hi) in enumerate(length_buckets(edges)):
        members = [i for i, w in enumerate(which) if w == b]
        row = LengthRow(label=bucket_label(lo, hi), lo=lo, hi=hi, count=len(members), bleu=None, chrf=None,
                        bleu_ci=None, few=len(members) < FEW_SENTENCES)
        if members:
            bh, br = [hyps[i] for i in members], [refs[i] for i in members]
            row.bleu = corpus_score(bh, br, "bleu")
            row.chrf = corpus_score(bh, br, "chrf")
            if n_samples > 0:
                row.bleu_ci = list(bootstrap_interval(bh, br, n_samples, seed))
            if comet is not None:
                row.comet = float(np.mean([comet[i] for i in members]))
        rows.append(row)
    return rows


def paired_bootstrap_by_length(
    sources: Sequence[str],
    hyps: Sequence[str],
    base_hyps: Sequence[str],
    refs: References,
    edges: Sequence[int] = DEFAULT_EDGES,
    n_samples: int = 1000,
    seed: int = BOOTSTRAP_SEED,
) -> list[PairedBucket]:
    """`paired_bootstrap` within each source-length bucket; empty buckets get count 0 and no test."""
    if not (len(sources) == len(hyps) == len(base_hyps) == len(refs)):
        raise NMTError(
            f"line counts differ: {len(sources)} sources, {len(hyps)} hypotheses, "
            f"{len(base_hyps)} baseline hypotheses, {len(refs)} references"
        )
    return paired_tests_by_length(sources, lambda m: paired_bootstrap(
        [hyps[i] for i in m], [base_hyps[i] for i in m], [refs[i] for i in m], n_samples, seed), edges)


def paired_stats_by_length(
    sources: Sequence[str],
    sys_stats: np.ndarray,
    base_stats: np.ndarray,
    edges: Sequence[int] = DEFAULT_EDGES,
    n_samples: int = 1000,
    seed: int = BOOTSTRAP_SEED,
    metric: str = "comet",
) -> list[PairedBucket]:
    """`paired_stats_test` within each source-length bucket, from both systems' per-sentence statistics
    (num_sentences, num_stats), e.g. COMET's `segment_stats`."""
    if not len(sources) == len(sys_stats) == len(base_stats):
        raise NMTError(f"line counts differ: {len(sources)} sources, {len(sys_stats)} and {len(base_stats)} "
                       f"segment scores")
    return paired_tests_by_length(sources, lambda m: paired_stats_test(
        sys_stats[m], base_stats[m], n_samples, seed, metric), edges)


def paired_tests_by_length(sources: Sequence[str], test: Callable[[list[int]], PairedTest],
                           edges: Sequence[int] = DEFAULT_EDGES) -> list[PairedBucket]:
    """One row per source-length bucket, `test(members)` of its sentence indices; an empty bucket: no test."""
    which = assign_buckets(sources, edges)
    rows = []
    for b, (lo, hi) in enumerate(length_buckets(edges)):
        members = [i for i, w in enumerate(which) if w == b]
        rows.append(PairedBucket(label=bucket_label(lo, hi), lo=lo, hi=hi, count=len(members),
                                 few=len(members) < FEW_SENTENCES, test=test(members) if members else None))
    return rows


@dataclass
class NllRise(Record):
    """One source-length bucket: how much each of two systems' per-token reference NLL rises over the shortest
    bucket's, and `baseline` - `system` in that rise (> 0: the baseline degrades more with length), with a 95%
    interval and the one-sided p-value of "> 0" from a bootstrap over sentences. None where a bucket is empty."""

    label: str
    count: int
    system: float | None  # nats per token, this bucket - the shortest
    baseline: float | None
    difference: float | None
    ci: list[float]
    p_value: float | None


def nll_rise_by_length(system: Sequence[np.ndarray], baseline: Sequence[np.ndarray], sources: Sequence[str],
                       edges: Sequence[int] = DEFAULT_EDGES, n_samples: int = 1000, seed: int = BOOTSTRAP_SEED
                       ) -> list[NllRise]:
    """Per source-length bucket, the rise of per-token NLL over the shortest bucket for both systems and their
    difference, from the references' token log-probabilities (nmt.evaluation.scoring.ReferenceScores
    .token_log_probs: one (T_i,) array per sentence) of the same sentences. A bootstrap resamples the sentences,
    the same draw for both systems."""
    if not len(system) == len(baseline) == len(sources):
        raise NMTError(f"NLL by length needs one entry per sentence, got {len(system)}, {len(baseline)} and "
                       f"{len(sources)}")
    which = np.array(assign_buckets(sources, edges))  # (N,)
    tokens = np.array([len(lp) for lp in system], dtype=float)  # (N,)
    nll = {name: np.array([-float(lp.sum()) for lp in lps]) for name, lps in (("s", system), ("b", baseline))}
    idx = bootstrap_indices(len(sources), n_samples, seed)  # (n_samples, N)
    buckets = length_buckets(edges)

    def per_bucket(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """(..., buckets) token-weighted mean NLL of the sentences `rows` (..., N) select."""
        b, v, t = which[rows], values[rows], tokens[rows]
        out = np.full(b.shape[:-1] + (len(buckets),), np.nan)
        for k in range(len(buckets)):
            mask = b == k
            total = (t * mask).sum(-1)
            out[..., k] = np.divide((v * mask).sum(-1), total, out=np.full(total.shape, np.nan), where=total > 0)
        return out

    everything = np.arange(len(sources))
    observed = {n: per_bucket(v, everything) for n, v in nll.items()}  # (buckets,)
    reps = {n: per_bucket(v, idx) for n, v in nll.items()}  # (n_samples, buckets)
    rows = []
    for k, (lo, hi) in enumerate(buckets):
        count = int((which == k).sum())
        rise = {n: observed[n][k] - observed[n][0] for n in nll}
        if count == 0 or np.isnan(rise["s"]) or np.isnan(rise["b"]):
            rows.append(NllRise(bucket_label(lo, hi), count, None, None, None, [], None))
            continue
        if k == 0:  # the reference bucket: no rise by definition, nothing to test
            rows.append(NllRise(bucket_label(lo, hi), count, 0.0, 0.0, 0.0, [], None))
            continue
        diff = (reps["b"][:, k] - reps["b"][:, 0]) - (reps["s"][:, k] - reps["s"][:, 0])  # (n_samples,)
        diff = diff[~np.isnan(diff)]
        value = float(rise["b"] - rise["s"])
        rows.append(NllRise(bucket_label(lo, hi), count, float(rise["s"]), float(rise["b"]), value,
                            percentile_interval(diff), centred_p_value(diff, value, "greater")))
    return rows
