"""Statistics behind the experiments' verdicts, and the verdicts themselves, computed from numbers only.

- `comparison_verdict`: "system A beats system B" from a paired test's difference and p-value.
- `length_verdict` / `removal_verdict` / `bottleneck_verdict`: the bottleneck claim on length-controlled test
  levels (from the statistics of nmt/metrics/retention.py) as two questions: (a) does the fixed-context model
  degrade with length, and does attention degrade less? (b) does attention remove the degradation?
- `capacity_sentence`: what a bigger fixed-context vector does to that degradation.
- `matched_verdict`: question (c), "at equal k = 1 quality, does attention keep more?", from
  nmt/metrics/trajectory.py; `seed_level_agrees`, the rule that a verdict needs the seed-level interval.
- The side claims of nmt/experiments/claims.py: `magnitude_verdict` ("up to 40%"), `all_or_any` (a claim made
  of several comparisons), `differs_verdict` (some system differs), `seeds_verdict` (the seeds' common label),
  and `CLAIM_QUESTIONS`, the question each verdict answers.
- `mean_std` aggregates over seeds.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

from nmt.evaluation.report import p_text
from nmt.experiments.results import MeanStd, SweepPair, SweepRow, Verdict
from nmt.metrics.retention import Retention
from nmt.metrics.significance import PairedTest, SeedInterval
from nmt.metrics.trajectory import MatchedRetention

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive at this budget"
ALPHA = 0.05  # significance level of every verdict


def mean_std(values: Sequence[float | None]) -> MeanStd | None:
    """Mean and sample std (None for one value) of the values that are not None; None if none."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None
    return MeanStd(statistics.fmean(xs), statistics.stdev(xs) if len(xs) > 1 else None, len(xs))


def fmt_mean_std(ms: MeanStd | None, digits: int = 2, signed: bool = False) -> str:
    if ms is None:
        return "-"
    sign = "+" if signed else ""
    text = f"{ms.mean:{sign}.{digits}f}"
    return text if ms.std is None else f"{text} ± {ms.std:.{digits}f}"


def comparison_verdict(difference: float, p_value: float | None, scores: Sequence[float] = (),
                       min_score: float = 0.0) -> str:
    """A claim that a system beats another: `difference` is oriented so that > 0 is the claimed direction.

    With `scores` (e.g. both systems' BLEU), inconclusive when none reaches `min_score`: between near-zero
    BLEUs even a "significant" difference is noise in the sacreBLEU p-value, not a result.
    """
    if p_value is None or p_value >= ALPHA or (scores and max(scores) < min_score):
        return INCONCLUSIVE
    return SUPPORTED if difference > 0 else NOT_SUPPORTED


# The bottleneck claim on length-controlled levels ---------------------------------------------------------------
FIXED, ATTENTION = "rnn_fixed", "rnn_attention"  # the two systems of the bottleneck experiment
BOTTLENECK_ALPHA = 0.01  # both halves of the claim must hold at this level, in every seed
KEEPS_BLEU = 0.9  # a model that keeps this share of its k = 1 BLEU at the longest level does not degrade
REMOVES = "attention removes the degradation"
REDUCES = "attention reduces but does not remove the degradation"


