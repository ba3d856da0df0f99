"""The bottleneck experiment: does attention remove the fixed-length context bottleneck?

Bahdanau et al. (2015) report that RNNsearch keeps its BLEU as sentences get longer while the fixed-context
RNNencdec falls. `run_bottleneck` trains `rnn_fixed` and `rnn_attention` with identical data, tokenizer, sizes,
budget, seeds and decoding, on each corpus of `cfg.data`, decodes the test set(s) with each run's best.pt and
writes <out_dir>/report.md, report.json and one BLEU-by-length plot per corpus and test set, plus a full
`nmt-evaluate`-style report per seed under <out_dir>/<corpus>/<split>/seed<k>/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nmt.errors import NMTError
from nmt.evaluation.experiment import (
    Job,
    compose_run,
    hardware,
    hardware_line,
    job_dict,
    make_out_dir,
    run_jobs,
    write_json,
)
from nmt.evaluation.report import _interval, _num, _p, _table
from nmt.evaluation.verdicts import (
    bottleneck_sentence,
    bottleneck_verdict,
    fmt_mean_std,
    gap_growth,
    growth_verdict,
    mean_std,
)

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


def plan(cfg: DictConfig, out: Path, log: Callable[[str], None]) -> tuple[list[Job], list[dict[str, Any]]]:
    """Compose and check every run, prepare each corpus once (workers then only read its cache)."""
    from nmt.data.corpus import prepare_corpus
    from nmt.models import build_model

    if not cfg.data or not cfg.seeds or not cfg.splits:
        raise NMTError("data, seeds and splits must not be empty")
    if cfg.long_from < 1:
        raise NMTError(f"long_from must be at least 1 word, got {cfg.long_from}")
    jobs, corpora = [], []
    for data in cfg.data:
        runs = {}
        for seed in cfg.seeds:
            for system, model in ((FIXED, cfg.model_fixed), (ATTENTION, cfg.model_attention)):
                overrides = [f"data={data}", f"model={model}", f"train={cfg.train}", f"decode={cfg.decode}",
                             *cfg.overrides, f"train.seed={seed}"]
                runs[(seed, system)] = compose_run(overrides)
        first = runs[(cfg.seeds[0], FIXED)]
        _check_pair(first, runs[(cfg.seeds[0], ATTENTION)])
        corpus = prepare_corpus(first.data, log=lambda msg, d=data: log(f"[{d}] {msg}"))
        tok = corpus.tokenizer
        params = {s: build_model(runs[(cfg.seeds[0], s)].model, tok.src_vocab_size, tok.tgt_vocab_size)
                  .num_parameters() for s in (FIXED, ATTENTION)}
        splits = list(dict.fromkeys(resolve_split(corpus, s) for s in cfg.splits))
        name = str(first.data.name)
        log(f"[{data}] {FIXED} {params[FIXED]:,} parameters, {ATTENTION} {params[ATTENTION]:,}; "
            f"test sets: {', '.join(splits)}")
        for (seed, system), run_cfg in runs.items():
            run_dir = out / "runs" / name / f"{system}-seed{seed}"
            jobs.append(Job(f"{name}/{system}/seed{seed}", OmegaConf.to_container(run_cfg, resolve=True),
                            str(run_dir), splits, cfg.threads))
        corpora.append({"data": data, "name": name, "corpus": corpus, "splits": splits, "config": first,
                        "runs": {k: len(jobs) - len(runs) + i for i, k in enumerate(runs)}})
    return jobs, corpora


def analyse_seed(sources: list[str], refs: list[str], fixed: dict[str, Any], attention: dict[str, Any],
                 split: str, seed_dir: Path, cfg: DictConfig, decode: dict[str, Any]) -> dict[str, Any]:
    """Scores, by-length rows, paired tests and the growth test of one seed's pair; also writes that seed's
    full report (as `nmt-evaluate` would) into `seed_dir`."""
    from nmt.cli.evaluate import System, build_report, read_lines, write_text
    from nmt.evaluation.metrics import paired_bootstrap
    from nmt.evaluation.plots import plot_bleu_by_length, save_png
    from nmt.evaluation.report import write_report

    pair = ((FIXED, fixed), (ATTENTION, attention))
    hyps = {name: read_lines(r["decoded"][split]["file"], "hypotheses") for name, r in pair}
    systems = {}
    for name, r in pair:
        info = {"checkpoint": r["checkpoint"], "step": r["checkpoint_step"], "arch": name,
                "num_parameters": r["num_parameters"]}
        systems[name] = System(name, hyps[name], info)
    n = int(cfg.bootstrap_samples)
    ev_cfg = OmegaConf.create({"length_edges": list(cfg.length_edges), "bootstrap_samples": n, "decode": decode})
    report = build_report(split, sources, refs, [systems[ATTENTION]], systems[FIXED], ev_cfg)
    report["title"] = f"{ATTENTION} vs {FIXED} on {split}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    for s in report["systems"]:
        write_text(seed_dir / s["hypotheses_file"], hyps[s["name"]])
    write_text(seed_dir / "src.txt", sources)
    write_text(seed_dir / "ref.txt", refs)
    by_name = {s["name"]: s for s in report["systems"]}
    fig = plot_bleu_by_length({k: by_name[k]["by_length"] for k in (FIXED, ATTENTION)},
                              title=f"BLEU by source length ({split})")
    report["plots"] = {"bleu_by_length": save_png(fig, seed_dir / "bleu_by_length.png").name, "attention": []}
    write_report(seed_dir, report)

    bleu = report["comparisons"][0]["overall"]
    chrf = paired_bootstrap(hyps[ATTENTION], hyps[FIXED], refs, n, metric="chrf")
    growth = gap_growth(sources, hyps[ATTENTION], hyps[FIXED], refs, int(cfg.long_from), n)
    out: dict[str, Any] = {"systems": {}, "bleu": bleu, "chrf": chrf,
                           "by_length": report["comparisons"][0]["by_length"], "growth": growth,
                           "verdict": growth_verdict(growth, float(cfg.flat_margin), float(cfg.min_bleu))}
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


def plot_rows(section: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Rows for `plot_bleu_by_length`: one seed's bootstrap intervals, or the seed mean with +-1 std bars."""
    if len(section["seeds"]) == 1:
        return {k: section["seeds"][0]["systems"][k]["by_length"] for k in (FIXED, ATTENTION)}
    out = {}
    for name in (FIXED, ATTENTION):
        rows = []
        for r in section["aggregate"]["systems"][name]["by_length"]:
            ms = r["bleu"]
            ci = None if ms is None else [ms["mean"] - (ms["std"] or 0.0), ms["mean"] + (ms["std"] or 0.0)]
            rows.append({"label": r["label"], "count": r["count"], "bleu": None if ms is None else ms["mean"],
                         "bleu_ci": ci})
        out[name] = rows
    return out


