"""Metrics: the table of corpus metrics and sacreBLEU scores (scores.py), bootstrap intervals and calibrated paired
tests (significance.py), scores by source length (lengths.py), retention over input length (retention.py), retention
at matched k = 1 quality over training (trajectory.py), the segment-alignment score of attention (alignment.py).
Every result is a dataclass (attribute access; `.to_dict()` where it is written as JSON)."""

from nmt.metrics.lengths import (
    DEFAULT_EDGES,
    FEW_SENTENCES,
    LengthRow,
    PairedBucket,
    bleu_by_length,
    paired_bootstrap_by_length,
)
from nmt.metrics.scores import METRICS, CorpusScores, LengthRatio, MetricSpec, corpus_score, corpus_scores
from nmt.metrics.significance import (
    MeanTest,
    PairedTest,
    RatioTest,
    bootstrap_interval,
    paired_bootstrap,
    paired_mean_bootstrap,
    ratio_bootstrap,
)

__all__ = ["DEFAULT_EDGES", "FEW_SENTENCES", "METRICS", "CorpusScores", "LengthRatio", "LengthRow", "MeanTest",
           "MetricSpec", "PairedBucket", "PairedTest", "RatioTest", "bleu_by_length", "bootstrap_interval",
           "corpus_score", "corpus_scores", "paired_bootstrap", "paired_bootstrap_by_length", "paired_mean_bootstrap",
           "ratio_bootstrap"]
