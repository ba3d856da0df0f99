"""Question (c), retention at matched k = 1 quality, and the statistics beside it: constructed trajectories
(equal curves, a known gap, no overlap, the aligned mask), the segment-alignment score, the seed-level t-interval,
precision-only retention, sentence counts, the verdict's four outcomes, and the calibration of the p-value on
simulated equal trajectories."""

from __future__ import annotations

import numpy as np
import pytest

from nmt.errors import NMTError
from nmt.experiments.verdicts import (
    INCONCLUSIVE,
    MATCHED_LESS,
    MATCHED_MORE,
    MATCHED_NO_DIFFERENCE,
    NO_OVERLAP,
    matched_verdict,
    seed_level_agrees,
)
from nmt.metrics.alignment import segment_alignment
from nmt.metrics.retention import count_sentences, retained_samples
from nmt.metrics.significance import T_975, SeedInterval, bootstrap_indices, seed_interval
from nmt.metrics.trajectory import MatchedRetention, TrajectoryPoint, interpolation_weights, matched_retention

SHAPE = np.array([1.6, 1.1, 0.85, 0.65])  # n-gram precisions relative to their geometric mean, n = 1..4


def _stats(rng: np.random.Generator, difficulty: np.ndarray, precision: float, length_ratio: float = 1.0
           ) -> np.ndarray:
    """(groups, 10) sacreBLEU BLEU statistics of a system whose n-gram precisions are `precision` * SHAPE scaled by
    each group's difficulty, matches drawn binomially: BLEU is about 100 * precision * length penalty."""
    ref = rng.integers(40, 60, len(difficulty))
    hyp = np.round(ref * length_ratio).astype(int)
    out = np.zeros((len(difficulty), 10), dtype=np.float32)
    out[:, 0], out[:, 1] = hyp, ref
    for n in range(4):
        total = np.maximum(hyp - n, 0)
        out[:, 2 + n] = rng.binomial(total, np.clip(precision * SHAPE[n] * difficulty, 0.0, 1.0))
        out[:, 6 + n] = total
    return out


def _curve(quality: float) -> float:
    """The retention both models share under the null: linear in quality, so interpolation is exact."""
    return 0.5 + 0.01 * (quality - 20.0)


def _trajectory(rng: np.random.Generator, difficulty: np.ndarray, qualities: np.ndarray, shift: float = 0.0
                ) -> list[TrajectoryPoint]:
    """Checkpoints at the given k = 1 qualities (BLEU) whose level-K precision keeps _curve(quality) + shift."""
    return [TrajectoryPoint(step, float(q), _stats(rng, difficulty, q / 100),
                            _stats(rng, difficulty, q / 100 * (_curve(q) + shift)))
            for step, q in enumerate(qualities)]


def _models(rng: np.random.Generator, seeds: int = 3, groups: int = 40, gap: float = 0.0, seed_sd: float = 0.0,
            fixed_q: tuple[float, float] = (12.0, 24.0), attention_q: tuple[float, float] = (15.0, 30.0),
            checkpoints: int = 4) -> tuple[list[list[TrajectoryPoint]], list[list[TrajectoryPoint]]]:
    """Both models' trajectories over `seeds` seeds on the same test groups (a shared difficulty per group),
    attention `gap` above the fixed model at every quality, each seed's retention shifted by N(0, seed_sd)."""
    difficulty = rng.lognormal(0.0, 0.2, groups)

    def model(lo: float, hi: float, gap: float) -> list[list[TrajectoryPoint]]:
        return [_trajectory(rng, difficulty, np.linspace(lo, hi, checkpoints) + rng.normal(0, 0.5, checkpoints),
                            gap + rng.normal(0.0, seed_sd)) for _ in range(seeds)]

    return model(*fixed_q, 0.0), model(*attention_q, gap)


