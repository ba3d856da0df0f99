"""The verdict rules of the side claims (nmt/experiments/verdicts.py, nmt/experiments/claims.py) on constructed
numbers at their boundaries: alpha = 0.05, the bottleneck's p = 0.01 and 90%, the "up to 40%" interval edges, the
BLEU floor, and the rules that combine comparisons and seeds."""

from __future__ import annotations

import pytest
from conftest import made_retention

from nmt.experiments.claims import aggregate_seeds
from nmt.experiments.results import ClaimVerdict, TemperatureClaim, TemperatureSeed
from nmt.experiments.verdicts import (
    BOTTLENECK_ALPHA,
    CLAIM_QUESTIONS,
    INCONCLUSIVE,
    KEEPS_BLEU,
    NOT_SUPPORTED,
    REDUCES,
    REMOVES,
    SUPPORTED,
    all_or_any,
    comparison_verdict,
    differs_verdict,
    length_verdict,
    magnitude_verdict,
    removal_verdict,
    seeds_verdict,
)
from nmt.metrics.retention import Retention
from nmt.metrics.significance import PairedTest

JUST_UNDER = 1e-6


@pytest.mark.parametrize(("ci", "label"), [
    ((0.1, 40.0), SUPPORTED),  # the whole interval in (0%, 40%], 40% included
    ((JUST_UNDER, 39.0), SUPPORTED),
    ((0.0, 39.0), INCONCLUSIVE),  # 0% is not a change: the interval touches it
    ((0.1, 40.0 + JUST_UNDER), INCONCLUSIVE),  # reaches above 40%
    ((-10.0, 10.0), INCONCLUSIVE),
    ((30.0, 80.0), INCONCLUSIVE),
    ((40.0, 80.0), INCONCLUSIVE),  # 40% itself is inside the claim
    ((40.0 + JUST_UNDER, 80.0), NOT_SUPPORTED),  # wholly above 40%
    ((-30.0, 0.0), NOT_SUPPORTED),  # wholly at or below 0%
    ((-75.2, -75.1), NOT_SUPPORTED),
    (None, INCONCLUSIVE),
])
def test_magnitude_verdict_at_the_edges_of_up_to_40_percent(ci, label) -> None:
    assert magnitude_verdict(ci) == label


@pytest.mark.parametrize(("difference", "p", "scores", "label"), [
    (1.0, 0.05, (), INCONCLUSIVE),  # p must be under 0.05
    (1.0, 0.05 - JUST_UNDER, (), SUPPORTED),
    (-1.0, 0.05 - JUST_UNDER, (), NOT_SUPPORTED),
    (1.0, 0.01, (), SUPPORTED),
    (-1.0, 0.01, (), NOT_SUPPORTED),
    (1.0, None, (), INCONCLUSIVE),  # too few items for a p-value
    (1.0, 0.001, (20.0, 15.0), SUPPORTED),  # a system at the BLEU floor is enough
    (1.0, 0.001, (20.0 - JUST_UNDER, 15.0), INCONCLUSIVE),  # both under it
])
def test_comparison_verdict_at_alpha_and_the_bleu_floor(difference, p, scores, label) -> None:
    assert comparison_verdict(difference, p, scores, min_score=20.0) == label


