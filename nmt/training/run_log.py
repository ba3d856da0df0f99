"""What a training run tells the world: console + <run dir>/train.log, a live progress line, TensorBoard.

Only rank 0 of a distributed run logs; the other ranks get a `RunLogger(enabled=False)` that drops everything.

Console and train.log lines go through the standard `logging` module: each run has its own logger (not
propagated to the root logger) with a StreamHandler for the console and a FileHandler for train.log, both
removed again by `close()`, so several runs in one process never write each other's lines twice.

TensorBoard events go into the run directory itself, so `tensorboard --logdir outputs` lists one run per
training run. Tags: train/{loss,lr,grad_norm,tokens_per_sec,padding_fraction,step_ms,data_wait_ms};
data/pairs_<name> (pairs consumed so far of each corpus of data.train_mix);
memory/host_peak_gb (and memory/cuda_peak_{allocated,reserved}_gb on CUDA); valid/{loss,ppl,best_bleu,seconds} and
valid/<name> of each validated metric of nmt.metrics.scores.METRICS (bleu, chrf), all named in METRIC_TAGS;
images attention/<k> (one per validation, same tag, so the step slider shows the alignment forming;
TensorBoard keeps 10 steps per image tag unless started with e.g. --samples_per_plugin=images=1000, and
images=0 shows none), text valid/samples, and the HParams table: the flattened config of the run, with its
metrics read from the valid/* scalars above (the HParams plugin shows a metric's last value in the session's
run).

Every scalar goes through `RunLogger.scalars`, which also hands it to the run's other trackers (train.trackers,
nmt/training/trackers.py), so MLflow holds the same tags, steps and values as TensorBoard.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import resource
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO

import torch

from nmt.metrics.scores import VALIDATED

Tensor = torch.Tensor

LOG_FORMAT = "[%(asctime)s] %(message)s"  # train.log; the console gets the bare message
LOG_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"

# The metrics of a validation, by the scalar tag they are logged under at each validation (the validated corpus
# metrics of nmt.metrics.scores.METRICS, the loss and perplexity); the HParams table reads each final metric as the
# last value of that tag in the run.
METRIC_TAGS = {m.name: m.valid_tag for m in VALIDATED} | {
    "valid_loss": "valid/loss",
    "valid_ppl": "valid/ppl",
    "best_bleu": "valid/best_bleu",
}

_logger_ids: set[int] = set()  # ids of the open runs' loggers: a closed run's name is reused, not leaked
_logger_ids_lock = threading.Lock()


def _take_logger_id() -> int:
    with _logger_ids_lock:
        k = next(i for i in itertools.count() if i not in _logger_ids)
        _logger_ids.add(k)
        return k


def format_duration(seconds: float) -> str:
    """`1:02:03` / `2:03` style, for ETAs."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def flatten_config(cfg: Mapping[str, Any], prefix: str = "") -> dict[str, bool | int | float | str]:
    """{"train": {"lr": 1e-3}} -> {"train.lr": 1e-3}; lists and None become strings (what HParams accepts)."""
    flat: dict[str, bool | int | float | str] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_config(value, f"{name}."))
        elif isinstance(value, (bool, int, float, str)):
            flat[name] = value
        else:
            flat[name] = str(value)
    return flat


