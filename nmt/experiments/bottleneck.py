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

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nmt.data.concat import join, level_groups
from nmt.data.corpus import prepare_corpus
from nmt.errors import NMTError
from nmt.evaluation.evaluate import System, build_report
from nmt.evaluation.report import Decode, Plots, SystemInfo, write_report
from nmt.experiments.bottleneck_report import render
from nmt.experiments.follow import CheckpointPoint, FollowSpec
from nmt.experiments.results import (
    BottleneckReport,
    BucketDifference,
    BucketMean,
    Budget,
    Control,
    DifferenceMean,
    Followed,
    Level,
    Levels,
    LevelScores,
    LevelSeed,
    Matched,
    MeanStd,
    Natural,
    NaturalAggregate,
    NaturalSeed,
    NaturalSystem,
    Section,
    Sweep,
    SweepPair,
    SweepRow,
    SweepSeeds,
    SystemMean,
    TrajectoryRow,
    Verdict,
)
from nmt.experiments.runner import Job, RunResult, compose_run, experiment_dir, run_jobs
from nmt.experiments.verdicts import (
    ATTENTION,
    FIXED,
    INCONCLUSIVE,
    KEEPS_BLEU,
    MIN_SEEDS,
    REDUCES,
    REMOVES,
    SUPPORTED,
    bottleneck_verdict,
    budget_text,
    capacity_sentence,
    length_verdict,
    matched_verdict,
    mean_std,
    removal_verdict,
    seed_level_agrees,
    sweep_seeds_sentence,
)
from nmt.io import read_text_lines, safe_name, write_json, write_lines, write_text
from nmt.metrics import paired_bootstrap
from nmt.metrics.lengths import nll_rise_by_length
from nmt.metrics.retention import Outputs, count_sentences, retention, slope
from nmt.metrics.scores import brevity_penalty, length_stats, score_from_stats, sentence_stats
from nmt.metrics.significance import PairedTest, SeedInterval, seed_interval, stats_interval
from nmt.metrics.trajectory import TrajectoryPoint, matched_retention
from nmt.models import build_model, model_class
from nmt.plots import (
    BleuPoint,
    BleuRow,
    TrajectorySeries,
    plot_bleu_by_length,
    plot_lines,
    plot_trajectories,
    save_png,
)
from nmt.runtime import hardware

# What must agree between the two models for the comparison to be fair (the attention path aside).
SHARED_MODEL_FIELDS = ("emb_dim", "hidden", "enc_layers", "dec_layers", "dropout", "rnn_type", "bidirectional")
MIN_NLL_OVERLAP = 0.1  # nats: the narrowest overlap of valid NLL ranges worth comparing (the check on NLL)


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
        own = {FIXED: list(cfg.overrides_fixed), ATTENTION: list(cfg.overrides_attention)}
        runs: dict[tuple[int, str], DictConfig] = {}
        # The fixed-context runs first (trained to their plateau, the longest), so side-by-side workers finish
        # close together.
        for system, model in ((FIXED, cfg.model_fixed), (ATTENTION, cfg.model_attention)):
            for seed in cfg.seeds:
                runs[(seed, system)] = _compose(cfg, data, k, model, own[system], seed)
        first = runs[(cfg.seeds[0], FIXED)]
        _check_pair(first, runs[(cfg.seeds[0], ATTENTION)])
        sweep = _plan_sweep(cfg, first) if k > 1 else {}
        for name, size in sweep.items():
            for seed in cfg.seeds:
                runs[(seed, name)] = _compose(cfg, data, k, cfg.model_fixed, own[FIXED], seed,
                                              f"model.summary_dim={size}")
        corpus = prepare_corpus(first.data, log=lambda msg, d=data: log(f"[{d}] {msg}"))
        tok = corpus.tokenizer
        params = {s: build_model(c.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.joint).num_parameters()
                  for (_, s), c in runs.items()}
        tests = list(dict.fromkeys(resolve_split(corpus, s) for s in cfg.splits))
        levels = {t: _levels_of(corpus, t) for t in tests} if k > 1 else {}
        splits = tests + [lv for t in tests for lv in levels.get(t, [])[1:]]  # natural_only: no levels
        name = str(first.data.name)
        log(f"[{data}] parameters: " + ", ".join(f"{s} {n:,}" for s, n in params.items())
            + f"; test splits: {', '.join(splits)}")
        follow = None
        if k > 1:  # every kept checkpoint measured on the first test set's k = 1 and longest levels
            short, long = levels[tests[0]][0], levels[tests[0]][-1]
            follow = FollowSpec(short=short, long=long, k=k, n_samples=int(cfg.bootstrap_samples),
                                groups=min(int(cfg.follow_groups), len(level_groups(len(corpus.split(short)), k, [0]))),
                                align_groups=int(cfg.align_groups))
        index = {}
        for (seed, system), run_cfg in runs.items():
            run_dir = Path("runs") / name / f"{system}-seed{seed}"
            index[(seed, system)] = len(jobs)
            jobs.append(Job(f"{name}/{system}/seed{seed}", OmegaConf.to_container(run_cfg, resolve=True),
                            str(run_dir), splits, cfg.threads, follow))
        summary = model_class(first.model.arch).summary_size(first.model)
        corpora.append(CorpusPlan(data=data, name=name, corpus=corpus, tests=tests, levels=levels, k=k, config=first,
                                  runs=index, sweep=sweep, params=params, summary=summary))
    return jobs, corpora