def test_all_or_any_needs_every_part_and_one_counter_example_refutes() -> None:
    assert all_or_any([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert all_or_any([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert all_or_any([SUPPORTED, NOT_SUPPORTED]) == NOT_SUPPORTED
    assert all_or_any([INCONCLUSIVE, NOT_SUPPORTED]) == NOT_SUPPORTED
    assert all_or_any([]) == INCONCLUSIVE


def _test(difference: float, p: float, bleu: float = 25.0) -> PairedTest:
    return PairedTest(metric="bleu", count=1000, system=bleu + difference, baseline=bleu, difference=difference,
                      difference_ci=[difference - 1.0, difference + 1.0], p_value=p, system_ci=[0.0, 0.0],
                      baseline_ci=[0.0, 0.0], n_samples=1000, seed=0)


def test_scorers_differ_in_either_direction_at_alpha() -> None:
    assert differs_verdict([_test(0.5, 0.3), _test(-2.0, 0.049)], 20.0) == SUPPORTED  # worse counts as different
    assert differs_verdict([_test(0.5, 0.3), _test(2.0, 0.05)], 20.0) == INCONCLUSIVE
    assert differs_verdict([_test(2.0, 0.01, bleu=5.0)], 20.0) == INCONCLUSIVE  # under the BLEU floor
    assert differs_verdict([], 20.0) == INCONCLUSIVE  # no difference is not evidence of equality


def test_seeds_must_agree() -> None:
    assert seeds_verdict([SUPPORTED, SUPPORTED]) == SUPPORTED
    assert seeds_verdict([NOT_SUPPORTED, NOT_SUPPORTED]) == NOT_SUPPORTED
    assert seeds_verdict([SUPPORTED, INCONCLUSIVE]) == INCONCLUSIVE
    assert seeds_verdict([SUPPORTED, NOT_SUPPORTED]) == INCONCLUSIVE
    assert seeds_verdict([]) == INCONCLUSIVE


def test_a_claim_with_two_questions_reports_both_and_each_over_seeds() -> None:
    seeds = {"1": TemperatureSeed({"entropy": SUPPORTED, "bleu": INCONCLUSIVE}, "", [], []),
             "2": TemperatureSeed({"entropy": SUPPORTED, "bleu": NOT_SUPPORTED}, "", [], [])}
    claim = aggregate_seeds("temperature", seeds, "at 300 updates of 2.048k tokens")
    assert isinstance(claim, TemperatureClaim) and claim.verdicts["entropy"].label == SUPPORTED
    assert claim.verdicts["bleu"] == ClaimVerdict(CLAIM_QUESTIONS["temperature"]["bleu"], INCONCLUSIVE,
                                                  [INCONCLUSIVE, NOT_SUPPORTED])
    for key in ("entropy", "bleu"):
        assert CLAIM_QUESTIONS["temperature"][key] in claim.summary
    assert claim.summary.endswith("(at 300 updates of 2.048k tokens)")


# The bottleneck rules at their boundaries (p = 0.01, 90%) ---------------------------------------------------------
def _retention(fixed: float, p_fixed: float = 0.001, p_diff: float = 0.001, attention_lo: float = 0.95,
               p_attention: float = 0.5) -> Retention:
    return made_retention(fixed, 0.97, p_fixed=p_fixed, p_attention=p_attention, p_diff=p_diff,
                          attention_lo=attention_lo)


def test_length_verdict_at_90_percent_and_p_001() -> None:
    assert length_verdict(_retention(KEEPS_BLEU), "fixed", "attn")[0] == NOT_SUPPORTED  # keeps 90%: no bottleneck
    assert length_verdict(_retention(KEEPS_BLEU - JUST_UNDER), "fixed", "attn")[0] == SUPPORTED
    assert length_verdict(_retention(0.6, p_fixed=BOTTLENECK_ALPHA), "fixed", "attn")[0] == INCONCLUSIVE
    assert length_verdict(_retention(0.6, p_fixed=BOTTLENECK_ALPHA - JUST_UNDER), "fixed", "attn")[0] == SUPPORTED
    assert length_verdict(_retention(0.6, p_diff=BOTTLENECK_ALPHA), "fixed", "attn")[0] == INCONCLUSIVE


def test_removal_verdict_at_90_percent_and_p_001() -> None:
    assert removal_verdict(_retention(0.6, attention_lo=KEEPS_BLEU, p_attention=BOTTLENECK_ALPHA), "attn")[0] == REMOVES
    assert removal_verdict(_retention(0.6, attention_lo=KEEPS_BLEU - JUST_UNDER), "attn")[0] == REDUCES
    assert removal_verdict(_retention(0.6, p_attention=BOTTLENECK_ALPHA - JUST_UNDER), "attn")[0] == REDUCES


def test_magnitude_with_an_unbounded_upper_end():
    assert magnitude_verdict([50.0, None]) == NOT_SUPPORTED  # wholly above 40%
    assert magnitude_verdict([10.0, None]) == INCONCLUSIVE  # reaches past 40%
