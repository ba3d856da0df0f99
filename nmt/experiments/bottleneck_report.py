"""report.md of `nmt-bottleneck` (the numbers come from nmt/experiments/bottleneck.py)."""

from __future__ import annotations

from nmt.evaluation.report import (
    fmt_interval,
    fmt_num,
    fmt_p,
    fmt_pct,
    fmt_pct_interval,
    md_table,
    p_text,
    run_lines,
)
from nmt.experiments.results import BottleneckReport, Levels, Natural, Section, Sweep, SweepRow
from nmt.experiments.verdicts import ATTENTION, BOTTLENECK_ALPHA, FIXED, KEEPS_BLEU, fmt_mean_std, mean_std

# Bahdanau et al. (2015), Table 1 (WMT'14 En->Fr test BLEU, models trained on sentences of up to 50 words).
PAPER_BLEU = {"all": (17.82, 26.75), "no_unk": (26.71, 34.16)}  # (RNNencdec-50, RNNsearch-50)


def _runs_table(report: BottleneckReport, corpus: str) -> list[str]:
    rows = []
    for r in report.runs:
        if not r.name.startswith(f"{corpus}/"):
            continue
        _, system, seed = r.name.split("/")
        decode = sum(d.seconds for d in r.decoded.values())
        rows.append([system, seed.removeprefix("seed"), f"{r.num_parameters:,}", str(r.steps),
                     r.stop_reason or "-", f"{r.train_seconds / 60:.1f}", f"{r.wall_seconds / 60:.1f}",
                     fmt_num(r.best_valid_bleu), str(r.checkpoint_step), f"{decode:.0f}"])
    header = ["system", "seed", "parameters", "steps", "stopped by", "train min", "train + validation min",
              "best valid BLEU", "evaluated step", "test decoding s"]
    return md_table(header, rows)


def _levels_md(section: Section) -> list[str]:
    lv = section.levels
    levels, k = lv.levels, lv.levels[-1].k
    lines = ["### Length-controlled levels", ""]
    lines += md_table(["level", "examples", "mean source words", "groupings (offsets)"],
                      [[f"k = {r.k} ({r.split})", str(r.examples), f"{r.src_words:.1f}",
                        ", ".join(map(str, r.offsets))] for r in levels]) + [""]
    lines += _bleu_md(lv) + _length_md(lv) + _retention_md(lv) + _matched_md(lv) + _nll_md(lv)
    ratio = lv.ratio
    enc, search = PAPER_BLEU["all"]
    enc_nu, search_nu = PAPER_BLEU["no_unk"]
    lines += [f"Attention / fixed-context BLEU ratio here: {fmt_mean_std(ratio['k1'])}× at k = 1 and "
              f"{fmt_mean_std(ratio['longest'])}× at k = {k}. For scale only (another corpus, language pair and "
              f"model size): Bahdanau et al. (2015, Table 1) report RNNsearch-50 / RNNencdec-50 = {search} / {enc} "
              f"= {search / enc:.2f}× on all test sentences and {search_nu} / {enc_nu} = {search_nu / enc_nu:.2f}× "
              f"on sentences without unknown words. (A \"78 / 62 = 1.26×\" often quoted is a tutorial's "
              f"illustration, not a number from the paper.)", ""]
    lines += [f"![BLEU kept by input length]({lv.plot})", ""]
    if lv.sweep:
        lines += _capacity_md(lv.sweep, lv, section.budget_text)
    return lines