def length_verdict(result: Retention, fixed: str, attention: str, min_bleu: float = 5.0) -> tuple[str, str]:
    """Question (a), "does the fixed-context model degrade, and does attention degrade less?", on one seed's
    `retention`: supported when the fixed model degrades (p < 0.01) and attention retains more (p < 0.01); not
    supported when the fixed model keeps >= 90% of its k = 1 BLEU, or attention retains no more than it;
    inconclusive otherwise (and when no system reaches `min_bleu` at k = 1). Returns (label, reason)."""
    f, a, d = result.systems[fixed], result.systems[attention], result.difference
    n = result.n_samples
    if min(f.bleu_short, a.bleu_short) < min_bleu:
        return INCONCLUSIVE, f"a system stays under {min_bleu:g} BLEU at k = 1: too weak to show a bottleneck"
    if f.retained >= KEEPS_BLEU:
        return NOT_SUPPORTED, (f"{fixed} keeps {f.retained:.0%} of its k = 1 BLEU at the longest level "
                               f"(>= {KEEPS_BLEU:.0%}): no bottleneck to remove")
    if d.value <= 0:
        return NOT_SUPPORTED, (f"{attention} keeps {a.retained:.0%}, no more than {fixed}'s "
                               f"{f.retained:.0%}: attention degrades as much")
    weak = []
    if f.p_degrades >= BOTTLENECK_ALPHA:
        weak.append(f"the {fixed} degradation has {p_text(f.p_degrades, n)}")
    if d.p_value >= BOTTLENECK_ALPHA:
        weak.append(f"the difference in retained BLEU has {p_text(d.p_value, n)}")
    if weak:
        return INCONCLUSIVE, "; ".join(weak) + f" (needs p < {BOTTLENECK_ALPHA})"
    return SUPPORTED, (f"{fixed} keeps {f.retained:.0%} of its k = 1 BLEU at the longest level "
                       f"({p_text(f.p_degrades, n)}), {attention} {a.retained:.0%} (difference "
                       f"{d.value:+.0%}, {p_text(d.p_value, n)})")


def removal_verdict(result: Retention, attention: str, min_bleu: float = 5.0) -> tuple[str, str]:
    """Question (b), "does attention remove the degradation?", on one seed's `retention`: attention's own
    retention against 100%. REMOVES when its one-sided test of degradation is not significant (p >= 0.01) and
    the lower end of its 95% interval is >= 90%; otherwise REDUCES (the degradation is still measurable).
    Returns (label, reason)."""
    a = result.systems[attention]
    if a.bleu_short < min_bleu:
        return INCONCLUSIVE, f"{attention} stays under {min_bleu:g} BLEU at k = 1"
    lo, hi = a.retained_ci
    p = p_text(a.p_degrades, result.n_samples)
    kept = f"{attention} keeps {a.retained:.0%} [{lo:.0%}, {hi:.0%}] ({p} for < 100%)"
    if a.p_degrades >= BOTTLENECK_ALPHA and lo >= KEEPS_BLEU:
        return REMOVES, f"{kept}: no measurable degradation"
    why = "it still degrades" if a.p_degrades < BOTTLENECK_ALPHA else f"its interval reaches below {KEEPS_BLEU:.0%}"
    return REDUCES, f"{kept}: {why}"


def bottleneck_verdict(labels: Sequence[tuple[str, str]]) -> Verdict:
    """Over seeds: a label when every seed gives it, else inconclusive with the reasons."""
    names = [label for label, _ in labels]
    if names and all(n == names[0] for n in names):
        return Verdict(names[0], names, labels[0][1] if len(labels) == 1 else
                       "every seed agrees: " + " | ".join(reason for _, reason in labels))
    return Verdict(INCONCLUSIVE, names, "the seeds disagree: " + " | ".join(f"{n}: {reason}" for n, reason in labels))


def budget_text(steps: Sequence[int], batch_tokens: int) -> str:
    """"at 1,000 updates of 4k tokens" (or "at 507-656 updates ..." when the runs' step counts differ)."""
    lo, hi = min(steps), max(steps)
    count = f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"
    return f"at {count} updates of {batch_tokens / 1000:g}k tokens"


