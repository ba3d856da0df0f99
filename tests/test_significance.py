"""Calibration of the significance tests on simulated systems of equal quality: each false-positive rate at
alpha = 0.05 must lie between 2% and 6% (too many flags is a broken test, too few an over-conservative one)."""

from __future__ import annotations

import numpy as np
import pytest

from nmt.errors import NMTError
from nmt.metrics.scores import resampled_scores, segment_stats, sentence_stats
from nmt.metrics.significance import (
    MIN_TEST_ITEMS,
    bootstrap_indices,
    centred_p_value,
    paired_bootstrap,
    paired_mean_bootstrap,
    paired_stats_test,
    ratio_bootstrap,
)

VOCAB = [f"w{i}" for i in range(300)]
ALPHA = 0.05
# The band a calibrated test's false-positive rate must fall in at ALPHA, from both sides.
CALIBRATED = (0.02, 0.06)


def _equal_systems(rng: np.random.Generator, n_sentences: int) -> tuple[list[str], list[str], list[str]]:
    """References and two systems that corrupt each reference word with the same probability, independently."""
    refs = [" ".join(VOCAB[i] for i in rng.integers(0, len(VOCAB), rng.integers(5, 25))) for _ in range(n_sentences)]

    def noisy(ref: str) -> str:
        return " ".join(w if rng.random() > 0.3 else VOCAB[rng.integers(len(VOCAB))] for w in ref.split())

    return refs, [noisy(r) for r in refs], [noisy(r) for r in refs]


@pytest.mark.slow
def test_false_positive_rate_on_equal_systems_is_about_alpha():
    """At alpha = 0.05 the test must flag between 2% and 6% of 400 comparisons between equally good systems;
    the statistic sacreBLEU uses (|d*| centred after taking absolute values) flags far more on the same pairs."""
    rng = np.random.default_rng(2024)
    ours = sacrebleu_style = 0
    pairs = 400
    for k in range(pairs):
        refs, a, b = _equal_systems(rng, 60)
        result = paired_bootstrap(a, b, refs, n_samples=200, seed=k)
        ours += result.p_value < 0.05
        idx = bootstrap_indices(len(refs), 200, k)
        d = np.abs(resampled_scores(sentence_stats(a, refs), idx) - resampled_scores(sentence_stats(b, refs), idx))
        sacrebleu_style += ((np.sum(d - d.mean() > abs(result.difference)) + 1) / 201) < 0.05
    assert CALIBRATED[0] <= ours / pairs <= CALIBRATED[1]
    assert sacrebleu_style / pairs > 0.08  # the simulation is sensitive enough to see the miscalibration


def test_a_real_difference_is_detected():
    rng = np.random.default_rng(7)
    refs, a, _ = _equal_systems(rng, 200)
    result = paired_bootstrap(list(refs), a, refs, n_samples=300)  # a perfect system against a noisy one
    assert result.difference > 20 and result.p_value < 0.01
    assert result.difference_ci[0] > 0


def test_the_paired_test_of_segment_scores_keeps_its_level_and_tests_their_mean_difference():
    """COMET's segment scores go into the same randomisation test: on 400 pairs of simulated equal systems
    (segment scores sharing each sentence's difficulty) it flags 2-6% at alpha = 0.05, its statistic is the mean
    difference of the segment scores, and a real shift of the mean is found."""
    rng = np.random.default_rng(11)
    flagged, pairs = 0, 400
    for k in range(pairs):
        difficulty = rng.normal(0.6, 0.15, 60)
        a, b = difficulty + rng.normal(0, 0.05, 60), difficulty + rng.normal(0, 0.05, 60)
        test = paired_stats_test(segment_stats(a), segment_stats(b), n_samples=200, seed=k, metric="comet")
        assert test.difference == pytest.approx(np.mean(a - b)) and test.system == pytest.approx(a.mean())
        flagged += test.p_value < ALPHA
    assert CALIBRATED[0] <= flagged / pairs <= CALIBRATED[1]
    better = paired_stats_test(segment_stats(a + 0.03), segment_stats(b), n_samples=200, metric="comet")
    assert better.p_value < 0.01 and better.difference_ci[0] > 0


