"""Statistics behind the experiments' verdicts, and the verdicts themselves, computed from numbers only.

- `comparison_verdict`: "system A beats system B" from a paired test's difference and p-value.
- `length_verdict` / `removal_verdict` / `bottleneck_verdict`: the bottleneck claim on length-controlled test
  levels (from the statistics of nmt/metrics/retention.py) as two questions: (a) does the fixed-context model
  degrade with length, and does attention degrade less? (b) does attention remove the degradation?
- `capacity_sentence`: what a bigger fixed-context vector does to that degradation.
- `mean_std` aggregates over seeds.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from nmt.evaluation.report import p_text

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
    if p_value is None or p_value >= ALPHA or (scores and max(scores) < min_score):
        return INCONCLUSIVE
    return SUPPORTED if difference > 0 else NOT_SUPPORTED


# The bottleneck claim on length-controlled levels ---------------------------------------------------------------
BOTTLENECK_ALPHA = 0.01  # both halves of the claim must hold at this level, in every seed
KEEPS_BLEU = 0.9  # a model that keeps this share of its k = 1 BLEU at the longest level does not degrade
REMOVES = "attention removes the degradation"
REDUCES = "attention reduces but does not remove the degradation"


def length_verdict(r: dict[str, Any], fixed: str, attention: str, min_bleu: float = 5.0) -> tuple[str, str]:
    """Question (a), "does the fixed-context model degrade, and does attention degrade less?", on one seed's
    `retention`: supported when the fixed model degrades (p < 0.01) and attention retains more (p < 0.01); not
    supported when the fixed model keeps >= 90% of its k = 1 BLEU, or attention retains no more than it;
    inconclusive otherwise (and when no system reaches `min_bleu` at k = 1). Returns (label, reason)."""
    f, a, d = r["systems"][fixed], r["systems"][attention], r["difference"]
    n = r.get("n_samples", 1000)
    if min(f["bleu_short"], a["bleu_short"]) < min_bleu:
        return INCONCLUSIVE, f"a system stays under {min_bleu:g} BLEU at k = 1: too weak to show a bottleneck"
    if f["retained"] >= KEEPS_BLEU:
        return NOT_SUPPORTED, (f"{fixed} keeps {f['retained']:.0%} of its k = 1 BLEU at the longest level "
                               f"(>= {KEEPS_BLEU:.0%}): no bottleneck to remove")
    if d["value"] <= 0:
        return NOT_SUPPORTED, (f"{attention} keeps {a['retained']:.0%}, no more than {fixed}'s "
                               f"{f['retained']:.0%}: attention degrades as much")
    weak = []
    if f["p_degrades"] >= BOTTLENECK_ALPHA:
        weak.append(f"the {fixed} degradation has {p_text(f['p_degrades'], n)}")
    if d["p_value"] >= BOTTLENECK_ALPHA:
        weak.append(f"the difference in retained BLEU has {p_text(d['p_value'], n)}")
    if weak:
        return INCONCLUSIVE, "; ".join(weak) + f" (needs p < {BOTTLENECK_ALPHA})"
    return SUPPORTED, (f"{fixed} keeps {f['retained']:.0%} of its k = 1 BLEU at the longest level "
                       f"({p_text(f['p_degrades'], n)}), {attention} {a['retained']:.0%} (difference "
                       f"{d['value']:+.0%}, {p_text(d['p_value'], n)})")


def removal_verdict(r: dict[str, Any], attention: str, min_bleu: float = 5.0) -> tuple[str, str]:
    """Question (b), "does attention remove the degradation?", on one seed's `retention`: attention's own
    retention against 100%. REMOVES when its one-sided test of degradation is not significant (p >= 0.01) and
    the lower end of its 95% interval is >= 90%; otherwise REDUCES (the degradation is still measurable).
    Returns (label, reason)."""
    a = r["systems"][attention]
    n = r.get("n_samples", 1000)
    if a["bleu_short"] < min_bleu:
        return INCONCLUSIVE, f"{attention} stays under {min_bleu:g} BLEU at k = 1"
    lo, hi = a["retained_ci"]
    kept = f"{attention} keeps {a['retained']:.0%} [{lo:.0%}, {hi:.0%}] ({p_text(a['p_degrades'], n)} for < 100%)"
    if a["p_degrades"] >= BOTTLENECK_ALPHA and lo >= KEEPS_BLEU:
        return REMOVES, f"{kept}: no measurable degradation"
    why = "it still degrades" if a["p_degrades"] < BOTTLENECK_ALPHA else f"its interval reaches below {KEEPS_BLEU:.0%}"
    return REDUCES, f"{kept}: {why}"


def bottleneck_verdict(labels: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Over seeds: a label when every seed gives it, else inconclusive with the reasons."""
    names = [label for label, _ in labels]
    if names and all(n == names[0] for n in names):
        return {"label": names[0], "per_seed": names, "reason": labels[0][1] if len(labels) == 1 else
                "every seed agrees: " + " | ".join(reason for _, reason in labels)}
    return {"label": INCONCLUSIVE, "per_seed": names,
            "reason": "the seeds disagree: " + " | ".join(f"{n}: {reason}" for n, reason in labels)}


def budget_text(steps: Sequence[int], batch_tokens: int) -> str:
    """"at 1,000 updates of 4k tokens" (or "at 507-656 updates ..." when the runs' step counts differ)."""
    lo, hi = min(steps), max(steps)
    count = f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"
    return f"at {count} updates of {batch_tokens / 1000:g}k tokens"


def capacity_sentence(rows: Sequence[dict[str, Any]], attention_retained: float | None, min_bleu: float = 5.0) -> str:
    """One sentence on the capacity sweep. rows: {"summary", "bleu" (per level), "retained", "retained_ci"} per
    fixed-context size, in increasing size; a difference counts when the intervals of the smallest and largest do
    not overlap. Models under `min_bleu` at k = 1 are too weak to say anything."""
    small, large = rows[0], rows[-1]
    weak = [str(r["summary"]) for r in rows if r["bleu"][0] < min_bleu]
    if weak:
        return (f"The capacity sweep says nothing at this budget: the fixed-context models of {', '.join(weak)} "
                f"dimensions stay under {min_bleu:g} BLEU at k = 1.")
    shares = " / ".join(f"{r['retained']:.0%}" for r in rows)
    sizes = " / ".join(str(r["summary"]) for r in rows)
    best = max(rows, key=lambda r: r["retained"] or 0.0)
    if best["retained"] >= KEEPS_BLEU:
        return (f"A {best['summary']}-dimensional summary vector removes the degradation: it keeps "
                f"{best['retained']:.0%} of its k = 1 BLEU at the longest level (sizes {sizes}: {shares}).")
    tail = "attention keeps " + ("-" if attention_retained is None else f"{attention_retained:.0%}") + "."
    if large["retained_ci"][0] > small["retained_ci"][1]:
        return (f"A bigger summary vector reduces the degradation but does not remove it: the fixed-context "
                f"models of {sizes} dimensions keep {shares} of their k = 1 BLEU at the longest level; " + tail)
    if large["retained_ci"][1] < small["retained_ci"][0]:
        return (f"A bigger summary vector makes the degradation worse at this budget: {sizes} dimensions keep "
                f"{shares} of their k = 1 BLEU at the longest level; " + tail)
    return (f"A bigger summary vector does not measurably change the degradation: {sizes} dimensions keep "
            f"{shares} of their k = 1 BLEU at the longest level (overlapping 95% intervals); " + tail)
