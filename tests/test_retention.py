"""The retention statistic of the bottleneck verdict: same segmentation at both levels, disjoint groups, the two
questions' verdict rules at their boundaries, and the calibration of the test that decides question (a)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import made_retention

from nmt.data.concat import join, level_groups
from nmt.errors import NMTError
from nmt.evaluation.report import fmt_p, p_text
from nmt.experiments.verdicts import (
    INCONCLUSIVE,
    REDUCES,
    REMOVES,
    SUPPORTED,
    budget_text,
    length_verdict,
    removal_verdict,
)
from nmt.metrics.retention import Retention, retention
from nmt.metrics.scores import length_stats, score_from_stats, sentence_stats

VOCAB = [f"w{i}" for i in range(300)]


def _corpus(rng: np.random.Generator, n: int) -> list[str]:
    """Sentences like captions: "A" ... "." around random words."""
    return ["A " + " ".join(VOCAB[i] for i in rng.integers(0, len(VOCAB), rng.integers(6, 14))) + " ." for _ in
            range(n)]


def _noisy(rng: np.random.Generator, ref: str, p: float) -> str:
    """Each inner reference word replaced with probability p (the first and last token kept, as systems do)."""
    words = ref.split()
    inner = [w if rng.random() > p else VOCAB[rng.integers(len(VOCAB))] for w in words[1:-1]]
    return " ".join([words[0], *inner, words[-1]])


def test_a_system_that_does_not_degrade_keeps_exactly_100_percent() -> None:
    """Level-K outputs that are exactly the joined k = 1 outputs: nothing changed in any translation, so 100% and
    no degradation; the old statistic (level 1 scored sentence by sentence) reads well over 100%."""
    rng = np.random.default_rng(7)
    refs = _corpus(rng, 240)
    hyps = [_noisy(rng, r, 0.3) for r in refs]
    groups = level_groups(len(refs), 4, [0])
    long = join(hyps, refs, groups)
    levels = {"fixed": {"short": (hyps, refs), "long": long}, "attn": {"short": (hyps, refs), "long": long}}
    r = retention(levels, groups, "fixed", "attn", n_samples=200)
    for name in ("fixed", "attn"):
        s = r.systems[name]
        assert s.retained == pytest.approx(1.0) and s.p_degrades == 1.0
        assert s.retained_ci == pytest.approx([1.0, 1.0])
        assert s.precision_retained == pytest.approx(1.0) and s.precision_retained_ci == pytest.approx([1.0, 1.0])
    assert r.precision_difference.value == pytest.approx(0.0)
    assert removal_verdict(r, "attn")[0] == REMOVES
    # The old statistic: level 1 as separate sentences, summed per group.
    stats = sentence_stats(hyps, refs)
    old_short = score_from_stats(np.stack([stats[g].sum(0) for g in groups]).sum(0))
    old_retained = r.systems["attn"].bleu_long / old_short
    assert old_retained > 1.05


def test_overlapping_groups_are_refused() -> None:
    refs = [f"w{i} w{i + 1}" for i in range(12)]
    groups = level_groups(len(refs), 3, [0, 1])  # offsets 0 and 1 share sentences
    long = join(refs, refs, groups)
    with pytest.raises(NMTError, match="must not share sentences"):
        retention({"a": {"short": (refs, refs), "long": long}, "b": {"short": (refs, refs), "long": long}},
                  groups, "a", "b", n_samples=20)


def test_every_pair_gets_the_same_paired_test_one_sided_both_ways() -> None:
    """`pairs`: the test of the (attention, fixed) difference, for any two systems, on the same resamples; "retains
    more" and "retains less" are its two one-sided p-values."""
    rng = np.random.default_rng(3)
    refs = _corpus(rng, 200)
    groups = level_groups(len(refs), 4, [0])
    long_refs = join(refs, refs, groups)[1]
    hyps = [_noisy(rng, r, 0.3) for r in refs]

    def system(p_long: float) -> dict:
        return {"short": (hyps, refs), "long": ([" ".join(_noisy(rng, refs[i], p_long) for i in g) for g in groups],
                                                long_refs)}

    levels = {"small": system(0.6), "mid": system(0.45), "large": system(0.3)}
    pairs = [("mid", "small"), ("large", "small"), ("large", "mid"), ("small", "large")]
    r = retention(levels, groups, "small", "large", n_samples=300, pairs=pairs)
    tests = {(t.system, t.baseline): t for t in r.pairs}
    assert list(tests) == pairs
    assert tests[("large", "small")] == r.difference
    kept = {name: r.systems[name].retained for name in levels}
    for (a, b), t in tests.items():
        assert t.value == pytest.approx(kept[a] - kept[b])
    more, less = tests[("large", "small")], tests[("small", "large")]
    assert more.value > 0 and more.p_value < 0.01 and more.p_less > 0.5
    assert less.p_value == more.p_less and less.p_less == more.p_value
    assert less.ci == pytest.approx([-more.ci[1], -more.ci[0]])
    # Nothing asked, nothing added.
    plain = retention(levels, groups, "small", "large", n_samples=300)
    assert plain.pairs == [] and plain.difference == r.difference