def peak_memory(device: torch.device) -> dict[str, float]:
    """Peak memory of this process so far, in GB: the host's resident set (ru_maxrss) and, on CUDA, the device's
    peak allocated and reserved memory."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    peaks = {"memory/host_peak_gb": rss / (1024**3 if sys.platform == "darwin" else 1024**2)}
    if device.type == "cuda":
        peaks["memory/cuda_peak_allocated_gb"] = torch.cuda.max_memory_allocated(device) / 1024**3
        peaks["memory/cuda_peak_reserved_gb"] = torch.cuda.max_memory_reserved(device) / 1024**3
    return peaks


def memory_text(peaks: dict[str, float]) -> str:
    """"peak RSS 1.21 GB" (and ", GPU 3.10 / 4.00 GB allocated / reserved" on CUDA)."""
    text = f"peak RSS {peaks['memory/host_peak_gb']:.2f} GB"
    if "memory/cuda_peak_allocated_gb" in peaks:
        text += (f", GPU {peaks['memory/cuda_peak_allocated_gb']:.2f} / {peaks['memory/cuda_peak_reserved_gb']:.2f} "
                 f"GB allocated / reserved")
    return text


class StepMeter:
    """Sums over the steps since the last log line: loss per target token, throughput, grad norm, padding, and the
    time spent waiting for batches."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss_sum = self.targets = self.tokens = self.padding = self.grad_norm = self.data_wait = 0.0
        self.steps = self.batches = 0
        self.start = time.monotonic()

    def add_wait(self, seconds: float) -> None:
        """Time the loop waited for the next batches (data loading and collation not hidden by workers)."""
        self.data_wait += seconds

    def add(self, loss_sum: float, targets: float, tokens: float, padding: float, grad_norm: float) -> None:
        """One applied update: summed loss over `targets` target tokens, `tokens` src+tgt tokens seen."""
        self.loss_sum += loss_sum
        self.targets += targets
        self.grad_norm += grad_norm
        self.steps += 1
        self.add_tokens(tokens, padding)

    def add_tokens(self, tokens: float, padding: float) -> None:
        """Data consumed (also by a skipped step): throughput counts it."""
        self.tokens += tokens
        self.padding += padding
        self.batches += 1

    @property
    def loss(self) -> float:
        return self.loss_sum / max(self.targets, 1.0)

    @property
    def tokens_per_sec(self) -> float:
        return self.tokens / max(time.monotonic() - self.start, 1e-9)

    @property
    def step_ms(self) -> float:
        """Wall milliseconds per batch group, validation and checkpoints left out."""
        return 1000 * (time.monotonic() - self.start) / max(self.batches, 1)

    def scalars(self, lr: float) -> dict[str, float]:
        return {
            "train/loss": self.loss,
            "train/lr": lr,
            "train/grad_norm": self.grad_norm / max(self.steps, 1),
            "train/tokens_per_sec": self.tokens_per_sec,
            "train/padding_fraction": self.padding / max(self.batches, 1),
            "train/step_ms": self.step_ms,
            "train/data_wait_ms": 1000 * self.data_wait / max(self.batches, 1),
        }


def budget_fraction(train_cfg: Any, step: int, epochs: float, seconds: float) -> float:
    """Share of the training budget used: the largest among the budgets that are set (steps, epochs, minutes);
    `epochs` counts fractional epochs done."""
    parts = [step / train_cfg.max_steps] if train_cfg.max_steps > 0 else []
    parts += [epochs / train_cfg.max_epochs] if train_cfg.max_epochs > 0 else []
    parts += [seconds / (train_cfg.max_minutes * 60)] if train_cfg.max_minutes > 0 else []
    return min(1.0, max(parts, default=0.0))


class Progress:
    """Per-step reporting: the live line with an ETA by budget, and every `train.log_every` steps a log line
    plus the train/* TensorBoard scalars (averages since the previous log line)."""

    def __init__(self, log: RunLogger, train_cfg: Any, step: int, epochs: float, seconds_before: float,
                 device: torch.device | None = None) -> None:
        self.log, self.train_cfg = log, train_cfg
        self.device = device if device is not None else torch.device("cpu")
        self.meter = StepMeter()
        self.start = time.monotonic()
        self.paused = 0.0  # seconds of this session spent validating and saving (see `exclude`)
        self.seconds_before = seconds_before  # training time of earlier sessions of a resumed run
        self.start_fraction = budget_fraction(train_cfg, step, epochs, seconds_before)

    @property
    def train_seconds(self) -> float:
        """Training time of the run so far, validation and checkpoints left out (what train.max_minutes counts)."""
        return self.seconds_before + time.monotonic() - self.start - self.paused

    def update(self, step: int, epochs: float, epoch: int, index: int, n_batches: int, lr: float,
               pairs: Mapping[str, int] | None = None) -> None:
        """After a step that consumed batch `index` of `n_batches` of `epoch` (0-based); `pairs`: the pairs of each
        corpus of data.train_mix consumed so far (the log line and data/pairs_<name> show them)."""
        elapsed = time.monotonic() - self.start  # wall time, pauses included: the ETA is in wall time
        fraction = budget_fraction(self.train_cfg, step, epochs, self.train_seconds)
        eta = elapsed * (1 - fraction) / max(fraction - self.start_fraction, 1e-9)
        meter = self.meter
        line = (
            f"step {step} | epoch {epoch + 1} {100 * (index + 1) / n_batches:3.0f}% | loss {meter.loss:.3f} | "
            f"lr {lr:.2e} | {meter.tokens_per_sec / 1000:.1f}k tok/s | ETA {format_duration(eta)}"
        )
        self.log.progress(line)
        if self.train_cfg.log_every > 0 and meter.steps > 0 and step % self.train_cfg.log_every == 0:
            scalars = meter.scalars(lr)
            peaks = peak_memory(self.device)
            mix = f" | pairs {', '.join(f'{name} {n}' for name, n in pairs.items())}" if pairs else ""
            self.log.info(f"{line} | gnorm {scalars['train/grad_norm']:.2f} | {scalars['train/step_ms']:.0f} ms/step "
                          f"(data {scalars['train/data_wait_ms']:.0f}) | {memory_text(peaks)}{mix}",
                          console=not self.log.live)
            self.log.scalars(scalars | peaks | {f"data/pairs_{name}": n for name, n in (pairs or {}).items()}, step)
            meter.reset()

    def exclude(self, seconds: float) -> None:
        """Leave time spent validating and saving out of the training time and the throughput (it stays in the
        ETA)."""
        self.paused += seconds
        self.meter.start += seconds