def _bleu_md(lv: Levels) -> list[str]:
    """BLEU per level, and the share kept: level k over the same system's k = 1 outputs joined into level k's
    groups (the corrected anchor); the slope is fitted to that share."""
    levels, seeds = lv.levels, lv.seeds
    corrected = all(s.systems[name].retained for s in seeds for name in (FIXED, ATTENTION))
    header = ["system", "seed"] + [f"BLEU k = {r.k} [95% CI]" for r in levels]
    if corrected:
        header += [f"kept k = {r.k}" for r in levels[1:]] + ["kept per 10 words (points)"]
    else:
        header += ["per 10 words", "relative per 10 words"]
    rows = []
    for s in seeds:
        for name in (FIXED, ATTENTION):
            sc = s.systems[name]
            row = [name, str(s.seed)] + [f"{b:.2f} {fmt_interval(ci)}" for b, ci in zip(sc.bleu, sc.bleu_ci,
                                                                                       strict=True)]
            if corrected:
                row += [fmt_pct(r) for r in sc.retained[1:]] + [f"{sc.slope.per_10_words:+.1f}"]
            else:
                row += [f"{sc.slope.per_10_words:+.2f}", f"{sc.slope.relative_per_10_words:+.1%}"]
            rows.append(row)
    if len(seeds) > 1:
        for name in (FIXED, ATTENTION):
            rows.append([name, "mean ± std"] + [fmt_mean_std(ms) for ms in lv.aggregate[name]]
                        + [""] * (len(header) - 2 - len(levels)))
    lines = []
    if corrected:
        lines += ["BLEU per level, and the share of it kept: level k's BLEU over the BLEU of the same system's k = 1 "
                  "outputs joined into level k's groups (scored on the same segments, so a system that loses "
                  "nothing keeps 100%); the slope is fitted to that share over the levels' mean source words:", ""]
    return lines + md_table(header, rows) + [""]


def _length_md(lv: Levels) -> list[str]:
    levels, seeds = lv.levels, lv.seeds
    with_sentences = bool(lv.ref_sentences)
    lines = ["Length apart from content, per level: length ratio (hypothesis / reference tokens, sacreBLEU 13a), "
             "brevity penalty" + (" and sentences per output (sentence-final punctuation; the references': "
                                  + " / ".join(f"{x:.2f}" for x in lv.ref_sentences) + ")" if with_sentences else "")
             + ". A ratio under 1 with a falling penalty is early stopping, not lost content.", ""]
    header = ["system", "seed"] + [f"k = {r.k}: ratio / BP" + (" / sentences" if with_sentences else "")
                                   for r in levels]
    rows = [[name, str(s.seed)] + [f"{x.ratio:.3f} / {x.brevity_penalty:.3f}"
                                   + (f" / {n:.2f}" if with_sentences else "")
                                   for x, n in zip(s.systems[name].length,
                                                   s.systems[name].sentences or [0.0] * len(levels), strict=True)]
            for s in seeds for name in (FIXED, ATTENTION)]
    return lines + md_table(header, rows) + [""]