def _compose(cfg: DictConfig, data: str, k: int, model: str, own: list[str], seed: int, *extra: str) -> DictConfig:
    """One run's config. Validation on one-sentence pairs only (data.concat.valid_mixture=false): best.pt, early
    stopping and the matched comparison's quality then measure k = 1 quality, not the length mixture the outcome
    is about. The model's own overrides come before `overrides`, so the command line's run keys (appended to
    `overrides`) win over both."""
    return compose_run([f"model={model}", f"data={data}", f"train={cfg.train}", f"decode={cfg.decode}", *own,
                        *cfg.overrides, f"data.concat.max_k={k}", "data.concat.valid_mixture=false", *extra,
                        f"train.seed={seed}"])


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
    # Evidence without search: the references' teacher-forced NLL per length bucket, and its rise over the
    # shortest bucket, fixed - attention (> 0: the fixed-context model degrades more with length).
    scores = {name: r.reference_scores(sources, refs) for name, r in pair}
    edges = list(cfg.length_edges)
    natural = {}
    for name, (bleu_ci, chrf_ci) in intervals.items():
        s = report.system(name)
        natural[name] = NaturalSystem(bleu=s.scores.bleu, bleu_ci=bleu_ci, chrf=s.scores.chrf, chrf_ci=chrf_ci,
                                      ter=s.scores.ter, bleu_lc=s.scores.bleu_lc, by_length=s.by_length,
                                      nll_by_length=scores[name].by_length(edges))
    rise = nll_rise_by_length(scores[ATTENTION].token_log_probs, scores[FIXED].token_log_probs, sources, edges, n)
    return NaturalSeed(seed=seed, report=report_path, systems=natural, bleu=bleu, chrf=chrf,
                       by_length=comparison.by_length, signatures=report.system(ATTENTION).scores.signatures,
                       nll_rise=rise)


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
    rises = [[r.difference for r in s.nll_rise] for s in seeds]  # (seeds, buckets)
    return NaturalAggregate(systems=systems, difference=difference,
                            nll_rise=[mean_std(list(b)) for b in zip(*rises, strict=True)],
                            nll_rise_seed_level=[_seed_level(list(b)) for b in zip(*rises, strict=True)])


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
    """BLEU and retention per level for every system and seed, the retention test and both verdicts per seed
    with their seed-level intervals, question (c) at matched quality from the followed checkpoints, the
    equal-quality control, the capacity sweep."""
    names = plan.levels[test]
    corpus, n = plan.corpus, int(cfg.bootstrap_samples)
    data = {lv: (list(corpus.split(lv)["src"]), list(corpus.split(lv)["tgt"])) for lv in names}
    info = corpus.stats["concat_levels"]
    words = [sum(len(s.split()) for s in data[lv][0]) / len(data[lv][0]) for lv in names]
    levels = [Level(split=lv, k=info[lv]["k"], examples=info[lv]["examples"], offsets=info[lv]["offsets"],
                    src_words=w) for lv, w in zip(names, words, strict=True)]
    sentences = len(data[names[0]][0])
    level_of = [level_groups(sentences, lv.k, lv.offsets) for lv in levels]  # each level's examples' sentences
    # Disjoint groups only (offset 0, which level K lists first): groups of other offsets share sentences
    # with them, and a bootstrap over overlapping groups would understate the variance.
    groups = level_groups(sentences, levels[-1].k, [0])

    def score(hyp_files: dict[str, str]) -> tuple[dict[str, list[str]], LevelScores]:
        """The hypotheses of each level, and their BLEU, its interval, retention on the corrected anchor, the
        length statistics and the sentences per output, from one pass of sentence statistics."""
        hyps = {lv: read_text_lines(hyp_files[lv], "hypotheses") for lv in names}
        stats = [sentence_stats(hyps[lv], data[lv][1]) for lv in names]  # (examples, num_stats) per level
        bleu = [score_from_stats(st.sum(0)) for st in stats]
        one = hyps[names[0]], data[names[0]][1]
        anchor = [score_from_stats(sentence_stats(*join(*one, g)).sum(0)) for g in level_of]
        retained = [b / a if a > 0 else None for b, a in zip(bleu, anchor, strict=True)]
        return hyps, LevelScores(
            bleu=bleu, bleu_ci=[list(stats_interval(st, n)) for st in stats],
            slope=slope(words, [100 * (r or 0.0) for r in retained]), length=[length_stats(st.sum(0)) for st in stats],
            anchor=anchor, retained=retained,
            sentences=[statistics.fmean(count_sentences(h) for h in hyps[lv]) for lv in names])

    def files(result: RunResult) -> dict[str, str]:
        return {lv: result.decoded[lv].file for lv in names}

    def short_and_long(hyps: dict[str, list[str]]) -> dict[str, Outputs]:
        """What `retention` compares: level 1 and the disjoint groups of level K."""
        return {"short": (hyps[names[0]], data[names[0]][1]),
                "long": (hyps[names[-1]][:len(groups)], data[names[-1]][1][:len(groups)])}

    # The followed checkpoints are decoded on the first follow_groups groups only.
    fgroups = groups[:int(cfg.follow_groups)]
    frefs = data[names[0]][1][:len(fgroups) * levels[-1].k], data[names[-1]][1][:len(fgroups)]
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
            systems[s].nll = reference_nll(r, data, names, len(groups))
            evaluated = [p for p in r.trajectory if p.step == r.checkpoint_step]
            if evaluated:
                systems[s].delta_nll, systems[s].delta_nll_ci = evaluated[0].delta_nll, evaluated[0].delta_nll_ci
        seeds.append(LevelSeed(seed=seed, retention=ret, verdict=label, reason=reason, removal=removal,
                               removal_reason=removal_reason, systems=systems,
                               control=equal_quality_control(pair[FIXED], pair[ATTENTION], fgroups, *frefs, n)))
    seed_level = {
        "difference": _seed_level([s.retention.difference.value for s in seeds]),
        "attention": _seed_level([s.retention.systems[ATTENTION].retained for s in seeds])}
    verdict = seed_checked(bottleneck_verdict([(s.verdict, s.reason) for s in seeds]), seed_level["difference"],
                           {SUPPORTED: "greater"}, "attention - fixed retained share")
    removal = seed_checked(bottleneck_verdict([(s.removal, s.removal_reason) for s in seeds]),
                           seed_level["attention"], {REDUCES: ("below", 1.0),
                                                     REMOVES: ("above", KEEPS_BLEU)}, f"{ATTENTION}'s retained share")
    aggregate_bleu = {s: [mean_std([x.systems[s].bleu[i] for x in seeds]) for i in range(len(names))]
                      for s in (FIXED, ATTENTION)}
    ratio = {where: mean_std([x.systems[ATTENTION].bleu[i] / x.systems[FIXED].bleu[i]
                              for x in seeds if x.systems[FIXED].bleu[i] > 0])
             for where, i in (("k1", 0), ("longest", len(names) - 1))}
    out = Levels(test=test, levels=levels, groups=len(groups), seeds=seeds, verdict=verdict, removal=removal,
                 aggregate=aggregate_bleu, ratio=ratio, seed_level=seed_level,
                 ref_sentences=[statistics.fmean(count_sentences(r) for r in data[lv][1]) for lv in names],
                 min_alignment=float(cfg.min_alignment))
    followed = {(seed, s): plan.result(results, seed, s).trajectory for seed in cfg.seeds for s in (FIXED, ATTENTION)}
    if all(followed.values()):
        out.followed, out.matched = matched_quality(followed, cfg, fgroups, *frefs, n)
    if plan.sweep:
        for seed in cfg.seeds:
            # The two main models of the seed are scored already; only the sweep's sizes are new.
            scored = scored_by_seed[seed] | {s: score(files(plan.result(results, seed, s))) for s in plan.sweep}
            out.sweep_seeds.append(capacity_sweep(plan, {s: scores for s, (_, scores) in scored.items()},
                                                  {s: short_and_long(hyps) for s, (hyps, _) in scored.items()},
                                                  groups, n, float(cfg.min_bleu), seed))
        out.sweep, out.sweep_summary = out.sweep_seeds[0], sweep_over_seeds(out.sweep_seeds)
        out.followed += [Followed(system=s, seed=seed, points=followed_rows(plan.result(results, seed, s).trajectory,
                                                                            fgroups, *frefs))
                         for seed in cfg.seeds for s in plan.sweep]
    return out


