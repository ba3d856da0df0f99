"""The bottleneck experiment: does attention remove the fixed-length context bottleneck?

Bahdanau et al. (2015) report that RNNsearch keeps its BLEU as sentences get longer while the fixed-context
RNNencdec falls. `run_bottleneck` trains `rnn_fixed` and `rnn_attention` with identical data, tokenizer, sizes,
budget, seeds and decoding, and tests the claim in two halves on length-controlled test levels (k = 1..K
consecutive test sentences joined into one input, nmt/data/concat.py; both systems train on the same mixture of
levels): the fixed-context model keeps less of its k = 1 BLEU at the longest level, and the attention model
keeps much more (nmt/experiments/verdicts.py). Beside it: a capacity sweep (fixed-context models that differ
only in the size of the summary vector c, a projection of the encoder summary, at the same budget in updates;
every pair of sizes tested) and the natural-length view (BLEU by source-length bucket on the original test set).
Writes <out_dir>/report.md, report.json and the plots, plus an `nmt-evaluate`-style report per seed and test set
under <out_dir>/<corpus>/<split>/seed<k>/.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from nmt.data.concat import level_groups
from nmt.data.corpus import prepare_corpus
from nmt.errors import NMTError
from nmt.evaluation.evaluate import System, build_report
from nmt.evaluation.report import Decode, Plots, SystemInfo, write_report
from nmt.evaluation.scoring import NllBin, score_references
from nmt.experiments.bottleneck_report import render
from nmt.experiments.results import (
    BottleneckReport,
    BucketDifference,
    BucketMean,
    Budget,
    Control,
    DifferenceMean,
    Level,
    Levels,
    LevelScores,
    LevelSeed,
    MeanStd,
    Natural,
    NaturalAggregate,
    NaturalSeed,
    NaturalSystem,
    Section,
    Sweep,
    SweepPair,
    SweepRow,
    SystemMean,
    Verdict,
)
from nmt.experiments.runner import Job, RunResult, compose_run, decode_splits, run_jobs
from nmt.experiments.verdicts import (
    ATTENTION,
    FIXED,
    INCONCLUSIVE,
    bottleneck_verdict,
    budget_text,
    capacity_sentence,
    length_verdict,
    mean_std,
    removal_verdict,
)
from nmt.io import make_out_dir, read_json, read_text_lines, safe_name, write_json, write_lines, write_text
from nmt.metrics import paired_bootstrap
from nmt.metrics.retention import Outputs, retention, slope
from nmt.metrics.scores import length_stats, score_from_stats, sentence_stats
from nmt.metrics.significance import PairedTest, stats_interval
from nmt.models import build_model, model_class
from nmt.plots import BleuPoint, BleuRow, plot_bleu_by_length, plot_position_curves, save_png
from nmt.runtime import hardware, pick_device
from nmt.training.checkpoint import load_model

# What must agree between the two models for the comparison to be fair (the attention path aside).
SHARED_MODEL_FIELDS = ("emb_dim", "hidden", "enc_layers", "dec_layers", "dropout", "rnn_type", "bidirectional")


@dataclass
class CorpusPlan:
    """One corpus of the experiment: its prepared data, the runs trained on it and the splits they are tested on."""

    data: str  # data config group name
    name: str  # the corpus's own name (data.name)
    corpus: Any  # nmt.data.corpus.Corpus, prepared once before training
    tests: list[str]  # natural test splits
    levels: dict[str, list[str]]  # test split -> its length-controlled splits k = 1..K ({} for natural only)
    k: int  # the longest level K (1: natural lengths only)
    config: DictConfig  # the first run's config: budget and decoding shared by every run
    runs: dict[tuple[int, str], int]  # (seed, system) -> index of the run in the jobs and their results
    sweep: dict[str, int]  # capacity-sweep system -> its summary size (model.summary_dim)
    params: dict[str, int]  # system -> parameter count
    summary: int  # the main fixed-context model's summary size

    def result(self, results: list[RunResult], seed: int, system: str) -> RunResult:
        return results[self.runs[(seed, system)]]


def resolve_split(corpus: Any, name: str) -> str:
    """The split's own name ("test" -> the corpus's first test set unless a split is literally "test")."""
    corpus.split(name)  # NMTError listing the valid names
    return corpus.test_sets[0] if name == "test" and "test" not in corpus.splits else name


def _check_pair(fixed: DictConfig, attention: DictConfig) -> None:
    """The fixed model's decoder sees only a summary vector, the attention model's the encoder states through the
    attention cell (the model classes say so), and the two share their sizes."""
    if (model_class(fixed.model.arch).sees_source != "summary"
            or not model_class(attention.model.arch).attention_cell):
        raise NMTError(f"model_fixed must be an {FIXED} config and model_attention an {ATTENTION} config, got "
                       f"{fixed.model.arch} and {attention.model.arch}")
    differ = [k for k in SHARED_MODEL_FIELDS if fixed.model[k] != attention.model[k]]
    if differ:
        raise NMTError(f"the two models must share their sizes for a fair comparison; they differ in "
                       f"{', '.join(f'model.{k}' for k in differ)}")


def plan_runs(cfg: DictConfig, log: Callable[[str], None]) -> tuple[list[Job], list[CorpusPlan]]:
    """Compose and check every run, prepare each corpus once (workers then only read its cache). The jobs' run
    directories are relative to the experiment's output directory, which does not exist yet: a mistake in
    the runs' options must leave nothing behind."""
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
        # The slower attention runs first, so that side-by-side workers finish close together.
        for system, model in ((ATTENTION, cfg.model_attention), (FIXED, cfg.model_fixed)):
            for seed in cfg.seeds:
                runs[(seed, system)] = compose_run([f"model={model}", *base, f"train.seed={seed}"])
        first = runs[(cfg.seeds[0], FIXED)]
        _check_pair(first, runs[(cfg.seeds[0], ATTENTION)])
        sweep = _plan_sweep(cfg, first) if k > 1 else {}
        for name, size in sweep.items():
            runs[(cfg.seeds[0], name)] = compose_run([f"model={cfg.model_fixed}", *base, f"model.summary_dim={size}",
                                                      f"train.seed={cfg.seeds[0]}"])
        corpus = prepare_corpus(first.data, log=lambda msg, d=data: log(f"[{d}] {msg}"))
        tok = corpus.tokenizer
        params = {s: build_model(c.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.joint).num_parameters()
                  for (_, s), c in runs.items()}
        tests = list(dict.fromkeys(resolve_split(corpus, s) for s in cfg.splits))
        levels = {t: _levels_of(corpus, t) for t in tests} if k > 1 else {}
        splits = tests + [lv for t in tests for lv in levels[t][1:]]
        name = str(first.data.name)
        log(f"[{data}] parameters: " + ", ".join(f"{s} {n:,}" for s, n in params.items())
            + f"; test splits: {', '.join(splits)}")
        index = {}
        for (seed, system), run_cfg in runs.items():
            run_dir = Path("runs") / name / f"{system}-seed{seed}"
            index[(seed, system)] = len(jobs)
            jobs.append(Job(f"{name}/{system}/seed{seed}", OmegaConf.to_container(run_cfg, resolve=True),
                            str(run_dir), splits, cfg.threads))
        summary = model_class(first.model.arch).summary_size(first.model)
        corpora.append(CorpusPlan(data=data, name=name, corpus=corpus, tests=tests, levels=levels, k=k, config=first,
                                  runs=index, sweep=sweep, params=params, summary=summary))
    return jobs, corpora


