"""The GPU path in one command: `make gpu-check` (nmt-gpu-check).

On a CUDA machine, in at most CHECK_BUDGET_S (8 minutes): first the dtype of every recurrent layer under bf16
autocast and the number of graphs torch.compile builds over variable-length batches (tiny models, seconds); then
each GPU recipe (configs/recipe/rnn_gpu.yaml, transformer_gpu.yaml) trains for `steps` steps as `nmt-train
recipe=<name>` does, in a child process (bf16 autocast, fused AdamW, TF32, torch.compile as the recipe sets it), and
its validation loss must fall, its compile must neither fall back to eager nor build more than MAX_GRAPHS graphs;
host syncs per step and the loader's batches/s are counted in a few steps of the first recipe; a run is killed
(SIGKILL) after its first checkpoint and resumed, and the resumed weights must equal those of the checkpoint saved
before the kill; the Transformer decodes validation sentences with beam search; a two-rank `torchrun` run trains
with DDP (NCCL with two GPUs; NCCL takes one GPU per rank, so with one GPU the report says so and the ranks use gloo
on the CPU); and the speed benchmark (nmt/bench/benchmark.py) prints tokens/s, peak memory and MFU per model.

Each check is isolated: one that fails records {"ok": false, "error": ...} (`Failed`) and the next one runs,
and <out>/<time>/gpu_check.json (a `GpuCheckReport`) and report.md (its lines) are always written. Every child
process runs in its own process group with a timeout (CHILD_TIMEOUT_S, less when the check's budget is nearly
spent), is killed with its children when the timeout passes, and keeps its log (quoted on failure).

Training runs are composed from configs/config.yaml with nmt.config.compose_config, as `nmt-train <overrides>`
composes them (the Trainer checks the train section when it is built).

Without CUDA: exit 0 with one line only when the machine has no NVIDIA driver (no /proc/driver/nvidia/version,
no nvidia-smi); with a driver it is a failure (exit 1) that names torch's CUDA version and the driver's, as
torch is then a CPU build or too new for the driver. `device=cpu` runs the same checks on the CPU (gloo
instead of NCCL, no autocast), which is how the tests exercise it.
"""

from __future__ import annotations

import itertools
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from omegaconf import OmegaConf

from nmt.bench import benchmark
from nmt.config import DataConfig, compose_config
from nmt.data.batching import batch_stream
from nmt.data.corpus import prepare_corpus
from nmt.decoding.search import translate
from nmt.errors import NMTError
from nmt.io import read_json, write_json, write_text
from nmt.metrics import corpus_score
from nmt.models import build_model
from nmt.runtime import pick_device
from nmt.training.checkpoint import load_checkpoint, load_model, resolve_checkpoint
from nmt.training.step import compile_dynamic
from nmt.training.trainer import Trainer

MODELS = ("rnn_fixed", "rnn_attention", "transformer")  # the precision check's architectures
RECIPES = ("rnn_gpu", "transformer_gpu")  # configs/recipe/
CHILD_TIMEOUT_S = 180  # a child training run of the check (a recipe, the killed-and-resumed run, torchrun)
CHECK_BUDGET_S = 480  # the whole check: a child started late gets what is left (at least MIN_CHILD_S)
MIN_CHILD_S = 30
MAX_GRAPHS = 1  # graphs torch.compile may build for a recipe: dynamic shapes compile the model once
_deadline = math.inf  # time.monotonic() at which the check's budget ends (set by run_gpu_check)
DRIVER_FILE = Path("/proc/driver/nvidia/version")


# The report ------------------------------------------------------------------------------------------------
# One dataclass per check; `summary()` is its log line. gpu_check.json is `dataclasses.asdict` of GpuCheckReport.
@dataclass(kw_only=True)
class Failed:
    """A check that raised: the next check runs either way."""

    ok: bool = False
    error: str