def test_equal_curves_are_not_flagged_and_identical_ones_read_zero() -> None:
    rng = np.random.default_rng(1)
    fixed, attention = _models(rng)
    r = matched_retention(fixed, attention, n_samples=300)
    assert r.overlap is not None and r.overlap[0] >= 14.5 and r.overlap[1] <= 24.5
    assert r.p_value > 0.05 and r.p_less > 0.05 and r.ci[0] < 0 < r.ci[1]
    assert matched_verdict(r)[0] == MATCHED_NO_DIFFERENCE
    same = matched_retention(fixed, fixed, n_samples=100)
    assert same.difference == 0.0 and same.per_seed == [0.0] * 3 and same.p_value == 1.0 and same.p_less == 1.0


def test_a_known_gap_is_found_with_its_sign_and_size() -> None:
    rng = np.random.default_rng(2)
    fixed, attention = _models(rng, gap=0.15)
    r = matched_retention(fixed, attention, n_samples=300)
    assert r.difference == pytest.approx(0.15, abs=0.03) and r.ci[0] > 0.08
    assert r.p_value < 0.01 and r.p_less > 0.9
    assert seed_level_agrees(r.seed_level, "greater")
    label, reason = matched_verdict(r)
    assert label == MATCHED_MORE and "3 seeds" in reason and "p < 0.00" in reason
    worse = matched_retention(attention, fixed, n_samples=300)  # the roles swapped: attention keeps less
    assert worse.difference == pytest.approx(-r.difference) and matched_verdict(worse)[0] == MATCHED_LESS


def test_ranges_that_do_not_overlap_are_not_compared() -> None:
    rng = np.random.default_rng(3)
    fixed, attention = _models(rng, seeds=2, fixed_q=(8.0, 18.0), attention_q=(23.0, 35.0))
    r = matched_retention(fixed, attention, n_samples=50)
    assert r.overlap is None and r.difference is None and r.p_value is None and r.ci == []
    assert r.fixed_range[1] < r.attention_range[0]
    label, reason = matched_verdict(r)
    assert label == NO_OVERLAP and "2 seeds" in reason and f"{r.attention_range[0]:.1f}" in reason
    # Touching ranges overlap over less than the minimum width: still not compared.
    fixed, attention = _models(rng, seeds=2, fixed_q=(8.0, 18.0), attention_q=(17.0, 30.0))
    assert matched_retention(fixed, attention, n_samples=50, min_overlap=5.0).overlap is None


def test_only_aligned_attention_checkpoints_enter() -> None:
    """Unaligned checkpoints with a huge retention would create a gap; masked out, the curves are equal again
    (and the range shrinks to the aligned points')."""
    rng = np.random.default_rng(4)
    fixed, attention = _models(rng, checkpoints=6, attention_q=(12.0, 27.0))
    difficulty = rng.lognormal(0.0, 0.2, 40)
    for t in attention:
        t += [TrajectoryPoint(99, q, _stats(rng, difficulty, 0.2), _stats(rng, difficulty, 0.2 * 0.95), aligned=False)
              for q in (14.0, 18.0, 22.0)]
    r = matched_retention(fixed, attention, n_samples=200)
    assert r.points == [18, 18] and r.p_value > 0.05
    unmasked = [[TrajectoryPoint(p.step, p.quality, p.short, p.long) for p in t] for t in attention]
    assert matched_retention(fixed, unmasked, n_samples=200).difference > r.difference + 0.1
    nothing_aligned = [[TrajectoryPoint(p.step, p.quality, p.short, p.long, aligned=False) for p in t]
                       for t in attention]
    none = matched_retention(fixed, nothing_aligned, n_samples=50)
    assert none.attention_range is None and none.overlap is None
    assert "no usable checkpoint" in matched_verdict(none)[1]