def test_length_ratio_and_brevity_penalty() -> None:
    stats = sentence_stats(["a b c d", "x y"], ["a b c d e", "x y z w"]).sum(0)
    out = length_stats(stats)
    assert out.ratio == pytest.approx(6 / 9) and out.brevity_penalty == pytest.approx(np.exp(1 - 9 / 6))
    assert length_stats(sentence_stats(["a b c"], ["a b"]).sum(0)).brevity_penalty == 1.0


def _made(attn_share: float, attn_ci_low: float, attn_p: float, attn_bleu: float = 30.0) -> Retention:
    return made_retention(0.5, attn_share, p_fixed=1 / 1001, p_attention=attn_p, p_diff=1 / 1001,
                          attention_lo=attn_ci_low, attention_bleu=attn_bleu)


def test_removal_verdict_at_its_boundaries() -> None:
    # Removed: attention's degradation is not significant (p >= 0.01) and its interval stays at or above 90%.
    assert removal_verdict(_made(0.97, 0.90, 0.01), "attn")[0] == REMOVES
    assert removal_verdict(_made(0.97, 0.8999, 0.5), "attn")[0] == REDUCES
    label, reason = removal_verdict(_made(0.93, 0.91, 0.0099), "attn")
    assert label == REDUCES and "still degrades" in reason
    # Question (a) can be supported while (b) says "reduces": the two answers are separate.
    made = _made(0.86, 0.81, 1 / 1001)
    assert length_verdict(made, "fixed", "attn")[0] == SUPPORTED
    label, reason = removal_verdict(made, "attn")
    assert label == REDUCES and "p < 0.001" in reason
    assert removal_verdict(_made(0.97, 0.95, 0.5, attn_bleu=2.0), "attn")[0] == INCONCLUSIVE


def test_p_values_at_the_resampling_floor_and_budget_text() -> None:
    assert p_text(1 / 1001) == "p < 0.001" and p_text(0.0123) == "p = 0.012"
    assert fmt_p(1 / 1001, alpha=0.01) == "< 0.001 *" and fmt_p(0.02, alpha=0.01) == "0.0200"
    assert fmt_p(0.02) == "0.0200 *" and fmt_p(None) == "n/a"
    _, reason = length_verdict(_made(0.86, 0.81, 1 / 1001), "fixed", "attn")
    assert "p < 0.001" in reason and "p = 0.001" not in reason
    assert budget_text([1000, 1000], 4096) == "at 1,000 updates of 4.096k tokens"
    assert budget_text([507, 656], 4000) == "at 507-656 updates of 4k tokens"


@pytest.mark.slow
def test_difference_test_is_calibrated_on_equal_retention() -> None:
    """Two systems with the same degradation (the same noise at k = 1 and a higher one at k = 4, drawn
    independently): the one-sided p-value of "attention retains more" flags between 2% and 6% at alpha 0.05."""
    rng = np.random.default_rng(2026)
    flagged, trials = 0, 300
    for t in range(trials):
        refs = _corpus(rng, 160)
        groups = level_groups(len(refs), 4, [0])
        long_refs = join(refs, refs, groups)[1]
        levels = {}
        for name in ("fixed", "attn"):
            short = [_noisy(rng, r, 0.3) for r in refs]
            long = [" ".join(_noisy(rng, refs[i], 0.45) for i in g) for g in groups]
            levels[name] = {"short": (short, refs), "long": (long, long_refs)}
        r = retention(levels, groups, "fixed", "attn", n_samples=300, seed=t)
        flagged += r.difference.p_value < 0.05
    assert 0.02 <= flagged / trials <= 0.06