def capacity_sentence(rows: Sequence[SweepRow], pairs: Sequence[SweepPair],
                      attention_retained: float | None, min_bleu: float = 5.0, n_samples: int = 1000) -> str:
    """One sentence on the capacity sweep, decided by its paired tests.

    rows: one per fixed-context summary size, in increasing size; pairs: every pair of sizes. In order: a model
    under `min_bleu` at k = 1 makes the sweep say nothing; a size whose 95% interval of retained BLEU lies at or above
    90% removes the degradation (the smallest such size is named); the largest retaining more than the smallest
    at p < 0.01 reduces it; less at p < 0.01 makes it worse; anything else does not measurably change it. The
    tested sentences end with how many pairs differ significantly in each direction (both: no monotone trend).
    """
    weak = [str(r.summary) for r in rows if r.bleu[0] < min_bleu]
    if weak:
        return (f"The capacity sweep says nothing at this budget: the fixed-context models of {', '.join(weak)} "
                f"dimensions stay under {min_bleu:g} BLEU at k = 1.")
    small, large = rows[0], rows[-1]
    shares = " / ".join("-" if r.retained is None else f"{r.retained:.0%}" for r in rows)
    kept = (f"summary sizes {' / '.join(str(r.summary) for r in rows)} keep {shares} of their k = 1 BLEU at the "
            f"longest level; attention keeps "
            + ("-" if attention_retained is None else f"{attention_retained:.0%}") + ".")
    removes = [r for r in rows if r.retained_ci[0] >= KEEPS_BLEU]
    if removes:
        r = removes[0]
        lo, hi = r.retained_ci
        return (f"A {r.summary}-dimensional summary vector removes the degradation: its 95% interval of retained "
                f"BLEU [{lo:.0%}, {hi:.0%}] lies at or above {KEEPS_BLEU:.0%}; " + kept)
    test = next(p for p in pairs if p.larger == large.summary and p.smaller == small.summary)
    more = sum(p.p_value is not None and p.p_value < BOTTLENECK_ALPHA for p in pairs)
    less = sum(p.p_less is not None and p.p_less < BOTTLENECK_ALPHA for p in pairs)
    pairwise = (f" Pairwise, the larger size retains more in {more} and less in {less} of the {len(pairs)} pairs "
                f"(p < {BOTTLENECK_ALPHA:g})" + ("; no monotone trend." if more and less else "."))

    def than(p: float) -> str:
        more = "more" if test.value > 0 else "less"
        return (f"{large.summary} dimensions retain {abs(test.value):.0%} {more} of their k = 1 BLEU than "
                f"{small.summary} ({p_text(p, n_samples, digits=4)})")

    if test.p_value is not None and test.p_value < BOTTLENECK_ALPHA:
        return "A bigger summary vector reduces the degradation but does not remove it: " + than(test.p_value) \
            + "; " + kept + pairwise
    if test.p_less is not None and test.p_less < BOTTLENECK_ALPHA:
        return "A bigger summary vector makes the degradation worse at this budget: " + than(test.p_less) \
            + "; " + kept + pairwise
    diff = "-" if test.value is None else f"{test.value:+.0%} [{test.ci[0]:+.0%}, {test.ci[1]:+.0%}]"
    return (f"The largest summary vector does not measurably change the degradation against the smallest: the "
            f"difference in retained BLEU, {large.summary} minus {small.summary} dimensions, is {diff} (neither "
            f"one-sided test at p < {BOTTLENECK_ALPHA:g}); " + kept + pairwise)


def sweep_seeds_sentence(sizes: Sequence[int], retained: Sequence[MeanStd | None], diffs: Sequence[float | None],
                         level: SeedInterval | None) -> str:
    """The capacity sweep over seeds in one sentence: each size's retained share (mean ± std), and the largest
    minus the smallest size with its seed-level 95% interval, whose half-width is the smallest difference the
    sweep can resolve (no stronger wording than "not resolved" when the interval holds 0)."""
    shares = " / ".join(fmt_mean_std(r, 1) if r is None else f"{100 * r.mean:.0f}%"
                        + ("" if r.std is None else f" ± {100 * r.std:.0f}") for r in retained)
    head = f"Over {len(diffs)} seed{'s' if len(diffs) != 1 else ''}, summary sizes {' / '.join(map(str, sizes))} " \
           f"keep {shares} of their k = 1 BLEU at the longest level."
    if level is None or not level.ci:
        return head + " One seed gives no seed-level interval: the sweep cannot say whether size matters."
    lo, hi = level.ci
    what = (f"{sizes[-1]} minus {sizes[0]} dimensions: {_points(level.mean)} points, seed-level 95% interval "
            f"[{_points(lo)}, {_points(hi)}]")
    if lo > 0 or hi < 0:
        more = "more" if lo > 0 else "less"
        return f"{head} The largest size keeps {more} than the smallest ({what})."
    return (f"{head} Not resolved: {what}; a difference smaller than about {100 * (hi - lo) / 2:.0f} points "
            f"cannot be told from seed noise with these seeds.")