def _retention_md(lv: Levels) -> list[str]:
    seeds, k = lv.seeds, lv.levels[-1].k
    n = seeds[0].retention.n_samples
    lines = [f"BLEU retained at k = {k} relative to k = 1, both scored on the same {lv.groups} disjoint "
             f"groups of {k} sentences (level 1: each group's one-sentence outputs joined into one segment); "
             f"bootstrap over groups, {n} samples; p: one-sided, signed centred bootstrap; * marks "
             f"p < {BOTTLENECK_ALPHA}, the verdicts' threshold. Precision only: the same share of BLEU divided by "
             f"its brevity penalty at both levels (content apart from length):", ""]
    rows = []
    for s in seeds:
        r = s.retention
        f, a, d = r.systems[FIXED], r.systems[ATTENTION], r.difference
        diff = "-" if d.value is None else f"{d.value:+.1%} {fmt_pct_interval(d.ci)}"
        rows.append([str(s.seed), f"{fmt_num(f.bleu_short)} / {fmt_num(f.bleu_long)}",
                     f"{fmt_pct(f.retained)} {fmt_pct_interval(f.retained_ci)}", _p(f.p_degrades, n),
                     fmt_pct(f.precision_retained),
                     f"{fmt_num(a.bleu_short)} / {fmt_num(a.bleu_long)}",
                     f"{fmt_pct(a.retained)} {fmt_pct_interval(a.retained_ci)}", _p(a.p_degrades, n),
                     fmt_pct(a.precision_retained), diff, _p(d.p_value, n), s.verdict, s.removal])
    lines += md_table(["seed", f"{FIXED} BLEU k = 1 / {k} (joined)", f"{FIXED} retained [95% CI]",
                       "p (fixed degrades)", f"{FIXED} precision only",
                       f"{ATTENTION} BLEU k = 1 / {k} (joined)", f"{ATTENTION} retained [95% CI]",
                       "p (attention degrades)", f"{ATTENTION} precision only", "attention - fixed [95% CI]",
                       "p (attention retains more)", "(a) degrades less", "(b) removes"], rows) + [""]
    levels = {"difference": "attention - fixed retained share", "attention": f"{ATTENTION}'s retained share"}
    intervals = [f"{what}: mean {iv.mean:+.1%}, between-seed SD {iv.sd:.1%}, 95% t-interval "
                 f"[{iv.ci[0]:+.1%}, {iv.ci[1]:+.1%}] over {iv.seeds} seeds"
                 for key, what in levels.items() if (iv := lv.seed_level.get(key)) is not None and iv.ci]
    if intervals:
        lines += ["Seed level (a verdict needs it to agree): " + "; ".join(intervals) + ".", ""]
    controls = [s for s in seeds if s.control]
    if controls:
        lines += [f"Equal-quality control: the {ATTENTION} checkpoint whose validation BLEU is closest to the "
                  f"{FIXED} model's best (chosen on validation only), with its retention"
                  + (" and its segment alignment" if controls[0].control.alignment is not None else "") + ":", ""]
        rows = []
        for s in controls:
            c, f = s.control, s.retention.systems[FIXED]
            d = c.difference
            rows.append([str(s.seed), str(c.step), f"{c.valid_bleu:.2f} vs {c.fixed_valid_bleu:.2f}",
                         f"{c.bleu[0]:.2f} vs {s.systems[FIXED].bleu[0]:.2f}",
                         f"{fmt_pct(c.retained)} {fmt_pct_interval(c.retained_ci)}",
                         f"{fmt_pct(f.retained)} {fmt_pct_interval(f.retained_ci)}",
                         "-" if d.value is None else f"{d.value:+.1%} {fmt_pct_interval(d.ci)}",
                         _p(d.p_value, n)] + ([fmt_num(c.alignment, 3)] if c.alignment is not None else []))
        lines += md_table(["seed", "attention step", "valid BLEU (attention vs fixed)",
                           "test BLEU k = 1 (attention vs fixed)", f"{ATTENTION} retained [95% CI]",
                           f"{FIXED} retained [95% CI]", "attention - fixed [95% CI]", "p (attention retains more)"]
                          + (["alignment"] if controls[0].control.alignment is not None else []), rows) + [""]
    return lines


def _matched_md(lv: Levels) -> list[str]:
    """Question (c): both models followed over training, compared at matched valid k = 1 quality."""
    m = lv.matched
    if m is None:
        return []
    k, r = lv.levels[-1].k, m.result
    lines = ["### (c) At equal k = 1 quality, does attention keep more?", "",
             f"**{m.verdict.label}**: {m.verdict.reason}.", "",
             f"Every kept checkpoint of every run, matched on {m.quality}: each seed's retention at k = {k} "
             f"(joined k = 1 anchor, the {lv.groups} disjoint groups) as a piecewise-linear curve in quality, "
             f"averaged over the quality range every seed of both models covers; attention checkpoints count only "
             f"once their segment alignment (teacher-forced, {k} joined valid sentences: the share of sentence j's "
             f"attention on source sentence j; chance {1 / k:.2f}) reaches {lv.min_alignment:g}. Test noise: a "
             f"bootstrap over the groups ({r.n_samples} samples), one-sided p < 0.05 and the seed-level "
             f"t-interval must agree. Usable checkpoints: {r.points[0]} fixed-context, {r.points[1]} attention.", ""]
    rng = [("fixed-context range", r.fixed_range), ("attention range", r.attention_range), ("overlap", r.overlap)]
    lines += ["- " + "; ".join(f"{name}: " + ("-" if x is None else f"{x[0]:.1f}-{x[1]:.1f}") for name, x in rng)]
    if r.per_seed:
        lines += ["- per seed, attention - fixed retention: " + ", ".join(f"{100 * d:+.1f}" for d in r.per_seed)
                  + " points"]
    if m.by_nll is not None:
        b = m.by_nll
        lines += ["- check, matched on valid NLL instead: " + (
            "the NLL ranges do not overlap" if b.difference is None else
            f"{100 * b.difference:+.1f} points [{100 * b.ci[0]:+.1f}, {100 * b.ci[1]:+.1f}] over NLL "
            f"{-b.overlap[1]:.2f}-{-b.overlap[0]:.2f} nats")]
    lines += [""]
    header = ["system", "seed", "checkpoints (updates)", "valid BLEU first - last", "retained first - last",
              "ΔNLL first - last", "alignment first - last"]
    rows = []
    for f in lv.followed:
        first, last = f.points[0], f.points[-1]
        align = "-" if first.alignment is None else f"{first.alignment:.2f} - {last.alignment:.2f}"
        rows.append([f.system, str(f.seed), f"{len(f.points)} ({first.step}-{last.step})",
                     f"{first.valid_bleu:.1f} - {last.valid_bleu:.1f}",
                     f"{fmt_pct(first.retained)} - {fmt_pct(last.retained)}",
                     f"{first.delta_nll:+.2f} - {last.delta_nll:+.2f}", align])
    lines += md_table(header, rows) + [""]
    if lv.trajectory_plot:
        lines += [f"![both models over training]({lv.trajectory_plot})", ""]
    return lines


