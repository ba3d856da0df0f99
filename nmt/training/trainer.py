"""The training loop behind `nmt-train`.

    trainer = Trainer(cfg, run_dir)      # cfg: nmt.config.Config (dataclass or OmegaConf), run_dir: any folder
    summary = trainer.fit()              # {"step": ..., "best_bleu": ..., "stop_reason": ...}

One optimizer update ("step") consumes `train.accum_steps` token-budget batches. Training stops at the first
budget reached (train.max_steps / max_epochs / max_minutes of training time: validation and checkpoints are
left out of it, and out of tokens/s), on early stopping (train.patience validations without a new best BLEU),
or on SIGINT/SIGTERM (the current step finishes, last.pt is written, exit 0).
Validation every `train.eval_every` steps (at each epoch end when 0) and at the end; checkpoints every
`train.save_every` steps and at the end. A non-finite loss or gradient norm skips the update;
`train.max_bad_steps` of them in a row stop the run with an error.

Exact resume: a checkpoint holds weights, optimizer, schedule, RNG states and the data position, so a run
resumed from step k reaches the same parameters at step n as a run that was never interrupted (single
process; a DDP run resumes weights, optimizer and data position, but stores only rank 0's RNG state). On the
CPU always; on CUDA only with train.deterministic=true, as some CUDA kernels (backward passes, cuBLAS
reductions) otherwise sum in a different order from run to run.
"""

from __future__ import annotations

import contextlib
import json
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from torch.nn.parallel import DistributedDataParallel

from nmt.config import Config, DecodeConfig, check_choices, typed_config
from nmt.data.batching import TokenBatchSampler, batch_stream, encode_split
from nmt.data.corpus import prepare_corpus
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NMTError
from nmt.io import acquire_lock, write_text
from nmt.models import build_model, position_limit
from nmt.runtime import (
    host_values_to,
    pick_device,
    seed_everything,
    set_rng_state,
    set_threads,
    use_deterministic_algorithms,
)
from nmt.training import distributed as dist
from nmt.training.checkpoint import (
    check_resumable,
    checkpoint_payload,
    finetune_model_config,
    init_checkpoint,
    load_checkpoint,
    load_weights,
    resume_path,
    save_under,
)
from nmt.training.run_log import Progress, RunLogger, format_duration
from nmt.training.schedules import build_schedule
from nmt.training.step import clip_gradients, compile_dynamic, forward_backward
from nmt.training.validate import ValidSet, validate

Tensor = torch.Tensor
LOCK_FILE = ".lock"  # in the run directory, held by the nmt-train writing to it


def is_compile_error(error: Exception) -> bool:
    """Whether `error` came from torch.compile (Dynamo or its backend, Inductor) rather than from the model."""
    # Imported here: torch._dynamo is heavy, and only loaded once torch.compile has run.
    from torch._dynamo.exc import TorchDynamoException

    return isinstance(error, TorchDynamoException)


def check_train_config(train_cfg: Any) -> None:
    """Fail early, naming the key, on options the loop cannot work with."""
    if train_cfg.max_steps <= 0 and train_cfg.max_epochs <= 0 and train_cfg.max_minutes <= 0:
        raise NMTError("no budget: set train.max_steps, train.max_epochs or train.max_minutes (all are 0)")
    for key in ("batch_tokens", "accum_steps", "max_bad_steps"):
        if train_cfg[key] < 1:
            raise NMTError(f"train.{key} must be at least 1, got {train_cfg[key]}")
    for key in (
        "max_steps",
        "max_epochs",
        "max_minutes",
        "eval_every",
        "save_every",
        "keep_last",
        "patience",
        "cpu_threads",
    ):
        if train_cfg[key] < 0:
            raise NMTError(f"train.{key} must not be negative, got {train_cfg[key]}")
    for key in ("warmup_steps", "plateau_patience", "min_lr", "num_workers"):
        if train_cfg[key] < 0:
            raise NMTError(f"train.{key} must not be negative, got {train_cfg[key]}")
    if train_cfg.dist_timeout_minutes <= 0:
        raise NMTError(f"train.dist_timeout_minutes must be positive, got {train_cfg.dist_timeout_minutes}")
    if not 0.0 <= train_cfg.label_smoothing <= 1.0:
        raise NMTError(f"train.label_smoothing must be in [0, 1], got {train_cfg.label_smoothing}")
    check_choices(train_cfg, "train")
    if train_cfg.init_from is not None and str(train_cfg.resume) not in ("auto", "never"):
        raise NMTError(f"train.init_from starts a new run from a checkpoint's weights and "
                       f"train.resume={train_cfg.resume} continues a run: give only one of them")
    if len(train_cfg.betas) != 2:
        raise NMTError(f"train.betas must be two numbers [beta1, beta2], got {list(train_cfg.betas)}")
    # The optimizer and the schedule judge their own settings: build both once on a dummy parameter.
    build_schedule(build_optimizer([torch.zeros(1, requires_grad=True)], train_cfg), train_cfg)