# Question (c): retention at matched k = 1 quality ----------------------------------------------------------------
MIN_SEEDS = 3  # a verdict over seeds needs a seed-level interval from at least this many
MATCHED_MORE = "attention keeps more at matched quality"
MATCHED_LESS = "attention keeps less at matched quality"
MATCHED_NO_DIFFERENCE = "no difference measurable at matched quality"
NO_OVERLAP = "the quality ranges do not overlap"


def seed_level_agrees(interval: SeedInterval | None, side: str) -> bool:
    """A verdict needs the seed-level interval to agree: with at least MIN_SEEDS seeds, its 95% t-interval lies
    wholly above 0 (side "greater") or wholly below 0 (side "less")."""
    if interval is None or interval.seeds < MIN_SEEDS or not interval.ci:
        return False
    if side not in ("greater", "less"):
        raise ValueError(f"side must be greater or less, got {side!r}")
    return interval.ci[0] > 0 if side == "greater" else interval.ci[1] < 0


def _points(x: float) -> str:
    return f"{100 * x:+.1f}"


def matched_verdict(result: MatchedRetention, alpha: float = ALPHA, quality: str = "k = 1 BLEU"
                    ) -> tuple[str, str]:
    """Question (c), "at equal k = 1 quality, does attention keep more of its BLEU at the longest level?", from
    `matched_retention`. Returns (label, reason); every reason names the quality range and the number of seeds.

    NO_OVERLAP when the two models' quality ranges meet over less than the minimum width (the two ranges are
    given; nothing is compared). INCONCLUSIVE with fewer than MIN_SEEDS seeds. MATCHED_MORE (MATCHED_LESS) when
    the one-sided p-value over test groups is under `alpha` and the seed-level interval lies above (below) 0.
    Otherwise MATCHED_NO_DIFFERENCE, with the smallest difference the design could have shown: the larger
    half-width of the two 95% intervals (a difference inside it is not ruled out).
    """
    n, seeds = result.n_samples, f"{result.seeds} seed{'s' if result.seeds != 1 else ''}"
    if result.overlap is None or result.difference is None:
        def covers(r: list[float] | None) -> str:
            return "no usable checkpoint in some seed" if r is None else f"{r[0]:.1f}-{r[1]:.1f}"
        return NO_OVERLAP, (f"fixed-context checkpoints cover {quality} {covers(result.fixed_range)}, attention "
                            f"{covers(result.attention_range)} (the range every seed covers, {seeds}); they overlap "
                            f"over less than {result.min_overlap:g}, so retention is not compared at equal quality")
    lo, hi = result.overlap
    where = f"at {quality} {lo:.1f}-{hi:.1f} ({seeds})"
    level = result.seed_level
    seed_ci = "" if level is None or not level.ci else \
        f", over seeds [{_points(level.ci[0])}, {_points(level.ci[1])}]"
    diff = (f"attention - fixed retention {_points(result.difference)} points (95% interval over test groups "
            f"[{_points(result.ci[0])}, {_points(result.ci[1])}]{seed_ci})")
    if result.seeds < MIN_SEEDS:
        return INCONCLUSIVE, f"{where}: {diff}; a verdict needs the seed-level interval of at least {MIN_SEEDS} seeds"
    if result.p_value < alpha and seed_level_agrees(level, "greater"):
        return MATCHED_MORE, f"{where}: {diff}, {p_text(result.p_value, n)}"
    if result.p_less < alpha and seed_level_agrees(level, "less"):
        return MATCHED_LESS, f"{where}: {diff}, {p_text(result.p_less, n)} for less"
    half = max((result.ci[1] - result.ci[0]) / 2, (level.ci[1] - level.ci[0]) / 2)
    p = min(result.p_value, result.p_less)
    seeds_disagree = "; the test groups alone flag it, the seeds do not" if p < alpha else ""
    return MATCHED_NO_DIFFERENCE, (f"{where}: {diff}, {p_text(p, n)} one-sided{seeds_disagree}; a difference "
                                   f"smaller than about {100 * half:.1f} points would not be detected")


