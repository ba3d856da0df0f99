"""report.md of `nmt-bottleneck` (the numbers come from nmt/experiments/bottleneck.py)."""

from __future__ import annotations

from typing import Any

from nmt.evaluation.report import fmt_interval, fmt_num, fmt_p, md_table, run_lines
from nmt.experiments.bottleneck import ATTENTION, FIXED
from nmt.experiments.verdicts import fmt_mean_std


def _runs_table(report: dict[str, Any], corpus: str) -> list[str]:
    rows = []
    for r in report["runs"]:
        if not r["name"].startswith(f"{corpus}/"):
            continue
        _, system, seed = r["name"].split("/")
        decode = sum(d["seconds"] for d in r["decoded"].values())
        rows.append([system, seed.removeprefix("seed"), f"{r['num_parameters']:,}", str(r["steps"]),
                     r["stop_reason"] or "-", f"{r['train_seconds'] / 60:.1f}", f"{r['wall_seconds'] / 60:.1f}",
                     fmt_num(r["best_valid_bleu"]), str(r["checkpoint_step"]), f"{decode:.0f}"])
    header = ["system", "seed", "parameters", "steps", "stopped by", "train min", "train + validation min",
              "best valid BLEU", "evaluated step", "test decoding s"]
    return md_table(header, rows)


def _levels_md(section: dict[str, Any]) -> list[str]:
    lv = section["levels"]
    levels, seeds = lv["levels"], lv["seeds"]
    lines = ["### Length-controlled levels", ""]
    lines += md_table(["level", "examples", "mean source words", "groupings (offsets)"],
                      [[f"k = {r['k']} ({r['split']})", str(r["examples"]), f"{r['src_words']:.1f}",
                        ", ".join(map(str, r["offsets"]))] for r in levels]) + [""]
    header = ["system", "seed"] + [f"BLEU k = {r['k']} [95% CI]" for r in levels] + ["per 10 words",
                                                                                   "relative per 10 words"]
    rows = []
    for s in seeds:
        for name in (FIXED, ATTENTION):
            sc = s["systems"][name]
            rows.append([name, str(s["seed"])] + [f"{b:.2f} {fmt_interval(ci)}" for b, ci in
                                                  zip(sc["bleu"], sc["bleu_ci"], strict=True)]
                        + [f"{sc['slope']['per_10_words']:+.2f}", f"{sc['slope']['relative_per_10_words']:+.1%}"])
    if len(seeds) > 1:
        for name in (FIXED, ATTENTION):
            rows.append([name, "mean ± std"] + [fmt_mean_std(ms) for ms in lv["aggregate"][name]] + ["", ""])
    lines += md_table(header, rows) + [""]
    lines += [f"BLEU retained at k = {levels[-1]['k']} relative to k = 1, on the same {lv['groups']} groups of "
              f"sentences (bootstrap over groups; p: one-sided, signed centred bootstrap):", ""]
    rows = []
    for s in seeds:
        r = s["retention"]
        f, a, d = r["systems"][FIXED], r["systems"][ATTENTION], r["difference"]
        diff = "-" if d["value"] is None else f"{d['value']:+.1%} {_pct_ci(d['ci'])}"
        rows.append([str(s["seed"]), f"{_pct(f['retained'])} {_pct_ci(f['retained_ci'])}", fmt_p(f["p_degrades"]),
                     f"{_pct(a['retained'])} {_pct_ci(a['retained_ci'])}", diff, fmt_p(d["p_value"]), s["verdict"]])
    lines += md_table(["seed", f"{FIXED} retained [95% CI]", "p (fixed degrades)", f"{ATTENTION} retained [95% CI]",
                       "attention - fixed [95% CI]", "p (attention retains more)", "verdict"], rows) + [""]
    ratio = lv["ratio"]
    lines += [f"Attention / fixed-context BLEU ratio: {fmt_mean_std(ratio['k1'])}× at k = 1 and "
              f"{fmt_mean_std(ratio['longest'])}× at k = {levels[-1]['k']} (Bahdanau et al. 2015 report 78 / 62 = "
              f"1.26× overall).", ""]
    lines += [f"![BLEU by input length]({lv['plot']})", ""]
    if lv["sweep"]:
        sw = lv["sweep"]
        lines += ["### Capacity sweep", "", f"**{sw['sentence']}**", "",
                  f"Fixed-context models with different summary-vector sizes, seed {sw['seed']}, the same budget:", ""]
        header = ["system", "summary size", "parameters"] + [f"BLEU k = {r['k']}" for r in levels] + [
            f"retained at k = {levels[-1]['k']} [95% CI]"]
        rows = [[r["system"], str(r["summary"]), f"{r['parameters']:,}"] + [f"{b:.2f}" for b in r["bleu"]]
                + [f"{_pct(r['retained'])} {_pct_ci(r['retained_ci'])}"] for r in sw["fixed"]]
        a = sw["attention"]
        rows.append([ATTENTION, "(attention)", f"{a['parameters']:,}"] + [f"{b:.2f}" for b in a["bleu"]]
                    + [f"{_pct(a['retained'])} {_pct_ci(a['retained_ci'])}"])
        lines += md_table(header, rows) + ["", f"![capacity sweep]({sw['plot']})", ""]
    return lines


