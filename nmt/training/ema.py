"""An exponential moving average of the weights (`train.ema_decay`): after every applied update,
ema = decay * ema + (1 - decay) * weights, kept in fp32 beside the model. The averaged weights usually sit in a
flatter, better part of a noisy plateau than the weights at the moment the budget ends; the run validates them
at its end and saves them as ema.pt, a checkpoint like best.pt, so they are chosen on valid only like anything
else. The average is part of last.pt, so a resume continues it exactly.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from nmt.runtime import StateDict


class WeightAverage:
    """The moving average of a model's floating-point state (parameters and buffers), by name."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"an average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.shadow: dict[str, Tensor] = {name: value.detach().float().clone()
                                          for name, value in model.state_dict().items() if value.is_floating_point()}

    def _live(self, model: torch.nn.Module) -> list[Tensor]:
        state = model.state_dict()
        return [state[name].detach() for name in self.shadow]

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        """Move the average towards the model's weights (one fused operation over all tensors)."""
        live = [t.float() for t in self._live(model)]
        torch._foreach_lerp_(list(self.shadow.values()), live, 1.0 - self.decay)

    @contextlib.contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[None]:
        """The model holds the averaged weights inside the block, its own again after it."""
        saved = {name: t.clone() for name, t in zip(self.shadow, self._live(model), strict=True)}
        model.load_state_dict(self.shadow, strict=False)
        try:
            yield
        finally:
            model.load_state_dict(saved, strict=False)

    def state_dict(self) -> StateDict:
        return {"decay": self.decay, "shadow": self.shadow}

    def load_state_dict(self, state: StateDict) -> None:
        if set(state["shadow"]) != set(self.shadow):
            raise ValueError("the saved average holds other tensors than this model")
        self.decay = float(state["decay"])
        self.shadow = {name: t.float().to(self.shadow[name].device) for name, t in state["shadow"].items()}