def _plan_sweep(cfg: DictConfig, first: DictConfig) -> dict[str, int]:
    """The capacity sweep's runs, system name -> summary size: every size of cfg.capacity_summary becomes a
    fixed-context model with model.summary_dim=<size> and the main model's hidden sizes and budget (the main
    model's own size is projected too, so the axis changes one thing). {} without sizes."""
    sizes = sorted(set(int(s) for s in cfg.capacity_summary))
    if not sizes:
        return {}
    if len(sizes) < 2 or sizes[0] < 1:
        raise NMTError(f"capacity_summary needs at least two positive sizes to compare ([] for no sweep), got "
                       f"{list(cfg.capacity_summary)}")
    if first.train.max_minutes:
        raise NMTError("the capacity sweep compares summary sizes at equal updates: give train.max_steps and "
                       f"train.max_minutes=0 (got train.max_minutes={first.train.max_minutes})")
    return {f"{FIXED}_c{size}": size for size in sizes}


def _levels_of(corpus: Any, test: str) -> list[str]:
    """The split names of the levels k = 1..K built from test set `test`, in order of k."""
    info = corpus.stats.get("concat_levels") or {}
    levels = sorted((v["k"], name) for name, v in info.items() if v["source"] == test)
    if not levels:
        raise NMTError(f"corpus {corpus.name} has no concatenated levels of {test}")
    return [name for _, name in levels]


