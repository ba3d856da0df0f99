"""report.md and scaling.png of `nmt-claims` (the numbers come from nmt/experiments/claims.py).

Every verdict line carries the budget the runs were trained for; claims with several questions (temperature:
entropy and translation quality; scorers and heads) show each verdict under its own label.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nmt.evaluation.report import fmt_interval, fmt_num, fmt_p, md_table, p_text, run_lines
from nmt.experiments.results import (
    Claim,
    ClaimsReport,
    GradientChange,
    HardSeed,
    ScalingSeed,
    ScalingStage,
    Scored,
    ScorersSeed,
    TemperatureSeed,
)
from nmt.experiments.verdicts import SOURCE_GRADIENT_CHANGE_PCT
from nmt.metrics.significance import PairedTest
from nmt.plots import new_figure, save_png

# (stage, its label in the table, its label in the plot's legend)
STAGES = (("synthetic", "synthetic: unit-variance random q, k, no model; gradient measured at the scores",
           "synthetic random q, k"), ("init", "model at initialisation", "at init"),
          ("trained", "model after training", "trained"))
HEADS_VARIANT = ("slices: the scorer's query/key space is cut into equal slices, one softmax per slice, and each head "
                 "reads its own slice of the encoder states; no per-head value or output projections, so heads add "
                 "no parameters")


def plot_scaling(claim: ScalingSeed, path: Path, title: str) -> str:
    """Entropy and gradient norm at q.k against d_k (one seed's rows): dot vs scaled_dot at each stage, `title`
    (the seed and the budget) on top. Returns the file name."""
    rows = claim.rows
    d_k = [r.d_k for r in rows]
    fig = new_figure(10.0, 4.3)
    for i, (metric, label) in enumerate((("entropy", "attention entropy (nats)"),
                                         ("raw_grad_norm", "gradient norm at q.k"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for stage, _, stage_label in STAGES:
            for scorer, style in (("dot", "--"), ("scaled_dot", "-")):
                ax.plot(d_k, [getattr(getattr(getattr(r, stage), scorer), metric) for r in rows], style, marker="o",
                        label=f"{scorer}, {stage_label}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(d_k)
        ax.set_xticklabels([str(d) for d in d_k])
        ax.set_xlabel("d_k (queries and keys projected)")
        ax.set_ylabel(label)
        if metric == "raw_grad_norm":
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    fig.axes[0].legend(fontsize=6)
    fig.suptitle(f"dot vs scaled_dot attention, {title}", fontsize=9)
    fig.tight_layout()
    return save_png(fig, path).name


def verdict_line(question: str, label: str, budget: str, detail: str = "") -> str:
    """"- question: **label** at N updates of ... tokens; detail"."""
    return f"- {question}: **{label}** {budget}{f'; {detail}' if detail else ''}"


def _bleu(s: Scored) -> str:
    return f"{s.bleu:.2f} {fmt_interval(s.bleu_ci)}"


def _diff(test: PairedTest | None, n: int) -> list[str]:
    if test is None:
        return ["-", "-"]
    return [f"{test.difference:+.2f} {fmt_interval(test.difference_ci)}", fmt_p(test.p_value, n_samples=n)]


def change_text(change: GradientChange) -> str:
    """"0.912 (-8.8% [-12.0%, -5.1%])": scaled / unscaled and the change with its 95% interval; an unbounded
    upper end (the unscaled gradient was 0 in some resamples) prints as "unbounded"."""
    lo, hi = change.change_ci
    upper = "unbounded" if hi is None else f"{hi:+.1f}%"
    return f"{change.ratio:.3f} ({change.change_pct:+.1f}% [{lo:+.1f}%, {upper}])"


def _scaling_row(d_k: int, stage: str, label: str, st: ScalingStage, n: int) -> list[str]:
    dot, scaled = st.dot, st.scaled_dot
    common = [f"{x:.3f}" for x in (dot.entropy, scaled.entropy, dot.max_weight, scaled.max_weight)]
    grads = [f"{x:.3g}" for x in (dot.grad_norm, scaled.grad_norm, dot.raw_grad_norm, scaled.raw_grad_norm)]
    if stage == "synthetic":
        at_qk = scaled.raw_grad_norm / dot.raw_grad_norm
        at_scores = scaled.grad_norm / dot.grad_norm
        tail = [f"{at_qk:.3f} ({st.raw_grad_change_pct:+.1f}%); at the scores {at_scores:.3f} "
                f"({100 * (at_scores - 1):+.1f}%)", "-", "(no model)"]
    else:
        change = st.raw_grad_norm_change
        assert change is not None  # a model's stage always has its test
        tail = [change_text(change), fmt_p(change.p_value, n_samples=n),
                " / ".join(f"{dot.param_grad.get(k, 0):.3g} -> {scaled.param_grad.get(k, 0):.3g}"
                           for k in ("query_proj", "key_proj"))]
    return [str(d_k), label, *common, *grads, *tail]


def _scaling(c: ScalingSeed, n: int) -> list[str]:
    rows = [_scaling_row(r.d_k, stage, label, getattr(r, stage), n) for r in c.rows for stage, label, _ in STAGES]
    header = ["d_k", "queries and keys", "entropy dot", "entropy scaled", "max weight dot", "max weight scaled",
              "grad at scores dot", "grad at scores scaled", "grad at q.k dot", "grad at q.k scaled",
              "scaled / unscaled at q.k (change [95% CI])", "p-value", "grad W_q / W_k dot -> scaled"]
    lines = md_table(header, rows) + [""]
    lines += [f"The source puts the change of the gradient norm from scaling at up to {SOURCE_GRADIENT_CHANGE_PCT:g}%. "
              "The ratio column is the mean gradient norm at q.k (where the 1/sqrt(d_k) acts) of the scaled model "
              "over the unscaled one; its 95% interval comes from a bootstrap of the log-ratio over sentences and "
              "its p-value (ratio = 1) from the signed centred bootstrap on the log scale. The gradient at the "
              "scaled scores is larger by sqrt(d_k) than at q.k by construction. Model rows: queries and keys "
              "projected to d_k (W_q, W_k) at every d_k, gradients d loss / d scores (summed token cross-entropy, "
              "teacher forcing, no dropout) averaged over the probe sentences' decoder steps, and the norms of "
              "d loss / d W_q, W_k averaged over the probe batches. Synthetic rows: no model and no training; q, k "
              "drawn with unit-variance components (Vaswani et al.'s premise), the softmax read by a random linear "
              "read-out of random values, the gradient measured at the scores and carried to q.k through the "
              "scaling; one draw, no test.", ""]
    bleu_rows = [[str(r.d_k), _bleu(r.bleu.dot), _bleu(r.bleu.scaled_dot), *_diff(r.bleu.test, n)] for r in c.rows]
    lines += md_table(["d_k", "dot BLEU [95% CI]", "scaled_dot BLEU [95% CI]", "scaled - dot [95% CI]", "p-value"],
                      bleu_rows) + [""]
    return lines


def _temperature(c: TemperatureSeed, n: int) -> list[str]:
    rows = [[f"{r.temperature:g}", f"{r.entropy:.3f}", _bleu(r), fmt_num(r.chrf), f"{r.ratio:.3f}",
             *_diff(r.vs_trained, n)] for r in c.rows]
    lines = md_table(["temperature", "attention entropy (nats)", "BLEU [95% CI]", "chrF", "length ratio",
                      "BLEU at 1 - BLEU here [95% CI]", "p-value"], rows) + [""]
    taus = [r.temperature for r in c.rows]
    steps = ", ".join(f"{a:g} -> {b:g}: {s.difference:+.3f} ({p_text(s.p_value, n)})"
                      for a, b, s in zip(taus, taus[1:], c.entropy_steps, strict=False))
    return lines + [f"Entropy change per step up in temperature, paired over sentences: {steps}.", ""]


def _hard(c: HardSeed, n: int) -> list[str]:
    how = {"soft": "softmax, trained and decoded soft",
           "hard at inference": "the soft-trained model decoded with one-hot argmax weights",
           "hard trained": "trained with the straight-through estimator, decoded with argmax"}
    rows = [[name, how[name], _bleu(r), fmt_num(r.chrf), f"{r.ratio:.3f}", f"{r.brevity_penalty:.3f}",
             *_diff(c.tests.get(name), n)] for name, r in c.rows.items()]
    return md_table(["attention", "how", "BLEU [95% CI]", "chrF", "length ratio", "brevity penalty",
                     "soft - this BLEU [95% CI]", "p-value"], rows) + [
        "", "The trained hard model uses the straight-through estimator: the forward pass takes the one-hot argmax "
            "weights (the context is exactly one encoder state), the backward pass the gradient of the softmax "
            "weights. Length ratio: hypothesis / reference tokens (sacreBLEU 13a) over the test set; a ratio under "
            "1 lowers BLEU through the brevity penalty while chrF moves less.", ""]


def _scorers(c: ScorersSeed, n: int) -> list[str]:
    rows = [[r.name, r.scorer, f"{r.num_parameters:,}", str(r.steps), _bleu(r), fmt_num(r.chrf),
             *_diff(r.vs_reference, n)] for r in c.rows if r.name.startswith("scorer=")]
    return md_table(["variant", "scorer", "parameters", "updates", "BLEU [95% CI]", "chrF",
                     f"difference to {c.reference} [95% CI]", "p-value"], rows) + [""]


def _heads(c: ScorersSeed, n: int) -> list[str]:
    rows = [[r.name, r.scorer, str(r.heads), f"{r.num_parameters:,}", str(r.steps), _bleu(r), fmt_num(r.chrf)]
            for r in c.rows if r.name.startswith("heads=")]
    return md_table(["variant", "scorer", "heads", "parameters", "updates", "BLEU [95% CI]", "chrF"], rows) + [
        "", f"Heads here are {HEADS_VARIANT}; not the multi-head attention of Vaswani et al. 2017, whose heads have "
            "their own query, key and value projections and an output projection.", ""]


Renderer = Callable[[Any, int], list[str]]  # (one seed's claim, bootstrap samples) -> Markdown lines
# (claim, heading, the claim's verdicts shown under it, the per-seed summary's key, the per-seed numbers)
SECTIONS: tuple[tuple[str, str, tuple[str, ...], str, Renderer], ...] = (
    ("scaling", "Scaled vs unscaled dot-product attention: gradient at q.k, its size, and BLEU",
     ("gradient", "magnitude", "bleu"), "summary", _scaling),
    ("temperature", "Softmax temperature at inference: entropy rises, and does the trained temperature translate "
     "best?", ("entropy", "bleu"), "summary", _temperature),
    ("hard", "Hard vs soft attention: at inference and trained (straight-through)", ("inference", "trained"),
     "summary", _hard),
    ("scorers", "Scorers at equal budget", ("scorers_differ",), "summary", _scorers),
    ("scorers", "Heads (slices, no per-head projections) at an equal parameter count", ("more_heads",),
     "heads_summary", _heads),
)


def _claim_verdicts(claim: Claim, keys: tuple[str, ...]) -> list[str]:
    """The claim-level verdict lines of `keys`, each with the seeds' own labels and the budget."""
    lines = []
    for key in keys:
        v = claim.verdicts.get(key)
        if v:
            per_seed = ", ".join(f"seed {s}: {label}" for s, label in zip(claim.seeds, v.per_seed, strict=True))
            lines.append(verdict_line(v.question, v.label, claim.budget, per_seed))
    return lines


def _summary_rows(report: ClaimsReport) -> list[list[str]]:
    rows = []
    for name, heading, keys, _, _ in SECTIONS:
        claim = getattr(report.claims, name)
        for key in keys if claim else ():
            v = claim.verdicts.get(key)
            if v:
                rows.append([heading.split(":")[0], v.question, f"**{v.label}**", ", ".join(v.per_seed)])
    return rows


def render(report: ClaimsReport) -> str:
    cfg = report.config
    n = int(cfg["bootstrap_samples"])
    lines = [f"# {report.title}", ""]
    seeds = ", ".join(map(str, cfg["seeds"]))
    lines += run_lines(f"- preset: {report.preset or '(none)'}; seeds {seeds}; base model {cfg['model']}; "
                       f"train config {cfg['train']}; decoding {cfg['decode']}; {report.num_sentences} test "
                       f"sentences", cfg["overrides"], report.hardware, report.seconds)
    lines += [f"- budget: every run trained {report.budget}", ""]
    lines += ["Verdicts per seed: supported / not supported when p < 0.05 in the claimed / opposite direction, "
              f"otherwise inconclusive at this budget; BLEU comparisons where no system reaches {cfg['min_bleu']:g} "
              "BLEU are inconclusive too. A verdict is the one every seed gives, else inconclusive. p-values: "
              "approximate randomisation for BLEU, signed centred bootstrap for per-sentence statistics (on the log "
              "scale for ratios); \"p < 0.001\" is the resampling floor; * marks p < 0.05.", "",
              f"## Verdicts, {report.budget}", ""]
    lines += md_table(["section", "question", "verdict", "per seed"], _summary_rows(report)) + ["", "## Runs", ""]
    rows = []
    for r in report.runs:
        m = r.model
        options = ["-"] * 4 + ["no"] if m is None else [m.scorer, str(m.heads), str(m.hidden),
                                                         str(m.attention_dim or "-"), "yes" if m.hard else "no"]
        rows.append([r.name, *options,
                     f"{r.num_parameters:,}", str(r.steps), r.stop_reason or "-",
                     f"{r.wall_seconds / 60:.1f}", fmt_num(r.best_valid_bleu), Path(r.run_dir).name])
    lines += md_table(["variant", "scorer", "heads", "hidden", "attention_dim", "hard", "parameters", "updates",
                       "stopped by", "wall min", "best valid BLEU", "run dir"], rows) + [""]
    for name, heading, keys, summary_key, section in SECTIONS:
        claim = getattr(report.claims, name)
        if not claim:
            continue
        lines += [f"## {heading}", "", *_claim_verdicts(claim, keys), ""]
        for seed, c in claim.seeds.items():
            summary = getattr(c, summary_key) or ""
            lines += [f"### Seed {seed}", ""] + ([f"{summary[0].upper()}{summary[1:]}.", ""] if summary else [])
            lines += section(c, n)
            lines += [verdict_line(f"seed {seed}: {claim.verdicts[k].question}", c.verdicts[k], claim.budget)
                      for k in keys if k in c.verdicts] + [""]
        if getattr(claim, "plot", ""):  # only the scaling claim has a plot
            lines += [f"![scaled vs unscaled, seed {cfg['seeds'][0]}, {claim.budget}]({claim.plot})", ""]
    return "\n".join(lines)
