"""What a training run is handed before its first step, built in one place.

    prepared = prepare(cfg, dist, device, log, resume, resume_from)
    # prepared.data (tokenizer, train ids, sampler, valid set), .model, .optimizer, .schedule, .state

`prepare` reads (or first prepares and caches) the corpus, builds the model, the optimizer and the schedule, and
either restores all of them and the loop's `TrainState` from the checkpoint to resume (`resume`), or starts a new
state; with train.init_from (fine-tuning) the model config, the tokenizer and the weights come from that
checkpoint. The `Trainer` opens the run (process group, device, run-directory lock, log), calls `prepare` once and
trains what it returns. Also here: the checks and builders the trainer, the experiment runner and the tests share.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nmt.config import check_values
from nmt.data.batching import TokenArrayChain, TokenBatchSampler
from nmt.data.corpus import prepare_corpus
from nmt.data.ids import TokenArray
from nmt.data.mix import MixCorpus, MixedBatchSampler, prepare_mix
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NMTError
from nmt.io import acquire_lock
from nmt.models import build_model, position_limit
from nmt.runtime import seed_everything, set_rng_state
from nmt.training import distributed
from nmt.training.checkpoint import (
    Checkpoint,
    check_resumable,
    checkpoint_config,
    finetune_model_config,
    init_checkpoint,
    load_weights,
)
from nmt.training.distributed import DistInfo
from nmt.training.run_log import RunLogger
from nmt.training.schedules import LRSchedule, build_schedule
from nmt.training.state import TrainState
from nmt.training.validate import ValidSet

LOCK_FILE = ".lock"  # in the run directory, held by the nmt-train writing to it


@dataclass
class TrainData:
    """The prepared corpus of a run: its tokenizer, the train pairs' ids (memory-mapped from the corpus's id cache;
    with data.train_mix those of the mix's corpora end to end) with their batch sampler (this rank's share), and
    the valid set."""

    tokenizer: Tokenizer
    src_ids: TokenArray | TokenArrayChain
    tgt_ids: TokenArray | TokenArrayChain
    sampler: TokenBatchSampler | MixedBatchSampler
    valid: ValidSet


@dataclass
class Prepared:
    """What `prepare` hands the trainer: everything it trains, and where training stands."""

    data: TrainData
    model: torch.nn.Module  # a Seq2Seq, on the run's device
    optimizer: torch.optim.Optimizer
    schedule: LRSchedule
    state: TrainState  # the resumed checkpoint's, else a new run's


def prepare(cfg: DictConfig, dist: DistInfo, device: torch.device, log: RunLogger,
            resume: Checkpoint | None = None, resume_from: Path | None = None) -> Prepared:
    """The data, model, optimizer, schedule and state of the run of `cfg` (the typed Config node; fine-tuning sets
    its model config and train.init_from in place), restored from `resume` (read from `resume_from`) when given."""
    tokenizer, init = fine_tuning(cfg, resume, resume_from, log)
    data = prepare_data(cfg, tokenizer, dist, log)
    model = build_run_model(cfg, data.tokenizer, dist, device, log)
    if init is not None:
        load_weights(model, init[1].model, init[0])
    optimizer = build_optimizer(model.parameters(), cfg.train, fused=True if device.type == "cuda" else None)
    schedule = build_schedule(optimizer, cfg.train)
    state = TrainState()
    if resume is not None:
        assert resume_from is not None
        check_resumable(resume, resume_from, None, data.tokenizer)  # the model config was checked before any write
        load_weights(model, resume.model, resume_from)
        optimizer.load_state_dict(resume.optimizer)
        if resume.scheduler is not None:
            schedule.load_state_dict(resume.scheduler)
        state = restore_state(resume.state, cfg.train.seed, dist)
        log.info(f"resumed from {resume_from}: step {state.step}, epoch {state.epoch + 1}, "
                 f"batch {state.batch_in_epoch}")
    return Prepared(data, model, optimizer, schedule, state)


def restore_state(saved: TrainState, seed: int, dist: DistInfo) -> TrainState:
    """The loop state to continue from `saved`, with the RNG states it holds restored (rank 0's: the other ranks
    of a DDP run draw from a seed of their own and the step)."""
    if saved.rng is not None:
        set_rng_state(saved.rng)
    if dist.rank > 0:
        torch.manual_seed(seed + 1000 * dist.rank + saved.step)
    return replace(saved, rng=None)  # restored: the next checkpoint saves the RNG states of its own moment


# The parts ---------------------------------------------------------------------------------------------------------
def fine_tuning(cfg: DictConfig, resume: Checkpoint | None, resume_from: Path | None,
                log: RunLogger) -> tuple[Tokenizer | None, tuple[Path, Checkpoint] | None]:
    """train.init_from: the checkpoint's model config replaces cfg.model (set keys that differ are refused) and its
    tokenizer (returned) encodes the corpus; its path and checkpoint are returned for its weights, to be loaded once
    the model is built. Resuming a fine-tuning run (its last.pt) takes all of these from the checkpoint resumed
    instead (no weights returned). (None, None) without init_from."""
    train_cfg = cfg.train
    if train_cfg.init_from is None:
        return None, None
    init = None
    if resume is not None:  # continuing this fine-tuning run: weights and all from its last.pt
        started = checkpoint_config(resume).train.init_from
        path = Path(str(train_cfg.init_from)).resolve()
        if started is None or not (Path(started) == path or Path(started).parent == path):
            raise NMTError(f"train.init_from={train_cfg.init_from}, but {resume_from} continues a run that was "
                           f"{'started from ' + started if started else 'not fine-tuned'}; use a new run "
                           f"directory (hydra.run.dir=...) for the fine-tuning run")
        source, path = resume, Path(started)
    else:
        path, source = init = init_checkpoint(str(train_cfg.init_from))
        log.info(f"fine-tuning from {path} (step {source.step} of its run): its weights, model config "
                 f"and tokenizer; a fresh optimizer, schedule and step count")
    cfg.model = finetune_model_config(source, path, cfg.model, given_model_keys(cfg.model))
    train_cfg.init_from = str(path)
    return Tokenizer.from_state_dict(source.tokenizer), init


def prepare_data(cfg: DictConfig, tokenizer: Tokenizer | None, dist: DistInfo, log: RunLogger) -> TrainData:
    """Rank 0 prepares (and caches) the corpus and those of data.train_mix, the other ranks then read the caches;
    the train pairs' ids are mapped from the id caches (those the model's position table cannot hold left out) and
    batched for this rank."""
    if dist.is_main:
        corpus = prepare_corpus(cfg.data, log=log.info, tokenizer=tokenizer)
        mix = prepare_mix(cfg.data, corpus, log.info)
    distributed.barrier(dist)
    if not dist.is_main:
        corpus = prepare_corpus(cfg.data, log=lambda _: None, tokenizer=tokenizer)
        mix = prepare_mix(cfg.data, corpus, lambda _: None)
    tokenizer = corpus.tokenizer
    train = corpus.encoded("train")
    src_ids, tgt_ids = train.src, train.tgt
    limit = position_limit(cfg.model)
    if limit is not None:
        for c in mix:
            c.src, c.tgt = drop_long_pairs(c.src, c.tgt, limit, cfg.model.max_positions, log, of=f" of {c.name}")
        if not mix:
            src_ids, tgt_ids = drop_long_pairs(src_ids, tgt_ids, limit, cfg.model.max_positions, log)
    train_cfg = cfg.train
    if mix:
        src_ids, tgt_ids = TokenArrayChain([c.src for c in mix]), TokenArrayChain([c.tgt for c in mix])
        sampler = mixed_sampler(mix, train_cfg, dist, log)
    else:
        sampler = TokenBatchSampler(
            src_ids.lengths,  # bare lengths: the sampler adds EOS / BOS itself
            tgt_ids.lengths,
            train_cfg.batch_tokens,
            shuffle=True,
            seed=train_cfg.seed,
            num_replicas=dist.world_size,
            rank=dist.rank,
        )
    valid, valid_ids = corpus.split("valid"), corpus.encoded("valid")
    n_valid = len(valid) if train_cfg.eval_max_sentences <= 0 else min(len(valid), train_cfg.eval_max_sentences)
    valid_set = ValidSet.from_ids(list(valid["src"][:n_valid]), list(valid["tgt"][:n_valid]),
                                  [valid_ids.src[i].tolist() for i in range(n_valid)],
                                  [valid_ids.tgt[i].tolist() for i in range(n_valid)], train_cfg.batch_tokens)
    if limit is not None:
        valid_set, too_long = truncate_valid(valid_set, limit, train_cfg.batch_tokens)
        if too_long:
            log.info(f"warning: {too_long} of {len(valid_set)} valid sentences are longer than "
                     f"model.max_positions={cfg.model.max_positions} allows ({limit} pieces + EOS or BOS): cut to "
                     f"{limit} pieces for the valid loss and their sources for decoding (BLEU is against the full "
                     f"references)")
    per_rank = " per rank" if dist.enabled else ""
    log.info(f"data: {len(src_ids)} train pairs, {len(sampler)} batches/epoch{per_rank}, "
             f"{len(valid_set)} valid sentences; {tokenizer}")
    return TrainData(tokenizer, src_ids, tgt_ids, sampler, valid_set)


def mixed_sampler(mix: list[MixCorpus], train_cfg: Any, dist: DistInfo, log: RunLogger) -> MixedBatchSampler:
    """This rank's sampler of the corpora of data.train_mix; one log line lists them: pairs, weight, share of the
    batches, and the corpus's own epochs per epoch of the mix."""
    sampler = MixedBatchSampler([c.src.lengths for c in mix], [c.tgt.lengths for c in mix], [c.weight for c in mix],
                                train_cfg.batch_tokens, seed=train_cfg.seed, num_replicas=dist.world_size,
                                rank=dist.rank, names=[c.name for c in mix])
    parts = [f"{c.name} {len(c.src):,} pairs, weight {c.weight:g}, {share:.1%} of the batches ({own:.2f} own "
             f"epochs per epoch of the mix)"
             for c, share, own in zip(mix, sampler.shares, sampler.own_epochs(), strict=True)]
    log.info(f"train mix: {'; '.join(parts)}")
    return sampler