# Natural lengths --------------------------------------------------------------------------------------------
def analyse_natural(sources: list[str], refs: list[str], fixed: RunResult, attention: RunResult, split: str,
                    seed: int, seed_dir: Path, report_path: str, cfg: DictConfig, decode: Decode) -> NaturalSeed:
    """Scores, by-length rows and paired tests of one seed's pair on a natural test set; also writes that seed's
    full report (as `nmt-evaluate` would) into `seed_dir`, which the experiment's report links as `report_path`."""
    pair = ((FIXED, fixed), (ATTENTION, attention))
    hyps = {name: r.hypotheses(split) for name, r in pair}
    systems = {name: System(name, hyps[name], SystemInfo(checkpoint=r.checkpoint, step=r.checkpoint_step, arch=name,
                                                         num_parameters=r.num_parameters))
               for name, r in pair}
    n = int(cfg.bootstrap_samples)
    ev_cfg = OmegaConf.create({"length_edges": list(cfg.length_edges), "bootstrap_samples": n, "decode": decode})
    report = build_report(split, sources, refs, [systems[ATTENTION]], systems[FIXED], ev_cfg)
    report.title = f"{ATTENTION} vs {FIXED} on {split}"
    seed_dir.mkdir(parents=True, exist_ok=True)
    for s in report.systems:
        write_lines(seed_dir / s.hypotheses_file, hyps[s.name])
    write_lines(seed_dir / "src.txt", sources)
    write_lines(seed_dir / "ref.txt", refs)
    fig = plot_bleu_by_length({k: report.system(k).by_length for k in (FIXED, ATTENTION)},
                              title=f"BLEU by source length ({split})")
    report.plots = Plots(bleu_by_length=save_png(fig, seed_dir / "bleu_by_length.png").name)
    write_report(seed_dir, report)

    comparison = report.comparisons[0]
    bleu = comparison.overall
    chrf = paired_bootstrap(hyps[ATTENTION], hyps[FIXED], refs, n, metric="chrf")
    intervals = {ATTENTION: (bleu.system_ci, chrf.system_ci), FIXED: (bleu.baseline_ci, chrf.baseline_ci)}
    natural = {}
    for name, (bleu_ci, chrf_ci) in intervals.items():
        s = report.system(name)
        natural[name] = NaturalSystem(bleu=s.scores.bleu, bleu_ci=bleu_ci, chrf=s.scores.chrf, chrf_ci=chrf_ci,
                                      ter=s.scores.ter, bleu_lc=s.scores.bleu_lc, by_length=s.by_length)
    return NaturalSeed(seed=seed, report=report_path, systems=natural, bleu=bleu, chrf=chrf,
                       by_length=comparison.by_length, signatures=report.system(ATTENTION).scores.signatures)


def aggregate(seeds: list[NaturalSeed]) -> NaturalAggregate:
    """Mean ± std over seeds of every score, bucket and difference (std None with one seed)."""
    systems = {}
    for name in (FIXED, ATTENTION):
        rows = [s.systems[name].by_length for s in seeds]
        systems[name] = SystemMean(
            bleu=mean_std([s.systems[name].bleu for s in seeds]), chrf=mean_std([s.systems[name].chrf for s in seeds]),
            by_length=[BucketMean(r.label, r.count, mean_std([seed_rows[b].bleu for seed_rows in rows]))
                       for b, r in enumerate(rows[0])])

    def bucket_tests(b: int) -> list[PairedTest | None]:  # None: the bucket is empty
        return [s.by_length[b].test for s in seeds]

    difference = DifferenceMean(
        bleu=mean_std([s.bleu.difference for s in seeds]), chrf=mean_std([s.chrf.difference for s in seeds]),
        by_length=[BucketDifference(r.label, r.count,
                                    mean_std([None if t is None else t.difference for t in bucket_tests(b)]),
                                    [None if t is None else t.p_value for t in bucket_tests(b)])
                   for b, r in enumerate(seeds[0].by_length)])
    return NaturalAggregate(systems=systems, difference=difference)


