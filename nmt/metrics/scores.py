"""Corpus metrics with sacreBLEU and the per-sentence statistics that resampling needs. `METRICS` is the one table
of corpus metrics (BLEU, chrF, TER, lowercased BLEU): how each scores a corpus and where it is reported.

Every score comes from sacreBLEU's own metric classes on detokenized text against raw references, so the
numbers and signatures match the `sacrebleu` command line. Resampling works on sacreBLEU's per-sentence
sufficient statistics (n-gram match counts), the way `sacrebleu --paired-bs` does, so a bootstrap sample
costs one score computation instead of a re-tokenization of the corpus. This is the only module that uses
sacreBLEU's private methods (pinned by the sacrebleu version bound in pyproject.toml).

References come one per sentence: a string, or a tuple of several references of that sentence (`References`),
so selecting sentences (a length bucket, a resample) is indexing either way. With several, every metric scores
against all of them as sacreBLEU does (`sacrebleu ref1 ref2 -i hyp`: BLEU clips n-gram counts by the most
frequent in any one reference and takes the closest reference length, chrF keeps each sentence's best-matching
reference, TER its fewest edits), and the per-sentence statistics still add up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from functools import partial
from typing import Any

import numpy as np
from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.metrics.base import Metric

from nmt.errors import NMTError
from nmt.io import Record


@dataclass(frozen=True)
class MetricSpec:
    """One corpus metric: how it is computed, and where it is shown. Everything that reports corpus scores
    iterates over `METRICS` (the evaluation report and its `nmt-evaluate` print, the TensorBoard scalars,
    validation during training and its HParams table), so a metric is added there and in `CorpusScores`."""

    name: str  # its key in CorpusScores, metrics.json and the TensorBoard tags
    column: str  # its column in report.md, and its label in the console lines
    scorer: Callable[[], Metric]  # the sacreBLEU metric that scores a corpus (and gives the signature)
    per_sentence: bool = False  # sentence statistics that add up: bootstrap intervals and paired tests resample them
    tensorboard: bool = True  # nmt-evaluate logs it as eval/<split>/<system>/<name>
    validate: bool = False  # computed at every validation during training, logged as valid/<name> (and HParams)
    sacrebleu: str | None = None  # its name for `sacrebleu -m`, in the report's rescoring note (None: not one)

    @property
    def valid_tag(self) -> str:
        """Its TensorBoard tag during training."""
        return f"valid/{self.name}"

    def eval_tag(self, split: str, system: str) -> str:
        """Its TensorBoard tag in `nmt-evaluate`."""
        return f"eval/{split}/{system}/{self.name}"


# The table of corpus metrics, in the order of the report's columns.
METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    MetricSpec("bleu", "BLEU", BLEU, per_sentence=True, validate=True, sacrebleu="bleu"),  # cased, 13a
    MetricSpec("chrf", "chrF", CHRF, per_sentence=True, validate=True, sacrebleu="chrf"),
    # chrF++: character n-grams plus word unigrams and bigrams (Popović 2017; sacrebleu -m chrf --chrf-word-order 2)
    MetricSpec("chrfpp", "chrF++", partial(CHRF, word_order=2), per_sentence=True),
    MetricSpec("ter", "TER", TER, sacrebleu="ter"),
    MetricSpec("bleu_lc", "BLEU (lowercased)", partial(BLEU, lowercase=True), tensorboard=False),
)}
VALIDATED = [m for m in METRICS.values() if m.validate]  # what validation during training computes
# Metrics a model scores segment by segment (COMET, nmt/metrics/comet.py): no sacreBLEU scorer, the corpus score is
# the mean of the segment scores, and their per-sentence statistics are `segment_stats`.
SEGMENT_METRICS = ("comet",)

# A corpus's references, one entry per sentence: its reference (str) or its several references (tuple[str, ...],
# the same number for every sentence).
References = Sequence[str] | Sequence[tuple[str, ...]]


def reference_streams(refs: References) -> list[list[str]]:
    """sacreBLEU's layout of `refs`: (num_refs, num_sentences), one stream per reference."""
    if not refs or isinstance(refs[0], str):
        return [list(refs)]
    counts = sorted({len(r) for r in refs})
    if len(counts) != 1 or counts[0] < 1:
        raise NMTError(f"every sentence needs as many references as the others, got {counts} references a sentence")
    return [list(stream) for stream in zip(*refs, strict=True)]


@dataclass
class CorpusScores(Record):
    """Every metric of `METRICS` on one corpus (a field each, in its name), with sacreBLEU's signatures.

    metrics.json holds it as it is: {"num_sentences", "signatures": {metric: signature}, "bleu", "bleu_detail"
    (sacreBLEU's one-line BLEU summary: n-gram precisions, brevity penalty), "chrf", "ter", "bleu_lc", "chrfpp"}.
    A metric added after a report was written is None when that report is read back, and stays out of its file
    and its tables (`has`)."""

    num_sentences: int
    signatures: dict[str, str]
    bleu: float
    bleu_detail: str
    chrf: float
    ter: float
    bleu_lc: float
    chrfpp: float | None = None

    def score(self, metric: str) -> float:
        """The score of `metric` (a name in METRICS)."""
        value = getattr(self, metric)
        if value is None:
            raise NMTError(f"this report has no {metric} score (written before {metric} was computed)")
        return float(value)

    def has(self, metric: str) -> bool:
        return getattr(self, metric) is not None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items() if v is not None}


def _check_table() -> None:
    """Every metric of the table has its field in CorpusScores and every score field its metric."""
    scored = {f.name for f in fields(CorpusScores)} - {"num_sentences", "signatures", "bleu_detail"}
    if scored != set(METRICS):
        raise TypeError(f"METRICS {sorted(METRICS)} and the score fields of CorpusScores {sorted(scored)} differ")


