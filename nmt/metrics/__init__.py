"""Metrics: sacreBLEU scores (scores.py), bootstrap intervals and calibrated paired tests (significance.py),
scores by source length (lengths.py)."""

from nmt.metrics.lengths import DEFAULT_EDGES, FEW_SENTENCES, bleu_by_length, paired_bootstrap_by_length
from nmt.metrics.scores import corpus_score, corpus_scores
from nmt.metrics.significance import bootstrap_interval, paired_bootstrap, paired_mean_bootstrap

__all__ = ["DEFAULT_EDGES", "FEW_SENTENCES", "bleu_by_length", "bootstrap_interval", "corpus_score",
           "corpus_scores", "paired_bootstrap", "paired_bootstrap_by_length", "paired_mean_bootstrap"]