def natural_plot_rows(seeds: list[NaturalSeed], agg: NaturalAggregate) -> dict[str, list[BleuRow]]:
    """Rows for `plot_bleu_by_length`: one seed's bootstrap intervals, or the seed mean with +-1 std bars."""
    if len(seeds) == 1:
        return {k: seeds[0].systems[k].by_length for k in (FIXED, ATTENTION)}
    return {name: [_mean_row(r.label, r.count, r.bleu) for r in agg.systems[name].by_length]
            for name in (FIXED, ATTENTION)}


def _mean_row(label: str, count: int, ms: MeanStd | None) -> BleuPoint:
    ci = None if ms is None else [ms.mean - (ms.std or 0.0), ms.mean + (ms.std or 0.0)]
    return BleuPoint(label=label, count=count, bleu=None if ms is None else ms.mean, bleu_ci=ci)


# Length-controlled levels -----------------------------------------------------------------------------------
def analyse_levels(plan: CorpusPlan, test: str, results: list[RunResult], cfg: DictConfig) -> Levels:
    """BLEU per level for every system and seed, the retention test and both verdicts per seed, the
    equal-quality control, the capacity sweep."""
    names = plan.levels[test]
    corpus, n = plan.corpus, int(cfg.bootstrap_samples)
    data = {lv: (list(corpus.split(lv)["src"]), list(corpus.split(lv)["tgt"])) for lv in names}
    info = corpus.stats["concat_levels"]
    words = [sum(len(s.split()) for s in data[lv][0]) / len(data[lv][0]) for lv in names]
    levels = [Level(split=lv, k=info[lv]["k"], examples=info[lv]["examples"], offsets=info[lv]["offsets"],
                    src_words=w) for lv, w in zip(names, words, strict=True)]
    # Disjoint groups only (offset 0, which level K lists first): groups of other offsets share sentences
    # with them, and a bootstrap over overlapping groups would understate the variance.
    groups = level_groups(len(data[names[0]][0]), info[names[-1]]["k"], [0])

    def score(hyp_files: dict[str, str]) -> tuple[dict[str, list[str]], LevelScores]:
        """The hypotheses of each level, and their BLEU, its interval and the length statistics, from one pass
        of sentence statistics."""
        hyps = {lv: read_text_lines(hyp_files[lv], "hypotheses") for lv in names}
        stats = [sentence_stats(hyps[lv], data[lv][1]) for lv in names]  # (sentences, num_stats) per level
        bleu = [score_from_stats(st.sum(0)) for st in stats]
        return hyps, LevelScores(bleu=bleu, bleu_ci=[list(stats_interval(st, n)) for st in stats],
                                 slope=slope(words, bleu), length=[length_stats(st.sum(0)) for st in stats])

    def files(result: RunResult) -> dict[str, str]:
        return {lv: result.decoded[lv].file for lv in names}

    def short_and_long(hyps: dict[str, list[str]]) -> dict[str, Outputs]:
        """What `retention` compares: level 1 and the disjoint groups of level K."""
        return {"short": (hyps[names[0]], data[names[0]][1]),
                "long": (hyps[names[-1]][:len(groups)], data[names[-1]][1][:len(groups)])}

    seeds, scored_by_seed = [], {}
    for seed in cfg.seeds:
        pair = {s: plan.result(results, seed, s) for s in (FIXED, ATTENTION)}
        scored = scored_by_seed[seed] = {s: score(files(r)) for s, r in pair.items()}
        compared = {s: short_and_long(hyps) for s, (hyps, _) in scored.items()}
        ret = retention(compared, groups, FIXED, ATTENTION, n)
        label, reason = length_verdict(ret, FIXED, ATTENTION, float(cfg.min_bleu))
        removal, removal_reason = removal_verdict(ret, ATTENTION, float(cfg.min_bleu))
        systems = {s: scores for s, (_, scores) in scored.items()}
        for s, r in pair.items():
            systems[s].nll, systems[s].nll_by_position = reference_nll(r.checkpoint, r.device, data, names,
                                                                       len(groups))
        control = None
        chosen = equal_quality_checkpoint(pair[FIXED], pair[ATTENTION], names)
        if chosen is not None:
            hyps, matched = score(chosen.files)
            cret = retention({FIXED: compared[FIXED], ATTENTION: short_and_long(hyps)}, groups, FIXED, ATTENTION, n)
            control = Control(step=chosen.step, valid_bleu=chosen.valid_bleu, fixed_valid_bleu=chosen.fixed_valid_bleu,
                              bleu=matched.bleu, retained=cret.systems[ATTENTION].retained,
                              retained_ci=cret.systems[ATTENTION].retained_ci, difference=cret.difference)
        seeds.append(LevelSeed(seed=seed, retention=ret, verdict=label, reason=reason, removal=removal,
                               removal_reason=removal_reason, systems=systems, control=control))
    aggregate_bleu = {s: [mean_std([x.systems[s].bleu[i] for x in seeds]) for i in range(len(names))]
                      for s in (FIXED, ATTENTION)}
    ratio = {where: mean_std([x.systems[ATTENTION].bleu[i] / x.systems[FIXED].bleu[i]
                              for x in seeds if x.systems[FIXED].bleu[i] > 0])
             for where, i in (("k1", 0), ("longest", len(names) - 1))}
    out = Levels(test=test, levels=levels, groups=len(groups), seeds=seeds,
                 verdict=bottleneck_verdict([(s.verdict, s.reason) for s in seeds]),
                 removal=bottleneck_verdict([(s.removal, s.removal_reason) for s in seeds]),
                 aggregate=aggregate_bleu, ratio=ratio)
    if plan.sweep:
        first = cfg.seeds[0]
        # The two main models of that seed are scored already; only the sweep's sizes are new.
        scored = scored_by_seed[first] | {s: score(files(plan.result(results, first, s))) for s in plan.sweep}
        out.sweep = capacity_sweep(plan, {s: scores for s, (_, scores) in scored.items()},
                                   {s: short_and_long(hyps) for s, (hyps, _) in scored.items()}, groups, n,
                                   float(cfg.min_bleu), first)
    return out


