"""Learning-rate schedules: inverse square root with warmup, reduce-on-plateau on valid BLEU, constant.

All three share one small class so the trainer never branches on the schedule: before update number `step`
(1-based) it calls `schedule.set_step(step, used)`, after each validation `schedule.on_validation(bleu)`. The state
is a dict of plain numbers, so it goes into a checkpoint and a resumed run continues with exactly the same rates.

A cool-down (train.cooldown = f) multiplies any of them by (1 - used) / f over the last fraction f of the budget,
`used` being the share of the budget spent before the update (`budget_used`: steps, epochs or training minutes,
whichever ends first), so the rate reaches min_lr as the budget ends: a warmup-stable-decay shape when the schedule
is constant. Minutes are training time, so validation pauses do not move it.

    inverse_sqrt:  lr * min(step / warmup, sqrt(warmup / step))     (Vaswani et al. 2017; warmup 0 acts as 1)
    plateau:       lr * scale * min(1, step / warmup), scale *= factor after `patience` validations without a
                   new best BLEU, never below min_lr
    constant:      lr * min(1, step / warmup)
"""

from __future__ import annotations

import math
from typing import Any

import torch

from nmt.config import CHOICES
from nmt.errors import NMTError
from nmt.runtime import StateDict

SCHEDULES = CHOICES["train.schedule"]


def inverse_sqrt_factor(step: int, warmup_steps: int) -> float:
    """Multiplier of the base rate at update `step` (1-based): linear warmup, then 1/sqrt decay."""
    warmup = max(warmup_steps, 1)
    step = max(step, 1)
    return min(step / warmup, math.sqrt(warmup / step))


def budget_used(train_cfg: Any, step: int, epochs: float, train_seconds: float) -> float:
    """The share of the training budget spent after `step` updates, `epochs` epochs (fractional) and
    `train_seconds` of training time: the largest over the budgets that are set (the first to end stops training)."""
    shares = [step / train_cfg.max_steps if train_cfg.max_steps > 0 else 0.0,
              epochs / train_cfg.max_epochs if train_cfg.max_epochs > 0 else 0.0,
              train_seconds / (60 * train_cfg.max_minutes) if train_cfg.max_minutes > 0 else 0.0]
    return min(max(shares), 1.0)


def due(every_steps: int, every_minutes: float, step: int, seconds_before: float, seconds_after: float) -> bool:
    """Whether a validation (or checkpoint) is due after update `step`, which took the run's training time from
    `seconds_before` to `seconds_after`: with `every_minutes` > 0 when that step crossed a multiple of it, else
    every `every_steps` updates (never when 0). Minutes are training time, so validation pauses do not move them,
    and the decision needs no state of its own: a resumed run keeps the cadence."""
    if every_minutes > 0:
        period = 60 * every_minutes
        return math.floor(seconds_after / period) > math.floor(seconds_before / period)
    return every_steps > 0 and step % every_steps == 0


def cooldown_factor(used: float, cooldown: float) -> float:
    """1 until the last `cooldown` share of the budget, then falling linearly to 0 at its end."""
    if cooldown <= 0 or used <= 1 - cooldown:
        return 1.0
    return max(0.0, (1 - used) / cooldown)


def warmup_factor(step: int, warmup_steps: int) -> float:
    """Linear warmup from lr/warmup to lr over `warmup_steps` updates, then 1."""
    if warmup_steps <= 0:
        return 1.0
    return min(1.0, max(step, 1) / warmup_steps)


class LRSchedule:
    """Sets the learning rate of every parameter group of `optimizer`.

    The plateau schedule watches valid BLEU (higher is better): a new best must beat the old one by more than
    `threshold` BLEU to count as progress.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        kind: str,
        lr: float,
        warmup_steps: int = 0,
        factor: float = 0.5,
        patience: int = 2,
        min_lr: float = 0.0,
        threshold: float = 0.01,
        cooldown: float = 0.0,
    ) -> None:
        if kind not in SCHEDULES:
            raise NMTError(f"train.schedule={kind!r} is not one of {', '.join(SCHEDULES)}")
        if lr <= 0:
            raise NMTError(f"train.lr must be positive, got {lr}")
        if kind == "plateau" and not 0 < factor < 1:
            raise NMTError(f"train.plateau_factor must be in (0, 1), got {factor}")
        if not 0 <= cooldown < 1:
            raise NMTError(f"train.cooldown must be in [0, 1), got {cooldown}")
        self.optimizer = optimizer
        self.kind = kind
        self.base_lr = lr
        self.warmup_steps = warmup_steps
        self.factor = factor
        self.patience = patience
        self.min_lr = min_lr
        self.threshold = threshold
        self.cooldown = cooldown
        # Plateau state: what a checkpoint must carry.
        self.scale = 1.0
        self.best = -math.inf
        self.bad_validations = 0
        self.step = 0
        self.used = 0.0  # the budget share of the current update (cool-down)
        self.set_step(1)

    def lr_at(self, step: int, used: float = 0.0) -> float:
        """The learning rate of update `step` (1-based), `used` of the budget spent, given the plateau scale."""
        if self.kind == "inverse_sqrt":
            lr = self.base_lr * inverse_sqrt_factor(step, self.warmup_steps)
        else:
            lr = self.base_lr * warmup_factor(step, self.warmup_steps)
            if self.kind == "plateau":
                lr = max(lr * self.scale, self.min_lr) if self.scale < 1.0 else lr
        cool = cooldown_factor(used, self.cooldown)
        return lr if cool == 1.0 else max(lr * cool, self.min_lr)

    def set_step(self, step: int, used: float | None = None) -> float:
        """Set the rate for update `step` (1-based), `used` of the budget spent before it (None: as before), and
        return it."""
        self.step = step
        self.used = self.used if used is None else used
        lr = self.lr_at(step, self.used)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def on_validation(self, bleu: float) -> bool:
        """Feed a valid BLEU score; returns True when the plateau schedule just lowered the rate."""
        if self.kind != "plateau" or not math.isfinite(bleu):
            return False
        if bleu > self.best + self.threshold:
            self.best = bleu
            self.bad_validations = 0
            return False
        self.bad_validations += 1
        if self.bad_validations <= self.patience:
            return False
        self.bad_validations = 0
        if self.base_lr * self.scale <= self.min_lr:
            return False
        self.scale *= self.factor
        self.set_step(self.step)
        return True

    def state_dict(self) -> StateDict:
        return {
            "kind": self.kind,
            "scale": self.scale,
            "best": self.best,
            "bad_validations": self.bad_validations,
            "step": self.step,
            "used": self.used,
        }

    def load_state_dict(self, state: StateDict) -> None:
        # A run may switch schedules when resumed (e.g. constant -> plateau); only plateau state carries over.
        if state.get("kind") == "plateau" and self.kind == "plateau":
            self.scale = float(state["scale"])
            self.best = float(state["best"])
            self.bad_validations = int(state["bad_validations"])
        self.set_step(int(state.get("step", 1)), float(state.get("used", 0.0)))


def build_schedule(optimizer: torch.optim.Optimizer, train_cfg: Any) -> LRSchedule:
    """The schedule named by `train.schedule`, configured from the TrainConfig fields."""
    return LRSchedule(
        optimizer,
        kind=train_cfg.schedule,
        lr=float(train_cfg.lr),
        warmup_steps=int(train_cfg.warmup_steps),
        factor=float(train_cfg.plateau_factor),
        patience=int(train_cfg.plateau_patience),
        min_lr=float(train_cfg.min_lr),
        cooldown=float(train_cfg.cooldown),
    )