def test_interpolation_weights_are_piecewise_linear_in_quality() -> None:
    quality = np.array([20.0, 10.0, 30.0, 20.0])  # out of training order, with a tie
    values = np.array([3.0, 1.0, 5.0, 1.0])  # the tie's mean is 2: the curve is 1 -> 2 -> 5 over 10 -> 20 -> 30
    grid = np.linspace(10.0, 30.0, 201)
    expected = np.interp(grid, [10.0, 20.0, 30.0], [1.0, 2.0, 5.0]).mean()
    assert interpolation_weights(quality, grid) @ values == pytest.approx(expected)
    assert interpolation_weights(quality, grid).sum() == pytest.approx(1.0)


def test_mismatched_inputs_are_refused_in_one_line() -> None:
    rng = np.random.default_rng(5)
    fixed, attention = _models(rng, seeds=2)
    with pytest.raises(NMTError, match="same seeds"):
        matched_retention(fixed, attention[:1])
    other_groups = [[TrajectoryPoint(0, 20.0, p.short[:10], p.long[:10]) for p in attention[0]], attention[1]]
    with pytest.raises(NMTError, match="same test groups"):
        matched_retention(fixed, other_groups)


def test_segment_alignment_on_constructed_attention() -> None:
    """Four sentences of 3 source and 2 target tokens and a final source end-of-sentence token."""
    k, src_len, tgt_len = 4, 13, 8
    src = [(3 * j, 3 * j + 3) for j in range(k)]
    tgt = [(2 * j, 2 * j + 2) for j in range(k)]
    diagonal = np.zeros((tgt_len, src_len))
    for (s0, s1), (t0, t1) in zip(src, tgt, strict=True):
        diagonal[t0:t1, s0:s1] = 1.0 / (s1 - s0)
    uniform = np.full((tgt_len, src_len), 1.0 / src_len)
    shifted = np.roll(diagonal, 3, axis=1)  # every sentence attends to the next source sentence
    scores = segment_alignment(np.stack([diagonal, uniform, shifted]), [src] * 3, [tgt] * 3)
    assert scores == pytest.approx([1.0, 3 / src_len, 0.0])
    assert abs(scores[1] - 1 / k) < 0.03  # chance is about 1/k
    assert segment_alignment(diagonal, [src], [tgt]) == pytest.approx([1.0])  # one example, (T, S)
    padded = np.zeros((tgt_len + 3, src_len + 5))  # padding rows and columns are never read
    padded[:tgt_len, :src_len] = diagonal
    assert segment_alignment(padded[None], [src], [tgt]) == pytest.approx([1.0])
    with pytest.raises(NMTError, match="must match"):
        segment_alignment(diagonal, [src], [tgt[:3]])


def test_seed_interval_against_known_t_values() -> None:
    r = seed_interval([1.0, 2.0, 3.0])  # mean 2, sd 1, t(0.975, 2) = 4.303
    assert r.mean == 2.0 and r.sd == pytest.approx(1.0) and r.seeds == 3
    assert r.ci == pytest.approx([2 - 4.303 / np.sqrt(3), 2 + 4.303 / np.sqrt(3)])
    ten = seed_interval(np.arange(10.0))  # sd sqrt(110 / 12), t(0.975, 9) = 2.262
    assert ten.ci[1] - ten.mean == pytest.approx(2.262 * np.sqrt(110 / 12) / np.sqrt(10))
    assert seed_interval(np.arange(100.0)).ci[1] - 49.5 == pytest.approx(T_975[-1] * np.arange(100.0).std(ddof=1) / 10)
    assert seed_interval([0.3]).sd is None and seed_interval([0.3]).ci == []
    with pytest.raises(NMTError):
        seed_interval([])


def test_a_verdict_needs_the_seed_level_interval_to_agree() -> None:
    assert seed_level_agrees(SeedInterval(0.1, 0.02, [0.01, 0.19], 3), "greater")
    assert not seed_level_agrees(SeedInterval(0.1, 0.1, [-0.01, 0.21], 3), "greater")
    assert seed_level_agrees(SeedInterval(-0.1, 0.02, [-0.19, -0.01], 3), "less")
    assert not seed_level_agrees(SeedInterval(0.1, 0.02, [0.01, 0.19], 2), "greater")  # fewer than 3 seeds
    assert not seed_level_agrees(None, "greater")


