"""CPU inference engines side by side: our batched beam search (float32 and PyTorch dynamic int8) against
CTranslate2 (float32 and int8 weights), on the same sentences, in interleaved rounds.

`run(checkpoint, ...)` exports a Transformer checkpoint twice (as `nmt-export` does: float32 and int8) and loads
every engine once, outside the timed region: our model, a copy with its Linear layers quantized by
torch.ao.quantization.quantize_dynamic (the same search: separates "int8" from "C++ engine"), and one
CTranslate2 translator per compute type and thread layout. Each timed call translates raw text to raw text
(SentencePiece included, for every engine). All engines decode the same batches: sentences sorted by length,
cut into batches of decode.batch_size sentences or of `batch_tokens` padded source tokens (`batch_type`,
`nmt.inference.export.plan_batches`); CTranslate2 takes each batch as one asynchronous call (beam search also
cuts a batch where the length limit changes, see `ExportedTranslator`). With n > 1 threads, our engines use n
torch threads, and CTranslate2 runs twice: n batches in parallel (inter_threads=n, intra_threads=1) and one
batch on n threads (inter_threads=1, intra_threads=n).

Every engine first translates a few sentences untimed; then `rounds` rounds each time every engine once, in the
same order (A B C ... A B C ...), so a change of machine load shows in every engine alike; the report gives
the median sentences/s (and the range). BLEU and chrF are scored on the first round's output.

    nmt-bench --ctranslate2 <run>/best.pt --decode-sentences 1000 --engine-threads 1 2 --rounds 3
    nmt-bench --ctranslate2 <run>/best.pt --decode-sentences 1000 --engine-threads 1 --engine-beam 1
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from nmt.config import DecodeConfig
from nmt.data.corpus import prepare_corpus
from nmt.decoding.search import max_output_lengths, translate
from nmt.evaluation.report import md_table
from nmt.inference.export import BATCH_TYPES, export_ctranslate2, load_ctranslate2, plan_batches
from nmt.inference.translator import ExportedTranslator, Translator, check_lines
from nmt.io import write_json
from nmt.metrics.scores import corpus_scores
from nmt.runtime import hardware

WARMUP_SENTENCES = 8
CPU_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")


@dataclass
class Engine:
    """One timed configuration: `translate` maps raw lines to raw translations."""

    name: str
    threads: int  # cores it may use: torch threads, or inter_threads x intra_threads
    translate: Callable[[list[str]], list[str]]
    inter_threads: int | None = None
    intra_threads: int | None = None
    compute_type: str = "float32"
    batches: int = 0  # engine calls (batches) per translation of all sentences


# The report: `dataclasses.asdict` of an EnginesReport is its JSON file (nmt.io.write_json).
@dataclass
class EngineRow:
    """One engine at one thread layout, timed in every round; compared with "nmt" at the same thread count."""

    engine: str
    compute_type: str
    threads: int
    inter_threads: int | None  # CTranslate2 only
    intra_threads: int | None
    batches: int  # engine calls per translation of all sentences
    seconds: list[float]  # per round
    sentences_per_s: float  # median of the rounds
    sentences_per_s_range: list[float]  # [min, max]
    bleu: float  # of the first round's output
    chrf: float
    hypotheses_equal_ours: int  # sentences translated exactly as "nmt" translates them
    speedup: float  # sentences_per_s against "nmt"'s
    bleu_vs_ours: float  # bleu - "nmt"'s


@dataclass
class EngineDecode:
    """The search and batching every engine ran with ("decode")."""

    beam: int
    alpha: float
    length_norm: str  # our engines'; CTranslate2 normalises by length ** alpha (= power)
    max_len_a: float
    max_len_b: int
    batch_type: str
    batch_size: int
    batch_tokens: int


@dataclass
class EnginesReport:
    """The JSON report of nmt-bench --ctranslate2."""

    created: str
    command: str
    hardware: dict[str, Any]  # nmt.runtime.hardware's record (free-form)
    cpu_flags: dict[str, bool]
    ctranslate2: str
    ctranslate2_cpu_compute_types: list[str]
    torch_quantized_engine: str
    checkpoint: str
    step: int
    split: str
    sentences: int
    rounds: int
    decode: EngineDecode
    rows: list[EngineRow]


def cpu_flags() -> dict[str, bool]:
    """Which of CPU_FLAGS /proc/cpuinfo lists (int8 speed depends on VNNI; empty where there is no cpuinfo)."""
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                return {flag: flag in flags for flag in CPU_FLAGS}
    return {}


def torch_engine(name: str, model: torch.nn.Module, tokenizer: Any, decode: Any, threads: int, batch_type: str,
                 batch_tokens: int, compute_type: str) -> Engine:
    """Our search over the batches plan_batches makes (the batches CTranslate2 gets), on `threads` threads."""
    settings = OmegaConf.to_object(decode) if OmegaConf.is_config(decode) else decode

    def run(lines: list[str]) -> list[str]:
        torch.set_num_threads(threads)
        ids = tokenizer.encode_src([line.strip() for line in lines])
        lens = torch.tensor([len(seq) + 1 for seq in ids])
        limits = max_output_lengths(model, lens, decode.max_len_a, decode.max_len_b).tolist()
        size = decode.batch_size if batch_type == "examples" else batch_tokens
        out = [""] * len(lines)
        batches = plan_batches(lens.tolist(), limits, batch_type, size)
        engine.batches = len(batches)
        for batch in batches:
            cfg = dataclasses.replace(settings, batch_size=len(batch))  # this batch is one batch of translate()
            hyps = translate(model, tokenizer, [lines[i] for i in batch], cfg, "cpu").hypotheses
            for i, hyp in zip(batch, hyps, strict=True):
                out[i] = hyp
        return out

    engine = Engine(name, threads, run, compute_type=compute_type)
    return engine


def ctranslate2_engine(name: str, model_dir: Path, decode: Any, inter: int, intra: int, batch_type: str,
                       batch_tokens: int) -> Engine:
    """An export loaded once with this thread layout."""
    translator = ExportedTranslator(model_dir, decode, inter_threads=inter, intra_threads=intra,
                                    max_input_tokens=None, batch_type=batch_type, batch_tokens=batch_tokens)

    def run(lines: list[str]) -> list[str]:
        out = translator.translate_full(lines)
        engine.batches = translator.last_batches
        return out.hypotheses

    engine = Engine(name, inter * intra, run, inter, intra, translator.compute_type)
    return engine


def quantized(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` with every nn.Linear quantized dynamically to int8 (weights int8, activations
    quantized per call), for PyTorch's int8 kernels (fbgemm / oneDNN)."""
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated (for torchao) but still ships
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        return torch.ao.quantization.quantize_dynamic(copy.deepcopy(model).eval(), {torch.nn.Linear},
                                                      dtype=torch.qint8)


