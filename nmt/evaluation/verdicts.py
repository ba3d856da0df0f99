"""Statistics behind the experiments' verdicts, and the verdicts themselves, computed from numbers only.

- `comparison_verdict`: "system A beats system B" from a paired test's difference and p-value.
- `gap_growth` / `growth_verdict` / `bottleneck_verdict`: "the attention-minus-baseline BLEU gap grows with
  source length" (the bottleneck claim), per seed and over seeds.
- `mean_std` aggregates over seeds; `paired_mean_bootstrap` tests per-item statistics (e.g. attention entropy).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from nmt.errors import NMTError
from nmt.evaluation.metrics import BOOTSTRAP_SEED

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive at this budget"
ALPHA = 0.05  # significance level of every verdict


def mean_std(values: Sequence[float | None]) -> dict[str, Any] | None:
    """{"mean", "std" (sample std; None for one value), "n"} of the values that are not None; None if none."""
    xs = [float(v) for v in values if v is not None]
    if not xs:
        return None
    return {"mean": statistics.fmean(xs), "std": statistics.stdev(xs) if len(xs) > 1 else None, "n": len(xs)}


def fmt_mean_std(ms: dict[str, Any] | None, digits: int = 2, signed: bool = False) -> str:
    if ms is None:
        return "-"
    sign = "+" if signed else ""
    text = f"{ms['mean']:{sign}.{digits}f}"
    return text if ms["std"] is None else f"{text} ± {ms['std']:.{digits}f}"


def comparison_verdict(difference: float, p_value: float, scores: Sequence[float] = (), min_score: float = 0.0) -> str:
    """A claim that a system beats another: `difference` is oriented so that > 0 is the claimed direction.

    With `scores` (e.g. both systems' BLEU), inconclusive when none reaches `min_score`: between near-zero
    BLEUs even a "significant" difference is noise in the sacreBLEU p-value, not a result.
    """
    if p_value >= ALPHA or (scores and max(scores) < min_score):
        return INCONCLUSIVE
    return SUPPORTED if difference > 0 else NOT_SUPPORTED


def paired_mean_bootstrap(a: Sequence[float], b: Sequence[float], n_samples: int = 1000,
                          seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Paired bootstrap of mean(a) - mean(b) over items (e.g. per-sentence attention statistics).

    Same p-value statistic as `paired_bootstrap` (sacreBLEU's): the share of centred resampled |differences|
    above the observed one. Returns {"a", "b", "difference", "difference_ci", "p_value", "count"}.
    """
    from sacrebleu.significance import _compute_p_value

    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(x) != len(y) or len(x) == 0:
        raise NMTError(f"paired_mean_bootstrap needs two equally long non-empty lists, got {len(x)} and {len(y)}")
    idxs = np.random.default_rng(seed).integers(0, len(x), size=(n_samples, len(x)))
    diffs = x[idxs].mean(axis=1) - y[idxs].mean(axis=1)
    observed = float(x.mean() - y.mean())
    p = 1.0 if np.array_equal(x, y) else float(_compute_p_value(np.abs(diffs - diffs.mean()), abs(observed)))
    return {"a": float(x.mean()), "b": float(y.mean()), "difference": observed,
            "difference_ci": [float(v) for v in np.percentile(diffs, [2.5, 97.5])], "p_value": p, "count": len(x)}


def gap_growth(sources: Sequence[str], hyps: Sequence[str], base_hyps: Sequence[str], refs: Sequence[str],
               long_from: int, n_samples: int = 1000, seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Does the BLEU gap system - baseline grow with source length?

    system_short / baseline_short (_long): each system's BLEU on sources of < long_from (>= long_from) words;
    gap_short / gap_long: BLEU(system) - BLEU(baseline) on each group;
    growth = gap_long - gap_short. Its 95% interval and p-value come from a paired bootstrap that resamples
    the short and the long sentences separately (so each group keeps its size), with sacreBLEU's per-sentence
    statistics and p-value statistic as in `paired_bootstrap`. Growth, interval and p are None when a group
    is empty.
    """
    from sacrebleu.metrics import BLEU
    from sacrebleu.significance import _compute_p_value

    from nmt.evaluation.metrics import resampled_scores, sentence_stats

    lengths = [len(s.split()) for s in sources]
    groups = {"short": [i for i, n in enumerate(lengths) if n < long_from],
              "long": [i for i, n in enumerate(lengths) if n >= long_from]}
    out: dict[str, Any] = {"long_from": long_from, "count_short": len(groups["short"]),
                           "count_long": len(groups["long"]), "gap_short": None, "gap_long": None,
                           "system_short": None, "system_long": None, "baseline_short": None,
                           "baseline_long": None, "growth": None, "growth_ci": None, "p_value": None,
                           "n_samples": n_samples}
    rng = np.random.default_rng(seed)
    samples = {}
    for name, rows in groups.items():
        if not rows:
            continue
        metric = BLEU()
        sys_score, sys_stats = sentence_stats(metric, [hyps[i] for i in rows], [refs[i] for i in rows])
        base_score, base_stats = sentence_stats(metric, [base_hyps[i] for i in rows], [refs[i] for i in rows])
        out[f"gap_{name}"] = sys_score - base_score
        out[f"system_{name}"], out[f"baseline_{name}"] = sys_score, base_score
        idxs = rng.choice(len(rows), size=(n_samples, len(rows)), replace=True)
        samples[name] = resampled_scores(metric, sys_stats, idxs) - resampled_scores(metric, base_stats, idxs)
    if len(samples) == 2:
        growth = out["gap_long"] - out["gap_short"]
        diffs = samples["long"] - samples["short"]
        out["growth"] = growth
        out["growth_ci"] = [float(v) for v in np.percentile(diffs, [2.5, 97.5])]
        out["p_value"] = float(_compute_p_value(np.abs(diffs - diffs.mean()), abs(growth)))
    return out


def growth_verdict(growth: dict[str, Any], flat_margin: float = 1.0, min_bleu: float = 5.0) -> str:
    """supported: the gap grows significantly (growth > 0, p < ALPHA). not supported: it shrinks
    significantly, or it is demonstrably flat (the whole 95% interval within +-flat_margin BLEU).
    Inconclusive otherwise, when a length group is empty, or when no system reaches `min_bleu` in either
    group (near-zero BLEU is flat for any model: it says nothing about the bottleneck)."""
    if growth.get("growth") is None:
        return INCONCLUSIVE
    if max(growth[k] for k in ("system_short", "system_long", "baseline_short", "baseline_long")) < min_bleu:
        return INCONCLUSIVE
    lo, hi = growth["growth_ci"]
    if growth["p_value"] < ALPHA:
        return SUPPORTED if growth["growth"] > 0 else NOT_SUPPORTED
    if -flat_margin <= lo and hi <= flat_margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def bottleneck_verdict(growths: Sequence[dict[str, Any]], flat_margin: float = 1.0,
                       min_bleu: float = 5.0) -> dict[str, Any]:
    """The corpus verdict over seeds: a label only when every seed's `growth_verdict` agrees, else
    inconclusive. Returns {"label", "per_seed": [labels], "growth": mean_std, "gap_short", "gap_long"}."""
    labels = [growth_verdict(g, flat_margin, min_bleu) for g in growths]
    label = labels[0] if labels and all(x == labels[0] for x in labels) else INCONCLUSIVE
    return {
        "label": label,
        "per_seed": labels,
        "growth": mean_std([g.get("growth") for g in growths]),
        "gap_short": mean_std([g.get("gap_short") for g in growths]),
        "gap_long": mean_std([g.get("gap_long") for g in growths]),
    }


def bottleneck_sentence(verdict: dict[str, Any], growths: Sequence[dict[str, Any]], corpus: str,
                        min_bleu: float = 5.0) -> str:
    """The verdict as a sentence, built from the numbers it was computed from."""
    long_from = growths[0]["long_from"]
    if verdict["growth"] is None:
        return (f"{corpus} has no sentences on one side of {long_from} words, so the gap cannot "
                f"be compared between short and long sentences.")
    seeds = f" (mean ± std over {len(growths)} seeds)" if len(growths) > 1 else ""
    detail = ""
    if len(growths) == 1:
        g = growths[0]
        detail = (f", 95% interval [{g['growth_ci'][0]:+.2f}, {g['growth_ci'][1]:+.2f}], p = {g['p_value']:.4f}")
    else:
        detail = "; per-seed verdicts: " + ", ".join(verdict["per_seed"])
    keys = ("system_short", "system_long", "baseline_short", "baseline_long")
    weak = [g for g in growths if max(g[k] for k in keys) < min_bleu]
    if weak:
        detail += (f"; in {len(weak)} of {len(growths)} seed(s) no system reaches {min_bleu:g} BLEU in either "
                   f"length group, too weak to show a bottleneck")
    return (f"On {corpus}, attention minus fixed-context BLEU is "
            f"{fmt_mean_std(verdict['gap_short'], signed=True)} on sources under {long_from} words and "
            f"{fmt_mean_std(verdict['gap_long'], signed=True)} on sources of {long_from}+ words{seeds}; "
            f"the gap changes by {fmt_mean_std(verdict['growth'], signed=True)} BLEU with length{detail}.")