@dataclass(kw_only=True)
class PrecisionCheck:
    """Under bf16 autocast: the dtype of every recurrent layer's output and of the logits, per model; on CUDA the
    number of graphs torch.compile built over variable lengths (None elsewhere)."""

    dtypes: dict[str, dict[str, str]]  # model -> {module name (or "logits"): dtype}
    recurrent_fp32: bool
    graphs: int | None
    ok: bool

    def summary(self) -> str:
        rnn = ", ".join(f"{m}: " + "/".join(sorted({v for k, v in d.items() if k != "logits"}) or ["-"])
                        for m, d in self.dtypes.items())
        graphs = "-" if self.graphs is None else str(self.graphs)
        verdict = "fp32 as intended" if self.recurrent_fp32 else "NOT fp32"
        return (f"precision under bf16 autocast: recurrent layers {rnn} ({verdict}); torch.compile graphs over "
                f"variable lengths: {graphs}")


@dataclass(kw_only=True)
class TrainCheck:
    """One recipe trained by `nmt-train recipe=<name>` in a child process; ok when it finished, its validation loss
    fell, and its torch.compile (when set) neither fell back to eager nor built more than MAX_GRAPHS graphs."""

    recipe: str
    model: str  # the recipe's model arch
    exit_code: int | None  # None: killed at its timeout
    compile: bool  # the recipe compiles (on CUDA; the CPU check trains eagerly)
    compile_fell_back: bool = False
    compile_graphs: int | None = None
    compile_seconds: float = 0.0
    steps: int
    valid_losses: list[float | None]  # per validation; None for a loss that was not finite (NaN, inf)
    loss_falls: bool
    train_seconds: float
    tokens_per_s: float
    peak_memory_gb: float  # the GPU's peak reserved memory (the host's peak RSS on the CPU)
    device_memory_gb: float | None  # the GPU's total memory
    out_of_memory: bool
    run_dir: str
    ok: bool

    def summary(self) -> str:
        losses = " -> ".join("not finite" if x is None else f"{x:.3f}" for x in self.valid_losses)
        compiled = "off"
        if self.compile:
            many = "" if (self.compile_graphs or 0) <= MAX_GRAPHS else f" (MORE THAN {MAX_GRAPHS})"
            compiled = ("FELL BACK to eager" if self.compile_fell_back else
                        f"{self.compile_graphs} graph(s){many}, {self.compile_seconds:.1f}s apart from training")
        total = "" if self.device_memory_gb is None else f" of {self.device_memory_gb:.1f}"
        oom = "OUT OF MEMORY" if self.out_of_memory else f"no OOM, peak {self.peak_memory_gb:.2f}{total} GB"
        return (f"train {self.recipe} ({self.model}): {self.steps} steps (exit {self.exit_code}), valid loss {losses} "
                f"({'falls' if self.loss_falls else 'DOES NOT FALL'}), {self.tokens_per_s / 1000:.1f}k tok/s, "
                f"compile: {compiled}; {oom}")


@dataclass(kw_only=True)
class StepCheck:
    """A few training steps of a recipe in this process: host syncs per step (CUDA: torch's sync debug mode; None on
    the CPU, where nothing waits) and the loader's batches/s (the recipe's workers, no model)."""

    recipe: str
    syncs_per_step: list[int] | None  # per step after the first (which may compile)
    loader_batches_per_s: float
    ok: bool = True

    def summary(self) -> str:
        syncs = "-" if self.syncs_per_step is None else "/".join(map(str, self.syncs_per_step))
        return (f"steps {self.recipe}: host syncs per step {syncs}; loader {self.loader_batches_per_s:.0f} "
                f"batches/s")


@dataclass(kw_only=True)
class ResumeCheck:
    """A run killed after its first checkpoint and resumed."""

    model: str
    killed_at_step: int
    weights_restored: bool  # the resumed weights equal the checkpoint's
    finished_step: int
    finished: bool
    ok: bool

    def summary(self) -> str:
        return (f"resume: killed at step {self.killed_at_step}, weights restored: {self.weights_restored}, "
                f"finished: {self.finished}")


