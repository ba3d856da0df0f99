"""The bottleneck experiment: does attention remove the fixed-length context bottleneck?

Bahdanau et al. (2015) report that RNNsearch keeps its BLEU as sentences get longer while the fixed-context
RNNencdec falls. `run_bottleneck` trains `rnn_fixed` and `rnn_attention` with identical data, tokenizer, sizes,
budget, seeds and decoding, and tests the claim in two halves on length-controlled test levels (k = 1..K
consecutive test sentences joined into one input, nmt/data/concat.py; both systems train on the same mixture of
levels): the fixed-context model keeps less of its k = 1 BLEU at the longest level, and the attention model
keeps much more (nmt/experiments/verdicts.py). Beside it: a capacity sweep (fixed-context models with bigger
and smaller summary vectors at the same budget) and the natural-length view (BLEU by source-length bucket on
the original test set). Writes <out_dir>/report.md, report.json and the plots, plus an `nmt-evaluate`-style
report per seed and test set under <out_dir>/<corpus>/<split>/seed<k>/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nmt.data.concat import level_groups
from nmt.errors import NMTError
from nmt.evaluation.report import fmt_interval, fmt_num, fmt_p, md_table
from nmt.experiments.runner import Job, compose_run, job_dict, run_jobs
from nmt.experiments.verdicts import (
    INCONCLUSIVE,
    bottleneck_verdict,
    capacity_sentence,
    fmt_mean_std,
    length_verdict,
    mean_std,
    retention,
    slope,
)
from nmt.io import make_out_dir, read_text_lines, safe_name, write_json, write_lines, write_text
from nmt.runtime import hardware, hardware_line

FIXED, ATTENTION = "rnn_fixed", "rnn_attention"
# What must agree between the two models for the comparison to be fair (the attention path aside).
SHARED_MODEL_FIELDS = ("emb_dim", "hidden", "enc_layers", "dec_layers", "dropout", "rnn_type", "bidirectional")


def resolve_split(corpus: Any, name: str) -> str:
    """The split's own name ("test" -> the corpus's first test set unless a split is literally "test")."""
    corpus.split(name)  # NMTError listing the valid names
    return corpus.test_sets[0] if name == "test" and "test" not in corpus.splits else name


def _check_pair(fixed: DictConfig, attention: DictConfig) -> None:
    if fixed.model.arch != FIXED or attention.model.arch != ATTENTION:
        raise NMTError(f"model_fixed must be an {FIXED} config and model_attention an {ATTENTION} config, got "
                       f"{fixed.model.arch} and {attention.model.arch}")
    differ = [k for k in SHARED_MODEL_FIELDS if fixed.model[k] != attention.model[k]]
    if differ:
        raise NMTError(f"the two models must share their sizes for a fair comparison; they differ in "
                       f"{', '.join(f'model.{k}' for k in differ)}")


def _summary_size(model: DictConfig) -> int:
    return int(model.hidden) * (2 if model.bidirectional else 1)


def plan(cfg: DictConfig, out: Path, log: Callable[[str], None]) -> tuple[list[Job], list[dict[str, Any]]]:
    """Compose and check every run, prepare each corpus once (workers then only read its cache)."""
    from nmt.data.corpus import prepare_corpus
    from nmt.models import build_model

    if not cfg.data or not cfg.seeds or not cfg.splits:
        raise NMTError("data, seeds and splits must not be empty")
    if cfg.concat_k < 1:
        raise NMTError(f"concat_k must be at least 1, got {cfg.concat_k}")
    unknown = [d for d in cfg.natural_only if d not in cfg.data]
    if unknown:
        raise NMTError(f"natural_only names corpora that are not in data: {', '.join(unknown)}")
    jobs, corpora = [], []
    for data in cfg.data:
        k = 1 if data in cfg.natural_only else int(cfg.concat_k)
        base = [f"data={data}", f"train={cfg.train}", f"decode={cfg.decode}", *cfg.overrides,
                f"data.concat.max_k={k}"]
        runs: dict[tuple[int, str], DictConfig] = {}
        for seed in cfg.seeds:
            for system, model in ((FIXED, cfg.model_fixed), (ATTENTION, cfg.model_attention)):
                runs[(seed, system)] = compose_run([f"model={model}", *base, f"train.seed={seed}"])
        first = runs[(cfg.seeds[0], FIXED)]
        _check_pair(first, runs[(cfg.seeds[0], ATTENTION)])
        sweep = {}
        if k > 1:
            directions = 2 if first.model.bidirectional else 1
            for size in sorted(set(int(s) for s in cfg.capacity_summary) - {_summary_size(first.model)}):
                if size < directions or size % directions:
                    raise NMTError(f"capacity_summary {size} must be a positive multiple of {directions} "
                                   f"(the encoder directions)")
                name = f"{FIXED}_c{size}"
                sweep[name] = size
                runs[(cfg.seeds[0], name)] = compose_run([f"model={cfg.model_fixed}", *base,
                                                          f"model.hidden={size // directions}",
                                                          f"train.seed={cfg.seeds[0]}"])
        corpus = prepare_corpus(first.data, log=lambda msg, d=data: log(f"[{d}] {msg}"))
        tok = corpus.tokenizer
        params = {s: build_model(c.model, tok.src_vocab_size, tok.tgt_vocab_size).num_parameters()
                  for (_, s), c in runs.items()}
        tests = list(dict.fromkeys(resolve_split(corpus, s) for s in cfg.splits))
        levels = {t: _levels_of(corpus, t) for t in tests} if k > 1 else {}
        splits = tests + [lv for t in tests for lv in levels[t][1:]]
        name = str(first.data.name)
        log(f"[{data}] parameters: " + ", ".join(f"{s} {n:,}" for s, n in params.items())
            + f"; test splits: {', '.join(splits)}")
        index = {}
        for (seed, system), run_cfg in runs.items():
            run_dir = out / "runs" / name / f"{system}-seed{seed}"
            index[(seed, system)] = len(jobs)
            jobs.append(Job(f"{name}/{system}/seed{seed}", OmegaConf.to_container(run_cfg, resolve=True),
                            str(run_dir), splits, cfg.threads))
        corpora.append({"data": data, "name": name, "corpus": corpus, "tests": tests, "levels": levels, "k": k,
                        "config": first, "runs": index, "sweep": sweep, "params": params,
                        "summary": _summary_size(first.model)})
    return jobs, corpora


def _levels_of(corpus: Any, test: str) -> list[str]:
    """The split names of the levels k = 1..K built from test set `test`, in order of k."""
    info = corpus.stats.get("concat_levels") or {}
    levels = sorted((v["k"], name) for name, v in info.items() if v["source"] == test)
    if not levels:
        raise NMTError(f"corpus {corpus.name} has no concatenated levels of {test}")
    return [name for _, name in levels]


# Natural lengths --------------------------------------------------------------------------------------------
def analyse_natural(sources: list[str], refs: list[str], fixed: dict[str, Any], attention: dict[str, Any],
                    split: str, seed_dir: Path, cfg: DictConfig, decode: dict[str, Any]) -> dict[str, Any]:
    """Scores, by-length rows and paired tests of one seed's pair on a natural test set; also writes that seed's
    full report (as `nmt-evaluate` would) into `seed_dir`."""
    from nmt.evaluation.evaluate import System, build_report
    from nmt.evaluation.report import write_report
    from nmt.metrics import paired_bootstrap
    from nmt.plots import plot_bleu_by_length, save_png

    pair = ((FIXED, fixed), (ATTENTION, attention))
    hyps = {name: read_text_lines(r["decoded"][split]["file"], "hypotheses") for name, r in pair}
    systems = {name: System(name, hyps[name], {"checkpoint": r["checkpoint"], "step": r["checkpoint_step"],
                                                "arch": name, "num_parameters": r["num_parameters"]})
               for name, r in pair}
    n = int(cfg.bootstrap_samples)
    ev_cfg = OmegaConf.create({"length_edges": list(cfg.length_edges), "bootstrap_samples": n, "decode": decode})
    report = build_report(split, sources, refs, [systems[ATTENTION]], systems[FIXED], ev_cfg)
    report["title"] = f"{ATTENTION} vs {FIXED} on {split}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    for s in report["systems"]:
        write_lines(seed_dir / s["hypotheses_file"], hyps[s["name"]])
    write_lines(seed_dir / "src.txt", sources)
    write_lines(seed_dir / "ref.txt", refs)
    by_name = {s["name"]: s for s in report["systems"]}
    fig = plot_bleu_by_length({k: by_name[k]["by_length"] for k in (FIXED, ATTENTION)},
                              title=f"BLEU by source length ({split})")
    report["plots"] = {"bleu_by_length": save_png(fig, seed_dir / "bleu_by_length.png").name, "attention": []}
    write_report(seed_dir, report)

    bleu = report["comparisons"][0]["overall"]
    chrf = paired_bootstrap(hyps[ATTENTION], hyps[FIXED], refs, n, metric="chrf")
    out: dict[str, Any] = {"systems": {}, "bleu": bleu, "chrf": chrf,
                           "by_length": report["comparisons"][0]["by_length"]}
    for name, side in ((ATTENTION, "system"), (FIXED, "baseline")):
        scores = by_name[name]["scores"]
        out["systems"][name] = {
            "bleu": scores["bleu"], "bleu_ci": bleu[f"{side}_ci"], "chrf": scores["chrf"],
            "chrf_ci": chrf[f"{side}_ci"], "ter": scores["ter"], "bleu_lc": scores["bleu_lc"],
            "by_length": by_name[name]["by_length"],
        }
    out["signatures"] = by_name[ATTENTION]["scores"]["signatures"]
    return out


def aggregate(seeds: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± std over seeds of every score, bucket and difference (std None with one seed)."""
    agg: dict[str, Any] = {"systems": {}}
    for name in (FIXED, ATTENTION):
        rows = [s["systems"][name]["by_length"] for s in seeds]
        agg["systems"][name] = {
            "bleu": mean_std([s["systems"][name]["bleu"] for s in seeds]),
            "chrf": mean_std([s["systems"][name]["chrf"] for s in seeds]),
            "by_length": [{"label": r["label"], "count": r["count"],
                           "bleu": mean_std([seed_rows[b]["bleu"] for seed_rows in rows])}
                          for b, r in enumerate(rows[0])],
        }
    agg["difference"] = {
        "bleu": mean_std([s["bleu"]["difference"] for s in seeds]),
        "chrf": mean_std([s["chrf"]["difference"] for s in seeds]),
        "by_length": [{"label": r["label"], "count": r["count"],
                       "difference": mean_std([s["by_length"][b].get("difference") for s in seeds]),
                       "p_values": [s["by_length"][b].get("p_value") for s in seeds]}
                      for b, r in enumerate(seeds[0]["by_length"])],
    }
    return agg


