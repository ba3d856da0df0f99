"""Evaluate checkpoints: decode a split (or a pair of files) with one or more checkpoints and report sacreBLEU.

`evaluate(cfg)` is what `nmt-evaluate` runs (cfg: an EvaluateConfig node, configs/evaluate.yaml):

    nmt-evaluate checkpoints='[outputs/multi30k_de_en/rnn_attention/<time>]'            # its best.pt, test set
    nmt-evaluate checkpoints='[runs/attn,runs/fixed]' baseline=runs/fixed split=valid    # + paired bootstrap
    nmt-evaluate checkpoints='[runs/attn]' average_last=3 decode=greedy                  # average last 3
    nmt-evaluate checkpoints='[runs/attn/best.pt]' src_file=x.de ref_file=x.en out_dir=eval/x
    nmt-evaluate checkpoints='[runs/attn]' src_file=x.de 'ref_file=[x.ref1.en,x.ref2.en]'  # several references
    nmt-evaluate checkpoints='[runs/attn]' baseline=other_system.txt                     # baseline hypotheses

Everything goes into a NEW directory (default <run dir>/eval/<split>-<time>): <system>.hyp.txt per system,
ref.txt (ref1.txt, ref2.txt, ... for several references), src.txt, metrics.json, report.md, bleu_by_length.png
and attention_<i>.png heatmaps.

With several reference files every score, interval and paired test counts a sentence against all its
references, as `sacrebleu ref1 ref2 -i hyp` does (nmt/metrics/scores.py); length buckets go by the source.

With comet_model=<path or hub name> (the comet extra, nmt/metrics/comet.py) every system also gets COMET segment
scores (<system>.comet.txt), their mean in the scores and in each length bucket, and a paired test of them
against the baseline; they are cached beside the evaluation directory (comet-cache/), keyed by their inputs.
"""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from omegaconf import DictConfig, OmegaConf

from nmt.config import BOS_ID, EOS_ID, EvaluateConfig
from nmt.data.corpus import PreparedCorpus, prepare_corpus
from nmt.data.testsets import load_testset
from nmt.decoding.search import translate
from nmt.errors import NMTError
from nmt.evaluation.report import (
    Comparison,
    DecodeSpeed,
    EvaluatedSystem,
    EvaluationReport,
    Plots,
    SystemInfo,
    write_report,
)
from nmt.io import (
    check_writable,
    make_out_dir,
    read_parallel_lines,
    read_text_lines,
    safe_name,
    undo_on_failure,
    write_lines,
)
from nmt.metrics import METRICS, bleu_by_length, corpus_scores, paired_bootstrap, paired_bootstrap_by_length
from nmt.metrics.comet import Comet, load_comet, segment_scores
from nmt.metrics.lengths import paired_stats_by_length
from nmt.metrics.scores import References, reference_streams, segment_stats
from nmt.metrics.significance import paired_stats_test
from nmt.plots import log_to_tensorboard, plot_attention, plot_attention_heads, plot_bleu_by_length, save_png
from nmt.runtime import pick_device
from nmt.training.average import average_checkpoints, last_checkpoints
from nmt.training.checkpoint import load_model, resolve_checkpoint


@dataclass
class System:
    """One evaluated system: a checkpoint (decoded here) or a file of hypotheses."""

    name: str
    hypotheses: list[str]
    info: SystemInfo = field(default_factory=SystemInfo)
    nbest: list[list[tuple[str, float]]] | None = None  # per sentence: (hypothesis, score), best first
    loaded: Any = None  # nmt.training.checkpoint.Loaded for checkpoints


def is_checkpoint_path(path: Path) -> bool:
    """A run directory or a torch checkpoint (a zip archive); anything else is read as hypotheses."""
    return path.is_dir() or (path.is_file() and zipfile.is_zipfile(path))


def run_dir_of(entry: str | Path) -> Path:
    """The run directory of a checkpoint file or run directory."""
    return Path(entry) if Path(entry).is_dir() else Path(entry).parent


