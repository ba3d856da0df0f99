"""Checkpoints: one `Checkpoint` object, written atomically and loaded safely, and a model rebuilt from nothing
but a checkpoint file.

    checkpoint = Checkpoint.of_run(cfg, model, tokenizer, optimizer, schedule, state)  # what the trainer saves
    checkpoint.save(path)                     # atomic: the old file or the new one, never a torn one
    checkpoint = Checkpoint.load(path)        # checked; an older layout is converted
    loaded = load_model(path, device)         # model + tokenizer + typed config, ready for inference

On disk a checkpoint is the plain dict `to_payload()` returns, saved with `torch.save`: a format marker and version,
the run's resolved config, the model's weights, the tokenizer (the SentencePiece model bytes, so `nmt-evaluate` and
`nmt-translate` need only the file), the training loop's `TrainState` whole under "train_state" (its step also at
the top, for readers that want only the weights), optimizer and schedule. Loading always uses `weights_only=True`:
a file that would run code when unpickled is refused, never executed. `from_payload` is the one place a payload is
read: version 1 files, whose loop state stood in loose entries, are converted there.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import warnings
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from nmt.config import typed_config, upgrade_model_config
from nmt.data.tokenizer import Tokenizer, tokenizer_inputs
from nmt.errors import NMTError
from nmt.io import atomic_write
from nmt.models import build_model, fit_config_to_weights
from nmt.runtime import StateDict, rng_state
from nmt.training.state import TrainState

Tensor = torch.Tensor
FORMAT = "nmt-checkpoint"
VERSION = 2  # 2: the loop's state whole under "train_state", the model config its architecture's options
# only; 1: the loop's counters as loose entries, every architecture's options (both converted at load)
READABLE_VERSIONS = (1, 2)
REQUIRED_KEYS = ("format", "version", "config", "model", "tokenizer", "step")
ENTRY_TYPES = {"config": dict, "model": dict, "tokenizer": dict, "step": int, "train_state": dict}
# Version 1 kept these TrainState fields at the top of the payload and the others under "metrics" (beside entries
# of its own, such as a test loop's "train_loss", which are dropped).
V1_TOP_LEVEL_STATE = ("step", "epoch", "batch_in_epoch", "best_bleu", "rng")


@dataclass
class Checkpoint:
    """One checkpoint of a run. `config` is the run's resolved Config as plain containers (`checkpoint_config`
    reads it typed); optimizer and scheduler are None where the checkpoint cannot be resumed (an average)."""

    config: dict[str, Any]
    model: dict[str, Tensor]  # the model's state_dict
    tokenizer: StateDict  # Tokenizer.state_dict()
    state: TrainState = field(default_factory=TrainState)
    optimizer: StateDict | None = None
    scheduler: StateDict | None = None
    num_parameters: int | None = None
    averaged_from: list[str] | None = None  # the checkpoints whose weights this one averages (nmt-average)
    ema: StateDict | None = None  # the run's moving average of the weights (train.ema_decay), to resume it

    @property
    def step(self) -> int:
        """The optimizer updates behind the weights."""
        return self.state.step

    @classmethod
    def of_run(cls, cfg: Any, model: torch.nn.Module, tokenizer: Tokenizer, optimizer: torch.optim.Optimizer,
               schedule: Any | None, state: TrainState, ema: StateDict | None = None) -> Checkpoint:
        """A checkpoint of a run as it is now: `cfg` (a Config or its OmegaConf node) resolved, the weights, the
        optimizer and `schedule` (None: none), `state` with the RNG states of this moment (not copied further:
        save it before training goes on) and the moving average of the weights (None: none)."""
        node = cfg if isinstance(cfg, DictConfig) else OmegaConf.structured(cfg)
        return cls(
            config=OmegaConf.to_container(node, resolve=True),
            model=model.state_dict(),
            tokenizer=tokenizer.state_dict(),
            state=replace(state, rng=rng_state()),
            optimizer=optimizer.state_dict(),
            scheduler=None if schedule is None else schedule.state_dict(),
            num_parameters=sum(p.numel() for p in model.parameters()),
            ema=ema,
        )

    def to_payload(self) -> StateDict:
        """The dict saved on disk (`save_checkpoint` adds the format marker and version)."""
        return {
            "config": self.config,
            "model": self.model,
            "tokenizer": self.tokenizer,
            "step": self.step,
            "train_state": self.state.state_dict(),
            "optimizer": self.optimizer,
            "scheduler": self.scheduler,
            "num_parameters": self.num_parameters,
            "averaged_from": self.averaged_from,
            "ema": self.ema,
        }

    @classmethod
    def from_payload(cls, payload: StateDict) -> Checkpoint:
        """The checkpoint in a payload as `load_checkpoint` returned it (checked), of this version or an earlier
        one; an NMTError says what does not fit."""
        state = TrainState()
        state.load_state_dict(payload["train_state"] if "train_state" in payload else _version1_state(payload))
        if state.step != payload["step"]:
            raise NMTError(f"its step ({payload['step']}) is not its train state's ({state.step})")
        return cls(
            config=payload["config"],
            model=payload["model"],
            tokenizer=payload["tokenizer"],
            state=state,
            optimizer=payload.get("optimizer"),
            scheduler=payload.get("scheduler"),
            num_parameters=payload.get("num_parameters"),
            averaged_from=payload.get("averaged_from"),
            ema=payload.get("ema"),
        )

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> Checkpoint:
        """Load and check the checkpoint at `path`; any problem is an NMTError naming the file."""
        payload = load_checkpoint(path, map_location)
        try:
            return cls.from_payload(payload)
        except NMTError as e:
            raise NMTError(f"{path} is not a readable checkpoint ({e})") from None

    def save(self, path: str | Path) -> None:
        """Write the checkpoint to `path` atomically (see `save_checkpoint`)."""
        save_checkpoint(path, self.to_payload())


def _version1_state(payload: StateDict) -> StateDict:
    """The TrainState fields of a version 1 payload (or of a bare one: only its step)."""
    names = {f.name for f in fields(TrainState)}
    loose = {key: payload[key] for key in V1_TOP_LEVEL_STATE if key in payload}
    return loose | {key: value for key, value in (payload.get("metrics") or {}).items() if key in names}


# Files: the payload dict as torch.save writes it -------------------------------------------------------------------
def save_checkpoint(path: str | Path, payload: StateDict) -> None:
    """Write `payload` to `path` atomically: a temp file in the same directory, fsync, then rename.

    A crash (even `kill -9`) at any moment leaves either the old file or the new one, never a torn one. A failed
    write (a full disk) is an NMTError naming the file, with the old file in place and no temp file left.
    Refuses to save non-finite model weights.
    """
    path = Path(path)
    bad = non_finite_tensors(payload["model"])
    if bad:
        raise NMTError(f"refusing to save {path}: non-finite values in {bad[0]}")
    payload = {"format": FORMAT, "version": VERSION, **payload}

    def write(f: Any) -> None:
        try:
            torch.save(payload, f)
        except RuntimeError as e:
            # torch's zip writer reports a failed write of the file object (a full disk) as a RuntimeError
            # raised while handling the OSError; hand on the OSError, which names the cause.
            if isinstance(e.__context__, OSError):
                raise e.__context__ from None
            raise

    atomic_write(path, write)


def non_finite_tensors(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names of floating-point tensors holding NaN or inf."""
    return [name for name, t in state_dict.items() if t.is_floating_point() and not torch.isfinite(t).all()]


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> StateDict:
    """Load and check a checkpoint's payload (`Checkpoint.load` reads it as one); any problem is an NMTError naming
    the file."""
    path = Path(path)
    if not path.is_file():
        raise NMTError(f"checkpoint not found: {path}")
    payload = _unpickle(path, map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise NMTError(f"{path} is not an nmt checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") not in READABLE_VERSIONS:
        raise NMTError(f"{path} has checkpoint version {payload.get('version')}, this nmt reads versions "
                       f"{', '.join(map(str, READABLE_VERSIONS))}")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise NMTError(f"{path} is missing checkpoint entries: {', '.join(missing)}")
    wrong = next((k for k, kind in ENTRY_TYPES.items() if k in payload and not isinstance(payload[k], kind)), None)
    if wrong:
        raise NMTError(f"{path} is not a readable checkpoint (its '{wrong}' is a {type(payload[wrong]).__name__})")
    if payload["version"] == 1 and isinstance(payload["config"].get("model"), dict):  # converted once, here
        payload["config"]["model"] = upgrade_model_config(payload["config"]["model"], str(path))
    return payload


def _unpickle(path: Path, map_location: str | torch.device) -> Any:
    """torch.load with weights_only=True. A pickle that would import code is refused as unsafe; any other failure
    (a truncated or corrupt file makes torch's unpickler raise almost any exception type) is unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns (on stderr) about the odd pickle protocol of a corrupt file
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "unsupported global" in str(e).lower():  # torch's words for a class or function it would not import
            raise NMTError(f"{path} is not a safe checkpoint: it holds objects that could run code when loaded") from e
        raise NMTError(f"{path} is not a readable checkpoint (truncated or corrupt: {type(e).__name__})") from e
    except PermissionError as e:
        raise NMTError(f"cannot read checkpoint {path}: {e.strerror}") from e
    except Exception as e:  # IndexError, KeyError, UnicodeDecodeError, RuntimeError, EOFError, ... from garbage
        raise NMTError(f"{path} is not a readable checkpoint (truncated or corrupt: {type(e).__name__})") from e


# The run's config and model --------------------------------------------------------------------------------------
def checkpoint_config(checkpoint: Checkpoint, overrides: list[str] | None = None) -> DictConfig:
    """The run's resolved Config, typed, with dotted `key=value` overrides (e.g. `model.temperature=0.5`): the one
    place a checkpoint's config is read."""
    try:
        cfg = typed_config(checkpoint.config)
    except Exception as e:  # a config this nmt does not know (unknown key, wrong type)
        raise NMTError(f"the checkpoint's config does not fit this nmt: {str(e).splitlines()[0]}") from e
    try:
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist(overrides or []))
    except Exception as e:  # omegaconf raises several types for unknown keys and wrong types
        raise NMTError(f"bad override in {overrides}: {str(e).splitlines()[0]}") from e


