"""The training loop's state, as one object: what it keeps across steps (`TrainState`, saved whole in every
checkpoint), what one step reports (`StepStats`) and what a finished run reports (`FitSummary`).

    state = TrainState()                        # a new run: step 0, epoch 0, no best score yet
    state.load_state_dict(saved)                # resuming: what `state.state_dict()` returned
    metrics = state.metrics()                   # the same, less the RNG states: what metrics.json shows
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from nmt.errors import NMTError
from nmt.runtime import StateDict


@dataclass
class TrainState:
    """Everything the loop carries from one step to the next besides weights, optimizer and schedule; a checkpoint
    saves it whole, so a run resumed from it continues where it stopped."""

    step: int = 0  # optimizer updates applied
    epoch: int = 0  # data position: the epoch (0-based) of the next batch ...
    batch_in_epoch: int = 0  # ... and its index in that epoch's batch list (of each rank's own list) ...
    world_size: int | None = None  # ... so it holds for this many ranks (None: saved before it was recorded)
    accum_steps: int | None = None  # batches per update when it was saved (a record: the data position is in batches)
    best_bleu: float | None = None  # the best valid BLEU so far ...
    best_step: int = 0  # ... and the step that reached it
    bad_validations: int = 0  # validations since the last new best BLEU (train.patience counts them)
    bad_steps: int = 0  # updates skipped for a non-finite loss or gradient norm, in total
    train_seconds: float = 0.0  # training time summed over every session of this run
    # torch.compile: seconds of each session's first compiled step (compilation and that one step), summed over the
    # sessions; left out of train_seconds, so out of train.max_minutes and tokens/s
    compile_seconds: float = 0.0
    train_tokens: int = 0  # src + tgt tokens consumed, summed over the ranks
    mix_pairs: dict[str, int] = field(default_factory=dict)  # data.train_mix: pairs consumed per corpus, every rank's
    last_validated_step: int = -1
    history: list[dict[str, float]] = field(default_factory=list)  # one entry per validation
    # In a checkpoint: the Python, NumPy and torch RNG states when it was taken (nmt.runtime.rng_state), restored
    # on resume; None in a running loop (the generators themselves hold the state).
    rng: StateDict | None = None

    def state_dict(self) -> StateDict:
        """Every field by name, as plain values (loadable with weights_only=True). Not copied: save it at once."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def load_state_dict(self, state: StateDict) -> None:
        """Take the fields of `state` (what `state_dict` returned); a field it lacks (saved before that field was
        added) keeps its default."""
        names = {f.name for f in fields(self)}
        unknown = sorted(set(state) - names)
        if unknown:
            raise NMTError(f"train state entries this nmt does not know: {', '.join(unknown)}")
        for name, value in state.items():
            setattr(self, name, value)

    def metrics(self) -> dict[str, Any]:
        """The state for metrics.json: every field but the RNG states."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "rng"}


@dataclass
class FitSummary:
    """What `Trainer.fit` returns: why and where the run stopped, and its best valid BLEU."""

    stop_reason: str  # max_steps | max_epochs | max_minutes | early_stopping | signal
    step: int
    epoch: int
    best_bleu: float | None
    best_step: int
    bad_steps: int
    train_seconds: float
    tokens_per_sec: float

    @classmethod
    def of(cls, state: TrainState, stop_reason: str) -> FitSummary:
        return cls(stop_reason=stop_reason, step=state.step, epoch=state.epoch, best_bleu=state.best_bleu,
                   best_step=state.best_step, bad_steps=state.bad_steps, train_seconds=state.train_seconds,
                   tokens_per_sec=state.train_tokens / max(state.train_seconds, 1e-9))


class StepStats(NamedTuple):
    """One training step, summed over the ranks: what the step returns and the progress line and log read."""

    loss_sum: float  # token loss summed over the step's target tokens
    targets: float  # target tokens
    tokens: float  # src + tgt tokens
    padding: float  # the batches' mean padding fraction, summed over the ranks
    stop: bool  # some rank was asked to stop (SIGINT / SIGTERM)
    time_up: bool  # some rank found train.max_minutes used up
    grad_norm: float  # before clipping
    stepped: bool  # the update was applied (loss and gradient norm finite)
    lr: float  # the learning rate of the update