def build_optimizer(params: Any, train_cfg: Any, fused: bool | None = None) -> torch.optim.Optimizer:
    """AdamW or Adam as train.optimizer says; a value torch rejects is an NMTError naming the key."""
    optimizer_cls = torch.optim.AdamW if train_cfg.optimizer == "adamw" else torch.optim.Adam
    try:
        return optimizer_cls(params, lr=train_cfg.lr, betas=tuple(train_cfg.betas),
                             weight_decay=train_cfg.weight_decay, fused=fused)
    except ValueError as e:  # e.g. "Invalid learning rate: -1.0", "Invalid beta parameter at index 1: 1.0"
        given = {"lr": train_cfg.lr, "betas": list(train_cfg.betas), "weight_decay": train_cfg.weight_decay}
        words = {"lr": "learning rate", "betas": "beta", "weight_decay": "weight_decay"}
        named = [key for key, word in words.items() if word in str(e)] or list(given)
        raise NMTError(", ".join(f"train.{key}={given[key]}" for key in named) + f": {e}") from None


def lock_run_dir(run_dir: Path) -> Any:
    """Take run_dir/.lock (a filelock.FileLock: an OS lock, freed when the process dies); NMTError when another
    nmt-train holds it."""
    lock_file = run_dir / LOCK_FILE
    busy = f"run directory {run_dir} is in use by another nmt-train (lock file {lock_file})"
    return acquire_lock(lock_file, busy=busy)


def given_model_keys(model_cfg: Any) -> set[str]:
    """The model keys a user set: on the command line of a Hydra app (`model=<preset>` sets them all), else (a
    config built in Python) those that differ from its dataclass's defaults. Fine-tuning checks only these."""
    if not HydraConfig.initialized():
        defaults = OmegaConf.structured(OmegaConf.get_type(model_cfg))
        return {str(k) for k, v in model_cfg.items() if defaults.get(k) != v}
    keys = set()
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key == "model":
            return {str(k) for k in model_cfg.keys()}
        if key.startswith("model."):
            keys.add(key.split(".")[1])
    return keys


def truncate_valid(valid: ValidSet, limit: int, batch_tokens: int) -> tuple[ValidSet, int]:
    """`valid` with source and target ids cut to `limit` pieces (for the teacher-forced loss; decoding cuts the
    sources itself and BLEU keeps the full references), and how many sentences were cut."""
    too_long = sum(1 for s, t in zip(valid.src_ids, valid.tgt_ids, strict=True) if max(len(s), len(t)) > limit)
    if not too_long:
        return valid, 0
    src_ids = [s[:limit] for s in valid.src_ids]
    tgt_ids = [t[:limit] for t in valid.tgt_ids]
    sampler = TokenBatchSampler([len(s) for s in src_ids], [len(t) for t in tgt_ids], batch_tokens, shuffle=False)
    return ValidSet(valid.sources, valid.references, src_ids, tgt_ids, [list(b) for b in sampler]), too_long