def _pct_ci(ci: list[float]) -> str:
    return f"[{ci[0]:.1%}, {ci[1]:.1%}]"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def render(report: dict[str, Any]) -> str:
    cfg = report["config"]
    lines = [f"# {report['title']}", ""]
    seeds = ", ".join(map(str, cfg["seeds"]))
    lines += run_lines(report, f"- preset: {report['preset'] or '(none)'}; seeds: {seeds}; models: "
                       f"{cfg['model_fixed']} vs {cfg['model_attention']}; train config: {cfg['train']}; "
                       f"decoding: {cfg['decode']}")
    lines.append("")
    lines.append("Both systems share data, tokenizer, embedding/hidden sizes, layers, dropout, optimizer, schedule, "
                 "budget, seed and decoding; the fixed-context decoder sees only a fixed-size summary of the source. "
                 "Each system is evaluated with its best checkpoint by validation BLEU. Length-controlled levels: "
                 "level k joins k consecutive test sentences into one input; training and validation use the "
                 "original pairs plus data.concat.share of one grouping of the split per k = 2..K, so both systems "
                 "see every length they are tested on. Verdict: supported when, in every seed, the fixed-context "
                 "model keeps less of its k = 1 BLEU at the longest level (p < 0.01) and attention keeps more "
                 "(p < 0.01); not supported when the fixed-context model keeps at least 90% "
                 "or attention keeps no more.")
    lines.append("")
    for section in report["sections"]:
        corpus, split = section["corpus"], section["split"]
        b = section["budget"]
        lines += [f"## {corpus}: {split} ({section['num_sentences']} sentences)", ""]
        lines += [f"**Verdict: {section['verdict']['label']}.** {section['verdict']['reason']}", ""]
        lines.append(f"Budget for every run: max_steps={b['max_steps']}, max_minutes={b['max_minutes']}, "
                     f"max_epochs={b['max_epochs']}, batch_tokens={b['batch_tokens']}, lr={b['lr']}; "
                     f"validation every {b['eval_every']} steps.")
        lines.append("")
        lines += ["### Runs", ""] + _runs_table(report, corpus) + [""]
        if section["levels"]:
            lines += _levels_md(section)
        nat = section["natural"]
        lines += ["### Natural lengths", "", f"The original test set ({split}), BLEU by source-length bucket.", ""]
        lines += ["#### Overall", ""] + _overall(nat) + ["#### By source length", ""] + _by_length(nat)
        lines += ["Buckets with fewer than 50 sentences are marked: their BLEU is noisy; p-values: approximate "
                  "randomisation, n/a below 20 sentences; * marks p < 0.05.", ""]
        lines += [f"![natural lengths]({nat['plot']})", ""]
        lines += ["Per-seed reports (hypotheses, signatures, full tables): "
                  + ", ".join(f"[seed {s['seed']}]({s['report']})" for s in nat["seeds"]), ""]
        sig = nat["seeds"][0]["signatures"]
        lines += [f"sacreBLEU: `{sig['bleu']}`, `{sig['chrf']}`", ""]
    return "\n".join(lines)