def drop_long_pairs(src_ids: TokenArray, tgt_ids: TokenArray, limit: int, max_positions: int,
                    log: RunLogger, of: str = "") -> tuple[TokenArray, TokenArray]:
    """The training pairs the position table can hold (longer ones would stop training mid-run), as views; `of`
    names their corpus in the lines (" of <name>", for a corpus of data.train_mix)."""
    keep = np.flatnonzero(np.maximum(src_ids.lengths, tgt_ids.lengths) <= limit)
    dropped = len(src_ids) - len(keep)
    if not dropped:
        return src_ids, tgt_ids
    if not len(keep):
        raise NMTError(f"every train pair{of} is longer than model.max_positions={max_positions} allows ({limit} "
                       f"pieces + EOS or BOS); raise model.max_positions")
    log.info(f"warning: {dropped} train pairs{of} are longer than model.max_positions={max_positions} allows ({limit} "
             f"pieces + EOS or BOS) and are left out")
    return src_ids.take(keep), tgt_ids.take(keep)


def truncate_valid(valid: ValidSet, limit: int, batch_tokens: int) -> tuple[ValidSet, int]:
    """`valid` with source and target ids cut to `limit` pieces (for the teacher-forced loss; decoding cuts the
    sources itself and BLEU keeps the full references), and how many sentences were cut."""
    too_long = sum(1 for s, t in zip(valid.src_ids, valid.tgt_ids, strict=True) if max(len(s), len(t)) > limit)
    if not too_long:
        return valid, 0
    src_ids = [s[:limit] for s in valid.src_ids]
    tgt_ids = [t[:limit] for t in valid.tgt_ids]
    return ValidSet.from_ids(valid.sources, valid.references, src_ids, tgt_ids, batch_tokens), too_long