@dataclass
class Loaded:
    """A model rebuilt from a checkpoint, ready for inference."""

    model: torch.nn.Module
    tokenizer: Tokenizer
    cfg: DictConfig
    path: Path
    checkpoint: Checkpoint


def load_model(
    path: str | Path, device: str | torch.device = "cpu", overrides: list[str] | None = None
) -> Loaded:
    """Rebuild model + tokenizer from a checkpoint file or a model package (nmt/training/package.py), in eval mode
    on `device`."""
    from nmt.training.package import is_package, read_package  # imported here: heavy (safetensors, the hub)

    path = Path(path)
    checkpoint = Checkpoint.from_payload(read_package(path)) if is_package(path) else Checkpoint.load(path)
    cfg = checkpoint_config(checkpoint, overrides)
    tokenizer = Tokenizer.from_state_dict(checkpoint.tokenizer)
    fit_config_to_weights(cfg.model, checkpoint.model)  # e.g. an RNN checkpoint from before model.tie_embeddings worked
    model = build_model(cfg.model, tokenizer.src_vocab_size, tokenizer.tgt_vocab_size, tokenizer.joint)
    load_weights(model, checkpoint.model, path)
    model.to(device).eval()
    return Loaded(model=model, tokenizer=tokenizer, cfg=cfg, path=path, checkpoint=checkpoint)