def _nll_md(lv: Levels) -> list[str]:
    """Evidence without search: reference NLL per level, and per joined sentence at the longest level."""
    levels, seeds, k = lv.levels, lv.seeds, lv.levels[-1].k
    lines = [f"Evidence without search: per-token negative log-likelihood of the references (nats; teacher "
             f"forced, as `nmt-score` computes it) at each level and its rise from k = 1 to k = {k}:", ""]
    header = ["system", "seed"] + [f"NLL k = {r.k}" for r in levels] + [f"k = {k} - k = 1"]
    rows = [[name, str(s.seed)] + [f"{x:.3f}" for x in s.systems[name].nll]
            + [f"{s.systems[name].nll[-1] - s.systems[name].nll[0]:+.3f}"]
            for s in seeds for name in (FIXED, ATTENTION)]
    lines += md_table(header, rows) + [""]
    if not all(s.systems[name].delta_nll for s in seeds for name in (FIXED, ATTENTION)):
        return lines
    lines += [f"Per sentence: inside each level-{k} input, the NLL per token of joined sentence j's reference minus "
              f"the same sentence's NLL alone (k = 1), j = 1..{k}, mean over the groups [95% bootstrap interval] "
              f"(the evaluated checkpoint). Expected if the summary vector is the bottleneck: the fixed-context "
              f"model's rises with j, attention's stays flat.", ""]
    header = ["system", "seed"] + [f"sentence {j}" for j in range(1, k + 1)] + [f"sentence {k} - 1"]
    rows, rises = [], {FIXED: [], ATTENTION: []}
    for s in seeds:
        for name in (FIXED, ATTENTION):
            sc = s.systems[name]
            rises[name].append(sc.delta_nll[-1] - sc.delta_nll[0])
            rows.append([name, str(s.seed)] + [f"{d:+.3f} [{ci[0]:+.3f}, {ci[1]:+.3f}]" for d, ci in
                                               zip(sc.delta_nll, sc.delta_nll_ci, strict=True)]
                        + [f"{rises[name][-1]:+.3f}"])
    lines += md_table(header, rows) + [""]
    observed = "; ".join(f"{name}'s rises in {sum(x > 0 for x in r)} of {len(r)} seeds (mean {sum(r) / len(r):+.3f})"
                         for name, r in rises.items())
    lines += [f"Observed from sentence 1 to {k}: {observed}.", "", f"![per-sentence NLL]({lv.nll_plot})", ""]
    return lines


