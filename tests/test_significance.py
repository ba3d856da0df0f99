"""Calibration of the paired significance test on simulated systems of equal quality."""

from __future__ import annotations

import numpy as np
import pytest

from nmt.metrics.scores import resampled_scores, sentence_stats
from nmt.metrics.significance import (
    MIN_TEST_ITEMS,
    bootstrap_indices,
    centred_p_value,
    paired_bootstrap,
    paired_mean_bootstrap,
)

VOCAB = [f"w{i}" for i in range(300)]


def _equal_systems(rng: np.random.Generator, n_sentences: int) -> tuple[list[str], list[str], list[str]]:
    """References and two systems that corrupt each reference word with the same probability, independently."""
    refs = [" ".join(VOCAB[i] for i in rng.integers(0, len(VOCAB), rng.integers(5, 25))) for _ in range(n_sentences)]

    def noisy(ref: str) -> str:
        return " ".join(w if rng.random() > 0.3 else VOCAB[rng.integers(len(VOCAB))] for w in ref.split())

    return refs, [noisy(r) for r in refs], [noisy(r) for r in refs]


@pytest.mark.slow
def test_false_positive_rate_on_equal_systems_is_at_most_alpha():
    """At alpha = 0.05 the test must flag at most 6% of 400 comparisons between equally good systems; the
    statistic sacreBLEU uses (|d*| centred after taking absolute values) flags far more on the same pairs."""
    rng = np.random.default_rng(2024)
    ours = sacrebleu_style = 0
    pairs = 400
    for k in range(pairs):
        refs, a, b = _equal_systems(rng, 60)
        result = paired_bootstrap(a, b, refs, n_samples=200, seed=k)
        ours += result["p_value"] < 0.05
        idx = bootstrap_indices(len(refs), 200, k)
        d = np.abs(resampled_scores(sentence_stats(a, refs), idx) - resampled_scores(sentence_stats(b, refs), idx))
        sacrebleu_style += ((np.sum(d - d.mean() > abs(result["difference"])) + 1) / 201) < 0.05
    assert ours / pairs <= 0.06
    assert sacrebleu_style / pairs > 0.08  # the simulation is sensitive enough to see the miscalibration


def test_a_real_difference_is_detected():
    rng = np.random.default_rng(7)
    refs, a, _ = _equal_systems(rng, 200)
    result = paired_bootstrap(list(refs), a, refs, n_samples=300)  # a perfect system against a noisy one
    assert result["difference"] > 20 and result["p_value"] < 0.01
    assert result["difference_ci"][0] > 0


def test_no_p_value_below_the_minimum_and_identical_systems():
    refs = ["a b c d", "e f g h"] * (MIN_TEST_ITEMS // 2 - 1)
    hyps = ["a b c x", "e f g h"] * (MIN_TEST_ITEMS // 2 - 1)
    assert paired_bootstrap(hyps, refs, refs, n_samples=50)["p_value"] is None
    assert paired_bootstrap(refs * 2, refs * 2, refs * 2, n_samples=50)["p_value"] == 1.0
    assert paired_mean_bootstrap([1.0] * 5, [0.0] * 5)["p_value"] is None


def test_centred_p_value_sides():
    replicates = np.random.default_rng(0).normal(1.0, 1.0, 5000)  # observed 1.0 with standard error 1
    two = centred_p_value(replicates, 1.0)
    greater = centred_p_value(replicates, 1.0, alternative="greater")
    assert two == pytest.approx(0.32, abs=0.03) and greater == pytest.approx(0.16, abs=0.02)
    assert centred_p_value(replicates, -1.0, alternative="greater") > 0.8
