"""Retention: how much of its one-sentence BLEU a system keeps when k sentences are joined into one input, and
the BLEU slope over input length. Statistics only; the verdicts built on them are in nmt/experiments/verdicts.py.

Both levels are scored on the same segmentation. Level K is one segment per group of K consecutive sentences;
level 1 is scored by joining each group's K one-sentence hypotheses (and references) into one segment too. A
joined segment gains cross-boundary n-grams and a larger clipping pool, so scoring level 1 sentence by sentence
would make a system that does not degrade at all read more than 100% retained.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from nmt.data.concat import join
from nmt.errors import NMTError
from nmt.io import Record
from nmt.metrics.scores import (
    LengthRatio,
    brevity_penalty,
    length_stats,
    resampled_scores,
    score_from_stats,
    sentence_stats,
)
from nmt.metrics.significance import BOOTSTRAP_SEED, bootstrap_indices, centred_p_value, percentile_interval


def check_disjoint(groups: Sequence[Sequence[int]]) -> None:
    """Overlapping groups share sentences, so a bootstrap over groups would understate the variance."""
    seen: set[int] = set()
    for g in groups:
        if seen.intersection(g):
            raise NMTError("the groups of a retention test must not share sentences (overlapping groupings "
                           "understate the variance): use the groups of one offset")
        seen.update(g)


@dataclass
class SystemRetention(Record):
    """One system's BLEU at level 1 (joined groups) and level K, the share kept and its test."""

    bleu_short: float
    bleu_long: float
    retained: float | None  # bleu_long / bleu_short; None without any BLEU at k = 1
    retained_ci: list[float]  # 95% bootstrap interval
    p_degrades: float | None  # one-sided p-value of "retained < 1"
    length_short: LengthRatio
    length_long: LengthRatio
    # Content apart from length: the same share of precision-only BLEU (BLEU / brevity penalty), same resamples.
    precision_retained: float | None = None
    precision_retained_ci: list[float] = field(default_factory=list)


@dataclass
class RetentionDifference(Record):
    """`system` - `baseline` in retained share on the same resamples, with one-sided p-values both ways."""

    value: float | None
    ci: list[float]
    p_value: float | None  # system retains more
    p_less: float | None = None  # system retains less
    system: str = ""
    baseline: str = ""


@dataclass
class Retention(Record):
    """What `retention` measures: every system's retention, attention - fixed, and the requested pairs."""

    systems: dict[str, SystemRetention]
    difference: RetentionDifference  # attention - fixed
    pairs: list[RetentionDifference]
    groups: int
    n_samples: int
    precision_difference: RetentionDifference | None = None  # attention - fixed in precision-only retention


@dataclass
class Slope(Record):
    """Least-squares BLEU change per 10 source words over the levels, absolute and relative to level 1's BLEU."""

    per_10_words: float
    relative_per_10_words: float


Outputs = tuple[Sequence[str], Sequence[str]]  # (hypotheses, references)
# A sentence ends at ".", "!" or "?" (closing quotes or brackets may follow) before a space or the end of the text.
SENTENCE_END = re.compile(r"[.!?]+[\"'»«“”„)\]]*(?=\s|$)")
WORD = re.compile(r"\w")