def load_system(entry: str, cfg: DictConfig, device: torch.device, average_into: Path | None = None) -> Any:
    """Load a checkpoint; with `average_into`, the average of the run's last cfg.average_last checkpoints,
    saved into that directory first (so the evaluated weights stay on disk next to the report)."""
    overrides = list(cfg.model_overrides)
    if average_into is not None:
        run_dir = run_dir_of(entry)
        paths = last_checkpoints(run_dir, cfg.average_last)
        averaged = average_into / f"averaged-{safe_name(run_dir.name)}-last{len(paths)}.pt"
        average_checkpoints(paths).save(averaged)
        return load_model(averaged, device, overrides)
    return load_model(resolve_checkpoint(entry), device, overrides)


def read_references(src_file: str, ref_file: Any) -> tuple[list[str], References]:
    """The sources and their references: `ref_file` one file (a reference a sentence), or a list of files, each
    line-parallel with the sources (a tuple of references a sentence)."""
    if isinstance(ref_file, (str, Path)):
        return read_parallel_lines(src_file, ref_file)
    pairs = [read_parallel_lines(src_file, str(f)) for f in ref_file]  # each names both files on a mismatch
    streams = [refs for _, refs in pairs]
    return pairs[0][0], (streams[0] if len(streams) == 1 else list(zip(*streams, strict=True)))


def write_references(out_dir: Path, refs: References) -> list[str]:
    """ref.txt, or ref1.txt, ref2.txt, ... for several references a sentence; returns their names."""
    streams = reference_streams(refs)
    names = ["ref.txt"] if len(streams) == 1 else [f"ref{i}.txt" for i in range(1, len(streams) + 1)]
    for name, stream in zip(names, streams, strict=True):
        write_lines(out_dir / name, stream)
    return names


def load_references(cfg: DictConfig, loaded: Any, cache: dict[str, PreparedCorpus]
                    ) -> tuple[list[str], References, str]:
    """(sources, references, label) from a named test set, from src_file/ref_file (one reference file or several),
    or from the split of the checkpoint's corpus."""
    if cfg.testset:
        if cfg.src_file or cfg.ref_file:
            raise NMTError("give testset or src_file/ref_file, not both")
        langpair = cfg.langpair or f"{loaded.cfg.data.src_lang}-{loaded.cfg.data.tgt_lang}"
        sources, refs, _ = load_testset(str(cfg.testset), langpair)
        label = f"{cfg.testset}-{langpair}".replace("/", "_")
    elif cfg.src_file or cfg.ref_file:
        if not (cfg.src_file and cfg.ref_file):
            raise NMTError("give both src_file and ref_file (or neither, to use split)")
        sources, refs = read_references(cfg.src_file, cfg.ref_file)
        label = Path(cfg.src_file).name.removesuffix(".gz")
    else:
        data = OmegaConf.to_container(loaded.cfg.data, resolve=True)
        key = repr(sorted(data.items()))
        if key not in cache:
            cache[key] = prepare_corpus(loaded.cfg.data, log=lambda _: None)
        dataset = cache[key].split(cfg.split)
        sources, refs, label = list(dataset["src"]), list(dataset["tgt"]), cfg.split
    if not sources:
        raise NMTError(f"nothing to evaluate: {label} is empty")
    return sources, refs, label


def decode_system(name: str, loaded: Any, sources: list[str], cfg: DictConfig, device: torch.device) -> System:
    out = translate(loaded.model, loaded.tokenizer, sources, cfg.decode, device)
    speed = DecodeSpeed(sentences=len(sources), seconds=out.seconds, sentences_per_second=out.sentences_per_second,
                        tokens=out.num_tokens, tokens_per_second=out.tokens_per_second, device=str(device))
    info = SystemInfo(checkpoint=str(loaded.path), step=loaded.checkpoint.step,
                      arch=str(loaded.cfg.model.arch), num_parameters=int(loaded.model.num_parameters()), speed=speed,
                      truncated_sources=len(out.truncated) if out.truncated else None,
                      averaged_from=loaded.checkpoint.averaged_from or None)
    nbest = None
    if cfg.decode.nbest > 1:
        nbest = [list(zip(h, s, strict=True)) for h, s in zip(out.nbest, out.scores, strict=True)]
    return System(name, out.hypotheses, info, nbest, loaded)