def build_engines(ours: Translator, exports: dict[str, Path], threads: list[int], decode: Any, batch_type: str,
                  batch_tokens: int) -> list[Engine]:
    """For each thread count: nmt, nmt dynamic int8, then CTranslate2 float32 and int8 (both layouts for n > 1)."""
    model_int8 = quantized(ours.model)
    tok = ours.loaded.tokenizer
    engines: list[Engine] = []
    for n in threads:
        engines.append(torch_engine("nmt", ours.model, tok, decode, n, batch_type, batch_tokens, "float32"))
        engines.append(torch_engine("nmt dynamic int8", model_int8, tok, decode, n, batch_type, batch_tokens,
                                    "int8 (torch)"))
        layouts = [(1, 1)] if n == 1 else [(n, 1), (1, n)]
        for q, model_dir in exports.items():
            for inter, intra in layouts:
                engines.append(ctranslate2_engine(f"ctranslate2 {q}", model_dir, decode, inter, intra, batch_type,
                                                  batch_tokens))
    return engines


def time_rounds(engines: list[Engine], lines: list[str], rounds: int) -> tuple[list[list[float]], list[list[str]]]:
    """Warm every engine up, then `rounds` interleaved rounds: (seconds per engine per round, first-round
    hypotheses per engine)."""
    threads = torch.get_num_threads()
    seconds: list[list[float]] = [[] for _ in engines]
    hyps: list[list[str]] = [[] for _ in engines]
    try:
        for engine in engines:
            engine.translate(lines[:WARMUP_SENTENCES])
        for r in range(rounds):
            for k, engine in enumerate(engines):
                print(f"round {r + 1}/{rounds}: {engine.name}, {engine.threads} thread(s) "
                      f"(inter {engine.inter_threads}, intra {engine.intra_threads}) ...", file=sys.stderr)
                start = time.perf_counter()
                out = engine.translate(lines)
                seconds[k].append(time.perf_counter() - start)
                if r == 0:
                    hyps[k] = out
    finally:
        torch.set_num_threads(threads)
    return seconds, hyps