_check_table()


def check_pair(hyps: Sequence[str], refs: References) -> None:
    if len(hyps) != len(refs):
        raise NMTError(f"{len(hyps)} hypotheses but {len(refs)} references: line counts must match")
    if not hyps:
        raise NMTError("nothing to score: no sentences")


def corpus_scores(hyps: Sequence[str], refs: References) -> CorpusScores:
    """Every metric of `METRICS` of detokenized `hyps` against their references (one or several each)."""
    check_pair(hyps, refs)
    hyps, ref_streams = list(hyps), reference_streams(refs)
    values: dict[str, float] = {}
    signatures: dict[str, str] = {}
    detail = ""
    for name, spec in METRICS.items():
        metric = spec.scorer()
        score = metric.corpus_score(hyps, ref_streams)
        values[name] = float(score.score)
        signatures[name] = str(metric.get_signature())
        if name == "bleu":
            detail = str(score)
    return CorpusScores(num_sentences=len(hyps), signatures=signatures, bleu_detail=detail, **values)


def resampled_metric(metric: str) -> Metric:
    """The sacreBLEU scorer of `metric`, whose per-sentence statistics add up (`MetricSpec.per_sentence`)."""
    spec = METRICS.get(metric)
    if spec is None or not spec.per_sentence:
        raise NMTError(f"{metric} has no per-sentence statistics to resample; choose from "
                       f"{', '.join(m.name for m in METRICS.values() if m.per_sentence)}")
    return spec.scorer()


def corpus_score(hyps: Sequence[str], refs: References, metric: str = "bleu") -> float:
    """One corpus-level score of a metric of `METRICS`."""
    check_pair(hyps, refs)
    if metric not in METRICS:
        raise NMTError(f"unknown metric {metric}; choose from {', '.join(METRICS)}")
    return float(METRICS[metric].scorer().corpus_score(list(hyps), reference_streams(refs)).score)


def sentence_stats(hyps: Sequence[str], refs: References, metric: str = "bleu") -> np.ndarray:
    """(num_sentences, num_stats) float32 sufficient statistics; they add up over sentences, so the statistics
    of any set of sentences (a resample, a group) are a sum of rows."""
    check_pair(hyps, refs)
    stats = resampled_metric(metric)._extract_corpus_statistics(list(hyps), reference_streams(refs))
    return np.asarray(stats, dtype="float32")


def segment_stats(scores: Sequence[float]) -> np.ndarray:
    """(num_sentences, 2) float64 statistics of a segment-level metric (`SEGMENT_METRICS`): (score, 1) a sentence,
    so that they add up like sacreBLEU's counts: a sum is (total, count), and its score the mean."""
    values = np.asarray(scores, dtype=np.float64)
    return np.stack([values, np.ones_like(values)], axis=1)


def score_from_stats(stats: np.ndarray, metric: str = "bleu") -> float:
    """Corpus score of summed statistics (num_stats,)."""
    if metric in SEGMENT_METRICS:
        return float(stats[0] / stats[1])
    # Python floats: the counts are exact integers, and float32 arithmetic would round the score.
    return float(resampled_metric(metric)._compute_score_from_stats([float(x) for x in stats]).score)


@dataclass
class LengthRatio(Record):
    """Length ratio (hypothesis / reference tokens, sacreBLEU's 13a tokens) and BLEU's brevity penalty."""

    ratio: float
    brevity_penalty: float


def brevity_penalty(stats: np.ndarray) -> np.ndarray:
    """BLEU's brevity penalty of summed BLEU statistics (..., num_stats) -> (...): 1 for a hypothesis at least as
    long as its reference, exp(1 - ref / hyp) for a shorter one, 0 for an empty one (or no reference)."""
    hyp_len = np.asarray(stats[..., 0], dtype=np.float64)  # sacreBLEU's BLEU statistics start with both lengths
    ref_len = np.asarray(stats[..., 1], dtype=np.float64)
    with np.errstate(divide="ignore"):
        shorter = np.exp(1.0 - ref_len / np.where(hyp_len > 0, hyp_len, 1.0))
    return np.where(ref_len <= 0, 0.0, np.where(hyp_len >= ref_len, 1.0, np.where(hyp_len > 0, shorter, 0.0)))


def length_stats(stats: np.ndarray) -> LengthRatio:
    """Length ratio and brevity penalty of summed BLEU statistics (num_stats,): a ratio under 1 with a falling
    penalty tells early stopping from lost content."""
    hyp_len, ref_len = float(stats[0]), float(stats[1])
    return LengthRatio(ratio=hyp_len / ref_len if ref_len else 0.0, brevity_penalty=float(brevity_penalty(stats)))


def resampled_scores(stats: np.ndarray, idxs: np.ndarray, metric: str = "bleu") -> np.ndarray:
    """Score of each resample: stats (num_rows, num_stats), idxs (num_samples, num_rows) row indices of each
    sample -> (num_samples,). The statistics are integer counts, so float32 sums are exact and match sacreBLEU's
    own resampling bit for bit. A segment-level metric's score is the mean of the resampled segment scores."""
    if metric in SEGMENT_METRICS:
        sums = stats[idxs].sum(axis=1)  # (num_samples, 2): (total, count)
        return sums[:, 0] / sums[:, 1]
    scorer = resampled_metric(metric)
    scores = np.empty(len(idxs), dtype=np.float64)
    chunk = max(1, 2_000_000 // max(1, stats.shape[0] * stats.shape[1]))  # bound the gathered array's size
    for start in range(0, len(idxs), chunk):
        sums = stats[idxs[start : start + chunk]].sum(axis=1)
        for j, s in enumerate(sums):
            scores[start + j] = scorer._compute_score_from_stats(list(s)).score
    return scores