def capacity_sweep(plan: CorpusPlan, scored: dict[str, LevelScores], levels: dict[str, dict[str, Outputs]],
                   groups: list[list[int]], n: int, min_bleu: float, seed: int) -> Sweep:
    """The capacity sweep of one test set: retention of every summary size (`plan.sweep`), the main fixed model
    (its unprojected encoder summary, for reference) and attention on the same resamples, a paired test of
    retained BLEU for every pair of sizes, and the sentence those tests decide."""
    sizes = sorted(plan.sweep, key=plan.sweep.__getitem__)
    pairs = [(larger, smaller) for i, smaller in enumerate(sizes) for larger in sizes[i + 1:]]
    ret = retention(levels, groups, FIXED, ATTENTION, n, pairs=pairs)

    def row(system: str, summary: int | None) -> SweepRow:
        kept = ret.systems[system]
        return SweepRow(system=system, summary=summary, bleu=scored[system].bleu, bleu_ci=scored[system].bleu_ci,
                        parameters=plan.params[system], retained=kept.retained, retained_ci=kept.retained_ci)

    table = [row(s, plan.sweep[s]) for s in sizes]
    tests = [SweepPair(larger=plan.sweep[p.system], smaller=plan.sweep[p.baseline], value=p.value, ci=p.ci,
                       p_value=p.p_value, p_less=p.p_less) for p in ret.pairs]
    att = row(ATTENTION, None)
    return Sweep(fixed=table, unprojected=row(FIXED, plan.summary), attention=att, pairs=tests, n_samples=n,
                 sentence=capacity_sentence(table, tests, att.retained, min_bleu, n), seed=seed)


def reference_nll(checkpoint: str, device: str, data: dict[str, tuple[list[str], list[str]]], names: list[str],
                  groups: int) -> tuple[list[float], list[NllBin]]:
    """Evidence without search: the per-token NLL of the references at every level, and at the longest level
    (its first `groups` examples, the disjoint ones) per tenth of the target: a fixed-context model's loss
    climbs through the joined sentences, attention's should stay flat."""
    dev = pick_device(device)
    loaded = load_model(checkpoint, dev)
    nll, curve = [], []
    for lv in names:
        src, ref = data[lv]
        if lv == names[-1]:
            src, ref = src[:groups], ref[:groups]
        scores = score_references(loaded.model, loaded.tokenizer, src, ref, dev)
        nll.append(scores.mean_nll())
        if lv == names[-1]:
            curve = scores.by_relative_position()
    return nll, curve