@dataclass(kw_only=True)
class BeamCheck:
    """Validation sentences decoded with the checkpoint's beam search."""

    beam: int
    sentences: int
    sentences_per_s: float
    bleu: float
    ok: bool = True

    def summary(self) -> str:
        return f"beam {self.beam}: {self.sentences_per_s:.1f} sentences/s, valid BLEU {self.bleu:.2f}"


@dataclass(kw_only=True)
class TorchrunCheck:
    """A two-rank torchrun training run."""

    backend: str  # nccl or gloo
    ranks: int
    exit_code: int | None  # None: killed at the timeout
    ok: bool
    log_tail: str  # the end of its log when it failed
    note: str = ""  # why NCCL was not tried, where it was not

    def summary(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"torchrun DDP ({self.backend}, 2 ranks): {'ok' if self.ok else 'FAILED: ' + self.log_tail}{note}"


@dataclass(kw_only=True)
class BenchCheck(benchmark.BenchReport):
    """The speed benchmark's report (nmt-bench's JSON, flat), with where it was written."""

    ok: bool = True
    path: str

    def summary(self) -> str:
        return benchmark.markdown(self)


Check = PrecisionCheck | TrainCheck | StepCheck | ResumeCheck | BeamCheck | TorchrunCheck | BenchCheck


@dataclass(kw_only=True)
class GpuCheckReport:
    """gpu_check.json: where the checks ran and each check's result (None: not reached, as when interrupted)."""

    device: str
    torch: str
    torch_cuda: str | None
    gpu: str | None
    precision: PrecisionCheck | Failed | None = None
    training: list[TrainCheck | Failed] = field(default_factory=list)
    steps: StepCheck | Failed | None = None
    resume: ResumeCheck | Failed | None = None
    beam: BeamCheck | Failed | None = None
    torchrun: TorchrunCheck | Failed | None = None
    bench: BenchCheck | Failed | None = None
    seconds: float = 0.0
    ok: bool = False


@dataclass(kw_only=True)
class NoCudaReport:
    """The failed report of a machine whose NVIDIA driver torch cannot use (nothing else ran)."""

    ok: bool = False
    error: str
    driver: str
    torch: str
    torch_cuda: str | None


# Child processes -------------------------------------------------------------------------------------------
def run_child(cmd: list[str], log_path: Path, timeout: float, stop_when: Callable[[], bool] | None = None
              ) -> int | None:
    """Run `cmd` in its own process group, stdout and stderr into `log_path`; its exit code, or None when it
    was still running after `timeout` seconds. The group (the child and its children) is SIGKILLed on timeout,
    and as soon as `stop_when()` is true (then the code is -SIGKILL)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not (stop_when and stop_when()):
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
        return code if stop_when and stop_when() else None
    return proc.returncode


def log_tail(log_path: Path, lines: int = 5) -> str:
    """The last lines of a child's log, joined with ' | ' (for one-line errors)."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(empty log)"


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver's version ("unknown" when present but unreadable), or None when this machine has no
    NVIDIA driver: neither /proc/driver/nvidia/version nor nvidia-smi."""
    if DRIVER_FILE.exists():
        text = DRIVER_FILE.read_text(errors="replace")
        found = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
        return found.group(1) if found else "unknown"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "nvidia-smi.log"
        code = run_child([smi, "--query-gpu=driver_version", "--format=csv,noheader"], log, timeout=30)
        found = re.search(r"\d+(?:\.\d+)+", log.read_text(errors="replace")) if code == 0 else None
    return found.group(0) if found else "unknown"


def no_cuda_report(driver: str) -> NoCudaReport:
    """The failed report of a machine whose NVIDIA driver torch cannot use."""
    torch_cuda = torch.version.cuda or "none (a CPU build)"
    error = (f"NVIDIA driver {driver} is installed but torch {torch.__version__} cannot use CUDA (torch's CUDA "
             f"version: {torch_cuda}); install a build of torch for a CUDA version this driver supports")
    return NoCudaReport(error=error, driver=driver, torch=torch.__version__, torch_cuda=torch.version.cuda)


# The checks ------------------------------------------------------------------------------------------------
def child_timeout() -> float:
    """A child's timeout: CHILD_TIMEOUT_S, or what is left of the check's budget (at least MIN_CHILD_S)."""
    return max(MIN_CHILD_S, min(CHILD_TIMEOUT_S, _deadline - time.monotonic()))


def _train_overrides(recipe: str, device: str, steps: int, extra: list[str]) -> list[str]:
    """`recipe=<recipe>` for `steps` steps, validated and saved half-way and at the end; on the CPU without
    torch.compile (Inductor's C++ build takes minutes there)."""
    every = max(1, steps // 2)
    return [f"recipe={recipe}", f"train.device={device}", f"train.max_steps={steps}", "train.max_minutes=0",
            f"train.eval_every={every}", "train.eval_every_minutes=0", f"train.save_every={every}",
            "train.save_every_minutes=0", "train.eval_max_sentences=200", "train.attention_samples=0",
            "train.resume=never", *([] if device.startswith("cuda") else ["train.compile=false"]), *extra]


def _train_cmd(run_dir: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "nmt.cli.train", f"hydra.run.dir={run_dir}", *overrides]


def check_training(recipe: str, device: str, steps: int, run_dir: Path, extra: list[str]) -> TrainCheck:
    """`nmt-train recipe=<recipe>` in a child process; the validation loss at the end must be below the one
    half-way, and a compiled model must have compiled once, without falling back to eager."""
    overrides = _train_overrides(recipe, device, steps, extra)
    cfg = compose_config("config", overrides)
    child_log = run_dir.parent / f"{recipe}.log"
    code = run_child(_train_cmd(run_dir, overrides), child_log, child_timeout())
    text = child_log.read_text(errors="replace") if child_log.exists() else ""
    if not (run_dir / "metrics.json").exists():
        raise NMTError(f"{recipe} wrote no metrics.json (exit {code}); its log ({child_log}) ends: "
                       f"{log_tail(child_log)}")
    metrics = read_json(run_dir / "metrics.json")
    losses = [float(h["valid_loss"]) for h in metrics["history"]]
    loss_falls = len(losses) >= 2 and losses[-1] < losses[0]
    compiled = metrics.get("compile") or {}
    fell_back, graphs = bool(compiled.get("fell_back", False)), compiled.get("graphs")
    peaks = metrics.get("peak_memory") or {}
    cuda = device.startswith("cuda")
    peak = peaks.get("memory/cuda_peak_reserved_gb" if cuda else "memory/host_peak_gb", 0.0)
    total = torch.cuda.get_device_properties(pick_device(device)).total_memory / 1024**3 if cuda else None
    compile_ok = not cfg.train.compile or (not fell_back and graphs is not None and graphs <= MAX_GRAPHS)
    return TrainCheck(recipe=recipe, model=str(cfg.model.arch), exit_code=code, compile=bool(cfg.train.compile),
                      compile_fell_back=fell_back, compile_graphs=graphs,
                      compile_seconds=float(metrics.get("compile_seconds", 0.0)), steps=metrics["step"],
                      valid_losses=[x if math.isfinite(x) else None for x in losses], loss_falls=loss_falls,
                      train_seconds=metrics["train_seconds"], tokens_per_s=float(metrics.get("tokens_per_sec", 0.0)),
                      peak_memory_gb=float(peak), device_memory_gb=total,
                      out_of_memory="error: out of memory" in text, run_dir=str(run_dir),
                      ok=code == 0 and loss_falls and compile_ok)


def count_syncs(device: torch.device) -> Callable[[Callable[[], Any]], tuple[Any, int | None]]:
    """A function that runs `call()` and returns its result and the host syncs it made: on CUDA the warnings of
    torch.cuda.set_sync_debug_mode("warn"), one per synchronizing operation; None on the CPU."""
    def counted(call: Callable[[], Any]) -> tuple[Any, int | None]:
        if device.type != "cuda":
            return call(), None
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                result = call()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        return result, sum("synchronizing" in str(w.message) for w in seen)

    return counted


def check_steps(recipe: str, device: str, run_dir: Path, extra: list[str], steps: int = 6,
                loader_seconds: float = 5.0) -> StepCheck:
    """`steps` steps of the recipe through the trainer in this process, counting each step's host syncs (the
    trainer's design is one: the copy of the step's loss and norm); then the loader alone, with the recipe's
    workers, for up to `loader_seconds`."""
    overrides = _train_overrides(recipe, device, steps, [*extra, f"train.eval_every={steps}"])
    trainer = Trainer(compose_config("config", overrides), run_dir)
    counter, syncs = count_syncs(pick_device(device)), []
    real_step = trainer._train_step

    def counted_step(*args: Any) -> Any:
        stats, n = counter(lambda: real_step(*args))
        syncs.append(n)
        return stats

    trainer._train_step = counted_step  # type: ignore[method-assign]
    trainer.fit()
    data, workers = trainer.data, int(trainer.train_cfg.num_workers)
    stream = batch_stream(data.sampler, data.src_ids, data.tgt_ids, 0, 0, 0, workers, 1,
                          pin_memory=device.startswith("cuda"))
    started, n = time.monotonic(), 0
    for _ in itertools.islice(stream, 2000):
        n += 1
        if time.monotonic() - started > loader_seconds:
            break
    rate = n / max(time.monotonic() - started, 1e-9)
    del stream  # stops the workers
    per_step = None if syncs[0] is None else [int(x) for x in syncs[1:]]
    return StepCheck(recipe=recipe, syncs_per_step=per_step, loader_batches_per_s=rate)


def check_resume(recipe: str, device: str, steps: int, run_dir: Path, extra: list[str]) -> ResumeCheck:
    """nmt-train in a child process, SIGKILLed once its first checkpoint exists; the trainer set up again in the
    same run directory must restore exactly the weights of that checkpoint (read before it is set up), then
    finish the run."""
    overrides = [o for o in _train_overrides(recipe, device, steps, extra) if o != "train.resume=never"]
    overrides = [o for o in overrides if not o.startswith("train.save_every=")] + ["train.save_every=2"]
    last, child_log = run_dir / "last.pt", run_dir.parent / "resume-child.log"
    code = run_child(_train_cmd(run_dir, overrides), child_log, child_timeout(), stop_when=last.exists)
    if not last.exists():
        raise NMTError(f"{recipe} wrote no checkpoint before it was to be killed (exit {code}); its log "
                       f"({child_log}) ends: {log_tail(child_log)}")
    saved = load_checkpoint(last)
    trainer = Trainer(compose_config("config", overrides), run_dir)
    try:
        trainer._setup()
        restored = all(torch.equal(v.cpu(), saved["model"][k].cpu()) for k, v in trainer.model.state_dict().items())
    finally:
        trainer.release()
    summary = Trainer(compose_config("config", overrides), run_dir).fit()
    finished = summary.step == steps
    return ResumeCheck(model=recipe, killed_at_step=int(saved["step"]), weights_restored=restored,
                       finished_step=summary.step, finished=finished, ok=restored and finished)


def check_beam(run_dir: Path, device: str, sentences: int = 200) -> BeamCheck:
    dev = pick_device(device)
    loaded = load_model(resolve_checkpoint(run_dir), dev)
    valid = prepare_corpus(loaded.cfg.data, log=lambda _: None).split("valid")
    src, ref = list(valid["src"][:sentences]), list(valid["tgt"][:sentences])
    out = translate(loaded.model, loaded.tokenizer, src, loaded.cfg.decode, dev)
    return BeamCheck(beam=int(loaded.cfg.decode.beam), sentences=len(src), sentences_per_s=out.sentences_per_second,
                     bleu=corpus_score(out.hypotheses, ref))


def check_torchrun(recipe: str, device: str, run_dir: Path, extra: list[str]) -> TorchrunCheck:
    """A two-rank torchrun of the recipe: the process group comes up, the model trains in its DDP wrapper, the
    collectives run, training finishes. NCCL on CUDA with at least two GPUs; NCCL refuses two ranks on one GPU,
    so with one the ranks use gloo on the CPU, and the note says so."""
    gpus = torch.cuda.device_count() if device.startswith("cuda") else 0
    nccl = gpus >= 2
    note = "" if nccl or not device.startswith("cuda") else \
        f"NCCL not tried: it takes one GPU per rank and this machine has {gpus}; the ranks ran on the CPU"
    rank_device = "cuda" if nccl else "cpu"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "nmt.cli.train", f"hydra.run.dir={run_dir}", *_train_overrides(recipe, rank_device, 4, extra)]
    child_log = run_dir.parent / "torchrun.log"
    code = run_child(cmd, child_log, child_timeout())
    log = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else ""
    ok = code == 0 and "x 2 ranks (" in log
    return TorchrunCheck(backend="nccl" if nccl else "gloo", ranks=2, exit_code=code, ok=ok,
                         log_tail="" if ok else log_tail(child_log), note=note)


def check_bench(device: str, steps: int, out: Path, recipes: list[str], bench_models: tuple[str, ...],
                extra: list[str]) -> BenchCheck:
    args = benchmark.bench_args(device=device, models=list(bench_models), decode_sentences=0,
                                out=str(out / "bench.json"), batch_tokens=16384 if device.startswith("cuda") else 600)
    # the corpus the checks trained on
    trained_on = compose_config("config", _train_overrides(recipes[0], device, steps, extra)).data
    data = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), trained_on))
    run = benchmark.run_benchmark(args, data)
    return BenchCheck(**vars(run.report), path=str(run.path))