class _ConsoleHandler(logging.StreamHandler):
    """Console lines: the bare message, after clearing the live progress line; skips `console=False` records."""

    def __init__(self, stream: TextIO, before_emit: Any) -> None:
        super().__init__(stream)
        self.before_emit = before_emit
        self.addFilter(lambda record: getattr(record, "console", True))

    def emit(self, record: logging.LogRecord) -> None:
        self.before_emit()
        super().emit(record)


class _HoldHandler(logging.Handler):
    """Keeps the records meant for train.log until `RunLogger.open_files` writes them."""

    def __init__(self, held: list[logging.LogRecord]) -> None:
        super().__init__()
        self.held = held

    def emit(self, record: logging.LogRecord) -> None:
        self.held.append(record)


class Tracker(Protocol):
    """An experiment tracker beside TensorBoard (nmt/training/trackers.py): RunLogger opens it with its files, hands
    it every scalar it logs, and closes it after train.log."""

    def open(self) -> None: ...

    def scalars(self, values: Mapping[str, float], step: int) -> None: ...

    def close(self, failed: bool) -> None: ...


class RunLogger:
    """Console + train.log lines, an in-place progress line on a terminal, a TensorBoard writer, and the run's other
    `trackers` (each gets the scalars TensorBoard gets).

    `info` goes to both the console and the log file (`console=False`: the file only). `progress` redraws
    one line when stdout is a terminal and is silent otherwise (the trainer writes a plain `info` line every
    `train.log_every` steps). `logger` is the run's `logging.Logger` (None when disabled).
    """

    def __init__(
        self,
        run_dir: Path | None,
        enabled: bool = True,
        tensorboard: bool = True,
        purge_step: int | None = None,
        stream: TextIO | None = None,
        hold_files: bool = False,
        trackers: Sequence[Tracker] = (),
    ) -> None:
        self.enabled = enabled and run_dir is not None
        self.trackers = list(trackers) if self.enabled else []
        self.run_dir, self._tensorboard, self._purge_step = run_dir, tensorboard, purge_step
        self._held: list[logging.LogRecord] = []
        self._files_open = False
        self.stream = stream if stream is not None else sys.stdout
        self.live = self.enabled and self.stream.isatty()
        self._live_len = 0
        self._last_draw = 0.0
        self.logger: logging.Logger | None = None
        self.writer: Any = None
        self._scalar_tags: set[str] = set()
        if not self.enabled:
            return
        assert run_dir is not None
        run_dir.mkdir(parents=True, exist_ok=True)
        # One logger per open RunLogger (nmt.run.<k>, not the directory name: two runs may share a name), kept off
        # the root logger so an application's own logging set-up does not print every line a second time.
        self._logger_id = _take_logger_id()
        logger = logging.getLogger(f"nmt.run.{self._logger_id}")
        logger.setLevel(logging.INFO)
        logger.propagate = False
        console = _ConsoleHandler(self.stream, self._clear_live)
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)
        self.logger = logger
        if hold_files:  # until open_files: the console only, the file's lines kept
            logger.addHandler(_HoldHandler(self._held))
        else:
            self.open_files()

    def open_files(self) -> None:
        """Open train.log (writing the lines held so far) and the TensorBoard writer. A logger made with
        `hold_files` writes nothing into the run directory before this: a resume refused while the run is being
        prepared leaves the run as it was."""
        if not self.enabled or self._files_open or self.logger is None or self.run_dir is None:
            return
        self._files_open = True
        logfile = logging.FileHandler(self.run_dir / "train.log", mode="a", encoding="utf-8")
        logfile.setFormatter(logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT))
        for handler in [h for h in self.logger.handlers if isinstance(h, _HoldHandler)]:
            self.logger.removeHandler(handler)
        for record in self._held:
            logfile.handle(record)
        self._held.clear()
        self.logger.addHandler(logfile)
        if self._tensorboard:
            from torch.utils.tensorboard import SummaryWriter  # heavy (tensorboard): loaded only when used

            # purge_step drops events a crashed run logged after its last checkpoint, so curves don't fold back.
            self.writer = SummaryWriter(log_dir=str(self.run_dir), purge_step=self._purge_step)
        for tracker in self.trackers:
            tracker.open()

    # Console and file --------------------------------------------------------------------------------------
    def info(self, message: str, console: bool = True) -> None:
        if self.logger is not None:
            self.logger.info(message, extra={"console": console})

    def write_now(self, message: str) -> None:
        """`message` as one line of train.log (when open) and of stderr, written straight to the files: safe where a
        signal may have interrupted a write to the same streams, and on disk before an immediate exit."""
        if self._files_open and self.run_dir is not None:
            line = logging.Formatter(LOG_FORMAT, LOG_DATE_FORMAT).format(logging.makeLogRecord({"msg": message}))
            fd = os.open(self.run_dir / "train.log", os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, (line + "\n").encode("utf-8"))
            finally:
                os.close(fd)
        os.write(2, (message + "\n").encode("utf-8"))  # stderr, below any buffered stream

    def progress(self, message: str, force: bool = False) -> None:
        """Redraw the live line (at most 5 times a second unless `force`)."""
        if not self.live:
            return
        now = time.monotonic()
        if not force and now - self._last_draw < 0.2:
            return
        self._last_draw = now
        padding = " " * max(0, self._live_len - len(message))
        self.stream.write(f"\r{message}{padding}")
        self.stream.flush()
        self._live_len = len(message)

    def _clear_live(self) -> None:
        if self.live and self._live_len:
            self.stream.write("\r" + " " * self._live_len + "\r")
            self._live_len = 0

    # TensorBoard -------------------------------------------------------------------------------------------
    def scalars(self, values: Mapping[str, float], step: int) -> None:
        """TensorBoard scalars at `step` (the finite ones), and the same to every tracker."""
        finite = {tag: float(v) for tag, v in values.items() if v is not None and math.isfinite(float(v))}
        if self.writer is not None:
            for tag, value in finite.items():
                self.writer.add_scalar(tag, value, step)
                self._scalar_tags.add(tag)
        for tracker in self.trackers:
            tracker.scalars(finite, step)

    def figure(self, tag: str, figure: Any, step: int) -> None:
        if self.writer is not None:
            self.writer.add_figure(tag, figure, step, close=False)

    def text(self, tag: str, markdown: str, step: int) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, markdown, step)

    def hparams(self, config: Mapping[str, Any], metrics: Mapping[str, float], step: int) -> None:
        """The run's row in TensorBoard's HParams tab: the flattened config, and `metrics` (the final ones).

        The HParams plugin shows, for each session (a run with a session-start summary), the last value of
        every scalar tag of that run, so the metrics are the valid/* curves themselves (see METRIC_TAGS) and no
        single-point hparams/* charts appear among the scalars. A metric whose tag this run has not logged (e.g.
        best_bleu when the trainer does not log valid/best_bleu) is written once, at `step`, under its tag.

        The session summaries go into the run's own event file (SummaryWriter.add_hparams would open a
        timestamped sub-run). No experiment summary is written: the plugin expects at most one per logdir and
        would take one run's columns for all; without it, it gathers the columns from every run's session.
        """
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams  # heavy (tensorboard), as above

        for name, value in metrics.items():
            tag = METRIC_TAGS.get(name, f"valid/{name}")
            if tag not in self._scalar_tags:
                self.scalars({tag: value}, step)
        _, session_start, session_end = hparams(flatten_config(config), {})
        file_writer = self.writer._get_file_writer()
        for summary in (session_start, session_end):
            file_writer.add_summary(summary, step)

    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()
        for handler in self.logger.handlers if self.logger is not None else []:
            handler.flush()

    def close(self, failed: bool = False) -> None:
        """Close TensorBoard and train.log, then the trackers (which store train.log; `failed`: the run failed)."""
        self._clear_live()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        if self.logger is not None:
            for handler in list(self.logger.handlers):
                self.logger.removeHandler(handler)
                handler.close()
            self.logger = None
            with _logger_ids_lock:
                _logger_ids.discard(self._logger_id)
        trackers, self.trackers = self.trackers, []
        for tracker in trackers:
            tracker.close(failed)


def samples_markdown(sources: Sequence[str], hypotheses: Sequence[str], references: Sequence[str]) -> str:
    """A markdown table of sample translations for TensorBoard's text tab."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| # | source | hypothesis | reference |", "|---|---|---|---|"]
    for i, (src, hyp, ref) in enumerate(zip(sources, hypotheses, references, strict=True)):
        lines.append(f"| {i} | {cell(src)} | {cell(hyp)} | {cell(ref)} |")
    return "\n".join(lines)
