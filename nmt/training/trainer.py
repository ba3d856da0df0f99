"""The training loop behind `nmt-train`.

    trainer = Trainer(cfg, run_dir)      # cfg: nmt.config.Config (dataclass or OmegaConf), run_dir: any folder
    summary = trainer.fit()              # {"step": ..., "best_bleu": ..., "stop_reason": ...}

`fit` opens the run (threads, process group, device, the run directory's lock, the log), reads the checkpoint to
resume from, and has `nmt.training.setup.prepare` build what it trains: the prepared data, the model, optimizer
and schedule, and the loop's `TrainState` (restored on resume). The loop itself builds nothing.

One optimizer update ("step") consumes `train.accum_steps` token-budget batches. Training stops at the first
budget reached (train.max_steps / max_epochs / max_minutes of training time: validation and checkpoints are
left out of it, and out of tokens/s), on early stopping (train.patience validations without a new best BLEU),
or on SIGINT/SIGTERM (the current step finishes, last.pt is written, exit 0; a second one exits at once, 130 /
143, leaving every checkpoint as it was before the one being written).
Validation every `train.eval_every` steps (at each epoch end when 0) or every `train.eval_every_minutes` of
training time, and at the end; checkpoints every `train.save_every` steps or `train.save_every_minutes`, and at the
end (step files without optimizer state with `train.save_weights_only`; last.pt always resumes). With torch.compile
the first step of a session compiles: its time is `compile_seconds` in metrics.json, left out of training time.
A non-finite loss or gradient norm skips the update; `train.max_bad_steps` of them in a row stop the run with an
error.

Exact resume: a checkpoint holds weights, optimizer, schedule and the TrainState (data position, counters, RNG
states), so a run resumed from step k reaches the same parameters at step n as a run that was never interrupted
(single process; a DDP run resumes weights, optimizer and data position, but stores only rank 0's RNG state). On
the CPU always; on CUDA only with train.deterministic=true, as some CUDA kernels (backward passes, cuBLAS
reductions) otherwise sum in a different order from run to run.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import signal
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel

from nmt.config import Config, DecodeConfig, check_values, typed_config
from nmt.data.batching import batch_stream
from nmt.data.mix import MixedBatchSampler, check_train_mix
from nmt.errors import NMTError
from nmt.io import remove_partial_writes, write_text
from nmt.models import model_class
from nmt.runtime import host_values_to, pick_device, set_threads, use_deterministic_algorithms
from nmt.training import distributed as dist
from nmt.training.checkpoint import Checkpoint, check_resumable, resume_path, save_under
from nmt.training.ema import WeightAverage
from nmt.training.record import how_to_continue, save_run_record
from nmt.training.run_log import METRIC_TAGS, Progress, RunLogger, format_duration, peak_memory
from nmt.training.schedules import budget_used, due
from nmt.training.setup import check_train_config, lock_for_all_ranks, prepare
from nmt.training.state import FitSummary, StepStats, TrainState
from nmt.training.step import clip_gradients, compile_dynamic, forward_backward
from nmt.training.trackers import check_trackers, make_trackers
from nmt.training.validate import metrics_text, validate

Tensor = torch.Tensor


def torch_rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    """torch's generator states (the CPU's, and the device's on CUDA), to draw the same numbers again."""
    return torch.get_rng_state(), torch.cuda.get_rng_state(device) if device.type == "cuda" else None


def set_torch_rng_state(state: Any, device: torch.device) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state(cuda, device)


def compiled_graphs() -> int:
    """The graphs torch.compile has built in this process (one per compiled frame and recompilation)."""
    from torch._dynamo.utils import counters  # imported here: heavy, and loaded once torch.compile has run

    return int(counters["stats"]["unique_graphs"])


def is_compile_error(error: Exception) -> bool:
    """Whether `error` came from torch.compile (Dynamo or its backend, Inductor) rather than from the model."""
    # Imported here: torch._dynamo is heavy, and only loaded once torch.compile has run.
    from torch._dynamo.exc import TorchDynamoException

    return isinstance(error, TorchDynamoException)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _counted_by_the_watcher(signum: int, frame: Any) -> None:
    """The Python-level handler of STOP_SIGNALS while training: the trainer's watcher thread counts them."""