def build_run_model(cfg: DictConfig, tokenizer: Tokenizer, dist: DistInfo, device: torch.device,
                    log: RunLogger) -> torch.nn.Module:
    """The model of cfg.model for `tokenizer`'s vocabularies, initialised from train.seed (the same on every
    rank), on `device`; then each rank seeds its own dropout masks."""
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, tokenizer.joint)
    model.to(device)
    if dist.enabled:  # same init on every rank (DDP broadcasts it anyway), own dropout masks per rank
        torch.manual_seed(cfg.train.seed + 1000 * dist.rank)
    log.info(f"model: {cfg.model.arch}, {model.num_parameters():,} parameters")
    return model


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


# Checks ------------------------------------------------------------------------------------------------------------
def check_train_config(train_cfg: Any) -> None:
    """Fail early, naming the key, on options the loop cannot work with."""
    for key in ("batch_tokens", "accum_steps", "max_bad_steps", "eval_beam"):
        if train_cfg[key] < 1:
            raise NMTError(f"train.{key} must be at least 1, got {train_cfg[key]}")
    for key in (
        "max_steps",
        "max_epochs",
        "max_minutes",
        "eval_every",
        "eval_every_minutes",
        "save_every",
        "save_every_minutes",
        "keep_last",
        "patience",
        "cpu_threads",
    ):
        if train_cfg[key] < 0:
            raise NMTError(f"train.{key} must not be negative, got {train_cfg[key]}")
    for key in ("warmup_steps", "plateau_patience", "min_lr", "num_workers"):
        if train_cfg[key] < 0:
            raise NMTError(f"train.{key} must not be negative, got {train_cfg[key]}")
    if train_cfg.max_steps == 0 and train_cfg.max_epochs == 0 and train_cfg.max_minutes == 0:
        raise NMTError("no budget: set train.max_steps, train.max_epochs or train.max_minutes (all are 0)")
    if train_cfg.dist_timeout_minutes <= 0:
        raise NMTError(f"train.dist_timeout_minutes must be positive, got {train_cfg.dist_timeout_minutes}")
    if not 0.0 <= train_cfg.label_smoothing <= 1.0:
        raise NMTError(f"train.label_smoothing must be in [0, 1], got {train_cfg.label_smoothing}")
    if not 0.0 <= train_cfg.ema_decay < 1.0:
        raise NMTError(f"train.ema_decay must be in [0, 1) (0: off), got {train_cfg.ema_decay}")
    check_values(train_cfg, "train")
    if train_cfg.init_from is not None and str(train_cfg.resume) not in ("auto", "never"):
        raise NMTError(f"train.init_from starts a new run from a checkpoint's weights and "
                       f"train.resume={train_cfg.resume} continues a run: give only one of them")
    if len(train_cfg.betas) != 2:
        raise NMTError(f"train.betas must be two numbers [beta1, beta2], got {list(train_cfg.betas)}")
    # The optimizer and the schedule judge their own settings: build both once on a dummy parameter.
    build_schedule(build_optimizer([torch.zeros(1, requires_grad=True)], train_cfg), train_cfg)


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


# The run directory -------------------------------------------------------------------------------------------------
def lock_run_dir(run_dir: Path) -> Any:
    """Take run_dir/.lock (a filelock.FileLock: an OS lock, freed when the process dies); NMTError when another
    nmt-train holds it."""
    lock_file = run_dir / LOCK_FILE
    busy = f"run directory {run_dir} is in use by another nmt-train (lock file {lock_file})"
    return acquire_lock(lock_file, busy=busy)


def lock_for_all_ranks(run_dir: Path, dist: DistInfo) -> Any:
    """One nmt-train per run directory: rank 0 takes run_dir/.lock (returned; None on the other ranks) and holds it
    until the run ends (an OS lock, so a killed run leaves no stale lock); when the directory is busy every rank
    stops with the NMTError, before touching anything."""
    lock, error = None, None
    if dist.is_main:
        try:
            lock = lock_run_dir(run_dir)
        except NMTError as e:
            error = str(e)
    error = distributed.broadcast_object(error, dist)
    if error is not None:
        raise NMTError(error)
    return lock
