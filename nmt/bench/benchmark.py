"""Performance benchmark of the model presets on real data: training throughput, memory, decoding speed.

For each model (configs/model/<name>.yaml), on the current device (nmt.runtime.pick_device):
- training tokens/s: source + target non-pad tokens per second of forward + backward + AdamW step
  (label-smoothed cross-entropy, dropout on, bf16 autocast on CUDA as in training), on the first
  token-budget batches of the train split, timed after warm-up steps; also per second of this process's
  CPU time (on a machine shared with other work the wall-clock rate drops with the load, the CPU-time rate
  much less) and the padding fraction of the timed batches;
- peak memory: CUDA max allocated, or on CPU the process's peak resident set (VmHWM, reset per model
  through /proc/self/clear_refs where the kernel allows it);
- decoding sentences/s with greedy and beam-5 search on the first --decode-sentences sentences of the
  test split, and batched beam 5 (decode.batch_size sentences per batch) against per-sentence beam 5
  (batches of one) on the same sentences, as a speed-up ratio;
- on CUDA, the model FLOP utilisation (MFU) of a model that counts its FLOPs (Transformer.train_flops);
- with --checkpoints, the same three decoding rates for trained checkpoints (realistic output lengths).
The weights are freshly initialised, not trained: an untrained model rarely emits EOS, so most hypotheses
run to the length limit (max_len_a * source length + max_len_b): the decoding rates are worst cases.

--compare-threads 1 2 adds a side-by-side training throughput of the last model (the Transformer of the
default models) per torch thread count, --compare adamw / compile one per optimiser implementation / eager vs
torch.compile (interleaved rounds, so a change of machine load hits every setting alike).

Output: a Markdown table on stdout and a JSON file (default outputs/bench/<timestamp>.json) with the
hardware, torch version, threads and settings: a `BenchReport`, which `BenchReport.read` reads back.

    nmt-bench --threads 1
    nmt-bench --small --steps 5 --decode-sentences 20
"""

from __future__ import annotations

import argparse
import functools
import platform
import re
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Self

import torch
from omegaconf import OmegaConf

from nmt.config import CONFIG_DIR, PAD_ID, DataConfig, DecodeConfig, TrainConfig, compose_config
from nmt.data.batching import Batch, TokenBatchSampler, collate
from nmt.data.corpus import prepare_corpus
from nmt.decoding.search import translate
from nmt.errors import NMTError
from nmt.evaluation.report import fmt_num
from nmt.io import from_json, read_json, write_json
from nmt.models import Seq2Seq, build_model
from nmt.runtime import hardware, pick_device, synchronize
from nmt.training.checkpoint import load_model
from nmt.training.step import compile_dynamic, model_forward, train_step

CONFIGS = Path(CONFIG_DIR)
DEFAULT_MODELS = ["rnn_fixed", "rnn_attention", "transformer"]

# Dense bf16 peak of known GPUs in TFLOP/s (vendor data sheets, without sparsity); --peak-tflops overrides. A key
# matches a whole word of the device name (torch.cuda.get_device_name), most specific keys first: "H100 NVL"
# before "H100 PCIe"; a bare "H100" or "H200" variant not listed here, GH200 and MIG slices get no peak.
BF16_PEAK_TFLOPS = {
    "H200 NVL": 835.0,
    "H200": 989.0,
    "H100 NVL": 835.0,
    "H100 SXM": 989.0,
    "H100 SXM5": 989.0,
    "H100 80GB HBM3": 989.0,  # the SXM part's name
    "H100 PCIe": 756.0,
    "A100": 312.0,  # SXM and PCIe alike
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
}
UNKNOWN_PEAK = "unknown peak"  # the MFU column of a GPU without a known peak


# The report ------------------------------------------------------------------------------------------------
# The JSON file is `dataclasses.asdict` of a BenchReport (nmt.io.write_json); BenchReport.read reads one back.
@dataclass
class TrainRate:
    """Training throughput over the timed batches (train_throughput)."""

    tokens_per_s: float
    tokens_per_cpu_s: float  # per second of this process's CPU time
    ms_per_step: float
    padding: float  # mean padding fraction of the timed batches