def load_weights(model: torch.nn.Module, state: dict[str, Tensor], source: str | Path) -> None:
    """model.load_state_dict(state), with one clear line when the weights do not fit, including a checkpoint
    that holds separate tables where the model shares one (trained with another model.tie_embeddings)."""
    names_of: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names_of.setdefault(id(p), []).append(name)
    for first, *others in (names for names in names_of.values() if len(names) > 1):
        if any(first in state and n in state and not torch.equal(state[first], state[n]) for n in others):
            raise NMTError(f"{source}: the checkpoint has separate {first} and {', '.join(others)} where the model "
                           f"shares one table (it was trained with another model.tie_embeddings)")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise NMTError(f"{source}: weights do not fit the model in its config ({str(e).splitlines()[0]})") from e


HUB_PREFIX = "hf:"  # checkpoint=hf:<org>/<name>[@<revision>]: a model package on the Hugging Face hub


def average_validated_higher(run_dir: Path, than: str = "best") -> bool:
    """Whether the run's moving average of its weights (ema.pt, train.ema_decay) validated higher at the end than
    its raw weights, by its metrics.json: than their best validation (`than="best"`) or than their validation at
    the end (`than="end"`). A choice made on valid only; False for a run without an average."""
    try:
        metrics = json.loads((run_dir / "metrics.json").read_text())
        average = metrics["ema"]["bleu"]
        raw = metrics["best_bleu"] if than == "best" else metrics["history"][-1]["bleu"]
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    return raw is not None and average > raw and (run_dir / "ema.pt").is_file()