@dataclass
class ControlCheckpoint:
    """An intermediate attention checkpoint and its hypotheses files per split."""

    step: int
    valid_bleu: float
    fixed_valid_bleu: float
    files: dict[str, str]


def equal_quality_checkpoint(fixed: RunResult, attention: RunResult, splits: list[str]) -> ControlCheckpoint | None:
    """The attention checkpoint whose validation BLEU is closest to the fixed model's best, decoded on `splits`.

    A retention ratio is not quality-invariant: a stronger model may keep more because it is stronger. The
    checkpoint is chosen on validation BLEU only (the trainer's history), among the step-<n>.pt files the run
    kept (train.keep_last). None when the run kept no intermediate checkpoint.
    """
    run_dir = Path(attention.run_dir)
    history = read_json(run_dir / "metrics.json")["history"]
    kept = [h for h in history if (run_dir / f"step-{h['step']}.pt").is_file()]
    if not kept or fixed.best_valid_bleu is None:
        return None
    target = float(fixed.best_valid_bleu)
    best = min(kept, key=lambda h: (abs(h["bleu"] - target), h["step"]))
    checkpoint = run_dir / f"step-{best['step']}.pt"
    device = pick_device(attention.device)
    _, decoded = decode_splits(checkpoint, splits, device, suffix=f".step{best['step']}")
    return ControlCheckpoint(step=int(best["step"]), valid_bleu=float(best["bleu"]), fixed_valid_bleu=target,
                             files={split: d.file for split, d in decoded.items()})


def level_rows(levels: list[Level], bleu: list[float | None], ci: list[list[float] | None]) -> list[BleuPoint]:
    """`plot_bleu_by_length` rows with one point per level, labelled by k and mean source words."""
    return [BleuPoint(label=f"k={lv.k}, {lv.src_words:.0f} w", count=lv.examples, bleu=b, bleu_ci=c)
            for lv, b, c in zip(levels, bleu, ci, strict=True)]


def levels_plot(section: Levels, title: str) -> Any:
    seeds, levels = section.seeds, section.levels
    if len(seeds) == 1:
        systems = {s: level_rows(levels, seeds[0].systems[s].bleu, seeds[0].systems[s].bleu_ci)
                   for s in (FIXED, ATTENTION)}
    else:
        systems = {s: [_mean_row(r.label, r.count, ms) for r, ms in
                       zip(level_rows(levels, [None] * len(levels), [None] * len(levels)), section.aggregate[s],
                           strict=True)] for s in (FIXED, ATTENTION)}
    fig = plot_bleu_by_length(systems, title=title)
    fig.axes[0].set_xlabel("test level: k consecutive sentences joined (mean source words)")
    return fig


def nll_plot(section: Levels, title: str) -> Any:
    """Per-token reference NLL per tenth of the target at the longest level, one line per system and seed."""
    k = section.levels[-1].k
    curves = {f"{s}, seed {x.seed}": ([b.start for b in x.systems[s].nll_by_position],
                                      [b.nll for b in x.systems[s].nll_by_position])
              for x in section.seeds for s in (FIXED, ATTENTION)}
    return plot_position_curves(curves, title, boundaries=[j / k for j in range(1, k)])


def sweep_plot(sweep: Sweep, levels: list[Level], title: str) -> Any:
    systems = {f"{FIXED}, {r.summary}-d summary": level_rows(levels, r.bleu, r.bleu_ci) for r in sweep.fixed}
    systems[ATTENTION] = level_rows(levels, sweep.attention.bleu, sweep.attention.bleu_ci)
    fig = plot_bleu_by_length(systems, title=title)
    fig.axes[0].set_xlabel("test level: k consecutive sentences joined (mean source words)")
    return fig


