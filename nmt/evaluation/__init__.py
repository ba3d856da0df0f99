"""Evaluation: sacreBLEU metrics, BLEU by source length, paired bootstrap, plots and reports."""

from nmt.evaluation.metrics import (
    bleu_by_length,
    corpus_scores,
    paired_bootstrap,
    paired_bootstrap_by_length,
)

__all__ = ["bleu_by_length", "corpus_scores", "paired_bootstrap", "paired_bootstrap_by_length"]