def resolve_checkpoint(entry: str | Path) -> Path:
    """A checkpoint file or a model package as given; a run directory's best weights on valid: its ema.pt where the
    moving average validated higher than every raw validation, else its best.pt (falling back to its last.pt); or
    `hf:<org>/<name>[@<revision>]`: a package on the Hugging Face hub, fetched (or taken from its cache)."""
    from nmt.training.package import fetch_package, is_package  # imported here: heavy (safetensors, the hub)

    if str(entry).startswith(HUB_PREFIX):
        repo, _, revision = str(entry)[len(HUB_PREFIX):].partition("@")
        entry = fetch_package(repo, revision or None)
    path = Path(entry)
    if is_package(path):
        return path
    if path.is_dir():
        if average_validated_higher(path):
            return path / "ema.pt"
        for name in ("best.pt", "last.pt"):
            if (path / name).is_file():
                return path / name
        raise NMTError(f"run directory {path} has no best.pt or last.pt")
    if not path.is_file():
        raise NMTError(f"checkpoint not found: {path}")
    return path


# Checkpoint files of a run -------------------------------------------------------------------------------------
def link_or_copy(src: Path, dst: Path, checkpoint: Checkpoint) -> None:
    """Make `dst` another name of the finished file `src` of `checkpoint` (atomic); write it again where links
    fail."""
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    try:
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        checkpoint.save(dst)