def compare_engines(checkpoint: str | Path, split: str = "test", sentences: int = 1000,
                    threads: list[int] | None = None, decode: DecodeConfig | None = None,
                    out: str | Path | None = None, rounds: int = 3, batch_type: str = "examples",
                    batch_tokens: int = 1024) -> tuple[EnginesReport, Path]:
    """Every engine side by side (EngineRow, in build_engines' order); the report is written as JSON (to `out`,
    by default outputs/bench/engines-<time>.json): (report, its path). decode.length_norm applies to our engines;
    CTranslate2 normalises by length ** alpha (= length_norm=power)."""
    decode = decode or DecodeConfig(length_norm="power")
    threads = threads or [1, 2]
    if rounds < 1 or min(threads) < 1 or sentences < 1:
        raise ValueError("rounds, threads and sentences must be at least 1")
    if batch_type not in BATCH_TYPES:
        raise ValueError(f"batch_type must be one of {BATCH_TYPES}")
    ours = Translator.from_checkpoint(checkpoint, device="cpu", decode=decode, max_input_tokens=None)
    settings = ours.decode
    corpus = prepare_corpus(ours.loaded.cfg.data, log=lambda msg: print(f"data: {msg}", file=sys.stderr))
    data = corpus.split(split)
    lines, refs = check_lines(list(data["src"][:sentences])), list(data["tgt"][:sentences])

    with tempfile.TemporaryDirectory(prefix="nmt-engines-") as tmp:
        exports = {q: export_ctranslate2(checkpoint, Path(tmp) / q, quantization=q) for q in ("float32", "int8")}
        engines = build_engines(ours, exports, threads, settings, batch_type, batch_tokens)
        seconds, hyps = time_rounds(engines, lines, rounds)

    rates = [[len(lines) / s for s in secs] for secs in seconds]
    medians = [statistics.median(r) for r in rates]
    scores = [corpus_scores(out_lines, refs) for out_lines in hyps]
    rows = []
    for k, engine in enumerate(engines):
        base = next(j for j, e in enumerate(engines) if e.name == "nmt" and e.threads == engine.threads)
        rows.append(EngineRow(
            engine=engine.name, compute_type=engine.compute_type, threads=engine.threads,
            inter_threads=engine.inter_threads, intra_threads=engine.intra_threads, batches=engine.batches,
            seconds=seconds[k], sentences_per_s=medians[k], sentences_per_s_range=[min(rates[k]), max(rates[k])],
            bleu=scores[k].bleu, chrf=scores[k].chrf,
            hypotheses_equal_ours=sum(a == b for a, b in zip(hyps[k], hyps[base], strict=True)),
            speedup=medians[k] / medians[base], bleu_vs_ours=scores[k].bleu - scores[base].bleu,
        ))

    ct2 = load_ctranslate2()
    report = EnginesReport(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        command=" ".join(sys.argv),
        hardware=hardware(),
        cpu_flags=cpu_flags(),
        ctranslate2=ct2.__version__,
        ctranslate2_cpu_compute_types=sorted(ct2.get_supported_compute_types("cpu")),
        torch_quantized_engine=torch.backends.quantized.engine,
        checkpoint=str(checkpoint),
        step=ours.loaded.checkpoint.step,
        split=split,
        sentences=len(lines),
        rounds=rounds,
        decode=EngineDecode(beam=settings.beam, alpha=settings.alpha, length_norm=settings.length_norm,
                            max_len_a=settings.max_len_a, max_len_b=settings.max_len_b, batch_type=batch_type,
                            batch_size=settings.batch_size, batch_tokens=batch_tokens),
        rows=rows,
    )
    path = Path(out) if out else Path("outputs") / "bench" / f"engines-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    write_json(path, report)
    return report, path


def markdown(report: EnginesReport) -> str:
    d, hw = report.decode, report.hardware
    flags = ", ".join(f for f, on in report.cpu_flags.items() if on) or "none of " + ", ".join(CPU_FLAGS)
    batches = (f"batches of {d.batch_size} sentences" if d.batch_type == "examples"
               else f"batches of {d.batch_tokens} padded source tokens")
    search = "greedy" if d.beam == 1 else f"beam {d.beam}, alpha {d.alpha}, our length_norm={d.length_norm}"
    head = (f"{report.sentences} sentences of {report.split} with {report.checkpoint} (step {report.step}), "
            f"{search}, {batches} sorted by length; median of {report.rounds} interleaved rounds. {hw['cpu']} "
            f"({hw['cpu_count']} cores; {flags}), torch {hw['torch']} (quantized engine "
            f"{report.torch_quantized_engine}), CTranslate2 {report.ctranslate2}.")
    table = md_table(
        ["engine", "threads", "inter x intra", "batches", "sentences/s (median)", "range", "vs ours (x)", "BLEU",
         "BLEU vs ours", "same output as ours", "chrF"],
        [[r.engine, str(r.threads), "" if r.inter_threads is None else f"{r.inter_threads} x {r.intra_threads}",
          str(r.batches), f"{r.sentences_per_s:.1f}", "{:.1f}-{:.1f}".format(*r.sentences_per_s_range),
          f"{r.speedup:.2f}", f"{r.bleu:.2f}", f"{r.bleu_vs_ours:+.2f}",
          f"{r.hypotheses_equal_ours}/{report.sentences}", f"{r.chrf:.2f}"] for r in report.rows],
    )
    return "\n".join([head, "", *table])