class Trainer:
    """Trains `cfg.model` on `cfg.data` with `cfg.train`; logs, TensorBoard events, metrics.json and
    checkpoints go into `run_dir` (rank 0 only)."""

    def __init__(self, cfg: Config | DictConfig, run_dir: str | Path) -> None:
        self.cfg: DictConfig = typed_config(cfg)  # typed, the model by its arch: checks keys
        self.train_cfg = self.cfg.train
        check_train_config(self.train_cfg)
        self.run_dir = Path(run_dir).resolve()
        self.step = 0  # optimizer updates applied
        self.epoch = 0  # data position: epoch (0-based) of the next batch ...
        self.batch_in_epoch = 0  # ... and its index in that epoch's batch list
        self.best_bleu: float | None = None
        self.best_step = 0
        self.bad_validations = 0  # validations since the last new best BLEU
        self.bad_steps = 0  # skipped non-finite steps in total ...
        self.bad_in_a_row = 0  # ... and in a row
        self.train_seconds = 0.0  # summed over every session of this run
        self.train_tokens = 0
        self.history: list[dict[str, float]] = []
        self.last_validated_step = -1
        self.stop_reason: str | None = None
        self._signal: int | None = None
        self._old_handlers: dict[int, Any] = {}
        self.dist = dist.DistInfo()
        self.log = RunLogger(None, enabled=False)  # replaced in _setup, once the run dir is known
        self._run_lock: Any = None  # rank 0's lock on run_dir/.lock while fit() runs
        self._init: tuple[Path, dict[str, Any]] | None = None  # train.init_from: its path and payload

    # Set-up ------------------------------------------------------------------------------------------------
    def _setup(self) -> None:
        train_cfg = self.train_cfg
        set_threads(train_cfg.cpu_threads)
        if train_cfg.deterministic:
            use_deterministic_algorithms()
        self.dist = dist.init_distributed(pick_device(train_cfg.device), train_cfg.dist_timeout_minutes)
        self.device = dist.rank_device(pick_device(train_cfg.device), self.dist)
        # Every rank follows rank 0's directory (Hydra may have timestamped each rank differently).
        self.run_dir = Path(dist.broadcast_object(str(self.run_dir), self.dist))
        self._lock_run_dir()
        resume_from = resume_path(str(train_cfg.resume), self.run_dir)
        payload = load_checkpoint(resume_from) if resume_from else None
        purge = payload["step"] + 1 if payload else None  # drop events logged after the checkpoint
        self.log = RunLogger(self.run_dir, enabled=self.dist.is_main, purge_step=purge)
        if self.device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self.autocast_enabled = bool(train_cfg.amp) and self.device.type == "cuda"
        ranks = f" x {self.dist.world_size} ranks ({self.dist.backend})" if self.dist.backend else ""
        self.log.info(f"run dir: {self.run_dir}")
        threads = f", {torch.get_num_threads()} CPU threads" if self.device.type == "cpu" else ""
        self.log.info(f"device: {self.device}{ranks}{threads}")
        given_tokenizer = self._fine_tuning(payload, resume_from)

        if self.dist.is_main:  # rank 0 prepares (and caches) the corpus; the others then read the cache
            corpus = prepare_corpus(self.cfg.data, log=self.log.info, tokenizer=given_tokenizer)
        dist.barrier(self.dist)
        if not self.dist.is_main:
            corpus = prepare_corpus(self.cfg.data, log=lambda _: None, tokenizer=given_tokenizer)
        self.tokenizer = corpus.tokenizer
        self.src_ids, self.tgt_ids = encode_split(corpus.split("train"), self.tokenizer)
        limit = position_limit(self.cfg.model)
        if limit is not None:
            self._drop_long_train_pairs(limit)
        self.sampler = TokenBatchSampler(
            [len(s) for s in self.src_ids],  # bare lengths: the sampler adds EOS / BOS itself
            [len(t) for t in self.tgt_ids],
            train_cfg.batch_tokens,
            shuffle=True,
            seed=train_cfg.seed,
            num_replicas=self.dist.world_size,
            rank=self.dist.rank,
        )
        valid = corpus.split("valid")
        n_valid = len(valid) if train_cfg.eval_max_sentences <= 0 else min(len(valid), train_cfg.eval_max_sentences)
        self.valid = ValidSet.build(
            list(valid["src"][:n_valid]), list(valid["tgt"][:n_valid]), self.tokenizer, train_cfg.batch_tokens
        )
        if limit is not None:
            self.valid, too_long = truncate_valid(self.valid, limit, train_cfg.batch_tokens)
            if too_long:
                self.log.info(
                    f"warning: {too_long} of {len(self.valid)} valid sentences are longer than "
                    f"model.max_positions={self.cfg.model.max_positions} allows ({limit} pieces + EOS or BOS): "
                    f"cut to {limit} pieces for the valid loss and their sources for decoding (BLEU is against "
                    f"the full references)"
                )
        per_rank = " per rank" if self.dist.enabled else ""
        self.log.info(
            f"data: {len(self.src_ids)} train pairs, {len(self.sampler)} batches/epoch{per_rank}, "
            f"{len(self.valid)} valid sentences; {self.tokenizer}"
        )

        seed_everything(train_cfg.seed)
        self.model = build_model(self.cfg.model, self.tokenizer.src_vocab_size, self.tokenizer.tgt_vocab_size,
                                 self.tokenizer.joint)
        self.model.to(self.device)
        if self.dist.enabled:  # same init on every rank (DDP broadcasts it anyway), own dropout masks per rank
            torch.manual_seed(train_cfg.seed + 1000 * self.dist.rank)
        self.num_parameters = self.model.num_parameters()
        self.log.info(f"model: {self.cfg.model.arch}, {self.num_parameters:,} parameters")
        if self._init is not None:
            load_weights(self.model, self._init[1]["model"], self._init[0])
        fused = True if self.device.type == "cuda" else None
        self.optimizer = build_optimizer(self.model.parameters(), train_cfg, fused)
        self.schedule = build_schedule(self.optimizer, train_cfg)
        if payload is not None:
            self._restore(payload, resume_from)
        self.train_model: torch.nn.Module = self.model
        self.ddp: Any = None
        if self.dist.enabled:
            # No device_ids: the model sits on one device, the batches are moved there already, and with device_ids
            # DDP would also move the CPU src_lens to the GPU, for the RNN encoder to copy back (a host sync).
            self.train_model = self.ddp = DistributedDataParallel(self.model)
        self.eager_model = self.train_model  # what _forward falls back to when compilation fails
        if train_cfg.compile:
            self.train_model = compile_dynamic(self.train_model)
        self._write_metrics()

    def _lock_run_dir(self) -> None:
        """One nmt-train per run directory: rank 0 holds run_dir/.lock until the run ends (an OS lock, so a killed
        run leaves no stale lock); a second run on the same directory stops before touching anything."""
        error = None
        if self.dist.is_main:
            try:
                self._run_lock = lock_run_dir(self.run_dir)
            except NMTError as e:
                error = str(e)
        error = dist.broadcast_object(error, self.dist)  # every rank stops, not only rank 0
        if error is not None:
            raise NMTError(error)

    def _fine_tuning(self, payload: dict[str, Any] | None, resume_from: Path | None) -> Tokenizer | None:
        """train.init_from: the checkpoint's model config replaces cfg.model (set keys that differ are refused)
        and its tokenizer (returned) encodes the corpus; its weights are loaded once the model is built. Resuming
        a fine-tuning run (its last.pt) takes all of these from last.pt instead. None without init_from."""
        train_cfg = self.train_cfg
        if train_cfg.init_from is None:
            return None
        if payload is not None:  # continuing this fine-tuning run: weights and all from its last.pt
            started = payload["config"].get("train", {}).get("init_from")
            path = Path(str(train_cfg.init_from)).resolve()
            if started is None or not (Path(started) == path or Path(started).parent == path):
                raise NMTError(f"train.init_from={train_cfg.init_from}, but {resume_from} continues a run that was "
                               f"{'started from ' + started if started else 'not fine-tuned'}; use a new run "
                               f"directory (hydra.run.dir=...) for the fine-tuning run")
            source, path = payload, Path(started)
        else:
            path, source = init_checkpoint(str(train_cfg.init_from))
            self._init = (path, source)
            self.log.info(f"fine-tuning from {path} (step {source['step']} of its run): its weights, model config "
                          f"and tokenizer; a fresh optimizer, schedule and step count")
        self.cfg.model = finetune_model_config(source, path, self.cfg.model, given_model_keys(self.cfg.model))
        train_cfg.init_from = str(path)
        return Tokenizer.from_state_dict(source["tokenizer"])

    def _drop_long_train_pairs(self, limit: int) -> None:
        """Leave out training pairs the position table cannot hold (they would stop training mid-run)."""
        pairs = zip(self.src_ids, self.tgt_ids, strict=True)
        keep = [i for i, (s, t) in enumerate(pairs) if max(len(s), len(t)) <= limit]
        dropped = len(self.src_ids) - len(keep)
        if not dropped:
            return
        if not keep:
            raise NMTError(f"every train pair is longer than model.max_positions={self.cfg.model.max_positions} "
                           f"allows ({limit} pieces + EOS or BOS); raise model.max_positions")
        self.src_ids = [self.src_ids[i] for i in keep]
        self.tgt_ids = [self.tgt_ids[i] for i in keep]
        self.log.info(f"warning: {dropped} train pairs are longer than model.max_positions="
                      f"{self.cfg.model.max_positions} allows ({limit} pieces + EOS or BOS) and are left out")

    def _restore(self, payload: dict[str, Any], path: Path | None) -> None:
        check_resumable(payload, path, self.cfg.model, self.tokenizer)
        load_weights(self.model, payload["model"], path or "the checkpoint")
        self.optimizer.load_state_dict(payload["optimizer"])
        self.schedule.load_state_dict(payload["scheduler"])
        self.step, self.epoch = int(payload["step"]), int(payload["epoch"])
        self.batch_in_epoch = int(payload["batch_in_epoch"])
        self.best_bleu = payload["best_bleu"]
        for key in self._metrics_state():
            setattr(self, key, payload["metrics"][key])
        set_rng_state(payload["rng"])
        if self.dist.rank > 0:
            torch.manual_seed(self.train_cfg.seed + 1000 * self.dist.rank + self.step)
        self.log.info(f"resumed from {path}: step {self.step}, epoch {self.epoch + 1}, batch {self.batch_in_epoch}")

    # Checkpoints and metrics -------------------------------------------------------------------------------
    def _metrics_state(self) -> dict[str, Any]:
        """Loop state besides weights and optimizer; restored attribute by attribute on resume."""
        keys = ("best_step", "bad_validations", "bad_steps", "train_seconds", "train_tokens", "history")
        return {k: getattr(self, k) for k in keys} | {"last_validated_step": self.last_validated_step}

    def _payload(self) -> dict[str, Any]:
        return checkpoint_payload(self.cfg, self.model, self.tokenizer, self.optimizer, self.schedule, self.step,
                                  self.epoch, self.batch_in_epoch, self.best_bleu, self._metrics_state())

    def _save(self, names: list[str]) -> None:
        if names and self.dist.is_main:
            try:
                save_under(self.run_dir, names, self._payload(), self.train_cfg.keep_last)
            except NMTError as e:  # each file is replaced whole or not at all: what was saved before is intact
                raise NMTError(f"{e}; training stopped at step {self.step}, the checkpoints already in "
                               f"{self.run_dir} are intact") from None

    def _write_metrics(self, final: dict[str, Any] | None = None) -> None:
        if not self.dist.is_main:
            return
        data = {"num_parameters": self.num_parameters, "arch": self.cfg.model.arch, "step": self.step}
        data |= {"epoch": self.epoch, "best_bleu": self.best_bleu} | self._metrics_state() | (final or {})
        write_text(self.run_dir / "metrics.json", json.dumps(data, indent=2) + "\n")

    # The loop ----------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train until a budget, early stopping or a signal stops it; returns a summary of the run.

        On an error the process group is aborted, not destroyed, and the error propagates (a non-zero exit), so
        a failing rank never leaves the others waiting for it longer than train.dist_timeout_minutes. Running out
        of device memory is an NMTError that says what to lower."""
        failed = True
        try:
            self._setup()
            self._install_signal_handlers()
            self._loop()
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
            f"out of memory on {getattr(self, 'device', 'the device')} at step {self.step} ({what}); lower "
            f"train.batch_tokens (now {self.train_cfg.batch_tokens}) for training, or decode.batch_size (now "
            f"{self.cfg.decode.batch_size}) if it ran out while validating, then resume from "
            f"{self.run_dir / 'last.pt'}"
        )

    def release(self, failed: bool = False) -> None:
        """Close the run's log, free its run-directory lock and leave the process group (what `fit` does at its
        end; for a trainer that was only set up, e.g. to inspect what a resume restores)."""
        self.log.close()
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
            if self.train_model is self.eager_model or not is_compile_error(e):
                raise
            reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        self.log.info(f"warning: torch.compile failed, training without it (train.compile=false): {reason}")
        self.train_model = self.eager_model
        return self.train_model(batch.src, batch.src_lens, batch.tgt_in)

    def _train_step(self, group: list[Any], time_up: bool) -> tuple[list[float], float]:
        """Forward/backward over the accumulated batches of `group`, then an update unless the loss or the
        gradient norm is non-finite. Returns the rank-summed [loss sum, target tokens, tokens, padding
        fraction, stop signal seen, time up] and the gradient norm (the same on every rank: DDP has
        averaged the gradients). Summing the flags makes every rank stop after the same step.

        Loss and gradient norm stay on the device until one copy to the host at the end: the step's only sync,
        needed because a non-finite value skips the update and the host must know that before stepping."""
        train_cfg = self.train_cfg
        n_targets = sum(b.num_tgt_tokens for b in group)
        divisor = dist.loss_divisor(n_targets, self.device, self.dist)
        no_sync = None if self.ddp is None else self.ddp.no_sync  # DDP averages gradients on the last batch only
        loss_total = forward_backward(self._forward, group, divisor, train_cfg.label_smoothing, self.device,
                                      self._autocast, no_sync)
        grad_norm = clip_gradients(self.model, train_cfg.clip_norm)  # () on the device
        padding = sum(b.padding_fraction for b in group) / len(group)
        flags = [self._signal is not None, time_up]  # read after the backward pass: stop after *this* step
        counts = host_values_to([n_targets, sum(b.num_tokens for b in group), padding, *flags], self.device)
        summed = dist.all_reduce_sum(torch.cat([loss_total.double().view(1), counts]), self.dist)
        summed = torch.cat([summed, grad_norm.detach().double().view(1)]).tolist()  # the copy to the host
        grad_norm = summed.pop()
        if math.isfinite(summed[0]) and math.isfinite(grad_norm):
            self.schedule.set_step(self.step + 1)
            self.optimizer.step()
            self.step += 1
        self.optimizer.zero_grad(set_to_none=True)
        return summed, grad_norm

    def _loop(self) -> None:
        train_cfg = self.train_cfg
        epochs_done = self.epoch + self.batch_in_epoch / max(len(self.sampler), 1)
        progress = Progress(self.log, train_cfg, self.step, epochs_done, self.train_seconds)
        batches = batch_stream(
            self.sampler, self.src_ids, self.tgt_ids, self.epoch, self.batch_in_epoch, train_cfg.max_epochs,
            train_cfg.num_workers, train_cfg.seed, pin_memory=self.device.type == "cuda",
        )  # fmt: skip
        while True:
            if train_cfg.max_steps > 0 and self.step >= train_cfg.max_steps:
                self.stop_reason = "max_steps"
                return
            group = []
            for item in batches:
                group.append(item)
                if len(group) == train_cfg.accum_steps:
                    break
            if not group:
                self.stop_reason = "max_epochs"
                return
            epoch, index, n_batches, _ = group[-1]
            self.train_seconds = progress.train_seconds
            time_up = train_cfg.max_minutes > 0 and self.train_seconds >= train_cfg.max_minutes * 60
            step_before = self.step
            stats, grad_norm = self._train_step([g[3] for g in group], time_up)
            self.epoch, self.batch_in_epoch = (epoch, index + 1) if index + 1 < n_batches else (epoch + 1, 0)
            self.train_tokens += int(stats[2])
            padding = stats[3] / self.dist.world_size
            stepped = self.step > step_before
            if stepped:
                self.bad_in_a_row = 0
                progress.meter.add(stats[0], stats[1], stats[2], padding, grad_norm)
            else:
                progress.meter.add_tokens(stats[2], padding)
                self._bad_step(stats[0], grad_norm)
            epochs_done = self.epoch + self.batch_in_epoch / n_batches
            progress.update(self.step, epochs_done, epoch, index, n_batches, self.schedule.lr)

            if stats[4] > 0:
                self.stop_reason = "signal"
                self.log.info(f"stopping on {signal.Signals(self._signal).name if self._signal else 'a signal'}")
                return
            names: list[str] = []
            pause = time.monotonic()
            epoch_end = self.batch_in_epoch == 0
            every = train_cfg.eval_every
            eval_due = (every > 0 and self.step % every == 0) or (every == 0 and epoch_end)
            if stepped and eval_due:
                names += self._validate()
                if train_cfg.patience > 0 and self.bad_validations >= train_cfg.patience:
                    self.stop_reason = "early_stopping"
            if stepped and train_cfg.save_every > 0 and self.step % train_cfg.save_every == 0:
                names += ["last.pt"] + ([f"step-{self.step}.pt"] if train_cfg.keep_last > 0 else [])
            self._save(names)
            progress.exclude(time.monotonic() - pause)
            if self.stop_reason:
                return
            if stats[5] > 0:
                self.stop_reason = "max_minutes"
                return

    def _bad_step(self, loss: float, grad_norm: float) -> None:
        self.bad_steps += 1
        self.bad_in_a_row += 1
        self.log.info(
            f"skipped an update after step {self.step}: non-finite loss ({loss:.4g}) or gradient norm "
            f"({grad_norm:.4g}); {self.bad_in_a_row} in a row, {self.bad_steps} in total"
        )
        if self.bad_in_a_row >= self.train_cfg.max_bad_steps:
            raise NMTError(
                f"training diverged: {self.bad_in_a_row} non-finite steps in a row after step {self.step} "
                f"(train.max_bad_steps={self.train_cfg.max_bad_steps}); lower train.lr or raise train.warmup_steps, "
                f"then resume from {self.run_dir / 'last.pt'}"
            )

    def _validate(self) -> list[str]:
        """Validate (rank 0 decodes, the others wait); returns ["best.pt"] when BLEU improved."""
        result = None
        if self.dist.is_main:
            decode_cfg = DecodeConfig(**OmegaConf.to_container(self.cfg.decode, resolve=True))
            decode_cfg.beam, decode_cfg.nbest = max(1, self.train_cfg.eval_beam), 1
            result = validate(
                self.model, self.valid, self.tokenizer, decode_cfg, self.device, self._autocast(), self.log,
                self.step, self.train_cfg.attention_samples,
            )  # fmt: skip
        result = dist.broadcast_object(result, self.dist)
        self.last_validated_step = self.step
        self.schedule.on_validation(result["bleu"])
        improved = self.best_bleu is None or result["bleu"] > self.best_bleu
        if improved:
            self.best_bleu, self.best_step, self.bad_validations = result["bleu"], self.step, 0
        else:
            self.bad_validations += 1
        result |= {"step": self.step, "epoch": self.epoch, "lr": self.schedule.lr}
        self.history.append(result)
        tags = {"valid/loss": "valid_loss", "valid/ppl": "valid_ppl", "valid/bleu": "bleu", "valid/chrf": "chrf"}
        scalars = {tag: result[key] for tag, key in tags.items()} | {"valid/best_bleu": self.best_bleu}
        self.log.scalars(scalars, self.step)
        self.log.flush()
        self.log.info(
            f"valid step {self.step}: loss {result['valid_loss']:.3f} | ppl {result['valid_ppl']:.2f} | "
            f"BLEU {result['bleu']:.2f} | chrF {result['chrf']:.2f} | best {self.best_bleu:.2f} "
            f"(step {self.best_step}) | {result['valid_seconds']:.1f}s"
        )
        self._write_metrics()
        return ["best.pt"] if improved else []

    def _finish(self) -> dict[str, Any]:
        names = []
        if self.stop_reason != "signal" and self.step > 0 and self.step != self.last_validated_step:
            names += self._validate()
        self._save(names + ["last.pt"])
        summary = {
            "stop_reason": self.stop_reason,
            "step": self.step,
            "epoch": self.epoch,
            "best_bleu": self.best_bleu,
            "best_step": self.best_step,
            "bad_steps": self.bad_steps,
            "train_seconds": self.train_seconds,
            "tokens_per_sec": self.train_tokens / max(self.train_seconds, 1e-9),
        }
        self._write_metrics({"stop_reason": self.stop_reason, "tokens_per_sec": summary["tokens_per_sec"]})
        if self.history and self.stop_reason != "signal":
            last = self.history[-1]
            final = {k: float(last[k]) for k in ("bleu", "chrf", "valid_loss", "valid_ppl")}
            final["best_bleu"] = float(self.best_bleu or 0.0)
            self.log.hparams(OmegaConf.to_container(self.cfg, resolve=True), final, self.step)
        self.log.info(
            f"done ({self.stop_reason}): step {self.step}, best valid BLEU {self.best_bleu or 0.0:.2f} at step "
            f"{self.best_step}, {format_duration(self.train_seconds)} of training; run dir {self.run_dir}"
        )
        return summary

    # Signals -----------------------------------------------------------------------------------------------
    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self._signal is not None:  # a second Ctrl-C means "now"
            raise KeyboardInterrupt
        self._signal = signum  # acted on after the current step; printing here could re-enter stdout

    def _restore_signal_handlers(self) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()