def save_under(run_dir: Path, names: list[str], checkpoint: Checkpoint, keep_last: int) -> None:
    """Write `checkpoint` as run_dir/names[0], link the other names to it, keep the newest `keep_last` step files."""
    if not names:
        return
    first = run_dir / names[0]
    checkpoint.save(first)
    for name in names[1:]:
        link_or_copy(first, run_dir / name, checkpoint)
    steps = sorted(run_dir.glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    for old in steps[: max(0, len(steps) - keep_last)]:
        old.unlink(missing_ok=True)


def resume_path(resume: str, run_dir: Path) -> Path | None:
    """train.resume: `auto` -> run_dir/last.pt if present, `never` -> None, else a checkpoint or run dir."""
    if resume == "never":
        return None
    if resume == "auto":
        last = run_dir / "last.pt"
        return last if last.exists() else None
    path = Path(resume)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise NMTError(f"train.resume: no checkpoint at {path}")
    return path


def check_resumable(checkpoint: Checkpoint, path: Path, model_cfg: DictConfig | None,
                    tokenizer: Tokenizer | None = None, how_to_continue: str = "",
                    data_cfg: DictConfig | None = None, world_size: int | None = None) -> None:
    """A checkpoint continues only the same model on the same vocabulary; anything else is a user error. Checked
    twice: before anything in the run directory is written, from the config alone (model_cfg and data_cfg None
    where fine-tuning takes the model and tokenizer from the checkpoint; a data config that would train another
    tokenizer is refused here), and with the tokenizer once the corpus is prepared (input files that changed).
    `how_to_continue` ends the refusal of a changed config (the run's own overrides). `world_size`: the ranks of
    this run, which must be the checkpoint's (its data position counts each rank's batches)."""
    if checkpoint.optimizer is None:
        what = "an average of checkpoints" if checkpoint.averaged_from else "a checkpoint without optimizer state"
        raise NMTError(f"cannot resume {path}: it is {what}; train.init_from starts a new run from its weights")
    saved_ranks = checkpoint.state.world_size
    if world_size is not None and saved_ranks is not None and saved_ranks != world_size:
        raise NMTError(f"cannot resume {path}: it was trained on {saved_ranks} rank(s) and this run has {world_size}; "
                       f"its data position counts each rank's batches, so resume it on {saved_ranks} rank(s) "
                       f"(torchrun --nproc_per_node={saved_ranks}), or start a new run from its weights with "
                       f"train.init_from={path}")
    if model_cfg is not None:
        # Saved as this version reads it: an option added since takes its default, as when the checkpoint is loaded.
        saved = OmegaConf.to_container(checkpoint_config(checkpoint).model, resolve=True)
        current = OmegaConf.to_container(model_cfg, resolve=True)
        diff = [f"model.{k}: {saved.get(k)!r} -> {v!r}" for k, v in current.items() if saved.get(k) != v]
        if diff:
            raise NMTError(f"cannot resume {path}: the model config changed ({'; '.join(diff)}){how_to_continue}")
    if data_cfg is not None:
        saved = tokenizer_inputs(checkpoint_config(checkpoint).data)
        diff = [f"data.{k}: {saved.get(k)!r} -> {v!r}" for k, v in tokenizer_inputs(data_cfg).items()
                if saved.get(k) != v]
        if diff:
            raise NMTError(f"cannot resume {path}: it was trained with a different tokenizer (the data config "
                           f"changed: {'; '.join(diff)}){how_to_continue}")
    if tokenizer is not None and Tokenizer.from_state_dict(checkpoint.tokenizer).sha256 != tokenizer.sha256:
        raise NMTError(f"cannot resume {path}: it was trained with a different tokenizer (its input files "
                       f"changed since)")


# Fine-tuning ---------------------------------------------------------------------------------------------------
# Model settings a fine-tuning run may change: they shape training or attention, not the weights.
FINETUNE_FREE_MODEL_KEYS = ("dropout", "temperature", "hard")


def init_checkpoint(init_from: str) -> tuple[Path, Checkpoint]:
    """train.init_from: a checkpoint file, or a run dir's best.pt (else last.pt), and the checkpoint; one line
    naming train.init_from when it is missing or not a readable checkpoint."""
    if not str(init_from).strip():
        raise NMTError("train.init_from is empty: give a checkpoint file or a run directory, or leave it out")
    try:
        path = resolve_checkpoint(init_from).resolve()
        return path, Checkpoint.load(path)
    except NMTError as e:
        raise NMTError(f"train.init_from: {e}") from None


def finetune_model_config(checkpoint: Checkpoint, path: Path, model_cfg: DictConfig, given: set[str]) -> DictConfig:
    """The model config of a run fine-tuned from `checkpoint` (the file at `path`): the checkpoint's, with the
    `given` keys (those the user set) of FINETUNE_FREE_MODEL_KEYS taken from `model_cfg`. A given key of any other
    kind whose value differs from the checkpoint's is refused: the weights fix the architecture and sizes."""
    saved = checkpoint_config(checkpoint).model
    fit_config_to_weights(saved, checkpoint.model)
    current = OmegaConf.to_container(model_cfg, resolve=True)
    differ = [k for k in current if k in given and k not in FINETUNE_FREE_MODEL_KEYS and current[k] != saved.get(k)]
    if differ:
        detail = ", ".join(f"model.{k}={current[k]!r} (checkpoint: {saved.get(k)!r})" for k in differ)
        free = ", ".join(f"model.{k}" for k in FINETUNE_FREE_MODEL_KEYS)
        raise NMTError(f"train.init_from={path}: the model config comes from the checkpoint, but {detail} "
                       f"differ; leave them out (only {free} may change when fine-tuning)")
    for key in FINETUNE_FREE_MODEL_KEYS:
        if key in given and key in current:
            if key not in saved:  # an option of the preset's architecture only
                raise NMTError(f"train.init_from={path}: model.{key} is not an option of the checkpoint's "
                               f"model.arch={saved.arch}; leave it out")
            saved[key] = current[key]
    return saved
