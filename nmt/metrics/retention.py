"""Retention: how much of its BLEU at one sentence per input a system keeps on longer inputs, and the BLEU slope
over input length. Statistics only; the verdicts built on them are in nmt/experiments/verdicts.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nmt.metrics.scores import resampled_scores, score_from_stats, sentence_stats
from nmt.metrics.significance import BOOTSTRAP_SEED, bootstrap_indices, centred_p_value, percentile_interval


def retention(levels: dict[str, dict[str, Any]], groups: Sequence[Sequence[int]], fixed: str, attention: str,
              n_samples: int = 1000, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """How much of its k = 1 BLEU each system keeps at the longest level K, and the difference between two.

    levels: system -> {"short": (hyps, refs) of level 1 (one per sentence), "long": (hyps, refs) of level K
    (one per group)}; groups: the sentences of each level-K example (nmt.data.concat.level_groups), so both
    levels are scored on the same sentences. A bootstrap resamples the groups, the same for every system:
    retained = BLEU_K / BLEU_1 with a 95% interval and the one-sided p-value of "retained < 1" (signed,
    centred); for `attention` - `fixed` the difference of retained shares, its interval and the one-sided
    p-value of "attention retains more".
    Returns {"systems": {name: {"bleu_short", "bleu_long", "retained", "retained_ci", "p_degrades"}},
    "difference": {"value", "ci", "p_value"}, "groups", "n_samples"}.
    """
    idxs = bootstrap_indices(len(groups), n_samples, seed)  # (n_samples, groups)
    out: dict[str, Any] = {"systems": {}, "groups": len(groups), "n_samples": n_samples}
    samples = {}
    for name, lv in levels.items():
        short = sentence_stats(*lv["short"])
        grouped = np.stack([short[list(g)].sum(0) for g in groups])  # (groups, num_stats): level 1 per group
        long = sentence_stats(*lv["long"])  # (groups, num_stats)
        bleu_short, bleu_long = score_from_stats(grouped.sum(0)), score_from_stats(long.sum(0))
        retained = bleu_long / bleu_short if bleu_short > 0 else None  # undefined without any BLEU at k = 1
        with np.errstate(divide="ignore", invalid="ignore"):
            reps = resampled_scores(long, idxs) / resampled_scores(grouped, idxs)
        reps = np.nan_to_num(reps, nan=0.0, posinf=0.0)
        samples[name] = reps
        out["systems"][name] = {"bleu_short": bleu_short, "bleu_long": bleu_long, "retained": retained,
                                "retained_ci": percentile_interval(reps),
                                "p_degrades": None if retained is None else
                                centred_p_value(1.0 - reps, 1.0 - retained, "greater")}
    diff = samples[attention] - samples[fixed]
    a, f = out["systems"][attention]["retained"], out["systems"][fixed]["retained"]
    value = None if a is None or f is None else a - f
    out["difference"] = {"value": value, "ci": percentile_interval(diff),
                         "p_value": None if value is None else centred_p_value(diff, value, "greater")}
    return out


def slope(words: Sequence[float], bleu: Sequence[float]) -> dict[str, float]:
    """Least-squares BLEU change per 10 source words over the levels, absolute and relative to level 1's BLEU."""
    per_word = float(np.polyfit(np.asarray(words, dtype=float), np.asarray(bleu, dtype=float), 1)[0])
    return {"per_10_words": 10 * per_word, "relative_per_10_words": 10 * per_word / bleu[0] if bleu[0] else 0.0}