# The experiment ---------------------------------------------------------------------------------------------
def run_bottleneck(cfg: DictConfig, preset: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Run the whole experiment as configured; returns the output directory."""
    started = time.time()
    jobs, corpora = plan_runs(cfg, log)
    out = make_out_dir(cfg.out_dir, Path("outputs") / "bottleneck")
    log(f"bottleneck experiment: {out}")
    for job in jobs:
        job.run_dir = str(out / job.run_dir)
    results = run_jobs(jobs, int(cfg.workers), log)
    report = BottleneckReport(
        title="Bottleneck experiment: fixed-context vs attention encoder-decoder by source length", preset=preset,
        config=OmegaConf.to_container(cfg, resolve=True), hardware=hardware(int(cfg.workers), int(cfg.threads)),
        runs=results, sections=[])
    for plan in corpora:
        for test in plan.tests:
            report.sections.append(analyse_section(plan, test, results, cfg, out, log))
    report.seconds = time.time() - started
    write_json(out / "report.json", report)
    write_text(out / "report.md", render(report))  # nmt/experiments/bottleneck_report.py
    for s in report.sections:
        log(f"{s.corpus} {s.split}, {s.budget_text}: (a) {s.verdict.label}: {s.verdict.reason}")
        if s.removal:
            log(f"  (b) {s.removal.label}: {s.removal.reason}")
        if s.levels and s.levels.sweep:
            log(f"capacity: {s.levels.sweep.sentence}")
    log(f"report: {out / 'report.md'}")
    return out


def analyse_section(plan: CorpusPlan, test: str, results: list[RunResult], cfg: DictConfig, out: Path,
                    log: Callable[[str], None]) -> Section:
    """One test set of one corpus: the natural-length view per seed, the length-controlled levels with both
    verdicts, and their plots (written into `out`)."""
    run_cfg = plan.config
    decode = OmegaConf.to_container(run_cfg.decode, resolve=True)
    dataset = plan.corpus.split(test)
    sources, refs = list(dataset["src"]), list(dataset["tgt"])
    natural = []
    for seed in cfg.seeds:
        pair = {s: plan.result(results, seed, s) for s in (FIXED, ATTENTION)}
        seed_dir = out / safe_name(plan.name) / safe_name(test) / f"seed{seed}"
        log(f"[{plan.name}] scoring {test}, seed {seed} ...")
        natural.append(analyse_natural(sources, refs, pair[FIXED], pair[ATTENTION], test, seed, seed_dir,
                                       str(seed_dir.relative_to(out) / "report.md"), cfg, decode))
    runs = [results[i] for i in plan.runs.values()]
    budget = budget_text([r.steps for r in runs], int(run_cfg.train.batch_tokens))
    section = Section(
        data=plan.data, corpus=plan.name, split=test, num_sentences=len(refs), decode=decode,
        length_edges=list(cfg.length_edges), concat_k=plan.k, parameters=plan.params,
        budget=Budget(**{f.name: run_cfg.train[f.name] for f in fields(Budget)}),
        models={FIXED: cfg.model_fixed, ATTENTION: cfg.model_attention},
        natural=Natural(seeds=natural, aggregate=aggregate(natural)), budget_text=budget,
        # The best checkpoint is the last one: the model was still improving when the budget ended.
        still_improving=[r.name for r in runs if r.checkpoint_step == r.steps],
        verdict=Verdict(INCONCLUSIVE, [], "natural lengths only (no length-controlled levels): this section is "
                                          "descriptive"),
        removal=None)
    spread = ("95% CI" if len(natural) == 1 else f"mean ± std over {len(natural)} seeds") + f", {budget}"
    fig = plot_bleu_by_length(natural_plot_rows(natural, section.natural.aggregate),
                              title=f"Natural lengths: {plan.name} {test}\n{spread}")
    stem = f"{safe_name(plan.name)}_{safe_name(test)}"
    section.natural.plot = save_png(fig, out / f"{stem}_natural_lengths.png").name
    if plan.levels:
        log(f"[{plan.name}] scoring the length-controlled levels of {test} ...")
        levels = analyse_levels(plan, test, results, cfg)
        title = f"BLEU by input length: {plan.name} {test}\n{spread}"
        levels.plot = save_png(levels_plot(levels, title), out / f"{stem}_bleu_by_length.png").name
        nll_title = f"Reference NLL over the target at k = {levels.levels[-1].k}: {plan.name} {test}\n{budget}"
        levels.nll_plot = save_png(nll_plot(levels, nll_title), out / f"{stem}_nll_by_position.png").name
        if levels.sweep:
            sweep_title = f"Capacity sweep: {plan.name} {test}\nseed {levels.sweep.seed}, 95% CI, {budget}"
            levels.sweep.plot = save_png(sweep_plot(levels.sweep, levels.levels, sweep_title),
                                         out / f"{stem}_capacity.png").name
        section.levels, section.verdict, section.removal = levels, levels.verdict, levels.removal
    return section