def fresh_name(name: str, taken: list[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}-{n}"
    return candidate


def attention_plots(system: System, sources: list[str], cfg: DictConfig, device: torch.device, out_dir: Path,
                    prefix: str) -> tuple[list[str], dict[str, Figure]]:
    """attention_<i>.png (and a per-head grid for Transformers) for cfg.attention_sentences; returns file
    names and the figures for TensorBoard."""
    rows = [i for i in cfg.attention_sentences if 0 <= i < len(sources) and sources[i].strip()]
    if not rows:
        return [], {}
    model, tok = system.loaded.model, system.loaded.tokenizer
    out = translate(model, tok, [sources[i] for i in rows], cfg.decode, device, with_attention=True)
    if out.attention is None:
        return [], {}
    names, figures = [], {}
    tgt_sp = getattr(tok, "tgt_sp", None)
    for j, i in enumerate(rows):
        weights = out.attention[j]  # (T, S)
        src_labels = tok.src_pieces(sources[i].strip())[: weights.size(1) - 1] + ["</s>"]
        # The decoded ids name the rows exactly; re-encoding the detokenized text may split differently.
        pieces = [tgt_sp.id_to_piece(t) for t in out.ids[j]] if tgt_sp else tok.tgt_pieces(out.hypotheses[j])
        tgt_labels = pieces + ["</s>"]
        fig = plot_attention(weights, src_labels, tgt_labels, title=f"{system.name}: sentence {i}")
        names.append(save_png(fig, out_dir / f"{prefix}_{i}.png").name)
        figures[f"{prefix}_{i}"] = fig
        with torch.inference_mode():
            src_ids = tok.encode_src([sources[i].strip()])[0][: weights.size(1) - 1]
            src = torch.tensor([src_ids + [EOS_ID]], device=device)
            tgt_in = torch.tensor([[BOS_ID] + out.ids[j]], device=device)
            heads = model.head_attention(src, torch.tensor([src.size(1)], device=device), tgt_in)
        if heads is not None:  # every head of the last layer
            heads = heads[0]
            grid = plot_attention_heads(heads, src_labels, tgt_labels, title=f"{system.name}: sentence {i}, last layer")
            names.append(save_png(grid, out_dir / f"{prefix}_{i}_heads.png").name)
    return names, figures


def build_report(label: str, sources: list[str], refs: References, systems: list[System], baseline: System | None,
                 cfg: DictConfig, comet: dict[str, np.ndarray] | None = None) -> EvaluationReport:
    """Every score of `systems` and `baseline`, and the paired comparisons; `comet`: each system's COMET segment
    scores (num_sentences,) by name, when COMET was computed."""
    edges, n = list(cfg.length_edges), int(cfg.bootstrap_samples)
    comet = comet or {}
    everyone = systems + ([baseline] if baseline is not None else [])
    report = EvaluationReport(title=f"Evaluation on {label}", split=label, num_sentences=len(refs),
                              decode=OmegaConf.to_container(cfg.decode, resolve=True), length_edges=edges,
                              bootstrap_samples=n, systems=[])
    for s in everyone:
        report.systems.append(EvaluatedSystem(
            **vars(s.info), name=s.name, hypotheses_file=f"{safe_name(s.name)}.hyp.txt",
            scores=corpus_scores(s.hypotheses, refs), baseline=s is baseline,
            by_length=bleu_by_length(sources, s.hypotheses, refs, edges, n, comet=comet.get(s.name)),
            comet=float(np.mean(comet[s.name])) if s.name in comet else None))
    if baseline is not None:
        report.comparisons = [
            Comparison(system=s.name, baseline=baseline.name,
                       overall=paired_bootstrap(s.hypotheses, baseline.hypotheses, refs, n),
                       by_length=paired_bootstrap_by_length(sources, s.hypotheses, baseline.hypotheses, refs, edges, n))
            for s in systems]
        for c in report.comparisons if comet else []:  # the segment scores themselves, resampled
            a, b = segment_stats(comet[c.system]), segment_stats(comet[c.baseline])
            c.comet = paired_stats_test(a, b, n, metric="comet")
            c.comet_by_length = paired_stats_by_length(sources, a, b, edges, n, metric="comet")
    return report


def comet_of(systems: list[System], comet: Comet, sources: list[str], refs: References, out_dir: Path,
             log: Callable[[str], None]) -> dict[str, np.ndarray]:
    """Each system's COMET segment scores (num_sentences,) by name, also written as <system>.comet.txt; cached in
    comet-cache/ beside `out_dir`, which every evaluation writes anew."""
    log(f"COMET ({comet.name}): scoring {len(systems)} system(s) ...")
    scores = {}
    for s in systems:
        scores[s.name] = segment_scores(comet, sources, s.hypotheses, refs, out_dir.parent / "comet-cache")
        write_lines(out_dir / f"{safe_name(s.name)}.comet.txt", [str(float(x)) for x in scores[s.name]])
    return scores


def evaluate(cfg: DictConfig, log: Callable[[str], None] = print) -> EvaluationReport:
    """Evaluate as configured; returns the report (also written as metrics.json / report.md into
    report.out_dir). NMTError on any problem with the input, before anything is written."""
    if not cfg.checkpoints:
        raise NMTError("no checkpoints given: nmt-evaluate checkpoints='[path/to/best.pt or run dir]'")
    if cfg.average_last < 0 or cfg.bootstrap_samples < 0:
        raise NMTError("average_last and bootstrap_samples must not be negative")
    if cfg.baseline and cfg.bootstrap_samples < 1:
        raise NMTError("a baseline comparison needs bootstrap_samples >= 1")
    device = pick_device(cfg.device)
    # Fail on a bad checkpoint, split or file before creating anything.
    entries = [str(e) for e in cfg.checkpoints]
    for e in entries:
        if cfg.average_last == 0:
            resolve_checkpoint(e)
        elif not Path(e).exists():
            raise NMTError(f"checkpoint not found: {e}")
    if cfg.tensorboard_dir:
        check_writable(cfg.tensorboard_dir, directory=True)
    baseline_path = Path(cfg.baseline) if cfg.baseline else None
    if baseline_path is not None and not baseline_path.exists():
        raise NMTError(f"baseline not found: {baseline_path}")

    corpora: dict[str, PreparedCorpus] = {}
    first = load_system(entries[0], cfg, device)  # unaveraged: enough to find the corpus and fail early
    sources, refs, label = load_references(cfg, first, corpora)
    comet = None
    if cfg.comet_model:
        if not isinstance(refs[0], str):
            raise NMTError("comet_model scores against one reference a sentence: give one ref_file")
        comet = load_comet(str(cfg.comet_model))
    baseline_hyps = None
    if baseline_path is not None and not is_checkpoint_path(baseline_path):
        baseline_hyps = read_text_lines(baseline_path, "baseline hypotheses")
        if len(baseline_hyps) != len(refs):
            raise NMTError(f"baseline {baseline_path} has {len(baseline_hyps)} lines but there are {len(refs)} "
                           f"references")
    existed = bool(cfg.out_dir) and Path(cfg.out_dir).exists()
    out_dir = make_out_dir(cfg.out_dir, run_dir_of(cfg.checkpoints[0]) / "eval", label)

    with undo_on_failure(out_dir, existed):  # a failure (a full disk, Ctrl-C) leaves no partial evaluation
        plots: list[str] = []
        figures: dict[str, Figure] = {}

        def evaluate_checkpoint(model: Any, name: str, what: str) -> System:
            _, model_refs, _ = load_references(cfg, model, corpora)
            if model_refs != refs:
                raise NMTError(f"{what} {model.path} was trained on another corpus than {entries[0]}: its {label} "
                               f"references differ; evaluate them separately or give src_file/ref_file")
            log(f"decoding {len(sources)} sentences with {model.path} ...")
            system = decode_system(name, model, sources, cfg, device)
            prefix = "attention" if not plots else f"attention_{safe_name(name)}"
            files, figs = attention_plots(system, sources, cfg, device, out_dir, prefix)
            plots.extend(files)
            figures.update(figs)
            system.loaded = None  # one model in memory at a time
            return system

        systems: list[System] = []
        for i, entry in enumerate(entries):
            if cfg.average_last > 0:
                model = load_system(entry, cfg, device, average_into=out_dir)
            else:
                model = first if i == 0 else load_system(entry, cfg, device)
            name = fresh_name(str(model.cfg.model.arch), [s.name for s in systems])
            systems.append(evaluate_checkpoint(model, name, "checkpoint"))
        first = None
        baseline = None
        if baseline_hyps is not None:
            baseline = System(f"baseline:{baseline_path.stem}", baseline_hyps,
                              SystemInfo(hypotheses_file_in=str(baseline_path)))
        elif baseline_path is not None:
            model = load_system(str(baseline_path), cfg, device)
            baseline = evaluate_checkpoint(model, f"baseline:{model.cfg.model.arch}", "baseline")

        for s in systems + ([baseline] if baseline else []):
            write_lines(out_dir / f"{safe_name(s.name)}.hyp.txt", s.hypotheses)
            if s.nbest is not None:
                write_lines(out_dir / f"{safe_name(s.name)}.nbest.txt",
                            [f"{i} ||| {h} ||| {sc:.4f}" for i, nb in enumerate(s.nbest) for h, sc in nb])
        write_lines(out_dir / "src.txt", sources)
        ref_files = write_references(out_dir, refs)

        everyone = systems + ([baseline] if baseline else [])
        comet_scores = comet_of(everyone, comet, sources, refs, out_dir, log) if comet is not None else None
        report = build_report(label, sources, refs, systems, baseline, cfg, comet_scores)
        report.references = ref_files
        report.comet_model = comet.name if comet is not None else None
        fig = plot_bleu_by_length({s.name: s.by_length for s in report.systems},
                                  title=f"BLEU by source length ({label})")
        report.plots = Plots(bleu_by_length=save_png(fig, out_dir / "bleu_by_length.png").name, attention=plots)
        figures["bleu_by_length"] = fig
        for s in report.systems:
            if s.truncated_sources:
                report.notes.append(f"{s.name}: {s.truncated_sources} sources were longer than the model's position "
                                    f"table and were truncated")
        skipped = [i for i in cfg.attention_sentences if not 0 <= i < len(sources)]
        if skipped:
            report.notes.append(f"attention_sentences {skipped} are outside the {len(sources)} sentences")
        if not report.plots.attention and cfg.attention_sentences:
            report.notes.append("no attention heatmaps: the models have no attention over the source")
        rescored = " ".join(m.sacrebleu for m in METRICS.values() if m.sacrebleu)
        report.notes.append(f"rescore with: sacrebleu {' '.join(ref_files)} -i {report.systems[0].hypotheses_file} "
                            f"-m {rescored} (chrF++: -m chrf --chrf-word-order 2)")
        md_path, _ = write_report(out_dir, report)

        if cfg.tensorboard_dir:
            scalars = {m.eval_tag(label, s.name): s.scores.score(m.name) for s in report.systems
                       for m in METRICS.values() if m.tensorboard}
            scalars |= {f"eval/{label}/{s.name}/comet": s.comet for s in report.systems if s.comet is not None}
            log_to_tensorboard(cfg.tensorboard_dir, {f"eval/{label}/{k}": f for k, f in figures.items()}, scalars,
                               step=systems[0].info.step or 0)
        report.out_dir = str(out_dir)
        report.report_file = str(md_path)
    return report


def evaluate_checkpoints(checkpoints: str | Path | list[str | Path], split: str = "test",
                         log: Callable[[str], None] = lambda _: None, **options: Any) -> EvaluationReport:
    """`nmt-evaluate` from Python: returns the report it writes (metrics.json is its `to_dict()`), with
    `out_dir` and `report_file` where it was written.

    `options` are the other EvaluateConfig fields (nmt/config.py), e.g. baseline="runs/fixed",
    decode={"beam": 1}, out_dir="eval/x", bootstrap_samples=0.
    """
    entries = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)
    given = {"checkpoints": [str(e) for e in entries], "split": split, **options}
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(EvaluateConfig), given)
    except Exception as e:  # omegaconf names the unknown key or the wrong type
        raise NMTError(f"bad evaluate option: {str(e).splitlines()[0]}") from None
    return evaluate(cfg, log)