def test_no_p_value_below_the_minimum_and_identical_systems():
    refs = ["a b c d", "e f g h"] * (MIN_TEST_ITEMS // 2 - 1)
    hyps = ["a b c x", "e f g h"] * (MIN_TEST_ITEMS // 2 - 1)
    assert paired_bootstrap(hyps, refs, refs, n_samples=50).p_value is None
    assert paired_bootstrap(refs * 2, refs * 2, refs * 2, n_samples=50).p_value == 1.0
    assert paired_mean_bootstrap([1.0] * 5, [0.0] * 5).p_value is None


def test_centred_p_value_sides():
    replicates = np.random.default_rng(0).normal(1.0, 1.0, 5000)  # observed 1.0 with standard error 1
    two = centred_p_value(replicates, 1.0)
    greater = centred_p_value(replicates, 1.0, alternative="greater")
    assert two == pytest.approx(0.32, abs=0.03) and greater == pytest.approx(0.16, abs=0.02)
    assert centred_p_value(replicates, -1.0, alternative="greater") > 0.8


def _false_positive_rate(test, draw, pairs: int = 1000, items: int = 200, seed: int = 11) -> float:
    """Share of `pairs` simulated equal systems (`draw(rng, items)` -> two paired lists) that `test` flags at
    ALPHA, with 200 resamples each."""
    rng = np.random.default_rng(seed)
    flagged = 0
    for k in range(pairs):
        a, b = draw(rng, items)
        flagged += test(a, b, 200, seed=k).p_value < ALPHA
    return flagged / pairs


def test_mean_bootstrap_false_positive_rate_is_about_alpha():
    """Per-sentence statistics of two equal systems: a shared sentence effect plus independent noise."""
    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        sentence = rng.normal(0.0, 1.0, n)
        return sentence + rng.normal(0.0, 1.0, n), sentence + rng.normal(0.0, 1.0, n)

    assert CALIBRATED[0] <= _false_positive_rate(paired_mean_bootstrap, draw) <= CALIBRATED[1]


def test_ratio_bootstrap_false_positive_rate_is_about_alpha():
    """Positive, skewed per-sentence statistics (like gradient norms) of two equal systems: a shared
    log-normal sentence scale times independent log-normal noise, so the true ratio of means is 1."""
    def draw(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        sentence = rng.lognormal(0.0, 0.5, n)
        return sentence * rng.lognormal(0.0, 0.3, n), sentence * rng.lognormal(0.0, 0.3, n)

    assert CALIBRATED[0] <= _false_positive_rate(ratio_bootstrap, draw) <= CALIBRATED[1]


def test_ratio_bootstrap_interval_stays_positive_and_finds_a_real_ratio():
    rng = np.random.default_rng(3)
    unscaled = rng.lognormal(0.0, 2.0, 200)  # heavy-tailed, as gradient norms over sentences can be
    result = ratio_bootstrap(1.2 * unscaled, unscaled, 500)
    assert result.ratio == pytest.approx(1.2) and result.ratio_ci == pytest.approx([1.2, 1.2])
    assert result.p_value < 0.01
    noisy = ratio_bootstrap(unscaled * rng.lognormal(0.0, 1.0, 200), unscaled, 500)
    lo, hi = noisy.ratio_ci
    assert 0 < lo <= noisy.ratio <= hi
    assert noisy.ratio == pytest.approx(noisy.a / noisy.b)


def test_ratio_bootstrap_refuses_what_has_no_ratio():
    assert ratio_bootstrap([1.0] * 5, [2.0] * 5).p_value is None  # below MIN_TEST_ITEMS
    assert ratio_bootstrap([1.0, 2.0] * 20, [1.0, 2.0] * 20).p_value == 1.0
    with pytest.raises(NMTError, match="equally long"):
        ratio_bootstrap([1.0, 2.0], [1.0])
    with pytest.raises(NMTError, match="positive means"):
        ratio_bootstrap([0.0] * 30, [1.0] * 30)


def test_ratio_bootstrap_with_a_mostly_zero_denominator_has_an_unbounded_interval():
    """Gradients that vanish in most sentences: some resamples divide by zero. The upper end is None (no JSON
    infinity), the p-value comes from the share of resamples on the far side of 1, and the rest is finite."""
    import json

    from nmt.metrics.significance import ratio_bootstrap

    a = [1.0] * 40
    b = [0.0] * 38 + [1e-3, 2e-3]
    r = ratio_bootstrap(a, b, n_samples=500)
    assert r.ratio == pytest.approx(1.0 / (3e-3 / 40)) and r.unbounded > 0
    assert r.ratio_ci[1] is None and r.ratio_ci[0] > 1.0 and r.p_value == pytest.approx(1 / 501)
    json.dumps(r.to_dict(), allow_nan=False)  # the report writer refuses infinities