def run_bottleneck(cfg: DictConfig, preset: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Run the whole experiment as configured; returns the output directory."""
    from nmt.cli.evaluate import safe_name
    from nmt.evaluation.plots import plot_bleu_by_length, save_png

    started = time.time()
    out = make_out_dir(cfg.out_dir, "bottleneck")
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
        for split in c["splits"]:
            dataset = c["corpus"].split(split)
            sources, refs = list(dataset["src"]), list(dataset["tgt"])
            seeds = []
            for seed in cfg.seeds:
                pair = {s: results[c["runs"][(seed, s)]] for s in (FIXED, ATTENTION)}
                seed_dir = out / safe_name(c["name"]) / safe_name(split) / f"seed{seed}"
                log(f"[{c['name']}] scoring {split}, seed {seed} ...")
                entry = analyse_seed(sources, refs, pair[FIXED], pair[ATTENTION], split, seed_dir, cfg, decode)
                entry |= {"seed": seed, "report": str(seed_dir.relative_to(out) / "report.md")}
                seeds.append(entry)
            verdict = bottleneck_verdict([s["growth"] for s in seeds], float(cfg.flat_margin), float(cfg.min_bleu))
            verdict["sentence"] = bottleneck_sentence(verdict, [s["growth"] for s in seeds], f"{c['name']} {split}",
                                                      float(cfg.min_bleu))
            section = {"data": c["data"], "corpus": c["name"], "split": split, "num_sentences": len(refs),
                       "decode": decode, "length_edges": list(cfg.length_edges),
                       "budget": {k: run_cfg.train[k] for k in ("max_steps", "max_minutes", "max_epochs",
                                                                 "batch_tokens", "eval_every", "lr")},
                       "models": {FIXED: cfg.model_fixed, ATTENTION: cfg.model_attention},
                       "seeds": seeds, "verdict": verdict}
            section["aggregate"] = aggregate(seeds)
            seeds_note = "" if len(seeds) == 1 else f", mean ± std over {len(seeds)} seeds"
            fig = plot_bleu_by_length(plot_rows(section), title=f"BLEU by source length: {c['name']} {split}"
                                      f"{seeds_note}")
            section["plot"] = save_png(fig, out / f"{safe_name(c['name'])}_{safe_name(split)}_bleu_by_length.png").name
            report["sections"].append(section)
    report["seconds"] = time.time() - started
    write_json(out / "report.json", report)
    (out / "report.md").write_text(render(report), encoding="utf-8")
    for s in report["sections"]:
        log(f"{s['verdict']['label']}: {s['verdict']['sentence']}")
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
                     _num(r["best_valid_bleu"]), str(r["checkpoint_step"]), f"{decode:.0f}"])
    header = ["system", "seed", "parameters", "steps", "stopped by", "train min", "train + validation min",
              "best valid BLEU", "evaluated step", "test decoding s"]
    return _table(header, rows)


def _step_notes(report: dict[str, Any], corpus: str) -> list[str]:
    by_seed: dict[str, dict[str, int]] = {}
    for r in report["runs"]:
        if r["name"].startswith(f"{corpus}/"):
            _, system, seed = r["name"].split("/")
            by_seed.setdefault(seed, {})[system] = r["steps"]
    return [f"- {seed}: {FIXED} trained {s.get(FIXED)} steps and {ATTENTION} {s.get(ATTENTION)} (a time budget "
            f"stopped them at different steps)." for seed, s in by_seed.items() if len(set(s.values())) > 1]


def _overall(section: dict[str, Any]) -> list[str]:
    seeds, agg = section["seeds"], section["aggregate"]
    lines = []
    if len(seeds) == 1:
        s = seeds[0]
        rows = [[name, f"{s['systems'][name]['bleu']:.2f} {_interval(s['systems'][name]['bleu_ci'])}",
                 f"{s['systems'][name]['chrf']:.2f} {_interval(s['systems'][name]['chrf_ci'])}",
                 _num(s["systems"][name]["bleu_lc"])] for name in (FIXED, ATTENTION)]
        lines += _table(["system", "BLEU [95% CI]", "chrF [95% CI]", "BLEU (lowercased)"], rows) + [""]
        for metric in ("bleu", "chrf"):
            c = s[metric]
            lines.append(f"- {ATTENTION} - {FIXED}, {metric.upper() if metric == 'bleu' else 'chrF'}: "
                         f"{c['difference']:+.2f} {_interval(c['difference_ci'])}, paired bootstrap p = "
                         f"{_p(c['p_value'])}")
    else:
        rows = [[name, fmt_mean_std(agg["systems"][name]["bleu"]), fmt_mean_std(agg["systems"][name]["chrf"])]
                + [f"{s['systems'][name]['bleu']:.2f} {_interval(s['systems'][name]['bleu_ci'])}" for s in seeds]
                for name in (FIXED, ATTENTION)]
        header = ["system", "BLEU mean ± std", "chrF mean ± std"] + [f"BLEU seed {s['seed']} [95% CI]" for s in seeds]
        lines += _table(header, rows) + [""]
        for metric in ("bleu", "chrf"):
            ps = ", ".join(f"seed {s['seed']}: {s[metric]['difference']:+.2f}, p = {_p(s[metric]['p_value'])}"
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
            cells += ["-" if r["bleu"] is None else f"{r['bleu']:.2f} {_interval(r['bleu_ci'])}" for r in (f, a)]
            if comp["count"]:
                cells += [f"{comp['difference']:+.2f} {_interval(comp['difference_ci'])}", _p(comp["p_value"])]
            else:
                cells += ["-", "-"]
            rows.append(cells + [note])
        header = ["source words", "sentences", f"{FIXED} BLEU [95% CI]", f"{ATTENTION} BLEU [95% CI]",
                  "difference [95% CI]", "p-value", "note"]
    else:
        for b, d in enumerate(agg["difference"]["by_length"]):
            cells = [d["label"], str(d["count"])]
            cells += [fmt_mean_std(agg["systems"][n]["by_length"][b]["bleu"]) for n in (FIXED, ATTENTION)]
            cells += [fmt_mean_std(d["difference"], signed=True), ", ".join(_p(p) for p in d["p_values"])]
            rows.append(cells + ["empty" if d["count"] == 0 else ("few sentences" if d["count"] < 50 else "")])
        header = ["source words", "sentences", f"{FIXED} BLEU", f"{ATTENTION} BLEU", "difference",
                  "p-value per seed", "note"]
    return _table(header, rows) + [""]


def _growth(section: dict[str, Any]) -> list[str]:
    rows = []
    for s in section["seeds"]:
        g = s["growth"]
        rows.append([str(s["seed"]), f"{g['count_short']} / {g['count_long']}", _num(g["gap_short"]),
                     _num(g["gap_long"]), "-" if g["growth"] is None else f"{g['growth']:+.2f}",
                     _interval(g["growth_ci"]), _p(g["p_value"]), s["verdict"]])
    long_from = section["seeds"][0]["growth"]["long_from"]
    header = ["seed", f"sentences < / >= {long_from} words", "gap short", "gap long", "growth", "95% CI",
              "p-value", "verdict"]
    return _table(header, rows) + [""]


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
                 "Each system is evaluated with its best checkpoint by validation BLEU. Gap = "
                 f"{ATTENTION} BLEU - {FIXED} BLEU; growth = gap on long sources - gap on short sources, tested by "
                 "a paired bootstrap resampling the short and long sentences separately.")
    lines.append("")
    for section in report["sections"]:
        corpus, split = section["corpus"], section["split"]
        b = section["budget"]
        lines += [f"## {corpus}: {split} ({section['num_sentences']} sentences)", ""]
        lines += [f"**Verdict: {section['verdict']['label']}.** {section['verdict']['sentence']}", ""]
        lines.append(f"Budget for both: max_steps={b['max_steps']}, max_minutes={b['max_minutes']}, "
                     f"max_epochs={b['max_epochs']}, batch_tokens={b['batch_tokens']}, lr={b['lr']}; "
                     f"validation every {b['eval_every']} steps.")
        lines.append("")
        lines += ["### Runs", ""] + _runs_table(report, corpus) + [""] + _step_notes(report, corpus)
        lines += ["### Overall", ""] + _overall(section)
        lines += ["### BLEU by source length", ""] + _by_length(section)
        lines += ["Buckets with fewer than 50 sentences are marked: their BLEU is noisy; * marks p < 0.05.", ""]
        lines += ["### Does the gap grow with length?", ""] + _growth(section)
        lines += [f"![BLEU by source length]({section['plot']})", ""]
        lines += ["Per-seed reports (hypotheses, signatures, full tables): "
                  + ", ".join(f"[seed {s['seed']}]({s['report']})" for s in section["seeds"]), ""]
        sig = section["seeds"][0]["signatures"]
        lines += [f"sacreBLEU: `{sig['bleu']}`, `{sig['chrf']}`", ""]
    return "\n".join(lines)