@dataclass
class DecodeRates:
    """Sentences/s of greedy, batched beam 5 and per-sentence beam 5 on the same sentences (decode_rates)."""

    greedy_sent_per_s: float
    beam5_sent_per_s: float
    beam5_single_sent_per_s: float
    beam5_batched_speedup: float  # beam5_sent_per_s / beam5_single_sent_per_s


@dataclass(kw_only=True)
class ModelResult:
    """One model preset's row of the report ("results"): a TrainRate and, unless --decode-sentences 0, the
    DecodeRates of its untrained weights, flat."""

    model: str
    arch: str
    parameters: int
    memory_before_mib: float | None
    tokens_per_s: float
    tokens_per_cpu_s: float
    ms_per_step: float
    padding: float
    peak_memory_mib: float | None
    peak_memory_scope: str  # "model": this model's own peak; "process": the whole run's (no reset possible)
    mfu: float | None = None  # CUDA, a model that counts its FLOPs and a known bf16 peak only
    train_tflops: float | None = None  # CUDA and a model that counts its FLOPs only
    greedy_sent_per_s: float | None = None
    beam5_sent_per_s: float | None = None
    beam5_single_sent_per_s: float | None = None
    beam5_batched_speedup: float | None = None
    bench_seconds: float


@dataclass(kw_only=True)
class TrainedDecoding:
    """The DecodeRates of a trained checkpoint (--checkpoints), flat ("trained_decoding")."""

    checkpoint: str
    arch: str
    step: int
    greedy_sent_per_s: float
    beam5_sent_per_s: float
    beam5_single_sent_per_s: float
    beam5_batched_speedup: float


@dataclass
class Comparison:
    """Training tokens/s of one model under each setting of a side-by-side comparison, by setting label."""

    model: str
    rounds: int
    tokens_per_s: dict[str, float]  # median of the rounds
    all_tokens_per_s: dict[str, list[float]]  # every round
    ratio_vs_first: dict[str, float]  # median against the first setting's


@dataclass
class Vocab:
    src: int
    tgt: int


@dataclass
class BenchConfig:
    """The settings of a run ("config")."""

    models: list[str]
    data: str
    batch_tokens: int
    warmup: int
    steps: int
    test_split: str
    decode_sentences: int
    decode_batch_size: int
    bf16_peak_tflops: float | None
    vocab: Vocab
    real_tokens_per_batch: float  # non-pad source + target tokens per timed batch, mean


@dataclass
class BenchReport:
    """The JSON report of nmt-bench."""

    created: str
    command: str
    hardware: dict[str, Any]  # nmt.runtime.hardware's record (free-form), with load_average_start added
    torch: str
    python: str
    device: str
    threads: int
    config: BenchConfig
    results: list[ModelResult]
    trained_decoding: list[TrainedDecoding]
    comparisons: dict[str, Comparison]  # "threads", "adamw", "compile": the comparisons asked for

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """A report nmt-bench wrote."""
        return from_json(cls, read_json(path))


@dataclass
class BenchRun:
    """What run_benchmark returns: the report as written to `path`, and the timed training batches (the first
    `config.warmup` of them untimed), for a side-by-side comparison with a git revision; not in the JSON."""

    report: BenchReport
    path: Path
    batches: list[Batch]

    @property
    def vocab(self) -> tuple[int, int]:
        """(source, target) vocabulary sizes."""
        return self.report.config.vocab.src, self.report.config.vocab.tgt


def model_config(name: str) -> Any:
    """The model config of preset configs/model/<name>.yaml (an OmegaConf node), composed as nmt-train does."""
    path = CONFIGS / "model" / f"{name}.yaml"
    if not path.is_file():
        valid = ", ".join(sorted(p.stem for p in (CONFIGS / "model").glob("*.yaml")))
        raise SystemExit(f"error: unknown model preset {name!r}; valid: {valid}")
    return compose_config("config", [f"model={name}"]).model