def _capacity_md(sw: Sweep, lv: Levels, budget: str) -> list[str]:
    """The capacity sweep: one row per summary size (and the references), then every pair of sizes."""
    k = lv.levels[-1].k
    summary = [f"**Over seeds: {lv.sweep_summary.sentence}**", ""] if lv.sweep_summary else []
    per_seed = f" (seed {sw.seed}; every seed's tests: report.json)" if len(lv.sweep_seeds) > 1 else ""
    lines = ["### Capacity sweep", "", *summary, f"**{sw.sentence}**{per_seed}", "",
             f"Fixed-context models that differ only in the size of the summary vector c the decoder sees "
             f"(model.summary_dim: c = tanh(W h), a projection of the encoder summary h; encoder and decoder "
             f"hidden sizes unchanged), seed {sw.seed}, {budget}. The main {FIXED} model (c = h, unprojected) "
             f"and {ATTENTION} for reference:", ""]

    def row(r: SweepRow, system: str, size: str) -> list[str]:
        return ([system, size, f"{r.parameters:,}"] + [f"{b:.2f}" for b in r.bleu]
                + [f"{fmt_pct(r.retained)} {fmt_pct_interval(r.retained_ci)}"])

    rows = [row(r, r.system, str(r.summary)) for r in sw.fixed]
    rows.append(row(sw.unprojected, f"{FIXED} (main)", f"{sw.unprojected.summary} (c = h)"))
    rows.append(row(sw.attention, ATTENTION, "(attention)"))
    lines += md_table(["system", "summary size", "parameters"] + [f"BLEU k = {r.k}" for r in lv.levels]
                      + [f"retained at k = {k} [95% CI]"], rows) + [""]
    n = sw.n_samples
    lines += [f"Every pair of sizes: retained BLEU at k = {k} of the larger minus the smaller, paired bootstrap over "
              f"the same groups ({n} samples), one-sided p-values; * marks p < {BOTTLENECK_ALPHA}, the threshold of "
              f"the sentence above (which compares the largest with the smallest):", ""]
    rows = [[f"{t.larger} vs {t.smaller}", "-" if t.value is None else f"{t.value:+.1%} {fmt_pct_interval(t.ci)}",
             _p(t.p_value, n), _p(t.p_less, n)] for t in sw.pairs]
    lines += md_table(["summary sizes", "difference in retained [95% CI]", "p (larger retains more)",
                       "p (larger retains less)"], rows)
    return lines + ["", f"![capacity sweep]({sw.plot})", ""]


def _p_inline(p: float | None) -> str:
    """In a sentence: "p < 0.001" at the resampling floor, else "p = 0.012"; "p n/a" without a test."""
    return "p n/a" if p is None else p_text(p)


def _p(p: float | None, n_samples: int) -> str:
    return fmt_p(p, BOTTLENECK_ALPHA, n_samples)