def sweep_over_seeds(sweeps: list[Sweep]) -> SweepSeeds:
    """Each size's retained share over seeds, and the largest size minus the smallest per seed with its seed-level
    interval: the sweep resolves a difference only beyond that interval's half-width."""
    sizes = [r.summary for r in sweeps[0].fixed]
    retained = [mean_std([sw.fixed[i].retained for sw in sweeps]) for i in range(len(sizes))]
    diffs = [None if sw.fixed[-1].retained is None or sw.fixed[0].retained is None
             else sw.fixed[-1].retained - sw.fixed[0].retained for sw in sweeps]
    level = _seed_level(diffs)
    return SweepSeeds(sizes=sizes, retained=retained, largest_minus_smallest=diffs, seed_level=level,
                      sentence=sweep_seeds_sentence(sizes, retained, diffs, level))


def _seed_level(values: list[float | None]) -> SeedInterval | None:
    """The seed-level interval of a per-seed statistic (None with one seed or a missing value)."""
    if len(values) < 2 or any(v is None for v in values):
        return None
    return seed_interval([float(v) for v in values])


def seed_checked(verdict: Verdict, interval: SeedInterval | None, sides: dict[str, Any], what: str) -> Verdict:
    """A verdict over seeds holds only where the seed-level interval agrees (nmt/experiments/verdicts.py): each
    label of `sides` names the side its interval must lie on ("greater"/"less" than 0, or ("above", x) /
    ("below", x)); otherwise the verdict becomes inconclusive, saying why. Labels not in `sides` pass."""
    side = sides.get(verdict.label)
    if side is None:
        return verdict
    if isinstance(side, tuple):
        where, bound = side
        agrees = (interval is not None and interval.seeds >= MIN_SEEDS and bool(interval.ci)
                  and (interval.ci[0] >= bound if where == "above" else interval.ci[1] < bound))
        wanted = f"{where} {bound:.0%}"
    else:
        agrees, wanted = seed_level_agrees(interval, side), ("above" if side == "greater" else "below") + " 0"
    if agrees:
        return verdict
    have = ("no seed-level interval" if interval is None or not interval.ci else
            f"its seed-level 95% interval is [{interval.ci[0]:+.1%}, {interval.ci[1]:+.1%}] over {interval.seeds} "
            f"seeds")
    return Verdict(INCONCLUSIVE, verdict.per_seed,
                   f"every seed says \"{verdict.label}\", but {what} needs a seed-level interval of at least "
                   f"{MIN_SEEDS} seeds lying {wanted}: {have}. Per seed: {verdict.reason}")


