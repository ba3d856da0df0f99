"""report.md and scaling.png of `nmt-claims` (the numbers come from nmt/experiments/claims.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nmt.evaluation.report import fmt_interval, fmt_num, fmt_p, md_table, run_lines

STAGES = (("synthetic", "random N(0,1) q, k"), ("init", "model at initialisation"), ("trained", "model after training"))


def plot_scaling(claim: dict[str, Any], path: Path) -> str:
    """Entropy and gradient norm at q.k against d_k (one seed's rows): dot vs scaled_dot at each stage.
    Returns the file name."""
    from nmt.plots import new_figure, save_png

    rows = claim["rows"]
    d_k = [r["d_k"] for r in rows]
    fig = new_figure(10.0, 4.0)
    for i, (metric, label) in enumerate((("entropy", "attention entropy (nats)"),
                                         ("raw_grad_norm", "gradient norm at q.k"))):
        ax = fig.add_subplot(1, 2, i + 1)
        for stage, stage_label in STAGES:
            for scorer, style in (("dot", "--"), ("scaled_dot", "-")):
                # The synthetic probe has no separate raw gradient: its scores are the dot products.
                key = "grad_norm" if stage == "synthetic" and metric == "raw_grad_norm" else metric
                ax.plot(d_k, [r[stage][scorer][key] for r in rows], style, marker="o",
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


def _pct(change: dict[str, Any] | None) -> str:
    if not change or change.get("pct") is None:
        return "-"
    return f"{change['pct']:+.1f}% [{change['ci'][0]:+.1f}, {change['ci'][1]:+.1f}]"


def _scaling(c: dict[str, Any]) -> list[str]:
    rows = []
    for r in c["rows"]:
        for stage, label in STAGES:
            st = r[stage]
            if stage == "synthetic":
                cells = ["-", "-", f"{st['dot']['grad_norm']:.3g}", f"{st['scaled_dot']['grad_norm']:.3g}",
                         f"{st['grad_change_pct']:+.1f}%", "-", "-"]
            else:
                params = {s: st[s].get("param_grad") or {} for s in ("dot", "scaled_dot")}
                cells = [f"{st['dot']['grad_norm']:.3g}", f"{st['scaled_dot']['grad_norm']:.3g}",
                         f"{st['dot']['raw_grad_norm']:.3g}", f"{st['scaled_dot']['raw_grad_norm']:.3g}",
                         _pct(st["raw_grad_norm_change"]), fmt_p(st["raw_grad_norm_test"]["p_value"]),
                         " / ".join(f"{params['dot'].get(k, 0):.3g} -> {params['scaled_dot'].get(k, 0):.3g}"
                                    for k in ("query_proj", "key_proj")) if params["dot"] else "(no projection)"]
            rows.append([str(r["d_k"]), label]
                        + [f"{st[s][k]:.3f}" for k in ("entropy", "max_weight") for s in ("dot", "scaled_dot")]
                        + cells)
    header = ["d_k", "queries and keys", "entropy dot", "entropy scaled", "max weight dot", "max weight scaled",
              "grad at scores dot", "grad at scores scaled", "grad at q.k dot", "grad at q.k scaled",
              "change at q.k (scaled vs dot) [95% CI]", "p-value", "grad W_q / W_k dot -> scaled"]
    lines = md_table(header, rows) + [""]
    lines += [f"The source puts the change of the gradient norm from scaling at {c['source_gradient_change']}; "
              "the change column is the measured change at q.k (scaled / unscaled - 1), where the 1/sqrt(d_k) "
              "acts: the gradient at the scaled scores is larger by sqrt(d_k) than at q.k by construction. "
              "Gradients are d loss / d scores (summed token cross-entropy, teacher forcing, no dropout) "
              "averaged over the probe sentences' decoder steps, and the norms of d loss / d W_q, W_k (the "
              "query and key projections to d_k) averaged over the probe batches; p-values from a paired "
              "bootstrap over sentences. The synthetic rows pass the softmax into a random linear read-out "
              "of random values. d_k equal to the decoder size uses the parameter-free scorers.", ""]
    bleu_rows = [[str(r["d_k"]), _bleu(r["bleu"]["dot"]), _bleu(r["bleu"]["scaled_dot"])] + _diff(r["bleu"]["test"])
                 for r in c["rows"]]
    lines += md_table(["d_k", "dot BLEU [95% CI]", "scaled_dot BLEU [95% CI]", "scaled - dot [95% CI]", "p-value"],
                      bleu_rows) + [""]
    v = c["verdicts"]
    lines += [f"- scaling keeps larger gradients at q.k at the largest d_k after training: **{v['gradient']}**",
              f"- their size is \"{c['source_gradient_change']}\" (the 95% interval overlaps (0%, 40%]): "
              f"**{v['magnitude']}**",
              f"- scaling improves BLEU at the largest d_k: **{v['bleu']}**", ""]
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
    rows = [[name, _bleu(r), fmt_num(r["chrf"])] + _diff(c["tests"].get(name)) for name, r in c["rows"].items()]
    v = c["verdicts"]
    return md_table(["attention", "BLEU [95% CI]", "chrF", "soft - this [95% CI]", "p-value"], rows) + [
        "", f"- hard attention switched on at inference loses BLEU against soft: **{v['inference']}**",
        f"- hard attention trained with straight-through gradients loses BLEU against soft: **{v['trained']}**", ""]


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
    "hard": ("Hard vs soft attention", _hard),
    "scorers": ("Scorers and heads at equal budget", _scorers),
}


def render(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [f"# {report['title']}", ""]
    seeds = ", ".join(map(str, cfg["seeds"]))
    lines += run_lines(report, f"- preset: {report['preset'] or '(none)'}; seeds {seeds}; base model {cfg['model']}; "
                       f"train config {cfg['train']}; decoding {cfg['decode']}; {report['num_sentences']} test "
                       f"sentences")
    lines += ["", "Verdicts per seed: supported / not supported when p < 0.05 in the claimed / opposite direction, "
              f"otherwise inconclusive at this budget; BLEU comparisons where no system reaches {cfg['min_bleu']:g} "
              "BLEU are inconclusive too. A claim's verdict is the one every seed gives, else inconclusive. "
              "p-values: approximate randomisation for BLEU, signed centred bootstrap for per-sentence "
              "statistics.", "", "## Runs", ""]
    rows = []
    for r in report["runs"]:
        m = r.get("model", {})
        rows.append([r["name"], str(m.get("scorer", "-")), str(m.get("heads", "-")), str(m.get("hidden", "-")),
                     str(m.get("attention_dim") or "-"), "yes" if m.get("hard") else "no",
                     f"{r['num_parameters']:,}", str(r["steps"]), r["stop_reason"] or "-",
                     f"{r['wall_seconds'] / 60:.1f}", fmt_num(r["best_valid_bleu"]), Path(r["run_dir"]).name])
    lines += md_table(["variant", "scorer", "heads", "hidden", "attention_dim", "hard", "parameters", "steps",
                       "stopped by", "wall min", "best valid BLEU", "run dir"], rows) + [""]
    for name, claim in report["claims"].items():
        title, section = SECTIONS[name]
        per_seed = ", ".join(f"seed {seed}: {c['verdict']}" for seed, c in claim["seeds"].items())
        lines += [f"## {title}", "", f"**Verdict: {claim['verdict']}** ({per_seed}).", ""]
        for seed, c in claim["seeds"].items():
            lines += [f"### Seed {seed}", "", f"{c['summary'][0].upper()}{c['summary'][1:]}.", ""]
            lines += section(c)
        if claim.get("plot"):
            lines += [f"![scaled vs unscaled, seed {cfg['seeds'][0]}]({claim['plot']})", ""]
    return "\n".join(lines)
