"""Retention at matched k = 1 quality: both models followed over training, compared where their quality overlaps.

A better model may simply degrade less, so "attention keeps more of its BLEU" means something only between
checkpoints of equal k = 1 quality. Each seed's checkpoints give a trajectory of (k = 1 quality, retention)
points; each model's curve of retention against quality is compared with the other's on a common grid inside
the quality range both cover, and nowhere else (no extrapolation). The statistic is the mean over that grid of
attention's retention minus the fixed model's, averaged over seeds. Statistics only; the verdict is
`matched_verdict` in nmt/experiments/verdicts.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nmt.errors import NMTError
from nmt.io import Record
from nmt.metrics.retention import retained_samples
from nmt.metrics.scores import score_from_stats
from nmt.metrics.significance import (
    BOOTSTRAP_SEED,
    SeedInterval,
    bootstrap_indices,
    centred_p_value,
    percentile_interval,
    seed_interval,
)

GRID_POINTS = 21  # quality values the two curves are compared at, evenly spaced over the overlap
MIN_OVERLAP = 2.0  # the narrowest overlap of quality ranges (in the quality's units, e.g. BLEU) worth comparing


@dataclass
class TrajectoryPoint:
    """One checkpoint of one seed.

    quality: its k = 1 quality on k = 1 items (e.g. valid k = 1 BLEU), the matching variable; not resampled (it is
    measured on other items than the test groups). short, long: (groups, num_stats) sacreBLEU BLEU statistics per
    test group of the joined k = 1 outputs and of the level-K outputs, the same groups in the same order for every
    checkpoint, seed and model (see `retention`). aligned: False leaves the point out (an attention checkpoint
    whose segment-alignment score says it does not align yet).
    """

    step: int
    quality: float
    short: np.ndarray
    long: np.ndarray
    aligned: bool = True


Trajectory = Sequence[TrajectoryPoint]  # one seed's checkpoints, in any order


@dataclass
class MatchedRetention(Record):
    """Attention - fixed retention at matched k = 1 quality (`matched_retention`).

    A model's range is the quality every one of its seeds covers ([highest first point, lowest last point]; None
    when a seed has no usable checkpoint); `overlap` is where both models' ranges meet, None when narrower than
    `min_overlap`, and then there is no difference and no test.
    """

    fixed_range: list[float] | None
    attention_range: list[float] | None
    overlap: list[float] | None
    difference: float | None  # mean over the grid and the seeds of attention - fixed retention
    ci: list[float]  # 95% interval, bootstrap over the test groups
    p_value: float | None  # one-sided: attention keeps more
    p_less: float | None  # one-sided: attention keeps less
    per_seed: list[float]  # each seed's difference on the same grid
    seed_level: SeedInterval | None  # t-interval of per_seed (None with one seed or no overlap)
    seeds: int
    groups: int
    points: list[int]  # usable checkpoints over all seeds: [fixed, attention]
    n_samples: int
    min_overlap: float


def interpolation_weights(quality: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Weights w (points,) with w @ values = the mean over `grid` of the piecewise-linear interpolation of
    (quality, values): linear in the values, so one w serves the observed retentions and every replicate.

    The points are taken in order of quality, not of training: the question is about retention as a function of
    quality, and training order only says when a checkpoint came. A non-monotone trajectory (quality dipping
    between checkpoints) would pass the same quality twice along training order and give two retentions there;
    sorted by quality it is one curve through every checkpoint. Checkpoints of equal quality share one point,
    their mean retention.
    """
    levels, which = np.unique(quality, return_inverse=True)  # sorted distinct qualities
    mean_of_ties = np.zeros((len(levels), len(quality)))
    mean_of_ties[which, np.arange(len(quality))] = 1.0
    mean_of_ties /= mean_of_ties.sum(axis=1, keepdims=True)
    # Interpolating each unit vector gives the weight of each distinct quality at each grid value.
    per_grid = np.stack([np.interp(grid, levels, unit) for unit in np.eye(len(levels))], axis=1)  # (grid, levels)
    return per_grid.mean(axis=0) @ mean_of_ties


def usable(trajectory: Trajectory) -> list[TrajectoryPoint]:
    """The points that enter the comparison: aligned, and with some BLEU at k = 1 (else retention is undefined)."""
    return [p for p in trajectory if p.aligned and score_from_stats(p.short.sum(0)) > 0]