def data_config(name: str, root: str) -> DataConfig:
    """configs/data/<name>.yaml as a DataConfig with its cache under `root`."""
    node = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.load(CONFIGS / "data" / f"{name}.yaml"))
    node.root = root
    return OmegaConf.to_object(node)


# Peak FLOPs and memory -------------------------------------------------------------------------------------
def bf16_peak_tflops(gpu_name: str | None) -> float | None:
    """The dense bf16 peak of a GPU by its name; None when unknown, and for a MIG slice (a share of the GPU)."""
    if not gpu_name or re.search(r"\bMIG\b", gpu_name):
        return None
    for key, value in BF16_PEAK_TFLOPS.items():  # most specific names first
        if re.search(rf"(?<!\w){re.escape(key)}(?!\w)", gpu_name):
            return value
    return None


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak_memory(device: torch.device) -> bool:
    """Start a new peak-memory window; False when the platform cannot (the peak then covers the whole run)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def peak_memory_mib(device: torch.device) -> float | None:
    """CUDA max allocated, or the process's peak resident set size (VmHWM, else getrusage), in MiB."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource  # Unix only: the fallback where /proc is missing

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
        if sys.platform == "darwin":
            kib //= 1024
    return kib / 1024


# Training throughput ---------------------------------------------------------------------------------------
def train_batches(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]], batch_tokens: int,
                  count: int) -> list[Batch]:
    """The first `count` token-budget batches of epoch 0 (the trainer's sampler with its default seed); `src` /
    `tgt`: ids per row (lists, or the id cache's TokenArrays)."""
    sampler = TokenBatchSampler([len(s) for s in src], [len(t) for t in tgt], batch_tokens, seed=1)
    rows = sampler.batches(0)[:count]
    if len(rows) < count:
        raise SystemExit(f"error: the train split has only {len(rows)} batches of {batch_tokens} tokens, "
                         f"{count} needed (--warmup + --steps)")
    return [collate([src[i] for i in r], [tgt[i] for i in r], r) for r in rows]


def trainer_fused_adamw(device: torch.device) -> bool:
    """Whether nmt's trainer uses the fused AdamW on `device` (kept in step with nmt/training/trainer.py)."""
    return device.type == "cuda"


def train_throughput(model: Seq2Seq, batches: list[Batch], warmup: int, device: torch.device,
                     fused: bool | None = None, compile_model: bool = False) -> TrainRate:
    """The trainer's step (nmt.training.step.train_step: summed label-smoothed loss over the batch's target
    count, clipping at train.clip_norm's default) with AdamW on every batch; rates over batches[warmup:].

    fused: AdamW's single-kernel implementation (False: the multi-tensor `foreach` one; None: as the
    trainer does it).
    compile_model: run the forward through torch.compile with dynamic shapes, as the trainer does (compilation
    happens in the warm-up steps).
    """
    model.train()
    if fused is None:
        fused = trainer_fused_adamw(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), fused=fused)
    forward = model_forward(compile_dynamic(model) if compile_model else model)
    amp = device.type == "cuda" and torch.cuda.is_bf16_supported()
    autocast = functools.partial(torch.autocast, device.type, dtype=torch.bfloat16, enabled=amp)
    tokens, start, cpu_start = 0, 0.0, 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            synchronize(device)
            start, cpu_start = time.perf_counter(), time.process_time()
        train_step(model, opt, [batch], device, TrainConfig.label_smoothing, TrainConfig.clip_norm, autocast, forward)
        if i >= warmup:
            tokens += batch.num_tokens
    synchronize(device)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    timed = batches[warmup:]
    return TrainRate(tokens_per_s=tokens / seconds, tokens_per_cpu_s=tokens / max(cpu_seconds, 1e-9),
                     ms_per_step=1000 * seconds / len(timed),
                     padding=sum(b.padding_fraction for b in timed) / len(timed))


def train_flops(model: Seq2Seq, batches: list[Batch]) -> float | None:
    """The model's count of its forward + backward FLOPs over `batches` (Seq2Seq.train_flops: real tokens only);
    None for an architecture that does not count them."""
    counts = [model.train_flops(b.src_lens, (b.tgt_out != PAD_ID).sum(1)) for b in batches]
    return None if None in counts else sum(counts)


