"""Bootstrap intervals and calibrated paired significance tests.

- Two systems on the same test items (`paired_bootstrap`; `paired_stats_test` from per-item statistics, such as
  COMET's segment scores): the p-value comes from approximate randomisation
  (Noreen 1989; Riezler & Maxwell 2005): swap the two systems' outputs of each item with probability 1/2 and
  count how often the permuted |difference| reaches the observed one. Under "equally good systems" the swap
  changes nothing in distribution, so the test keeps its level at any corpus size; the 95% interval of the
  difference comes from the paired bootstrap (resampling items with replacement).
- Any other statistic (a ratio of two scores of one system, a difference of such ratios): `centred_p_value`,
  a signed, centred bootstrap (Hall & Wilson 1991): the signed replicates are centred on their mean, which
  imposes the null, and compared with the observed value. A ratio of two means of positive per-item statistics
  (`ratio_bootstrap`) is bootstrapped on the log scale, so its interval cannot reach below zero.
- Over training seeds (`seed_interval`): a per-seed statistic's mean, between-seed SD and t-interval. Seeds are
  the larger source of noise, and a bootstrap over three or four seeds cannot see it (it draws from a handful of
  values and understates their spread), so the seed level uses Student's t.
sacreBLEU's `--paired-bs` takes |d*| before centring, which flags about twice as many comparisons of equally
good systems as α promises; tests/test_significance.py measures the false-positive rate of ours on simulated
equal systems. Below `MIN_TEST_ITEMS` items no p-value is given (reports print "n/a").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nmt.errors import NMTError
from nmt.io import Record
from nmt.metrics.scores import References, check_pair, resampled_scores, score_from_stats, sentence_stats

# sacreBLEU's own default seed (SACREBLEU_SEED), so resampling indices match `sacrebleu --paired-bs`.
BOOTSTRAP_SEED = 12345
# Fewer test items than this give no p-value ("n/a"): a bootstrap over a handful of sentences is meaningless.
MIN_TEST_ITEMS = 20
# Student's t quantile at 97.5% for 1..30 degrees of freedom (standard tables, 3 decimals): no scipy here. More
# degrees of freedom use the value of 30, a little wider than exact (at most 2.042 / 1.960, about 4%).
T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass
class PairedTest(Record):
    """A system against a baseline on the same references (`paired_bootstrap`): both corpus scores, the
    difference (system - baseline) with its 95% paired bootstrap interval and its two-sided p-value (approximate
    randomisation; None below MIN_TEST_ITEMS sentences), each system's own 95% interval."""

    metric: str
    count: int  # sentences
    system: float
    baseline: float
    difference: float
    difference_ci: list[float]
    p_value: float | None
    system_ci: list[float]
    baseline_ci: list[float]
    n_samples: int
    seed: int


@dataclass
class MeanTest(Record):
    """mean(a) - mean(b) over paired items (`paired_mean_bootstrap`), its 95% interval and p-value."""

    a: float
    b: float
    difference: float
    difference_ci: list[float]
    p_value: float | None
    count: int


@dataclass
class RatioTest(Record):
    """mean(a) / mean(b) over paired items (`ratio_bootstrap`): the means, the ratio, its 95% interval (an upper
    end None: unbounded), the p-value of "ratio = 1", and how many resamples had a zero denominator."""

    a: float
    b: float
    ratio: float
    ratio_ci: list[float | None]
    p_value: float | None
    count: int
    unbounded: int


@dataclass
class SeedInterval(Record):
    """A per-seed statistic over training seeds (`seed_interval`): mean, between-seed sample SD and the 95%
    t-interval of the mean; with one seed the SD is None and the interval unbounded ([-inf, inf] is not JSON, so
    [])."""

    mean: float
    sd: float | None
    ci: list[float]
    seeds: int


def randomisation_p_value(stats_a: np.ndarray, stats_b: np.ndarray, n_samples: int = 1000,
                          seed: int = BOOTSTRAP_SEED, metric: str = "bleu") -> float:
    """Two-sided approximate randomisation test of score(a) - score(b) from per-item statistics
    (num_items, num_stats) of each system; (count + 1) / (n_samples + 1)."""
    observed = score_from_stats(stats_a.sum(0), metric) - score_from_stats(stats_b.sum(0), metric)
    swap = np.random.default_rng(seed).random((n_samples, len(stats_a))) < 0.5  # (n_samples, num_items)
    delta = (stats_b - stats_a).astype(np.float64)  # what a swapped item moves from b to a
    totals_a = stats_a.sum(0) + swap @ delta  # (n_samples, num_stats)
    totals_b = stats_b.sum(0) - swap @ delta
    diffs = np.array([score_from_stats(x, metric) - score_from_stats(y, metric)
                      for x, y in zip(totals_a, totals_b, strict=True)])
    hits = np.abs(diffs) >= abs(observed) - 1e-9 * max(1.0, abs(observed))
    return float((hits.sum() + 1) / (n_samples + 1))