def render(report: BottleneckReport) -> str:
    cfg = report.config
    lines = [f"# {report.title}", ""]
    seeds = ", ".join(map(str, cfg["seeds"]))
    lines += run_lines(f"- preset: {report.preset or '(none)'}; seeds: {seeds}; models: "
                       f"{cfg['model_fixed']} vs {cfg['model_attention']}; train config: {cfg['train']}; "
                       f"decoding: {cfg['decode']}", cfg["overrides"], report.hardware, report.seconds)
    lines.append("")
    lines.append("Both systems share data, tokenizer, embedding/hidden sizes, layers, dropout, optimizer, schedule, "
                 "budget in updates, seed and decoding; the fixed-context decoder sees only a fixed-size summary of "
                 "the source. Each system is evaluated with its best checkpoint by validation BLEU. "
                 "Length-controlled levels: level k joins k consecutive test sentences into one input; training "
                 "uses the original pairs plus data.concat.share of one grouping of the split per k = 2..K, so both "
                 "systems see every length they are tested on"
                 + (" (validation, best checkpoint and early stopping: one-sentence valid pairs only)"
                    if any(s.levels and s.levels.followed for s in report.sections) else
                    "; validation uses the same mixture of the valid split") + ". "
                 f"(a) Does the fixed-context model degrade, and does attention degrade less? Supported "
                 f"when, in every seed, the fixed-context model keeps less than 100% of its k = 1 BLEU at the "
                 f"longest level (p < {BOTTLENECK_ALPHA}) and attention keeps more (p < {BOTTLENECK_ALPHA}); not "
                 f"supported when the fixed-context model keeps at least {KEEPS_BLEU:.0%} or attention keeps no "
                 f"more. (b) Does attention remove the degradation? Removed only when attention's own test of "
                 f"keeping less than 100% is not significant (p >= {BOTTLENECK_ALPHA}) and its 95% interval stays "
                 f"at or above {KEEPS_BLEU:.0%}, in every seed; otherwise reduced but not removed."
                 + (" Both need the seed-level interval to agree. (c) At equal k = 1 quality, does attention keep "
                    "more? Every kept checkpoint of both models compared where their valid k = 1 BLEU overlaps."
                    if any(s.levels and s.levels.matched for s in report.sections) else ""))
    lines.append("")
    for section in report.sections:
        corpus, split, b = section.corpus, section.split, section.budget
        lines += [f"## {corpus}: {split} ({section.num_sentences} sentences)", ""]
        budget = section.budget_text
        lines += [f"**(a) Does attention degrade less? {section.verdict.label}**, {budget}. "
                  f"{section.verdict.reason}", ""]
        if section.removal:
            lines += [f"**(b) Does attention remove the degradation? {section.removal.label}**, {budget}. "
                      f"{section.removal.reason}", ""]
        if section.levels and section.levels.matched:
            m = section.levels.matched
            lines += [f"**(c) At equal k = 1 quality, does attention keep more? {m.verdict.label}**: "
                      f"{m.verdict.reason}.", ""]
        if section.still_improving:
            lines += [f"The models were still improving when the budget ended: the best checkpoint is the last one "
                      f"for {', '.join(section.still_improving)}.", ""]
        lines.append(f"Budget for every run: max_steps={b.max_steps}, max_minutes={b.max_minutes}, "
                     f"max_epochs={b.max_epochs}, batch_tokens={b.batch_tokens}, lr={b.lr}; "
                     f"validation every {b.eval_every} steps.")
        lines.append("")
        lines += ["### Runs", ""] + _runs_table(report, corpus) + [""]
        if section.levels:
            lines += _levels_md(section)
        nat = section.natural
        lines += ["### Natural lengths", "", f"The original test set ({split}), BLEU by source-length bucket.", ""]
        lines += ["#### Overall", ""] + _overall(nat) + ["#### By source length", ""] + _by_length(nat)
        lines += ["Buckets with fewer than 50 sentences are marked: their BLEU is noisy; p-values: approximate "
                  "randomisation, n/a below 20 sentences; * marks p < 0.05.", ""]
        lines += _nll_by_length(nat)
        lines += [f"![natural lengths]({nat.plot})", ""]
        lines += ["Per-seed reports (hypotheses, signatures, full tables): "
                  + ", ".join(f"[seed {s.seed}]({s.report})" for s in nat.seeds), ""]
        sig = nat.seeds[0].signatures
        lines += [f"sacreBLEU: `{sig['bleu']}`, `{sig['chrf']}`", ""]
    return "\n".join(lines)


def _nll_by_length(section: Natural) -> list[str]:
    """Teacher-forced reference NLL per source-length bucket and its rise over the shortest bucket: the natural
    lengths' evidence without search."""
    seeds, agg = section.seeds, section.aggregate
    if not seeds[0].nll_rise:
        return []
    lines = ["#### Reference NLL by source length", "",
             f"Per-token NLL of the references (teacher forced, nats) per bucket, its rise over the shortest bucket "
             f"(in brackets), and {FIXED}'s rise minus {ATTENTION}'s (> 0: the fixed-context model degrades more with "
             f"length; bootstrap over sentences, one-sided p; mean ± std over seeds and the seed-level 95% interval "
             f"with several seeds):", ""]
    rows = []
    for b, first in enumerate(seeds[0].nll_rise):
        cells = [first.label, str(first.count)]
        for name in (FIXED, ATTENTION):
            per_seed = [s.systems[name].nll_by_length[b].nll for s in seeds]
            rises = [s.nll_rise[b].baseline if name == FIXED else s.nll_rise[b].system for s in seeds]
            cells.append("-" if per_seed[0] is None else
                         f"{fmt_mean_std(mean_std(per_seed), 3)} ({fmt_mean_std(mean_std(rises), 3, signed=True)})")
        diffs = [s.nll_rise[b] for s in seeds]
        if b == 0 or diffs[0].difference is None:
            cells += ["(reference)" if b == 0 else "-", "", ""]
        else:
            level = agg.nll_rise_seed_level[b] if agg.nll_rise_seed_level else None
            cells += [fmt_mean_std(agg.nll_rise[b], 3, signed=True) if len(seeds) > 1 else
                      f"{diffs[0].difference:+.3f} [{diffs[0].ci[0]:+.3f}, {diffs[0].ci[1]:+.3f}]",
                      ", ".join(fmt_p(d.p_value) for d in diffs),
                      "-" if level is None or not level.ci else f"[{level.ci[0]:+.3f}, {level.ci[1]:+.3f}]"]
        rows.append(cells)
    return lines + md_table(["source words", "sentences", f"{FIXED} NLL (rise)", f"{ATTENTION} NLL (rise)",
                             "fixed - attention rise", "p per seed", "seed-level 95% interval"], rows) + [""]