def _stats(hyps_file: str, refs: list[str], groups: list[list[int]] | None = None) -> np.ndarray:
    """(examples, num_stats) BLEU statistics of a hypotheses file; with `groups`, of its one-sentence outputs
    joined into the groups."""
    hyps = read_text_lines(hyps_file, "hypotheses")
    return sentence_stats(*join(hyps, refs, groups)) if groups is not None else sentence_stats(hyps, refs)


def trajectory_points(points: list[CheckpointPoint], groups: list[list[int]], short_refs: list[str],
                      long_refs: list[str], aligned: Callable[[CheckpointPoint], bool]) -> list[TrajectoryPoint]:
    return [TrajectoryPoint(step=p.step, quality=p.valid_bleu, short=_stats(p.short_file, short_refs, groups),
                            long=_stats(p.long_file, long_refs), aligned=aligned(p)) for p in points]


def followed_rows(points: list[CheckpointPoint], groups: list[list[int]], short_refs: list[str],
                  long_refs: list[str], trajectory: list[TrajectoryPoint] | None = None) -> list[TrajectoryRow]:
    """The report's rows of a followed run (`trajectory`: its points' statistics when computed already)."""
    if trajectory is None:
        trajectory = trajectory_points(points, groups, short_refs, long_refs, lambda _: True)
    rows = []
    for p, t in zip(points, trajectory, strict=True):
        bleu_short, bleu_long = score_from_stats(t.short.sum(0)), score_from_stats(t.long.sum(0))
        precision = [score_from_stats(st.sum(0)) / max(float(brevity_penalty(st.sum(0))), 1e-9)
                     for st in (t.short, t.long)]
        rows.append(TrajectoryRow(
            step=p.step, valid_bleu=p.valid_bleu, valid_nll=p.valid_nll, bleu_short=bleu_short, bleu_long=bleu_long,
            retained=bleu_long / bleu_short if bleu_short > 0 else None,
            precision_retained=precision[1] / precision[0] if precision[0] > 0 else None,
            delta_nll=p.nll_long - p.nll_short, alignment=p.alignment, aligned=t.aligned))
    return rows


