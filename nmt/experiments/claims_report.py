"""report.md and scaling.png of scripts/run_claims.py (the numbers come from nmt/evaluation/claims.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nmt.evaluation.report import fmt_interval, fmt_num, fmt_p, md_table
from nmt.runtime import hardware_line

STAGES = (("synthetic", "random N(0,1) q, k"), ("init", "model at initialisation"), ("trained", "model after training"))


def plot_scaling(claim: dict[str, Any], path: Path) -> str:
    """Entropy and gradient norm at the scores against d_k: dot vs scaled_dot at each stage. Returns the file
    name."""
    from nmt.plots import new_figure, save_png

    rows = claim["rows"]
    d_k = [r["d_k"] for r in rows]
    fig = new_figure(10.0, 4.0)
    for i, (metric, label) in enumerate((("entropy", "attention entropy (nats)"),
                                         ("grad_norm", "gradient norm at the scores"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for stage, stage_label in STAGES:
            for scorer, style in (("dot", "--"), ("scaled_dot", "-")):
                ax.plot(d_k, [r[stage][scorer][metric] for r in rows], style, marker="o",
                        label=f"{scorer}, {stage_label}")
        ax.set_xscale("log", base=2)
        ax.set_xticks(d_k)
        ax.set_xticklabels([str(d) for d in d_k])
        ax.set_xlabel("d_k")
        ax.set_ylabel(label)
        if metric == "grad_norm":
            ax.set_yscale("log")
        ax.grid(True, alpha=0.3)
    fig.axes[0].legend(fontsize=6)
    fig.tight_layout()
    return save_png(fig, path).name


def _bleu(s: dict[str, Any]) -> str:
    return f"{s['bleu']:.2f} {fmt_interval(s['bleu_ci'])}"


def _diff(test: dict[str, Any] | None) -> list[str]:
    if test is None:
        return ["-", "-"]
    return [f"{test['difference']:+.2f} {fmt_interval(test['difference_ci'])}", fmt_p(test["p_value"])]


def _scaling(c: dict[str, Any]) -> list[str]:
    rows = []
    for r in c["rows"]:
        for stage, label in STAGES:
            st = r[stage]
            change = st.get("grad_change_pct")
            p = st["grad_test"]["p_value"] if "grad_test" in st else None
            rows.append([str(r["d_k"]), label]
                        + [f"{st[s][k]:.3f}" for k in ("entropy", "max_weight") for s in ("dot", "scaled_dot")]
                        + [f"{st[s]['grad_norm']:.3g}" for s in ("dot", "scaled_dot")]
                        + ["-" if change is None else f"{change:+.1f}%", fmt_p(p)])
    header = ["d_k", "queries and keys", "entropy dot", "entropy scaled", "max weight dot", "max weight scaled",
              "grad norm dot", "grad norm scaled", "grad norm change (scaled vs dot)", "p-value"]
    lines = md_table(header, rows) + [""]
    lines += [f"The source puts the change of the gradient norm from scaling at {c['source_gradient_change']}; "
              "the column above is the measured change (scaled / unscaled - 1). Gradients are d loss / d scores "
              "(summed token cross-entropy, teacher forcing, no dropout) averaged over the probe sentences' "
              "decoder steps; p-values from a paired bootstrap over those sentences. The synthetic rows pass "
              "the softmax into a random linear read-out of random values.", ""]
    bleu_rows = [[str(r["d_k"]), _bleu(r["bleu"]["dot"]), _bleu(r["bleu"]["scaled_dot"])] + _diff(r["bleu"]["test"])
                 for r in c["rows"]]
    lines += md_table(["d_k", "dot BLEU [95% CI]", "scaled_dot BLEU [95% CI]", "scaled - dot [95% CI]", "p-value"],
                    bleu_rows) + [""]
    v = c["verdicts"]
    lines += [f"- scaling keeps larger gradients at the largest d_k after training (the verdict): **{v['gradient']}**",
              f"- scaling improves BLEU at the largest d_k: **{v['bleu']}**", ""]
    if c.get("plot"):
        lines += [f"![scaled vs unscaled]({c['plot']})", ""]
    return lines


def _temperature(c: dict[str, Any]) -> list[str]:
    rows = [[f"{r['temperature']:g}", f"{r['entropy']:.3f}", _bleu(r), fmt_num(r["chrf"])] + _diff(r["vs_trained"])
            for r in c["rows"]]
    lines = md_table(["temperature", "attention entropy (nats)", "BLEU [95% CI]", "chrF",
                    "BLEU at 1 - BLEU here [95% CI]", "p-value"], rows) + [""]
    taus = [r["temperature"] for r in c["rows"]]
    steps = ", ".join(f"{a:g} -> {b:g}: {s['difference']:+.3f} (p = {fmt_p(s['p_value'])})"
                      for a, b, s in zip(taus, taus[1:], c["entropy_steps"], strict=False))
    v = c["verdicts"]
    lines += [f"- attention entropy rises with the temperature ({steps}): **{v['entropy']}**",
              f"- the trained temperature 1 translates best: **{v['bleu']}**", ""]
    return lines


def _hard(c: dict[str, Any]) -> list[str]:
    rows = [[name, _bleu(c[key]), fmt_num(c[key]["chrf"])] for name, key in (("soft (trained)", "soft"),
                                                                           ("hard (argmax)", "hard"))]
    t = c["test"]
    return md_table(["attention at inference", "BLEU [95% CI]", "chrF"], rows) + [
        "", f"- soft - hard: {t['difference']:+.2f} BLEU {fmt_interval(t['difference_ci'])}, p = {fmt_p(t['p_value'])}",
        f"- hard attention at inference loses BLEU against the soft attention the model was trained with: "
        f"**{c['verdict']}**", ""]


def _scorers(c: dict[str, Any]) -> list[str]:
    rows = [[r["name"], r["scorer"], str(r["heads"]), f"{r['num_parameters']:,}", str(r["steps"]), _bleu(r),
             fmt_num(r["chrf"])] + _diff(r["vs_reference"]) for r in c["rows"]]
    lines = md_table(["variant", "scorer", "heads", "parameters", "steps", "BLEU [95% CI]", "chrF",
                    f"difference to {c['reference']} [95% CI]", "p-value"], rows) + [""]
    v = c["verdicts"]
    lines.append(f"- the scorers differ at equal budget (any significant difference to {c['reference']}, "
                 f"no correction for multiple comparisons): **{v['scorers_differ']}**")
    if c.get("heads_test"):
        t = c["heads_test"]
        lines.append(f"- {t['system_name']} beats {t['baseline_name']}: {t['difference']:+.2f} BLEU "
                     f"{fmt_interval(t['difference_ci'])}, p = {fmt_p(t['p_value'])}: **{v['more_heads']}**")
    return lines + [""]


SECTIONS = {
    "scaling": ("Scaled vs unscaled dot-product attention", _scaling),
    "temperature": ("Softmax temperature at inference", _temperature),
    "hard": ("Hard vs soft attention at inference", _hard),
    "scorers": ("Scorers and heads at equal budget", _scorers),
}


def render(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [f"# {report['title']}", ""]
    lines.append(f"- preset: {report['preset'] or '(none)'}; seed {cfg['seed']}; base model {cfg['model']}; "
                 f"train config {cfg['train']}; decoding {cfg['decode']}; {report['num_sentences']} test sentences")
    lines.append(f"- overrides for every run: {', '.join(f'`{o}`' for o in cfg['overrides']) or '(none)'}")
    lines.append(f"- hardware: {hardware_line(report['hardware'])}")
    lines.append(f"- total time: {report['seconds'] / 60:.1f} min")
    lines += ["", "Verdicts: supported / not supported when p < 0.05 in the claimed / opposite direction, "
              f"otherwise inconclusive at this budget; BLEU comparisons where no system reaches {cfg['min_bleu']:g} "
              "BLEU are inconclusive too.", "", "## Runs", ""]
    rows = []
    for r in report["runs"]:
        m = r.get("model", {})
        rows.append([r["name"], str(m.get("scorer", "-")), str(m.get("heads", "-")), str(m.get("hidden", "-")),
                     f"{r['num_parameters']:,}", str(r["steps"]), r["stop_reason"] or "-",
                     f"{r['wall_seconds'] / 60:.1f}", fmt_num(r["best_valid_bleu"]), Path(r["run_dir"]).name])
    lines += md_table(["variant", "scorer", "heads", "hidden", "parameters", "steps", "stopped by", "wall min",
                     "best valid BLEU", "run dir"], rows) + [""]
    for name, claim in report["claims"].items():
        title, section = SECTIONS[name]
        lines += [f"## {title}", "", f"**Verdict: {claim['verdict']}.** {claim['summary']}.", ""]
        lines += section(claim)
    return "\n".join(lines)