# The side claims (nmt/experiments/claims.py) --------------------------------------------------------------------
SOURCE_GRADIENT_CHANGE_PCT = 40.0  # the source: scaling by 1/sqrt(d_k) changes the gradient norm by "up to 40%"
CLAIM_QUESTIONS: dict[str, dict[str, str]] = {
    "scaling": {
        "gradient": "scaling by 1/sqrt(d_k) keeps larger gradients at q.k (largest d_k, after training)",
        "magnitude": f"the change of that gradient norm is up to {SOURCE_GRADIENT_CHANGE_PCT:g}% (the whole 95% "
                     f"interval of scaled / unscaled - 1 in (0%, {SOURCE_GRADIENT_CHANGE_PCT:g}%])",
        "bleu": "scaling improves BLEU (largest d_k)",
    },
    "temperature": {
        "entropy": "attention entropy rises with the softmax temperature (a property of softmax)",
        "bleu": "the trained temperature (1) translates best",
    },
    "hard": {
        "inference": "hard (argmax) attention switched on at inference in the soft-trained model loses BLEU",
        "trained": "hard attention trained with the straight-through estimator loses BLEU",
    },
    "scorers": {
        "scorers_differ": "the scorers differ (some scorer significantly different from the reference scorer, no "
                          "correction for multiple comparisons)",
        "more_heads": "more heads translate better (heads as slices of the scored space and of the encoder states, "
                      "no per-head value or output projections)",
    },
}


def magnitude_verdict(change_ci_pct: Sequence[float] | None, bound_pct: float = SOURCE_GRADIENT_CHANGE_PCT) -> str:
    """"Up to `bound_pct`%" for a change with a 95% interval [lo, hi] in percent: supported when the whole interval
    lies in (0%, bound%]; not supported when it lies wholly outside (entirely above bound%, or entirely at or
    below 0%); inconclusive when it straddles either edge, or without an interval. An upper end of None is
    unbounded (infinite ratios in the bootstrap)."""
    if change_ci_pct is None:
        return INCONCLUSIVE
    lo, hi = change_ci_pct
    hi = math.inf if hi is None else hi
    if lo > 0.0 and hi <= bound_pct:
        return SUPPORTED
    if lo > bound_pct or hi <= 0.0:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def all_or_any(votes: Sequence[str]) -> str:
    """A claim made of several comparisons: supported when every one is; not supported when any one is (a
    counter-example); else inconclusive (also with no votes)."""
    if votes and all(v == SUPPORTED for v in votes):
        return SUPPORTED
    return NOT_SUPPORTED if NOT_SUPPORTED in votes else INCONCLUSIVE


def differs_verdict(tests: Sequence[PairedTest], min_score: float = 0.0) -> str:
    """"Some system differs from the reference": supported when any paired test is significant in either
    direction with a system reaching `min_score`; inconclusive otherwise (no difference is not evidence of
    equality)."""
    votes = [comparison_verdict(abs(t.difference), t.p_value, (t.system, t.baseline), min_score) for t in tests]
    return SUPPORTED if SUPPORTED in votes else INCONCLUSIVE


def seeds_verdict(labels: Sequence[str]) -> str:
    """Over seeds: the label every seed gives, else inconclusive (also with no seeds)."""
    return labels[0] if labels and all(label == labels[0] for label in labels) else INCONCLUSIVE