# Decoding --------------------------------------------------------------------------------------------------
def decode_rates(model: Seq2Seq, tokenizer: Any, sentences: list[str], batch_size: int,
                 device: torch.device) -> DecodeRates:
    """Sentences/s of greedy, batched beam 5 and per-sentence beam 5 on the same sentences.

    Each search runs once on the first few sentences first, so one-off costs (allocator growth, lazy
    initialisation) do not land in the first timed search.
    """
    greedy = DecodeConfig(beam=1, batch_size=batch_size)
    beam = DecodeConfig(beam=5, batch_size=batch_size)
    single = DecodeConfig(beam=5, batch_size=1)
    warm = sentences[: min(4, len(sentences))]
    for cfg in (greedy, beam):
        translate(model, tokenizer, warm, cfg, device)
    greedy_rate, beam_rate, single_rate = (translate(model, tokenizer, sentences, cfg, device).sentences_per_second
                                           for cfg in (greedy, beam, single))
    return DecodeRates(greedy_sent_per_s=greedy_rate, beam5_sent_per_s=beam_rate, beam5_single_sent_per_s=single_rate,
                       beam5_batched_speedup=beam_rate / single_rate)


# Driver ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """One setting of a side-by-side comparison: its label and what it changes (None: as the trainer does)."""

    label: str
    threads: int | None = None  # torch threads (None: the current count)
    fused: bool | None = None  # train_throughput's AdamW implementation
    compile_model: bool = False


# Side-by-side comparisons: each setting is a label and the train_throughput/thread options it changes.
# On the 2-core AMD EPYC CPU of development (1 thread, default Transformer, shared machine) fused AdamW ran at
# 0.97x foreach and torch.compile at 0.65x eager (0.82x after 8 warm-up steps), so the trainer keeps foreach
# AdamW on CPU and compile off by default; both are worth re-measuring on a GPU.
COMPARISONS = {
    "adamw": [Setting("foreach", fused=False), Setting("fused", fused=True)],
    "compile": [Setting("eager", compile_model=False), Setting("compiled", compile_model=True)],
}


def compare_training(name: str, settings: list[Setting], rounds: int, batches: list[Batch], warmup: int,
                     vocab: tuple[int, int], device: torch.device) -> Comparison:
    """Training tokens/s of model `name` under each setting, `rounds` interleaved measurements each, the median
    reported: a change of machine load during the run then hits every setting alike. Ratios are against the
    first setting."""
    before = torch.get_num_threads()
    rates: dict[str, list[float]] = {s.label: [] for s in settings}
    try:
        for _ in range(rounds):
            for s in settings:
                torch.set_num_threads(before if s.threads is None else s.threads)
                torch.manual_seed(1)
                model = build_model(model_config(name), *vocab).to(device)
                rate = train_throughput(model, batches, warmup, device, fused=s.fused, compile_model=s.compile_model)
                rates[s.label].append(rate.tokens_per_s)
    finally:
        torch.set_num_threads(before)
    medians = {label: statistics.median(r) for label, r in rates.items()}
    first = settings[0].label
    return Comparison(model=name, rounds=rounds, tokens_per_s=medians, all_tokens_per_s=rates,
                      ratio_vs_first={label: rate / medians[first] for label, rate in medians.items()})


@dataclass
class BenchOptions:
    """What run_benchmark reads from its arguments, with nmt-bench's defaults (nmt/cli/bench.py parses the same
    names, and more of its own)."""

    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    small: bool = False
    device: str = "auto"
    threads: int = 0
    steps: int = 5
    warmup: int = 2
    batch_tokens: int = 4096
    decode_sentences: int = 30
    decode_batch_size: int = DecodeConfig.batch_size
    test_split: str = "test"
    data: str = "multi30k_de_en"
    data_root: str = "data"
    compare_threads: list[int] = field(default_factory=list)
    compare: list[str] = field(default_factory=list)
    rounds: int = 2
    checkpoints: list[Path] = field(default_factory=list)
    peak_tflops: float | None = None
    out: str | None = None
    against: str | None = None
    ctranslate2: Path | None = None
    engine_threads: list[int] = field(default_factory=lambda: [1, 2])
    engine_beam: int = 5