def matched_quality(followed: dict[tuple[int, str], list[CheckpointPoint]], cfg: DictConfig,
                    groups: list[list[int]], short_refs: list[str], long_refs: list[str], n: int
                    ) -> tuple[list[Followed], Matched]:
    """Question (c): retention against valid k = 1 BLEU along both models' trajectories, compared where the
    quality ranges of all seeds overlap (nmt.metrics.trajectory.matched_retention); attention checkpoints enter
    only once they align (alignment >= cfg.min_alignment). The same comparison matched on valid NLL is a check."""
    def aligned(system: str) -> Callable[[CheckpointPoint], bool]:
        return lambda p: system != ATTENTION or (p.alignment is not None and p.alignment >= cfg.min_alignment)

    trajectories = {key: trajectory_points(points, groups, short_refs, long_refs, aligned(key[1]))
                    for key, points in followed.items()}
    rows = [Followed(system=system, seed=seed, points=followed_rows(points, groups, short_refs, long_refs,
                                                                    trajectories[(seed, system)]))
            for (seed, system), points in followed.items()]
    per_model = {s: [trajectories[(seed, s)] for seed in cfg.seeds] for s in (FIXED, ATTENTION)}
    result = matched_retention(per_model[FIXED], per_model[ATTENTION], n)
    label, reason = matched_verdict(result)
    by_nll = {s: [[replace(t, quality=-p.valid_nll) for t, p in zip(trajectories[(seed, s)], followed[(seed, s)],
                                                                      strict=True)] for seed in cfg.seeds]
              for s in (FIXED, ATTENTION)}
    return rows, Matched(quality="valid k = 1 BLEU (greedy)", result=result, verdict=Verdict(label, [], reason),
                         by_nll=matched_retention(by_nll[FIXED], by_nll[ATTENTION], n, min_overlap=MIN_NLL_OVERLAP))


def equal_quality_control(fixed: RunResult, attention: RunResult, groups: list[list[int]], short_refs: list[str],
                          long_refs: list[str], n: int) -> Control | None:
    """The followed attention checkpoint whose valid k = 1 BLEU is closest to the fixed model's best (chosen on
    validation only), its retention against the fixed model's evaluated checkpoint on the followed groups, and
    its alignment; None when the runs were not followed."""
    evaluated = [p for p in fixed.trajectory if p.step == fixed.checkpoint_step]
    if not attention.trajectory or not evaluated or fixed.best_valid_bleu is None:
        return None
    target = float(fixed.best_valid_bleu)
    best = min(attention.trajectory, key=lambda p: (abs(p.valid_bleu - target), p.step))

    def outputs(p: CheckpointPoint) -> dict[str, Outputs]:
        return {"short": (read_text_lines(p.short_file, "hypotheses"), short_refs),
                "long": (read_text_lines(p.long_file, "hypotheses"), long_refs)}

    ret = retention({FIXED: outputs(evaluated[0]), ATTENTION: outputs(best)}, groups, FIXED, ATTENTION, n)
    a = ret.systems[ATTENTION]
    return Control(step=best.step, valid_bleu=best.valid_bleu, fixed_valid_bleu=target,
                   bleu=[a.bleu_short, a.bleu_long], retained=a.retained, retained_ci=a.retained_ci,
                   difference=ret.difference, alignment=best.alignment)