RECURRENT = (torch.nn.GRU, torch.nn.LSTM, torch.nn.GRUCell, torch.nn.LSTMCell)


def _record_dtype(seen: dict[str, str], key: str) -> Callable[..., None]:
    """A forward hook that records the dtype of a module's (first) output under `key`."""
    def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        out = out.data if isinstance(out, torch.nn.utils.rnn.PackedSequence) else out
        seen[key] = str(out.dtype).removeprefix("torch.")

    return hook


def check_precision(device: str, lengths: tuple[int, ...] = (7, 11, 13, 17, 23, 29)) -> PrecisionCheck:
    """The questions a first GPU settles in a minute, before any training: under bf16 autocast, the dtype of every
    recurrent layer's output (fp32 intended) and of each model's logits (bf16); on CUDA, how many graphs
    torch.compile builds for the Transformer over batches of `lengths` different source/target lengths, compiled
    as the trainer compiles (dynamic shapes should keep it to a few, not one per length). Tiny random models, no
    data."""
    dev = pick_device(device)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16)
    dtypes: dict[str, dict[str, str]] = {}
    for name in MODELS:
        cfg = compose_config("config", [f"model={name}"]).model
        for key, size in (("emb_dim", 32), ("hidden", 32), ("ff_dim", 64)):  # tiny, where the architecture has it
            if key in cfg:
                cfg[key] = size
        model = build_model(cfg, 50, 50).to(dev)
        seen: dict[str, str] = {}
        hooks = [m.register_forward_hook(_record_dtype(seen, k)) for k, m in model.named_modules()
                 if isinstance(m, RECURRENT)]
        src, tgt = torch.randint(4, 50, (2, 9), device=dev), torch.randint(4, 50, (2, 6), device=dev)
        with torch.no_grad(), autocast:
            logits = model(src, torch.tensor([9, 7], device=dev), tgt)
        for h in hooks:
            h.remove()
        dtypes[name] = {**seen, "logits": str(logits.dtype).removeprefix("torch.")}
    recurrent_fp32 = all(v == "float32" for d in dtypes.values() for k, v in d.items() if k != "logits")
    graphs = None
    if dev.type == "cuda":  # inductor on the CPU needs a C++ toolchain and minutes; the question is about CUDA
        cfg = compose_config("config", ["model=transformer"]).model
        compiled = compile_dynamic(build_model(cfg, 1000, 1000).to(dev))  # as the trainer compiles
        torch._dynamo.reset()
        for n in lengths:
            with torch.no_grad(), autocast:
                compiled(torch.randint(4, 1000, (8, n), device=dev), torch.full((8,), n, device=dev),
                         torch.randint(4, 1000, (8, n + 2), device=dev))
        graphs = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    return PrecisionCheck(dtypes=dtypes, recurrent_fp32=recurrent_fp32, graphs=graphs,
                          ok=recurrent_fp32 and (graphs is None or graphs < len(lengths)))