def bootstrap_indices(n: int, n_samples: int, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """(n_samples, n) indices drawn with replacement."""
    return np.random.default_rng(seed).choice(n, size=(n_samples, n), replace=True)


def centred_p_value(replicates: np.ndarray, observed: float, alternative: str = "two-sided") -> float:
    """p-value of `observed` from the bootstrap replicates of the same signed statistic.

    The replicates are centred on their mean to make the null "no difference" true; two-sided counts
    |centred| >= |observed|, "greater" counts centred >= observed (H1: statistic > 0). (count + 1) / (n + 1).
    """
    centred = np.asarray(replicates, dtype=np.float64) - float(np.mean(replicates))
    tol = 1e-9 * max(1.0, abs(observed))  # a replicate equal to the observed value counts as reaching it
    if alternative == "two-sided":
        hits = np.abs(centred) >= abs(observed) - tol
    elif alternative == "greater":
        hits = centred >= observed - tol
    else:
        raise ValueError(f"alternative must be two-sided or greater, got {alternative!r}")
    return float((hits.sum() + 1) / (len(centred) + 1))


def seed_interval(values: Sequence[float]) -> SeedInterval:
    """Mean, between-seed SD and 95% t-interval (mean +- t_{n-1} sd / sqrt(n)) of one statistic per seed (n,).
    The interval assumes the seeds' values are independent draws of a roughly normal spread; it says nothing of
    the test-set noise they share (that is the group bootstrap's part)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) == 0:
        raise NMTError("seed_interval needs at least one seed")
    mean = float(x.mean())
    if len(x) == 1:
        return SeedInterval(mean, None, [], 1)
    sd = float(x.std(ddof=1))
    half = T_975[min(len(x) - 1, len(T_975)) - 1] * sd / float(np.sqrt(len(x)))
    return SeedInterval(mean, sd, [mean - half, mean + half], len(x))


def percentile_interval(replicates: np.ndarray) -> list[float]:
    """95% percentile interval [lo, hi] of bootstrap replicates."""
    return [float(x) for x in np.percentile(replicates, [2.5, 97.5])]


def bootstrap_interval(hyps: Sequence[str], refs: References, n_samples: int = 1000,
                       seed: int = BOOTSTRAP_SEED, metric: str = "bleu") -> tuple[float, float]:
    """95% percentile interval of the corpus score over `n_samples` resamplings of the sentences."""
    return stats_interval(sentence_stats(hyps, refs, metric), n_samples, seed, metric)


def stats_interval(stats: np.ndarray, n_samples: int = 1000, seed: int = BOOTSTRAP_SEED, metric: str = "bleu"
                   ) -> tuple[float, float]:
    """`bootstrap_interval` from per-sentence statistics (num_sentences, num_stats) already computed."""
    lo, hi = percentile_interval(resampled_scores(stats, bootstrap_indices(len(stats), n_samples, seed), metric))
    return lo, hi


def paired_bootstrap(hyps: Sequence[str], base_hyps: Sequence[str], refs: References, n_samples: int = 1000,
                     seed: int = BOOTSTRAP_SEED, metric: str = "bleu") -> PairedTest:
    """Paired bootstrap of a system against a baseline on the same references, one or several a sentence (a
    metric of `METRICS` with per-sentence statistics)."""
    check_pair(hyps, refs)
    check_pair(base_hyps, refs)
    return paired_stats_test(sentence_stats(hyps, refs, metric), sentence_stats(base_hyps, refs, metric), n_samples,
                             seed, metric)


def paired_stats_test(sys_stats: np.ndarray, base_stats: np.ndarray, n_samples: int = 1000,
                      seed: int = BOOTSTRAP_SEED, metric: str = "bleu") -> PairedTest:
    """`paired_bootstrap` from the per-sentence statistics (num_sentences, num_stats) of both systems:
    `sentence_stats`, or `segment_stats` of a segment-level metric such as COMET (its segment scores resampled
    directly)."""
    if len(sys_stats) != len(base_stats) or len(sys_stats) == 0:
        raise NMTError(f"a paired test needs two equally long non-empty systems, got {len(sys_stats)} and "
                       f"{len(base_stats)} sentences")
    system, baseline = score_from_stats(sys_stats.sum(0), metric), score_from_stats(base_stats.sum(0), metric)
    idxs = bootstrap_indices(len(sys_stats), n_samples, seed)
    sys_samples = resampled_scores(sys_stats, idxs, metric)
    base_samples = resampled_scores(base_stats, idxs, metric)
    diffs = sys_samples - base_samples
    p_value = None
    if len(sys_stats) >= MIN_TEST_ITEMS:
        p_value = 1.0 if np.array_equal(sys_stats, base_stats) else randomisation_p_value(
            sys_stats, base_stats, n_samples, seed, metric)
    return PairedTest(metric=metric, count=len(sys_stats), system=system, baseline=baseline,
                      difference=system - baseline, difference_ci=percentile_interval(diffs), p_value=p_value,
                      system_ci=percentile_interval(sys_samples), baseline_ci=percentile_interval(base_samples),
                      n_samples=n_samples, seed=seed)


def paired_mean_bootstrap(a: Sequence[float], b: Sequence[float], n_samples: int = 1000,
                          seed: int = BOOTSTRAP_SEED) -> MeanTest:
    """Paired bootstrap of mean(a) - mean(b) over items (e.g. per-sentence attention statistics), with the same
    signed centred p-value."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) != len(y) or len(x) == 0:
        raise NMTError(f"paired_mean_bootstrap needs two equally long non-empty lists, got {len(x)} and {len(y)}")
    idxs = bootstrap_indices(len(x), n_samples, seed)
    diffs = x[idxs].mean(axis=1) - y[idxs].mean(axis=1)
    observed = float(x.mean() - y.mean())
    p = None
    if len(x) >= MIN_TEST_ITEMS:
        p = 1.0 if np.array_equal(x, y) else centred_p_value(diffs, observed)
    return MeanTest(a=float(x.mean()), b=float(y.mean()), difference=observed, difference_ci=percentile_interval(diffs),
                    p_value=p, count=len(x))


def ratio_bootstrap(a: Sequence[float], b: Sequence[float], n_samples: int = 1000,
                    seed: int = BOOTSTRAP_SEED) -> RatioTest:
    """Paired bootstrap of mean(a) / mean(b) over items for positive statistics (e.g. per-sentence gradient
    norms): the sentences are resampled, the log-ratio of the two means is the replicate, so the 95% interval
    (exp of the log-scale percentiles) stays positive, as a ratio of norms must. The p-value of "ratio = 1" is
    the signed centred bootstrap on the log scale (two-sided; None below MIN_TEST_ITEMS items, 1.0 for
    identical lists).

    When `b` is zero for most items, some resamples draw only zeros: their ratio is infinite. The interval then
    has no upper end (None), and the p-value is the share of resamples on the far side of ratio 1 (doubled,
    floored at 1 / (n + 1)), as the centred test is undefined; `unbounded` counts those resamples."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) != len(y) or len(x) == 0:
        raise NMTError(f"ratio_bootstrap needs two equally long non-empty lists, got {len(x)} and {len(y)}")
    if (x < 0).any() or (y < 0).any() or x.mean() <= 0 or y.mean() <= 0:
        raise NMTError("ratio_bootstrap needs non-negative statistics with positive means")
    idxs = bootstrap_indices(len(x), n_samples, seed)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratios = np.log(x[idxs].mean(axis=1)) - np.log(y[idxs].mean(axis=1))  # +-inf where a mean is 0
    log_ratios = log_ratios[~np.isnan(log_ratios)]  # both means 0: no ratio at all
    observed = float(np.log(x.mean()) - np.log(y.mean()))
    finite = bool(np.isfinite(log_ratios).all())
    p = None
    if len(x) >= MIN_TEST_ITEMS:
        if np.array_equal(x, y):
            p = 1.0
        elif finite:
            p = centred_p_value(log_ratios, observed)
        else:
            far = np.mean(log_ratios <= 0) if observed > 0 else np.mean(log_ratios >= 0)
            p = float(min(1.0, max(2 * far, 1.0 / (len(log_ratios) + 1))))
    lo, hi = (np.percentile(log_ratios, [2.5, 97.5], method="inverted_cdf") if not finite
              else percentile_interval(log_ratios))
    ends = [float(np.exp(v)) if np.isfinite(np.exp(v)) else None for v in (lo, hi)]
    return RatioTest(a=float(x.mean()), b=float(y.mean()), ratio=float(np.exp(observed)), ratio_ci=ends, p_value=p,
                     count=len(x), unbounded=int((~np.isfinite(log_ratios)).sum()))