def reference_nll(result: RunResult, data: dict[str, tuple[list[str], list[str]]], names: list[str], groups: int
                  ) -> list[float]:
    """Evidence without search: the per-token NLL of the references at every level (the longest level's first
    `groups` examples, the disjoint ones)."""
    return [result.reference_scores(*(data[lv] if lv != names[-1] else (data[lv][0][:groups], data[lv][1][:groups])))
            .mean_nll() for lv in names]


def levels_plot(section: Levels, title: str) -> Any:
    """Retention curves: each level's BLEU over the BLEU of the same system's k = 1 outputs joined into the same
    groups (mean ± std over seeds), so k = 1 is 1 by construction."""
    lines = {}
    for s in (FIXED, ATTENTION):
        per_level = [mean_std([x.systems[s].retained[i] for x in section.seeds]) for i in range(len(section.levels))]
        lines[s] = ([m.mean if m else float("nan") for m in per_level],
                    [(m.std or 0.0) if m else 0.0 for m in per_level])
    labels = [f"k={lv.k}\n{lv.src_words:.0f} w" for lv in section.levels]
    return plot_lines(lines, labels, "test level: k consecutive sentences joined (mean source words)",
                      "BLEU kept: level k / joined k = 1", title, reference=1.0)


def nll_plot(section: Levels, title: str) -> Any:
    """Per-sentence delta NLL inside the longest level: one line per system and seed, 95% intervals."""
    k = section.levels[-1].k
    lines = {f"{s}, seed {x.seed}": (x.systems[s].delta_nll, [(c[1] - c[0]) / 2 for c in x.systems[s].delta_nll_ci])
             for x in section.seeds for s in (FIXED, ATTENTION) if x.systems[s].delta_nll}
    return plot_lines(lines, [f"sentence {j}" for j in range(1, k + 1)], f"position of the sentence in a level-{k} "
                      f"input", "NLL per token: joined - alone (nats)", title, reference=0.0)


def trajectory_plot(section: Levels, title: str) -> Any:
    """Every followed checkpoint: retention and delta NLL (k = 1 to K) against valid k = 1 BLEU, and alignment
    against the update; attention checkpoints that do not align yet are hollow."""
    series = [TrajectorySeries(label=f"{f.system}, seed {f.seed}", system=f.system,
                               step=[p.step for p in f.points], quality=[p.valid_bleu for p in f.points],
                               retained=[p.retained for p in f.points], delta_nll=[p.delta_nll for p in f.points],
                               alignment=[p.alignment for p in f.points], aligned=[p.aligned for p in f.points])
              for f in section.followed]
    overlap = section.matched.result.overlap if section.matched else None
    return plot_trajectories(series, title, overlap=overlap, min_alignment=section.min_alignment)


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


def level_rows(levels: list[Level], bleu: list[float | None], ci: list[list[float] | None]) -> list[BleuPoint]:
    """`plot_bleu_by_length` rows with one point per level, labelled by k and mean source words."""
    return [BleuPoint(label=f"k={lv.k}, {lv.src_words:.0f} w", count=lv.examples, bleu=b, bleu_ci=c)
            for lv, b, c in zip(levels, bleu, ci, strict=True)]


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
    out = experiment_dir(cfg, Path("outputs") / "bottleneck")
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
        title = f"BLEU kept by input length: {plan.name} {test}\n{spread}"
        levels.plot = save_png(levels_plot(levels, title), out / f"{stem}_bleu_by_length.png").name
        k = levels.levels[-1].k
        nll_title = f"Per-sentence NLL inside level-{k} inputs: {plan.name} {test}\n{budget}"
        levels.nll_plot = save_png(nll_plot(levels, nll_title), out / f"{stem}_delta_nll_by_sentence.png").name
        if levels.followed:
            followed_title = f"Both models over training: {plan.name} {test}, k = 1 vs k = {k}"
            levels.trajectory_plot = save_png(trajectory_plot(levels, followed_title),
                                              out / f"{stem}_trajectories.png").name
        if levels.sweep:
            sweep_title = f"Capacity sweep: {plan.name} {test}\nseed {levels.sweep.seed}, 95% CI, {budget}"
            levels.sweep.plot = save_png(sweep_plot(levels.sweep, levels.levels, sweep_title),
                                         out / f"{stem}_capacity.png").name
        section.levels, section.verdict, section.removal = levels, levels.verdict, levels.removal
    return section