def _made(difference: float = 0.1, ci: tuple[float, float] = (0.05, 0.15), p: float = 0.001,
          p_less: float = 0.999, seed_ci: tuple[float, float] = (0.02, 0.18), seeds: int = 3) -> MatchedRetention:
    """A hand-made result: overlap 15-19 BLEU, the given test-group interval, p-values and seed-level interval."""
    level = SeedInterval(difference, 0.05, list(seed_ci), seeds)
    return MatchedRetention([10.0, 19.0], [15.0, 30.0], [15.0, 19.0], difference, list(ci), p, p_less,
                            [difference] * seeds, level, seeds, 250, [12, 12], 1000, 2.0)


def test_matched_verdict_outcomes_at_their_boundaries() -> None:
    label, reason = matched_verdict(_made())
    assert label == MATCHED_MORE and "15.0-19.0" in reason and "3 seeds" in reason and "+10.0 points" in reason
    assert matched_verdict(_made(p=0.05))[0] == MATCHED_NO_DIFFERENCE  # p must be under alpha
    label, reason = matched_verdict(_made(seed_ci=(-0.01, 0.21)))  # the groups flag it, the seeds do not
    assert label == MATCHED_NO_DIFFERENCE and "the seeds do not" in reason and "11.0 points" in reason
    label, reason = matched_verdict(_made(-0.1, (-0.15, -0.05), 0.999, 0.001, (-0.18, -0.02)))
    assert label == MATCHED_LESS and "for less" in reason
    label, reason = matched_verdict(_made(0.01, (-0.04, 0.06), 0.4, 0.6, (-0.1, 0.12)))
    assert label == MATCHED_NO_DIFFERENCE and "smaller than about 11.0 points" in reason
    label, reason = matched_verdict(_made(seeds=2))
    assert label == INCONCLUSIVE and "at least 3 seeds" in reason


def test_precision_only_retention_equals_bleu_retention_without_a_length_penalty() -> None:
    rng = np.random.default_rng(6)
    difficulty = rng.lognormal(0.0, 0.2, 50)
    short, long = _stats(rng, difficulty, 0.3), _stats(rng, difficulty, 0.2)  # hypotheses as long as references
    idxs = bootstrap_indices(50, 100)
    bleu, bleu_reps = retained_samples(short, long, idxs)
    precision, precision_reps = retained_samples(short, long, idxs, precision_only=True)
    assert precision == pytest.approx(bleu) and precision_reps == pytest.approx(bleu_reps)
    # Shorter level-K outputs: BLEU retention falls with the brevity penalty, precision-only retention does not.
    rng = np.random.default_rng(6)
    short, terse = _stats(rng, difficulty, 0.3), _stats(rng, difficulty, 0.2, length_ratio=0.6)
    bleu, _ = retained_samples(short, terse, idxs)
    precision, _ = retained_samples(short, terse, idxs, precision_only=True)
    assert bleu == pytest.approx(precision * np.exp(1 - 1 / 0.6), rel=0.02) and precision > 1.5 * bleu


def test_sentences_are_counted_by_their_final_punctuation() -> None:
    assert count_sentences("Ein Mann läuft . Ein Hund bellt .") == 2
    assert count_sentences("A man runs. A dog barks! Why? ") == 3
    assert count_sentences('He said "hi." Then he left') == 2  # a trailing sentence without its full stop
    assert count_sentences("Ein Mann... läuft.") == 2 and count_sentences("3.5 m tall.") == 1
    assert count_sentences("") == 0 and count_sentences("no punctuation") == 1