def retention(levels: dict[str, dict[str, Outputs]], groups: Sequence[Sequence[int]], fixed: str, attention: str,
              n_samples: int = 1000, seed: int = BOOTSTRAP_SEED, pairs: Sequence[tuple[str, str]] = ()
              ) -> Retention:
    """How much of its k = 1 BLEU each system keeps at the longest level K, and the difference between two.

    levels: system -> {"short": (hyps, refs) of level 1 (one per sentence), "long": (hyps, refs) of level K
    (one per group, in the order of `groups`)}; groups: the sentences of each level-K example, disjoint
    (nmt.data.concat.level_groups with one offset). Level 1 is scored on the joined groups (see the module doc).
    A bootstrap resamples the groups, the same for every system: retained = BLEU_K / BLEU_1 with a 95% interval
    and the one-sided p-value of "retained < 1" (signed, centred); for `attention` - `fixed` the difference of
    retained shares, its interval and the one-sided p-value of "attention retains more". `pairs` (system,
    baseline) of `levels`' systems get the same paired test on the same resamples, one-sided both ways. Length
    apart from content: each system's precision-only retention (BLEU / brevity penalty at both levels) and the
    attention - fixed difference in it, on the same resamples.
    """
    check_disjoint(groups)
    idxs = bootstrap_indices(len(groups), n_samples, seed)  # (n_samples, groups)
    systems, samples, precision_samples = {}, {}, {}
    for name, lv in levels.items():
        long_hyps, long_refs = lv["long"]
        if len(long_hyps) != len(groups):
            raise NMTError(f"{name}: {len(long_hyps)} level-K hypotheses for {len(groups)} groups")
        short = sentence_stats(*join(*lv["short"], [list(g) for g in groups]))  # (groups, num_stats)
        long = sentence_stats(long_hyps, long_refs)  # (groups, num_stats)
        retained, samples[name] = retained_samples(short, long, idxs)
        precision, precision_samples[name] = retained_samples(short, long, idxs, precision_only=True)
        systems[name] = SystemRetention(
            bleu_short=score_from_stats(short.sum(0)), bleu_long=score_from_stats(long.sum(0)), retained=retained,
            retained_ci=percentile_interval(samples[name]),
            p_degrades=None if retained is None else centred_p_value(1.0 - samples[name], 1.0 - retained, "greater"),
            length_short=length_stats(short.sum(0)), length_long=length_stats(long.sum(0)),
            precision_retained=precision, precision_retained_ci=percentile_interval(precision_samples[name]))

    def difference(system: str, baseline: str, precision_only: bool = False) -> RetentionDifference:
        reps = precision_samples if precision_only else samples
        diff = reps[system] - reps[baseline]
        field_name = "precision_retained" if precision_only else "retained"
        a, b = getattr(systems[system], field_name), getattr(systems[baseline], field_name)
        if a is None or b is None:
            return RetentionDifference(None, percentile_interval(diff), None, None, system, baseline)
        return RetentionDifference(a - b, percentile_interval(diff), centred_p_value(diff, a - b, "greater"),
                                   centred_p_value(-diff, b - a, "greater"), system, baseline)

    return Retention(systems=systems, difference=difference(attention, fixed),
                     pairs=[difference(s, b) for s, b in pairs], groups=len(groups), n_samples=n_samples,
                     precision_difference=difference(attention, fixed, precision_only=True))


def retained_samples(short: np.ndarray, long: np.ndarray, idxs: np.ndarray, precision_only: bool = False
                     ) -> tuple[float | None, np.ndarray]:
    """BLEU_K / BLEU_1 of all groups and of each resample of the groups.

    short, long: (groups, num_stats) BLEU statistics per group of level 1 (joined groups) and level K; idxs:
    (n_samples, groups) resampled group indices. Returns the observed share (None without any BLEU at k = 1) and
    the replicates (n_samples,), 0 where a resample has no BLEU at k = 1. precision_only: both levels' BLEU
    divided by their brevity penalty, the share of n-gram precision kept, apart from output length.
    """
    def scores(stats: np.ndarray) -> tuple[float, np.ndarray]:
        total, reps = score_from_stats(stats.sum(0)), resampled_scores(stats, idxs)
        if precision_only:
            penalty = float(brevity_penalty(stats.sum(0)))
            total = total / penalty if penalty > 0 else 0.0
            penalties = brevity_penalty(stats[:, :2][idxs].sum(axis=1))  # lengths only: (n_samples,)
            reps = np.divide(reps, penalties, out=np.zeros_like(reps), where=penalties > 0)
        return total, reps

    (bleu_short, reps_short), (bleu_long, reps_long) = scores(short), scores(long)
    with np.errstate(divide="ignore", invalid="ignore"):
        reps = np.nan_to_num(reps_long / reps_short, nan=0.0, posinf=0.0)
    return (bleu_long / bleu_short if bleu_short > 0 else None), reps


def count_sentences(text: str) -> int:
    """Sentences in one German or English output: the stretches of text with a word in them between sentence-final
    punctuation (`SENTENCE_END`), a trailing stretch without final punctuation included. A model that stops after
    the first full stop of a joined input produces one sentence where k were asked for. An abbreviation's full
    stop before a space ("z. B.") counts as a sentence end, so compare counts between systems on the same inputs
    rather than reading one count alone."""
    return sum(bool(WORD.search(piece)) for piece in SENTENCE_END.split(text))


def slope(words: Sequence[float], bleu: Sequence[float]) -> Slope:
    """Least-squares fit of BLEU on the levels' mean source words."""
    per_word = float(np.polyfit(np.asarray(words, dtype=float), np.asarray(bleu, dtype=float), 1)[0])
    return Slope(10 * per_word, 10 * per_word / bleu[0] if bleu[0] else 0.0)