def bench_args(**settings: Any) -> BenchOptions:
    """The arguments of `run_benchmark`: BenchOptions' defaults updated by `settings` (unknown names are an
    error)."""
    unknown = set(settings) - {f.name for f in fields(BenchOptions)}
    if unknown:
        raise NMTError(f"unknown benchmark settings: {', '.join(sorted(unknown))}")
    return BenchOptions(**settings)


def run_benchmark(args: BenchOptions | argparse.Namespace, data: DataConfig) -> BenchRun:
    """Benchmark every model of args.models on corpus `data`; returns the report, also written as JSON (to
    args.out, by default outputs/bench/<time>.json), with where it went and the timed batches."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    names = [f"{m}_small" if args.small and not m.endswith("_small") else m for m in args.models]
    cfgs = {name: model_config(name) for name in names}  # unknown presets fail before any work

    corpus = prepare_corpus(data, log=lambda msg: print(f"data: {msg}", file=sys.stderr))
    tok = corpus.tokenizer
    vocab = (tok.src_vocab_size, tok.tgt_vocab_size)
    train = corpus.encoded("train")
    src, tgt = train.src, train.tgt
    batches = train_batches(src, tgt, args.batch_tokens, args.warmup + args.steps)
    test = corpus.split(args.test_split)
    sentences = list(test["src"][: args.decode_sentences])

    hw_start = hardware(threads=torch.get_num_threads(), device=device)
    gpu = hw_start["gpu"]
    peak = args.peak_tflops or bf16_peak_tflops(gpu)
    results = []
    for name in names:
        print(f"benchmarking {name} ...", file=sys.stderr)
        began = time.perf_counter()
        torch.manual_seed(1)
        model = build_model(cfgs[name], *vocab).to(device)
        exact_peak = reset_peak_memory(device)
        memory_before = peak_memory_mib(device)
        rate = train_throughput(model, batches, args.warmup, device)
        peak_mib = peak_memory_mib(device)
        tflops = mfu = None
        flops = train_flops(model, batches[args.warmup:])
        if device.type == "cuda" and flops is not None:
            tflops = flops / (args.steps * rate.ms_per_step / 1000) / 1e12
            mfu = tflops / peak if peak else None
        decoded = asdict(decode_rates(model, tok, sentences, args.decode_batch_size, device)) if sentences else {}
        results.append(ModelResult(model=name, arch=cfgs[name].arch, parameters=model.num_parameters(),
                                   memory_before_mib=memory_before, **asdict(rate), peak_memory_mib=peak_mib,
                                   peak_memory_scope="model" if exact_peak else "process", mfu=mfu,
                                   train_tflops=tflops, **decoded, bench_seconds=time.perf_counter() - began))

    trained = []
    for path in args.checkpoints:  # decoding speed of trained models (same sentences, same searches)
        print(f"decoding with {path} ...", file=sys.stderr)
        loaded = load_model(path, device)
        rates = decode_rates(loaded.model, loaded.tokenizer, sentences, args.decode_batch_size, device)
        trained.append(TrainedDecoding(checkpoint=str(path), arch=loaded.cfg.model.arch, step=loaded.checkpoint.step,
                                       **asdict(rates)))

    settings = {"threads": [Setting(str(n), threads=n) for n in args.compare_threads]} if args.compare_threads else {}
    settings.update({what: COMPARISONS[what] for what in args.compare})
    target = names[-1]  # the Transformer among the default models
    comparisons = {}
    for what, options in settings.items():
        print(f"comparing {what} on {target} ...", file=sys.stderr)
        comparisons[what] = compare_training(target, options, args.rounds, batches, args.warmup, vocab, device)

    report = BenchReport(
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        command=" ".join(sys.argv),
        hardware={**hardware(threads=torch.get_num_threads(), device=device),
                  "load_average_start": hw_start["load_average"]},
        torch=torch.__version__,
        python=platform.python_version(),
        device=str(device),
        threads=torch.get_num_threads(),
        config=BenchConfig(
            models=names, data=data.name, batch_tokens=args.batch_tokens, warmup=args.warmup, steps=args.steps,
            test_split=args.test_split, decode_sentences=len(sentences), decode_batch_size=args.decode_batch_size,
            bf16_peak_tflops=peak, vocab=Vocab(src=vocab[0], tgt=vocab[1]),
            real_tokens_per_batch=sum(b.num_tokens for b in batches[args.warmup:]) / args.steps,
        ),
        results=results,
        trained_decoding=trained,
        comparisons=comparisons,
    )
    out = Path(args.out) if args.out else Path("outputs") / "bench" / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    write_json(out, report)
    return BenchRun(report=report, path=out, batches=batches)


def _mfu_cell(mfu_percent: float | None, gpu: str | None) -> str:
    """`41.3%`, `unknown peak` on a GPU (named `gpu`) missing from BF16_PEAK_TFLOPS, `-` on the CPU."""
    if mfu_percent is not None:
        return f"{mfu_percent:.1f}%"
    return UNKNOWN_PEAK if gpu else "-"


def markdown(report: BenchReport) -> str:
    cfg, hw = report.config, report.hardware
    lines = [
        f"Device {report.device} ({hw['gpu'] or hw['cpu']}, {hw['cpu_count']} cores), torch {report.torch}, "
        f"{report.threads} threads; {cfg.data} train batches of {cfg.batch_tokens} tokens "
        f"({cfg.real_tokens_per_batch:.0f} real), {cfg.steps} timed steps after {cfg.warmup} warm-up; "
        f"decoding: first {cfg.decode_sentences} sentences of {cfg.test_split}, untrained weights "
        f"(hypotheses mostly run to the length limit).",
        "",
        "| model | params | train tok/s | tok/CPU-s | ms/step | padding | peak MiB | MFU | greedy sent/s "
        "| beam5 sent/s | beam5 1-by-1 sent/s | batched/1-by-1 (x) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report.results:
        mfu = None if r.mfu is None else 100 * r.mfu
        lines.append(
            f"| {r.model} | {r.parameters / 1e6:.1f}M | {r.tokens_per_s:,.0f} | {r.tokens_per_cpu_s:,.0f} | "
            f"{r.ms_per_step:.0f} | {r.padding:.1%} | {fmt_num(r.peak_memory_mib, 0, thousands=True)} | "
            f"{_mfu_cell(mfu, hw['gpu'])} | {fmt_num(r.greedy_sent_per_s, 1)} | {fmt_num(r.beam5_sent_per_s, 1)} | "
            f"{fmt_num(r.beam5_single_sent_per_s, 1)} | {fmt_num(r.beam5_batched_speedup, 2)} |"
        )
    if report.trained_decoding:
        lines += ["", f"Decoding with trained checkpoints, first {cfg.decode_sentences} sentences of "
                  f"{cfg.test_split}:", "", "| checkpoint | greedy sent/s | beam5 sent/s | beam5 1-by-1 sent/s "
                  "| batched/1-by-1 (x) | beam5/greedy time (x) |", "|---|---:|---:|---:|---:|---:|"]
        for t in report.trained_decoding:
            lines.append(
                f"| {t.checkpoint} ({t.arch}, step {t.step}) | {t.greedy_sent_per_s:.1f} | {t.beam5_sent_per_s:.1f} | "
                f"{t.beam5_single_sent_per_s:.1f} | {t.beam5_batched_speedup:.2f} | "
                f"{t.greedy_sent_per_s / t.beam5_sent_per_s:.2f} |"
            )
    for what, cmp in report.comparisons.items():
        lines += ["", f"Training tokens/s of {cmp.model} by {what}, side by side (median of {cmp.rounds} "
                  "interleaved rounds):", "", f"| {what} | tokens/s | vs first |", "|---|---:|---:|"]
        for label, rate in cmp.tokens_per_s.items():
            lines.append(f"| {label} | {rate:,.0f} | {cmp.ratio_vs_first[label]:.2f}x |")
    return "\n".join(lines)