def _flag_rates(trials: int, seed_sd: float, rng_seed: int, groups: int) -> dict[str, float]:
    """Shares of `trials` simulated equal trajectories (both models from the same process, 3 seeds x 4
    checkpoints, 200 resamples) flagged by the p-value each way at 0.05 and 0.01, and by the verdict."""
    rng = np.random.default_rng(rng_seed)
    counts = dict.fromkeys(("more_05", "more_01", "less_05", "less_01", "verdict_05"), 0)
    for t in range(trials):
        r = matched_retention(*_models(rng, groups=groups, seed_sd=seed_sd), n_samples=200, seed=t)
        counts["more_05"] += r.p_value < 0.05
        counts["more_01"] += r.p_value < 0.01
        counts["less_05"] += r.p_less < 0.05
        counts["less_01"] += r.p_less < 0.01
        counts["verdict_05"] += matched_verdict(r)[0] in (MATCHED_MORE, MATCHED_LESS)
    return {name: count / trials for name, count in counts.items()}


@pytest.mark.slow
def test_matched_p_value_is_calibrated_on_equal_trajectories() -> None:
    """The test-group p-value on equal trajectories whose seeds do not differ, 120 test groups (the experiment
    has more; with a few dozen the percentile bootstrap of a ratio flags too often): each side flags between 2%
    and 8% at alpha = 0.05, and between 1 and 9 of 300 (0.33% to 3%) at 0.01."""
    rates = _flag_rates(300, seed_sd=0.0, rng_seed=2027, groups=120)
    for side in ("more", "less"):
        assert 0.02 <= rates[f"{side}_05"] <= 0.08, rates
        assert 1 / 300 <= rates[f"{side}_01"] <= 0.03, rates


@pytest.mark.slow
def test_the_verdict_stays_calibrated_when_seeds_differ() -> None:
    """Seeds that shift retention (between-seed SD of 3 points, as large as the test noise): the test-group
    p-value alone flags far more than alpha, as it answers for these trained runs only; the verdict, which also
    needs the seed-level interval, flags at most 6% at alpha = 0.05 (either side)."""
    rates = _flag_rates(300, seed_sd=0.03, rng_seed=2028, groups=40)
    assert rates["more_05"] + rates["less_05"] > 0.2, rates
    assert rates["verdict_05"] <= 0.06, rates


# Following a run (nmt/experiments/follow.py) -------------------------------------------------------------------
def test_sentence_spans_follow_the_pieces_and_refuse_a_merged_join() -> None:
    """A joined example's sentence spans are its sentences' pieces one after another; where the joined text's
    pieces differ (a tokenizer merging across the join) the example has no spans."""
    from nmt.experiments.follow import sentence_spans

    def encode(texts: list[str]) -> list[list[int]]:  # one id per character, "ab" merged into one piece
        return [[ord(c) for c in t.replace("ab", "\x01")] for t in texts]

    spans = sentence_spans(encode, [["xy", "z"], ["xa", "b"]], ["xyz", "xab"])
    assert spans == [[(0, 2), (2, 3)], None]


def test_delta_nll_reads_each_joined_sentence_against_itself_alone() -> None:
    """Sentence j's per-token NLL inside the joined reference minus its own k = 1 NLL (EOS left out on both
    sides), averaged over groups; groups without spans are left out."""
    from nmt.experiments.follow import delta_nll

    short = [np.log(np.full(3, 0.5)), np.log(np.full(4, 0.25))]  # 2 and 3 pieces + EOS
    joined = np.concatenate([np.log(np.full(2, 0.5)), np.log(np.full(3, 0.125)), [0.0]])
    deltas, ci, used = delta_nll(short, [joined, joined], [[(0, 2), (2, 5)], None], [[0, 1], [0, 1]], 50)
    assert used == 1 and deltas == pytest.approx([0.0, np.log(8) - np.log(4)])
    assert ci[1] == pytest.approx([np.log(2), np.log(2)])