def _no_wakeup_in_a_forked_child() -> None:
    """A forked child of a training process (a data worker) keeps its own signals out of the trainer's pipe."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is \
            _counted_by_the_watcher:
        signal.set_wakeup_fd(-1)


os.register_at_fork(after_in_child=_no_wakeup_in_a_forked_child)


class Trainer:
    """Trains `cfg.model` on `cfg.data` with `cfg.train`; logs, TensorBoard events, metrics.json and
    checkpoints go into `run_dir` (rank 0 only). After `fit`: `state` (a TrainState), `data` (setup.TrainData),
    `model`, `optimizer`, `schedule`."""

    def __init__(self, cfg: Config | DictConfig, run_dir: str | Path) -> None:
        self.cfg: DictConfig = typed_config(cfg)  # typed, the model by its arch: checks keys
        self.train_cfg = self.cfg.train
        check_values(self.cfg)  # every section's choices and ranges, before anything is read or written
        check_train_mix(self.cfg.data)
        check_train_config(self.train_cfg)
        check_trackers(self.train_cfg.trackers)
        if self.train_cfg.compile and not model_class(self.cfg.model.arch).compiles:
            raise NMTError(f"train.compile=true does not suit model.arch={self.cfg.model.arch}: its decoder steps "
                           f"through the target in a Python loop, which torch.compile traces again for every target "
                           f"length; train it with train.compile=false")
        self.run_dir = Path(run_dir).resolve()
        self.state = TrainState()
        self.bad_in_a_row = 0  # skipped non-finite steps in a row (TrainState.bad_steps counts them all)
        self.stop_reason: str | None = None
        self._signal: int | None = None
        self._old_handlers: dict[int, Any] = {}
        self._signal_watch: tuple[int, int, threading.Thread, int] | None = None  # pipe fds, thread, old wakeup fd
        self._parent = os.getppid()  # a rank's launcher (see nmt.training.distributed.stop_with_launcher)
        self.dist = dist.DistInfo()
        self.log = RunLogger(None, enabled=False)  # replaced in _setup, once the run dir is known
        self._run_lock: Any = None  # rank 0's lock on run_dir/.lock while fit() runs
        self.ema: WeightAverage | None = None  # train.ema_decay > 0: the moving average of the weights
        self.compile_fell_back = False  # torch.compile failed and training went on eagerly
        self._graphs_before = compiled_graphs() if self.train_cfg.compile else 0  # the process's, before this run

    # Set-up ------------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        """Open the run, then take what `prepare` builds (see the module doc)."""
        train_cfg = self.train_cfg
        set_threads(train_cfg.cpu_threads)
        if train_cfg.deterministic:
            use_deterministic_algorithms()
        self.dist = dist.init_distributed(pick_device(train_cfg.device), train_cfg.dist_timeout_minutes)
        self.device = dist.rank_device(pick_device(train_cfg.device), self.dist)
        # Every rank follows rank 0's directory (Hydra may have timestamped each rank differently).
        self.run_dir = Path(dist.broadcast_object(str(self.run_dir), self.dist))
        self._run_lock = lock_for_all_ranks(self.run_dir, self.dist)
        resume_from = resume_path(str(train_cfg.resume), self.run_dir)
        resume = Checkpoint.load(resume_from) if resume_from else None
        if resume is not None:  # refused before anything in the run directory is written (log, events, record)
            assert resume_from is not None
            own = train_cfg.init_from is None  # else the model config and tokenizer come from the checkpoint
            check_resumable(resume, resume_from, self.cfg.model if own else None,
                            how_to_continue=how_to_continue(self.run_dir), data_cfg=self.cfg.data if own else None,
                            world_size=self.dist.world_size)
        purge = resume.step + 1 if resume else None  # drop events logged after the checkpoint
        # Nothing is written into the run directory before the corpus is prepared (train.log's lines are held, no
        # events, no record): a resume is checked once more against it (input files that changed), and a run that
        # cannot start leaves no trace.
        trackers = make_trackers(train_cfg.trackers, self.run_dir, train_cfg.mlflow_experiment or self.cfg.data.name,
                                 OmegaConf.to_container(self.cfg, resolve=True))
        self.log = RunLogger(self.run_dir, enabled=self.dist.is_main, purge_step=purge, hold_files=True,
                             trackers=trackers)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.autocast_enabled = bool(train_cfg.amp) and self.device.type == "cuda"
        ranks = f" x {self.dist.world_size} ranks ({self.dist.backend})" if self.dist.backend else ""
        self.log.info(f"run dir: {self.run_dir}")
        threads = f", {torch.get_num_threads()} CPU threads" if self.device.type == "cpu" else ""
        self.log.info(f"device: {self.device}{ranks}{threads}")
        prepared = prepare(self.cfg, self.dist, self.device, self.log, resume, resume_from)
        if self.dist.is_main:
            save_run_record(self.run_dir, self.cfg)
        self.log.open_files()
        self.ema = WeightAverage(prepared.model, train_cfg.ema_decay) if train_cfg.ema_decay > 0 else None
        if self.ema is not None and resume is not None and resume.ema is not None:
            self.ema.load_state_dict(resume.ema)
        del resume  # its weights and optimizer state are in the model and optimizer now
        self.data, self.model = prepared.data, prepared.model
        self.state = replace(prepared.state, world_size=self.dist.world_size, accum_steps=train_cfg.accum_steps)
        self.optimizer, self.schedule = prepared.optimizer, prepared.schedule
        self.train_model: Any = self.model
        self.ddp: Any = None
        if self.dist.enabled:
            # No device_ids: the model sits on one device, the batches are moved there already, and with device_ids
            # DDP would also move the CPU src_lens to the GPU, for the RNN encoder to copy back (a host sync).
            self.train_model = self.ddp = DistributedDataParallel(self.model)  # waits for every rank
            self.log.info(f"all {self.dist.world_size} ranks set up")
        self.eager_model = self.train_model  # what _forward falls back to when compilation fails
        if train_cfg.compile:
            self.train_model = compile_dynamic(self.train_model)
        self._write_metrics()

    # Checkpoints and metrics -------------------------------------------------------------------------------
    def _save(self, names: list[str]) -> None:
        if names and self.dist.is_main:
            checkpoint = Checkpoint.of_run(self.cfg, self.model, self.data.tokenizer, self.optimizer, self.schedule,
                                           self.state, None if self.ema is None else self.ema.state_dict())
            # step files without optimizer and schedule (train.save_weights_only): weights to evaluate or average
            light = [n for n in names if n.startswith("step-")] if self.train_cfg.save_weights_only else []
            try:
                save_under(self.run_dir, [n for n in names if n not in light], checkpoint, self.train_cfg.keep_last)
                save_under(self.run_dir, light, replace(checkpoint, optimizer=None, scheduler=None, ema=None),
                           self.train_cfg.keep_last)
            except NMTError as e:  # each file is replaced whole or not at all: what was saved before is intact
                raise NMTError(f"{e}; training stopped at step {self.state.step}, the checkpoints already in "
                               f"{self.run_dir} are intact") from None

    def _write_metrics(self, summary: FitSummary | None = None, ema: dict[str, float] | None = None) -> None:
        if not self.dist.is_main:
            return
        data = {"num_parameters": self.model.num_parameters(), "arch": self.cfg.model.arch} | self.state.metrics()
        if self.train_cfg.compile:
            data["compile"] = {"fell_back": self.compile_fell_back, "graphs": compiled_graphs() - self._graphs_before}
        if summary is not None:
            data |= {"stop_reason": summary.stop_reason, "tokens_per_sec": summary.tokens_per_sec,
                     "peak_memory": peak_memory(self.device)}
        if ema is not None:
            data["ema"] = ema
        write_text(self.run_dir / "metrics.json", json.dumps(data, indent=2) + "\n")

    # The loop ----------------------------------------------------------------------------------------------
    def fit(self) -> FitSummary:
        """Train until a budget, early stopping or a signal stops it; returns a summary of the run.

        On an error the process group is aborted, not destroyed, and the error propagates (a non-zero exit), so
        a failing rank never leaves the others waiting for it longer than train.dist_timeout_minutes. Running out
        of device memory is an NMTError that says what to lower."""
        failed = True
        try:
            self._setup()
            self._install_signal_handlers()
            self.stop_reason = self._loop()
            summary = self._finish()
            failed = False
            return summary
        except torch.OutOfMemoryError as e:
            raise self._out_of_memory(e) from None
        finally:
            self._restore_signal_handlers()
            self.release(failed)

    def _out_of_memory(self, error: torch.OutOfMemoryError) -> NMTError:
        """The one line for an out-of-memory error: what ran out, and the settings that lower the peak."""
        what = str(error).splitlines()[0] if str(error) else "out of memory"
        return NMTError(
            f"out of memory on {getattr(self, 'device', 'the device')} at step {self.state.step} ({what}); lower "
            f"train.batch_tokens (now {self.train_cfg.batch_tokens}) for training, or decode.batch_size (now "
            f"{self.cfg.decode.batch_size}) if it ran out while validating, then resume from "
            f"{self.run_dir / 'last.pt'}"
        )

    def release(self, failed: bool = False) -> None:
        """Close the run's log, free its run-directory lock and leave the process group (what `fit` does at its
        end; for a trainer that was only set up, e.g. to inspect what a resume restores)."""
        self.log.close(failed)
        if self._run_lock is not None:
            self._run_lock.release()
            self._run_lock = None
        dist.cleanup(self.dist, failed)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.autocast_enabled:
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _forward(self, batch: Any) -> Tensor:
        """Teacher-forced logits (B, T, V) of the training model. torch.compile compiles at a call; when that
        fails, one warning and the eager model from then on (the batch is run again eagerly)."""
        try:
            return self.train_model(batch.src, batch.src_lens, batch.tgt_in)
        except Exception as e:
            if not self._falls_back(e):
                raise
        return self.train_model(batch.src, batch.src_lens, batch.tgt_in)

    def _falls_back(self, error: Exception) -> bool:
        """For a torch.compile failure of the compiled model (forward or backward): one warning, and the eager
        model from then on; False for any other error."""
        if self.train_model is self.eager_model or not is_compile_error(error):
            return False
        reason = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        self.log.info(f"warning: torch.compile failed, training without it (train.compile=false): {reason}")
        self.train_model = self.eager_model
        self.compile_fell_back = True
        return True

    def _train_step(self, group: list[Any], time_up: bool, used: float) -> StepStats:
        """Forward/backward over the accumulated batches of `group`, then an update unless the loss or the
        gradient norm is non-finite. Returns the step's numbers summed over the ranks (the gradient norm is the
        same on every rank: DDP has averaged the gradients); summing the stop flags makes every rank stop after
        the same step. `used`: the share of the budget spent before this update (the schedule's cool-down).

        Loss and gradient norm stay on the device until one copy to the host at the end: the step's only sync,
        needed because a non-finite value skips the update and the host must know that before stepping."""
        train_cfg = self.train_cfg
        n_targets = sum(b.num_tgt_tokens for b in group)
        divisor = dist.loss_divisor(n_targets, self.device, self.dist)
        no_sync = None if self.ddp is None else self.ddp.no_sync  # DDP averages gradients on the last batch only
        compiled = self.train_model is not self.eager_model
        rng = torch_rng_state(self.device) if compiled else None  # a failed compiled step has drawn dropout masks
        try:
            loss_total = forward_backward(self._forward, group, divisor, train_cfg.label_smoothing, self.device,
                                          self._autocast, no_sync)
        except Exception as e:  # the compiled backward can fail too: the update is then made again, eagerly
            if not compiled or not self._falls_back(e):
                raise
            self.optimizer.zero_grad(set_to_none=True)
            set_torch_rng_state(rng, self.device)
            loss_total = forward_backward(self._forward, group, divisor, train_cfg.label_smoothing, self.device,
                                          self._autocast, no_sync)
        grad_norm = clip_gradients(self.model, train_cfg.clip_norm)  # () on the device
        padding = sum(b.padding_fraction for b in group) / len(group)
        flags = [self._signal is not None, time_up]  # read after the backward pass: stop after *this* step
        counts = host_values_to([n_targets, sum(b.num_tokens for b in group), padding, *flags], self.device)
        summed = dist.all_reduce_sum(torch.cat([loss_total.double().view(1), counts]), self.dist)
        summed = torch.cat([summed, grad_norm.detach().double().view(1)]).tolist()  # the copy to the host
        loss_sum, targets, tokens, padding, stop, late, norm = summed
        stepped = math.isfinite(loss_sum) and math.isfinite(norm)
        if stepped:
            self.schedule.set_step(self.state.step + 1, used)
            self.optimizer.step()
            if self.ema is not None:
                self.ema.update(self.model)
            self.state.step += 1
        self.optimizer.zero_grad(set_to_none=True)
        return StepStats(loss_sum, targets, tokens, padding, stop > 0, late > 0, norm, stepped, self.schedule.lr)

    def _loop(self) -> str:
        """Train step after step; returns why it stopped (the stop_reason)."""
        train_cfg, state = self.train_cfg, self.state
        epochs_done = state.epoch + state.batch_in_epoch / max(len(self.data.sampler), 1)
        progress = Progress(self.log, train_cfg, state.step, epochs_done, state.train_seconds, self.device)
        batches = batch_stream(
            self.data.sampler, self.data.src_ids, self.data.tgt_ids, state.epoch, state.batch_in_epoch,
            train_cfg.max_epochs, train_cfg.num_workers, train_cfg.seed, pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        compiling = self.train_model is not self.eager_model  # the session's first step compiles the model
        while True:
            if train_cfg.max_steps > 0 and state.step >= train_cfg.max_steps:
                return "max_steps"
            waited = time.monotonic()
            group = list(itertools.islice(batches, train_cfg.accum_steps))
            progress.meter.add_wait(time.monotonic() - waited)
            if not group:
                return "max_epochs"
            epoch, index, n_batches, _ = group[-1]
            state.train_seconds = progress.train_seconds
            time_up = train_cfg.max_minutes > 0 and state.train_seconds >= train_cfg.max_minutes * 60
            used = budget_used(train_cfg, state.step, state.epoch + state.batch_in_epoch / n_batches,
                               state.train_seconds)
            began = time.monotonic()
            stats = self._train_step([g[3] for g in group], time_up, used)
            if compiling:
                compiling = False
                self._count_compile(time.monotonic() - began, progress)
            state.epoch, state.batch_in_epoch = (epoch, index + 1) if index + 1 < n_batches else (epoch + 1, 0)
            if isinstance(self.data.sampler, MixedBatchSampler):  # pairs per corpus, saved with the data position
                for e, i, _, _ in group:
                    self.data.sampler.add_pairs(state.mix_pairs, e, i)
            self._count(stats, progress)
            progress.update(state.step, state.epoch + state.batch_in_epoch / n_batches, epoch, index, n_batches,
                            stats.lr, state.mix_pairs)
            if stats.stop:
                self.log.info(f"stopping on {signal.Signals(self._signal).name if self._signal else 'a signal'}")
                return "signal"
            seconds_before, state.train_seconds = state.train_seconds, progress.train_seconds  # this step's included
            pause = time.monotonic()
            stop_reason = self._validate_and_save(stats.stepped, seconds_before, state.train_seconds)
            progress.exclude(time.monotonic() - pause)
            if stop_reason:
                return stop_reason
            if stats.time_up:
                return "max_minutes"

    def _count_compile(self, seconds: float, progress: Progress) -> None:
        """The first compiled step took `seconds`, compilation included: counted as compile time, not training time
        (nor in tokens/s, which lose that one step's compute)."""
        progress.exclude(seconds)
        self.state.compile_seconds += seconds
        self.log.info(f"torch.compile: first step {seconds:.1f}s, compilation included (compile_seconds in "
                      f"metrics.json), left out of training time and tokens/s")

    def _count(self, stats: StepStats, progress: Progress) -> None:
        """Add a step to the counters and to the progress meter; a skipped one is logged, and stops the run when
        train.max_bad_steps of them come in a row."""
        self.state.train_tokens += int(stats.tokens)
        padding = stats.padding / self.dist.world_size
        if stats.stepped:
            self.bad_in_a_row = 0
            progress.meter.add(stats.loss_sum, stats.targets, stats.tokens, padding, stats.grad_norm)
            return
        progress.meter.add_tokens(stats.tokens, padding)
        self.state.bad_steps += 1
        self.bad_in_a_row += 1
        step, max_bad = self.state.step, self.train_cfg.max_bad_steps
        self.log.info(
            f"skipped an update after step {step}: non-finite loss ({stats.loss_sum:.4g}) or gradient norm "
            f"({stats.grad_norm:.4g}); {self.bad_in_a_row} in a row, {self.state.bad_steps} in total"
        )
        if self.bad_in_a_row >= max_bad:
            raise NMTError(
                f"training diverged: {self.bad_in_a_row} non-finite steps in a row after step {step} "
                f"(train.max_bad_steps={max_bad}); lower train.lr or raise train.warmup_steps, "
                f"then resume from {self.run_dir / 'last.pt'}"
            )

    def _validate_and_save(self, stepped: bool, seconds_before: float, seconds_after: float) -> str | None:
        """Validation and checkpoints due after an applied update, which took the training time from
        `seconds_before` to `seconds_after`; "early_stopping" when patience ran out."""
        train_cfg, step = self.train_cfg, self.state.step
        names: list[str] = []
        stop_reason = None
        every, minutes = train_cfg.eval_every, train_cfg.eval_every_minutes
        eval_due = (due(every, minutes, step, seconds_before, seconds_after)
                    or (every == 0 and minutes == 0 and self.state.batch_in_epoch == 0))
        if stepped and eval_due:
            names += self._validate()
            if train_cfg.patience > 0 and self.state.bad_validations >= train_cfg.patience:
                stop_reason = "early_stopping"
        if stepped and due(train_cfg.save_every, train_cfg.save_every_minutes, step, seconds_before, seconds_after):
            names += ["last.pt"] + ([f"step-{step}.pt"] if train_cfg.keep_last > 0 else [])
        self._save(names)
        return stop_reason

    def _valid_result(self, attention_samples: int) -> dict[str, float]:
        """The model's loss and metrics on valid (rank 0 decodes, the others wait for its numbers)."""
        result = None
        if self.dist.is_main:
            decode_cfg = DecodeConfig(**OmegaConf.to_container(self.cfg.decode, resolve=True))
            decode_cfg.beam, decode_cfg.nbest = self.train_cfg.eval_beam, 1  # at least 1 (check_train_config)
            result = validate(
                self.model, self.data.valid, self.data.tokenizer, decode_cfg, self.device, self._autocast(), self.log,
                self.state.step, attention_samples,
            )  # fmt: skip
        return dist.broadcast_object(result, self.dist)

    def _validate(self) -> list[str]:
        """Validate; returns ["best.pt"] when BLEU improved."""
        state = self.state
        result = self._valid_result(self.train_cfg.attention_samples)
        state.last_validated_step = state.step
        self.schedule.on_validation(result["bleu"])
        improved = state.best_bleu is None or result["bleu"] > state.best_bleu
        if improved:
            state.best_bleu, state.best_step, state.bad_validations = result["bleu"], state.step, 0
        else:
            state.bad_validations += 1
        result |= {"step": state.step, "epoch": state.epoch, "lr": self.schedule.lr}
        state.history.append(result)
        scalars = {tag: result[key] for key, tag in METRIC_TAGS.items() if key in result}
        scalars |= {"valid/best_bleu": state.best_bleu, "valid/seconds": result["valid_seconds"]}
        self.log.scalars(scalars, state.step)
        self.log.flush()
        self.log.info(
            f"valid step {state.step}: loss {result['valid_loss']:.3f} | ppl {result['valid_ppl']:.2f} | "
            f"{metrics_text(result)} | best {state.best_bleu:.2f} "
            f"(step {state.best_step}) | {result['valid_seconds']:.1f}s"
        )
        self._write_metrics()
        return ["best.pt"] if improved else []

    def _finish(self) -> FitSummary:
        state = self.state
        names = []
        if self.stop_reason != "signal" and state.step > 0 and state.step != state.last_validated_step:
            names += self._validate()
        self._save(names + ["last.pt"])
        ema = self._save_average() if self.ema is not None and self.stop_reason != "signal" else None
        summary = FitSummary.of(state, self.stop_reason)
        self._write_metrics(summary, ema)
        if state.history and self.stop_reason != "signal":
            last = state.history[-1]
            final = {k: float(last[k]) for k in METRIC_TAGS if k in last}
            final["best_bleu"] = float(state.best_bleu or 0.0)
            self.log.hparams(OmegaConf.to_container(self.cfg, resolve=True), final, state.step)
        best = ("no validation yet" if state.best_bleu is None
                else f"best valid BLEU {state.best_bleu:.2f} at step {state.best_step}")
        self.log.info(f"done ({self.stop_reason}): step {state.step}, {best}, "
                      f"{format_duration(state.train_seconds)} of training; run dir {self.run_dir}")
        return summary

    def _save_average(self) -> dict[str, float]:
        """Validate the moving average of the weights and save it as ema.pt (weights only: it continues no run);
        returns its valid numbers for metrics.json."""
        assert self.ema is not None
        with self.ema.applied(self.model):
            result = self._valid_result(attention_samples=0)
            if self.dist.is_main:
                checkpoint = Checkpoint.of_run(self.cfg, self.model, self.data.tokenizer, self.optimizer, None,
                                               self.state)
                replace(checkpoint, optimizer=None).save(self.run_dir / "ema.pt")
        best = "-" if self.state.best_bleu is None else f"{self.state.best_bleu:.2f} at step {self.state.best_step}"
        self.log.info(f"moving average of the weights (train.ema_decay={self.ema.decay}): valid "
                      f"{metrics_text(result)} | loss {result['valid_loss']:.3f}; the raw weights' best BLEU {best}; "
                      f"saved as {self.run_dir / 'ema.pt'}")
        return {"step": self.state.step, "decay": self.ema.decay} | {k: float(v) for k, v in result.items()}

    # Signals -----------------------------------------------------------------------------------------------
    # SIGINT / SIGTERM: the first asks for a stop after the current step (last.pt is written), a second ends the
    # process at once (two sent at the same instant reach the process as one). They are counted on a thread that
    # CPython wakes through `signal.set_wakeup_fd` the moment one arrives: a Python handler runs only once the main
    # thread is back in the interpreter, and a rank may wait in a collective for minutes while rank 0 validates.
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        for sig in STOP_SIGNALS:
            self._old_handlers[sig] = signal.signal(sig, _counted_by_the_watcher)
        old_wakeup_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        watcher = threading.Thread(target=self._watch_signals, args=(read_fd,), name="nmt-signals", daemon=True)
        watcher.start()
        self._signal_watch = (read_fd, write_fd, watcher, old_wakeup_fd)

    def _watch_signals(self, read_fd: int) -> None:
        while data := os.read(read_fd, 16):  # one byte per signal; 0 ends the watch
            for signum in data:
                if signum == 0:
                    return
                if signum in STOP_SIGNALS:
                    self._on_signal(signum, None)

    def _on_signal(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._signal is None:
            self._signal = signum  # acted on after the current step
            self.log.write_now(f"{name}: stopping after this step and saving last.pt (another {name} exits at once)")
            return
        if os.getppid() != self._parent:  # the launcher died: the kernel may send its SIGTERM more than once
            return
        try:
            self.log.write_now(f"second {name}: exiting now")
            remove_partial_writes()  # a checkpoint being written keeps its previous version
        finally:
            os._exit(128 + signum)  # 130 for SIGINT, 143 for SIGTERM, as a shell reports them

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
        if self._signal_watch is not None:
            read_fd, write_fd, watcher, old_wakeup_fd = self._signal_watch
            signal.set_wakeup_fd(old_wakeup_fd)
            os.write(write_fd, b"\0")  # not closed first: forked data workers hold copies of the write end
            watcher.join()
            os.close(write_fd)
            os.close(read_fd)
            self._signal_watch = None