def _overall(section: dict[str, Any]) -> list[str]:
    seeds, agg = section["seeds"], section["aggregate"]
    lines = []
    if len(seeds) == 1:
        s = seeds[0]
        rows = [[name, f"{s['systems'][name]['bleu']:.2f} {fmt_interval(s['systems'][name]['bleu_ci'])}",
                 f"{s['systems'][name]['chrf']:.2f} {fmt_interval(s['systems'][name]['chrf_ci'])}",
                 fmt_num(s["systems"][name]["bleu_lc"])] for name in (FIXED, ATTENTION)]
        lines += md_table(["system", "BLEU [95% CI]", "chrF [95% CI]", "BLEU (lowercased)"], rows) + [""]
        for metric in ("bleu", "chrf"):
            c = s[metric]
            lines.append(f"- {ATTENTION} - {FIXED}, {metric.upper() if metric == 'bleu' else 'chrF'}: "
                         f"{c['difference']:+.2f} {fmt_interval(c['difference_ci'])}, paired p = "
                         f"{fmt_p(c['p_value'])}")
    else:
        rows = [[name, fmt_mean_std(agg["systems"][name]["bleu"]), fmt_mean_std(agg["systems"][name]["chrf"])]
                + [f"{s['systems'][name]['bleu']:.2f} {fmt_interval(s['systems'][name]['bleu_ci'])}" for s in seeds]
                for name in (FIXED, ATTENTION)]
        header = ["system", "BLEU mean ± std", "chrF mean ± std"] + [f"BLEU seed {s['seed']} [95% CI]" for s in seeds]
        lines += md_table(header, rows) + [""]
        for metric in ("bleu", "chrf"):
            ps = ", ".join(f"seed {s['seed']}: {s[metric]['difference']:+.2f}, p = {fmt_p(s[metric]['p_value'])}"
                           for s in seeds)
            lines.append(f"- {ATTENTION} - {FIXED}, {metric.upper() if metric == 'bleu' else 'chrF'}: "
                         f"{fmt_mean_std(agg['difference'][metric], signed=True)} ({ps})")
    return lines + [""]


def _by_length(section: dict[str, Any]) -> list[str]:
    seeds, agg = section["seeds"], section["aggregate"]
    rows = []
    if len(seeds) == 1:
        s = seeds[0]
        for b, comp in enumerate(s["by_length"]):
            f, a = s["systems"][FIXED]["by_length"][b], s["systems"][ATTENTION]["by_length"][b]
            note = "empty" if comp["count"] == 0 else ("few sentences" if comp["few"] else "")
            cells = [comp["label"], str(comp["count"])]
            cells += ["-" if r["bleu"] is None else f"{r['bleu']:.2f} {fmt_interval(r['bleu_ci'])}" for r in (f, a)]
            if comp["count"]:
                cells += [f"{comp['difference']:+.2f} {fmt_interval(comp['difference_ci'])}", fmt_p(comp["p_value"])]
            else:
                cells += ["-", "-"]
            rows.append(cells + [note])
        header = ["source words", "sentences", f"{FIXED} BLEU [95% CI]", f"{ATTENTION} BLEU [95% CI]",
                  "difference [95% CI]", "p-value", "note"]
    else:
        for b, d in enumerate(agg["difference"]["by_length"]):
            cells = [d["label"], str(d["count"])]
            cells += [fmt_mean_std(agg["systems"][n]["by_length"][b]["bleu"]) for n in (FIXED, ATTENTION)]
            cells += [fmt_mean_std(d["difference"], signed=True), ", ".join(fmt_p(p) for p in d["p_values"])]
            rows.append(cells + ["empty" if d["count"] == 0 else ("few sentences" if d["count"] < 50 else "")])
        header = ["source words", "sentences", f"{FIXED} BLEU", f"{ATTENTION} BLEU", "difference",
                  "p-value per seed", "note"]
    return md_table(header, rows) + [""]