def _overall(section: Natural) -> list[str]:
    seeds, agg = section.seeds, section.aggregate
    lines = []
    if len(seeds) == 1:
        s = seeds[0]
        rows = [[name, f"{s.systems[name].bleu:.2f} {fmt_interval(s.systems[name].bleu_ci)}",
                 f"{s.systems[name].chrf:.2f} {fmt_interval(s.systems[name].chrf_ci)}",
                 fmt_num(s.systems[name].bleu_lc)] for name in (FIXED, ATTENTION)]
        lines += md_table(["system", "BLEU [95% CI]", "chrF [95% CI]", "BLEU (lowercased)"], rows) + [""]
        for metric in ("bleu", "chrf"):
            c = getattr(s, metric)
            lines.append(f"- {ATTENTION} - {FIXED}, {metric.upper() if metric == 'bleu' else 'chrF'}: "
                         f"{c.difference:+.2f} {fmt_interval(c.difference_ci)}, paired {_p_inline(c.p_value)}")
    else:
        rows = [[name, fmt_mean_std(agg.systems[name].bleu), fmt_mean_std(agg.systems[name].chrf)]
                + [f"{s.systems[name].bleu:.2f} {fmt_interval(s.systems[name].bleu_ci)}" for s in seeds]
                for name in (FIXED, ATTENTION)]
        header = ["system", "BLEU mean ± std", "chrF mean ± std"] + [f"BLEU seed {s.seed} [95% CI]" for s in seeds]
        lines += md_table(header, rows) + [""]
        for metric in ("bleu", "chrf"):
            tests = [(s.seed, getattr(s, metric)) for s in seeds]
            ps = ", ".join(f"seed {seed}: {c.difference:+.2f}, {_p_inline(c.p_value)}" for seed, c in tests)
            lines.append(f"- {ATTENTION} - {FIXED}, {metric.upper() if metric == 'bleu' else 'chrF'}: "
                         f"{fmt_mean_std(getattr(agg.difference, metric), signed=True)} ({ps})")
    return lines + [""]


def _by_length(section: Natural) -> list[str]:
    seeds, agg = section.seeds, section.aggregate
    rows = []
    if len(seeds) == 1:
        s = seeds[0]
        for b, comp in enumerate(s.by_length):
            f, a = s.systems[FIXED].by_length[b], s.systems[ATTENTION].by_length[b]
            note = "empty" if comp.count == 0 else ("few sentences" if comp.few else "")
            cells = [comp.label, str(comp.count)]
            cells += ["-" if r.bleu is None else f"{r.bleu:.2f} {fmt_interval(r.bleu_ci)}" for r in (f, a)]
            t = comp.test
            cells += ["-", "-"] if t is None else [f"{t.difference:+.2f} {fmt_interval(t.difference_ci)}",
                                                   fmt_p(t.p_value)]
            rows.append(cells + [note])
        header = ["source words", "sentences", f"{FIXED} BLEU [95% CI]", f"{ATTENTION} BLEU [95% CI]",
                  "difference [95% CI]", "p-value", "note"]
    else:
        for b, d in enumerate(agg.difference.by_length):
            cells = [d.label, str(d.count)]
            cells += [fmt_mean_std(agg.systems[n].by_length[b].bleu) for n in (FIXED, ATTENTION)]
            cells += [fmt_mean_std(d.difference, signed=True), ", ".join(fmt_p(p) for p in d.p_values)]
            rows.append(cells + ["empty" if d.count == 0 else ("few sentences" if d.count < 50 else "")])
        header = ["source words", "sentences", f"{FIXED} BLEU", f"{ATTENTION} BLEU", "difference",
                  "p-value per seed", "note"]
    return md_table(header, rows) + [""]