def covered_range(trajectories: Sequence[list[TrajectoryPoint]]) -> list[float] | None:
    """[lo, hi] of quality that every trajectory covers (may be empty: lo > hi); None if one has no points."""
    if any(not t for t in trajectories):
        return None
    return [float(max(min(p.quality for p in t) for t in trajectories)),
            float(min(max(p.quality for p in t) for t in trajectories))]


def matched_retention(fixed: Sequence[Trajectory], attention: Sequence[Trajectory], n_samples: int = 1000,
                      seed: int = BOOTSTRAP_SEED, grid_points: int = GRID_POINTS, min_overlap: float = MIN_OVERLAP
                      ) -> MatchedRetention:
    """Does attention keep more of its k = 1 BLEU than the fixed model at equal k = 1 quality?

    fixed, attention: one trajectory per seed, seed i of one model paired with seed i of the other (they share
    the seed's data order). Points with `aligned` False and points without BLEU at k = 1 are left out. Each
    seed's retention curve (piecewise linear in quality, see `interpolation_weights`) is averaged over
    `grid_points` evenly spaced qualities inside the overlap; the difference is attention - fixed, averaged over
    seeds. When the overlap is narrower than `min_overlap` the result says so and carries no difference.

    Two sources of noise, two tests. The test groups: a bootstrap draws them, one draw shared by every
    checkpoint, seed and model (all are scored on the same groups, so checkpoints stay paired), for the 95%
    interval and one-sided p-values both ways (signed, centred): would these checkpoints differ on another test
    set? The seeds: `seed_level`, the t-interval of the per-seed differences: would other training runs differ?
    The seeds are not resampled in the bootstrap: a draw from three to five seeds understates their spread, and
    each seed's difference already holds its own test noise, which the group draw counts once more; a verdict
    needs both the p-value and the seed-level interval (nmt/experiments/verdicts.py).
    """
    if not fixed or len(fixed) != len(attention):
        raise NMTError(f"matched retention needs the same seeds for both models, got {len(fixed)} fixed and "
                       f"{len(attention)} attention trajectories")
    points = [p for t in (*fixed, *attention) for p in t]
    if not points:
        raise NMTError("matched retention needs checkpoints, got empty trajectories")
    shapes = {p.short.shape for p in points} | {p.long.shape for p in points}
    if len(shapes) != 1:
        raise NMTError(f"every checkpoint must be scored on the same test groups, got statistics of shapes "
                       f"{sorted(shapes)}")
    groups = next(iter(shapes))[0]
    models = [[usable(t) for t in fixed], [usable(t) for t in attention]]
    fixed_range, attention_range = covered_range(models[0]), covered_range(models[1])
    lo, hi = (max(fixed_range[0], attention_range[0]), min(fixed_range[1], attention_range[1])) \
        if fixed_range and attention_range else (0.0, -1.0)
    result = MatchedRetention(fixed_range, attention_range, None, None, [], None, None, [], None, len(fixed), groups,
                              [sum(map(len, m)) for m in models], n_samples, min_overlap)
    if hi - lo < min_overlap or hi < lo:
        return result
    grid = np.linspace(lo, hi, grid_points)
    group_idxs = bootstrap_indices(groups, n_samples, seed)  # (n_samples, groups)
    observed = np.zeros((2, len(fixed)))  # (model, seed): grid-mean retention
    replicates = np.zeros((2, len(fixed), n_samples))
    for m, trajectories in enumerate(models):
        for s, points in enumerate(trajectories):
            weights = interpolation_weights(np.array([p.quality for p in points]), grid)  # (points,)
            for w, p in zip(weights, points, strict=True):
                retained, reps = retained_samples(p.short, p.long, group_idxs)
                observed[m, s] += w * retained
                replicates[m, s] += w * reps
    per_seed = observed[1] - observed[0]  # (seeds,)
    diffs = (replicates[1] - replicates[0]).mean(axis=0)  # (n_samples,)
    value = float(per_seed.mean())
    result.overlap, result.difference, result.ci = [lo, hi], value, percentile_interval(diffs)
    result.p_value = centred_p_value(diffs, value, "greater")
    result.p_less = centred_p_value(-diffs, -value, "greater")
    result.per_seed = [float(d) for d in per_seed]
    result.seed_level = seed_interval(per_seed) if len(per_seed) > 1 else None
    return result