C = TypeVar("C", bound=Check)


def isolated(check: Callable[..., C], *args: Any) -> C | Failed:
    """The check's result, or Failed when it raised: the next check runs either way."""
    try:
        return check(*args)
    except (Exception, SystemExit) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return Failed(error=f"{type(e).__name__}: {first}"[:500])


def describe(name: str, result: Check | Failed) -> str:
    """One log line (the bench: its table) for a check's result."""
    return f"{name}: FAILED: {result.error}" if isinstance(result, Failed) else result.summary()


def run_gpu_check(device: str = "cuda", steps: int = 40, out: str | Path = "outputs/gpu_check",
                  recipes: dict[str, list[str]] | tuple[str, ...] = RECIPES, extra: list[str] | None = None,
                  bench_models: tuple[str, ...] = ("rnn_attention_base", "transformer_base"),
                  log: Any = print) -> GpuCheckReport | NoCudaReport | None:
    """Every check above; returns the report (also written to <out>/<time>/gpu_check.json, and its lines to
    report.md), or None on a machine without CUDA and without an NVIDIA driver. `recipes`: names, or names with
    overrides of their own (added after `extra`)."""
    global _deadline
    if device.startswith("cuda") and not torch.cuda.is_available():
        driver = nvidia_driver_version()
        if driver is None:
            log(f"gpu-check: no CUDA device and no NVIDIA driver on this machine (torch {torch.__version__}); "
                f"nothing to check")
            return None
        failed = no_cuda_report(driver)
        log(f"gpu-check FAILED: {failed.error}")
        return failed
    own = recipes if isinstance(recipes, dict) else {name: [] for name in recipes}
    names = list(own)
    extra = list(extra or [])
    out = Path(out) / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    report = GpuCheckReport(device=device, torch=torch.__version__, torch_cuda=torch.version.cuda,
                            gpu=torch.cuda.get_device_name(0) if device.startswith("cuda") else None)
    lines = [f"gpu-check on {device} ({report.gpu or 'no GPU'}), torch {report.torch}, CUDA {report.torch_cuda}"]

    def record(name: str, result: Check | Failed) -> None:
        lines.append(describe(name, result))
        log(lines[-1])

    started = time.time()
    _deadline = time.monotonic() + CHECK_BUDGET_S
    checks: list[Check | Failed] = []
    try:
        report.precision = isolated(check_precision, device)
        record("precision", report.precision)
        for r in names:
            report.training.append(isolated(check_training, r, device, steps, out / r, extra + own[r]))
            record("train", report.training[-1])
        first, last = names[0], names[-1]
        report.steps = isolated(check_steps, first, device, out / "steps", extra + own[first])
        record("steps", report.steps)
        report.resume = isolated(check_resume, first, device, 4, out / "resume", extra + own[first])
        record("resume", report.resume)
        report.beam = isolated(check_beam, out / last, device)
        record("beam", report.beam)
        report.torchrun = isolated(check_torchrun, last, device, out / "torchrun", extra + own[last])
        record("torchrun", report.torchrun)
        report.bench = isolated(check_bench, device, steps, out, names, bench_models, extra + own[first])
        record("bench", report.bench)
        checks = [report.precision, *report.training, report.steps, report.resume, report.beam, report.torchrun,
                  report.bench]
    finally:
        _deadline = math.inf
        report.seconds = time.time() - started
        report.ok = bool(checks) and all(c.ok for c in checks)
        write_json(out / "gpu_check.json", report)
        verdict = f"gpu-check {'passed' if report.ok else 'FAILED'} in {report.seconds / 60:.1f} min: {out}"
        write_text(out / "report.md", "\n\n".join([*lines, verdict]) + "\n")
    log(verdict)
    return report