def natural_plot_rows(seeds: list[dict[str, Any]], agg: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Rows for `plot_bleu_by_length`: one seed's bootstrap intervals, or the seed mean with +-1 std bars."""
    if len(seeds) == 1:
        return {k: seeds[0]["systems"][k]["by_length"] for k in (FIXED, ATTENTION)}
    return {name: [_mean_row(r["label"], r["count"], r["bleu"]) for r in agg["systems"][name]["by_length"]]
            for name in (FIXED, ATTENTION)}


def _mean_row(label: str, count: int, ms: dict[str, Any] | None) -> dict[str, Any]:
    ci = None if ms is None else [ms["mean"] - (ms["std"] or 0.0), ms["mean"] + (ms["std"] or 0.0)]
    return {"label": label, "count": count, "bleu": None if ms is None else ms["mean"], "bleu_ci": ci}


# Length-controlled levels -----------------------------------------------------------------------------------
def analyse_levels(c: dict[str, Any], test: str, results: list[dict[str, Any]], cfg: DictConfig
                   ) -> dict[str, Any]:
    """BLEU per level for every system and seed, the retention test and verdict per seed, the capacity sweep."""
    from nmt.metrics import bootstrap_interval, corpus_score

    names = c["levels"][test]
    corpus, n = c["corpus"], int(cfg.bootstrap_samples)
    data = {lv: (list(corpus.split(lv)["src"]), list(corpus.split(lv)["tgt"])) for lv in names}
    info = corpus.stats["concat_levels"]
    words = [sum(len(s.split()) for s in data[lv][0]) / len(data[lv][0]) for lv in names]
    rows = [{"split": lv, "k": info[lv]["k"], "examples": info[lv]["examples"], "offsets": info[lv]["offsets"],
             "src_words": w} for lv, w in zip(names, words, strict=True)]
    groups = level_groups(len(data[names[0]][0]), info[names[-1]]["k"], info[names[-1]]["offsets"])

    def score(result: dict[str, Any]) -> dict[str, Any]:
        hyps = {lv: read_text_lines(result["decoded"][lv]["file"], "hypotheses") for lv in names}
        bleu = [corpus_score(hyps[lv], data[lv][1]) for lv in names]
        return {"hyps": hyps, "bleu": bleu, "bleu_ci": [list(bootstrap_interval(hyps[lv], data[lv][1], n))
                                                         for lv in names], "slope": slope(words, bleu)}

    def levels_of(scored: dict[str, Any]) -> dict[str, Any]:
        return {"short": (scored["hyps"][names[0]], data[names[0]][1]),
                "long": (scored["hyps"][names[-1]], data[names[-1]][1])}

    seeds = []
    for seed in cfg.seeds:
        scored = {s: score(results[c["runs"][(seed, s)]]) for s in (FIXED, ATTENTION)}
        ret = retention({s: levels_of(scored[s]) for s in scored}, groups, FIXED, ATTENTION, n)
        label, reason = length_verdict(ret, FIXED, ATTENTION, float(cfg.min_bleu))
        seeds.append({"seed": seed, "retention": ret, "verdict": label, "reason": reason,
                      "systems": {s: {k: v for k, v in sc.items() if k != "hyps"} for s, sc in scored.items()}})
    verdict = bottleneck_verdict([(s["verdict"], s["reason"]) for s in seeds])
    agg = {s: [mean_std([x["systems"][s]["bleu"][i] for x in seeds]) for i in range(len(names))]
           for s in (FIXED, ATTENTION)}
    ratio = {where: mean_std([x["systems"][ATTENTION]["bleu"][i] / x["systems"][FIXED]["bleu"][i]
                              for x in seeds if x["systems"][FIXED]["bleu"][i] > 0])
             for where, i in (("k1", 0), ("longest", len(names) - 1))}
    out = {"test": test, "levels": rows, "groups": len(groups), "seeds": seeds, "verdict": verdict,
           "aggregate": agg, "ratio": ratio, "sweep": None}
    if c["sweep"]:
        first = cfg.seeds[0]
        sizes = {FIXED: c["summary"], **c["sweep"]}
        scored = {s: score(results[c["runs"][(first, s)]]) for s in sizes}
        scored[ATTENTION] = score(results[c["runs"][(first, ATTENTION)]])
        ret = retention({s: levels_of(sc) for s, sc in scored.items()}, groups, FIXED, ATTENTION, n)
        table = sorted(({"system": s, "summary": size, "bleu": scored[s]["bleu"], "bleu_ci": scored[s]["bleu_ci"],
                         "parameters": c["params"][s], **{k: ret["systems"][s][k] for k in ("retained", "retained_ci")}}
                        for s, size in sizes.items()), key=lambda r: r["summary"])
        att = {"system": ATTENTION, "bleu": scored[ATTENTION]["bleu"], "bleu_ci": scored[ATTENTION]["bleu_ci"],
               "parameters": c["params"][ATTENTION],
               **{k: ret["systems"][ATTENTION][k] for k in ("retained", "retained_ci")}}
        out["sweep"] = {"seed": first, "fixed": table, "attention": att,
                        "sentence": capacity_sentence(table, att["retained"], float(cfg.min_bleu))}
    return out


def level_rows(levels: list[dict[str, Any]], bleu: list[float | None], ci: list[list[float] | None]
               ) -> list[dict[str, Any]]:
    """`plot_bleu_by_length` rows with one point per level, labelled by k and mean source words."""
    return [{"label": f"k={lv['k']}, {lv['src_words']:.0f} w", "count": lv["examples"], "bleu": b, "bleu_ci": c}
            for lv, b, c in zip(levels, bleu, ci, strict=True)]


def levels_plot(section: dict[str, Any], title: str) -> Any:
    from nmt.plots import plot_bleu_by_length

    seeds, levels = section["seeds"], section["levels"]
    if len(seeds) == 1:
        systems = {s: level_rows(levels, seeds[0]["systems"][s]["bleu"], seeds[0]["systems"][s]["bleu_ci"])
                   for s in (FIXED, ATTENTION)}
    else:
        systems = {s: [_mean_row(r["label"], r["count"], ms) for r, ms in
                       zip(level_rows(levels, [None] * len(levels), [None] * len(levels)), section["aggregate"][s],
                           strict=True)] for s in (FIXED, ATTENTION)}
    fig = plot_bleu_by_length(systems, title=title)
    fig.axes[0].set_xlabel("test level: k consecutive sentences joined (mean source words)")
    return fig


def sweep_plot(sweep: dict[str, Any], levels: list[dict[str, Any]], title: str) -> Any:
    from nmt.plots import plot_bleu_by_length

    systems = {f"{FIXED}, {r['summary']}-d summary": level_rows(levels, r["bleu"], r["bleu_ci"])
               for r in sweep["fixed"]}
    systems[ATTENTION] = level_rows(levels, sweep["attention"]["bleu"], sweep["attention"]["bleu_ci"])
    fig = plot_bleu_by_length(systems, title=title)
    fig.axes[0].set_xlabel("test level: k consecutive sentences joined (mean source words)")
    return fig


# The experiment ---------------------------------------------------------------------------------------------
def run_bottleneck(cfg: DictConfig, preset: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Run the whole experiment as configured; returns the output directory."""
    from nmt.plots import plot_bleu_by_length, save_png

    started = time.time()
    out = make_out_dir(cfg.out_dir, Path("outputs") / "bottleneck")
    log(f"bottleneck experiment: {out}")
    jobs, corpora = plan(cfg, out, log)
    results = run_jobs(jobs, int(cfg.workers), log)
    report: dict[str, Any] = {
        "title": "Bottleneck experiment: fixed-context vs attention encoder-decoder by source length",
        "preset": preset,
        "config": OmegaConf.to_container(cfg, resolve=True),
        "hardware": hardware(int(cfg.workers), int(cfg.threads)),
        "runs": [job_dict(j) | r for j, r in zip(jobs, results, strict=True)],
        "sections": [],
    }
    for c in corpora:
        run_cfg = c["config"]
        decode = OmegaConf.to_container(run_cfg.decode, resolve=True)
        for test in c["tests"]:
            dataset = c["corpus"].split(test)
            sources, refs = list(dataset["src"]), list(dataset["tgt"])
            natural = []
            for seed in cfg.seeds:
                pair = {s: results[c["runs"][(seed, s)]] for s in (FIXED, ATTENTION)}
                seed_dir = out / safe_name(c["name"]) / safe_name(test) / f"seed{seed}"
                log(f"[{c['name']}] scoring {test}, seed {seed} ...")
                entry = analyse_natural(sources, refs, pair[FIXED], pair[ATTENTION], test, seed_dir, cfg, decode)
                natural.append(entry | {"seed": seed, "report": str(seed_dir.relative_to(out) / "report.md")})
            section: dict[str, Any] = {
                "data": c["data"], "corpus": c["name"], "split": test, "num_sentences": len(refs), "decode": decode,
                "length_edges": list(cfg.length_edges), "concat_k": c["k"], "parameters": c["params"],
                "budget": {k: run_cfg.train[k] for k in ("max_steps", "max_minutes", "max_epochs", "batch_tokens",
                                                          "eval_every", "lr")},
                "models": {FIXED: cfg.model_fixed, ATTENTION: cfg.model_attention},
                "natural": {"seeds": natural, "aggregate": aggregate(natural)}, "levels": None}
            seeds_note = "" if len(natural) == 1 else f", mean ± std over {len(natural)} seeds"
            fig = plot_bleu_by_length(natural_plot_rows(natural, section["natural"]["aggregate"]),
                                      title=f"Natural lengths: {c['name']} {test}{seeds_note}")
            stem = f"{safe_name(c['name'])}_{safe_name(test)}"
            section["natural"]["plot"] = save_png(fig, out / f"{stem}_natural_lengths.png").name
            if c["levels"]:
                log(f"[{c['name']}] scoring the length-controlled levels of {test} ...")
                levels = analyse_levels(c, test, results, cfg)
                title = (f"BLEU by input length: {c['name']} {test}, k sentences joined{seeds_note or ', 95% CI'}")
                levels["plot"] = save_png(levels_plot(levels, title), out / f"{stem}_bleu_by_length.png").name
                if levels["sweep"]:
                    levels["sweep"]["plot"] = save_png(sweep_plot(levels["sweep"], levels["levels"], "Capacity "
                                                                  f"sweep: {c['name']} {test}, seed "
                                                                  f"{levels['sweep']['seed']}, 95% CI"),
                                                       out / f"{stem}_capacity.png").name
                section["levels"] = levels
                section["verdict"] = levels["verdict"]
            else:
                section["verdict"] = {"label": INCONCLUSIVE, "per_seed": [],
                                      "reason": "natural lengths only (no length-controlled levels): this section "
                                                "is descriptive"}
            report["sections"].append(section)
    report["seconds"] = time.time() - started
    write_json(out / "report.json", report)
    write_text(out / "report.md", render(report))
    for s in report["sections"]:
        log(f"{s['corpus']} {s['split']}: {s['verdict']['label']}: {s['verdict']['reason']}")
        if s["levels"] and s["levels"]["sweep"]:
            log(f"capacity: {s['levels']['sweep']['sentence']}")
    log(f"report: {out / 'report.md'}")
    return out


# Markdown ---------------------------------------------------------------------------------------------------
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
    lines.append(f"- preset: {report['preset'] or '(none)'}; seeds: {', '.join(map(str, cfg['seeds']))}; "
                 f"models: {cfg['model_fixed']} vs {cfg['model_attention']}; train config: {cfg['train']}; "
                 f"decoding: {cfg['decode']}")
    lines.append(f"- overrides for every run: {', '.join(f'`{o}`' for o in cfg['overrides']) or '(none)'}")
    lines.append(f"- hardware: {hardware_line(report['hardware'])}")
    lines.append(f"- total time: {report['seconds'] / 60:.1f} min")
    lines.append("")
    lines.append("Both systems share data, tokenizer, embedding/hidden sizes, layers, dropout, optimizer, schedule, "
                 "budget, seed and decoding; the fixed-context decoder sees only a fixed-size summary of the source. "
                 "Each system is evaluated with its best checkpoint by validation BLEU. Length-controlled levels: "
                 "level k joins k consecutive test sentences into one input; training and validation use the "
                 "original pairs plus one grouping of the whole split per k = 2..K, so every level carries the same "
                 "number of sentences. Verdict: supported when, in every seed, the fixed-context model keeps less "
                 "of its k = 1 BLEU at the longest level (p < 0.01) and attention keeps more (p < 0.01); not "
                 "supported when the fixed-context model keeps at least 90% or attention keeps no more.")
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
