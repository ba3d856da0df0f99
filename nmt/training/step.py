"""The one training loss and the one training step, used by the trainer, the benchmarks and the probes.

    loss = sequence_loss(logits, batch.tgt_out, label_smoothing)        # summed over the target tokens
    loss_sum = forward_backward(forward, batches, divisor, ...)         # the gradients of one update
    loss_sum, grad_norm = train_step(model, optimizer, batches, ...)     # ... clipped, and the update made
    compiled = compile_dynamic(model)                                   # torch.compile for variable-size batches

Shapes: B = batch, T = target length, V = target vocabulary. A batch is an `nmt.data.batching.Batch` (or any
object with its `src`, `src_lens`, `tgt_in`, `tgt_out`, `num_tgt_tokens` and `to(device, non_blocking)`).
Nothing here copies a value to the host: losses and gradient norms stay on the device until a caller reads them.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from nmt.config import PAD_ID

Tensor = torch.Tensor
ContextFactory = Callable[[], contextlib.AbstractContextManager[Any]]


def sequence_loss(logits: Tensor, targets: Tensor, label_smoothing: float = 0.0) -> Tensor:
    """Summed token cross-entropy (0-dim, fp32) of logits (B, T, V) against targets (B, T); PAD positions are
    ignored. Divide by the number of real target tokens for the mean (exp() of the unsmoothed mean is the
    perplexity)."""
    return F.cross_entropy(
        logits.float().flatten(0, 1),
        targets.flatten(),
        ignore_index=PAD_ID,
        label_smoothing=label_smoothing,
        reduction="sum",
    )


def model_forward(model: Callable[..., Tensor]) -> Callable[[Any], Tensor]:
    """batch -> teacher-forced logits (B, T, V) of `model` (a Seq2Seq, or its compiled or DDP wrapper)."""
    return lambda batch: model(batch.src, batch.src_lens, batch.tgt_in)


def compile_dynamic(model: torch.nn.Module, backend: str = "inductor") -> Callable[..., Tensor]:
    """torch.compile for token-budget batches. Batch size and both lengths change from batch to batch, and they
    are all the forward's input dimensions (src (B, S), src_lens (B,), tgt_in (B, T)), so every input dimension is
    compiled dynamic from the first call (dynamic=True): one graph for all batch shapes, where dynamic=None would
    compile a static graph first and recompile as each dimension is seen to change. backend: "inductor" (code
    generation); "eager" only traces, with the same graphs."""
    return torch.compile(model, dynamic=True, backend=backend)


def forward_backward(
    forward: Callable[[Any], Tensor],
    batches: Sequence[Any],
    divisor: int | Tensor,
    label_smoothing: float,
    device: torch.device,
    autocast: ContextFactory = contextlib.nullcontext,
    no_sync: ContextFactory | None = None,
) -> Tensor:
    """Accumulate the gradients of sum(sequence_loss) / divisor over `batches` (the batches of one update);
    returns the summed loss (0-dim, on `device`, detached).

    forward: batch -> logits (B, T, V), run under a fresh `autocast()` context.
    no_sync: DDP's `no_sync`, entered for every batch but the last, so gradients are averaged over the ranks once.
    """
    loss_total = torch.zeros((), device=device)
    for k, batch in enumerate(batches):
        batch = batch.to(device, non_blocking=device.type == "cuda")
        last = k == len(batches) - 1
        with contextlib.nullcontext() if no_sync is None or last else no_sync():
            with autocast():
                logits = forward(batch)
            loss = sequence_loss(logits, batch.tgt_out, label_smoothing)
            (loss / divisor).backward()
        loss_total += loss.detach()
    return loss_total


def clip_gradients(model: torch.nn.Module, clip_norm: float) -> Tensor:
    """Clip the gradient norm of `model` to `clip_norm` (0: no clipping); returns the norm before (0-dim, on the
    device)."""
    return torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm if clip_norm > 0 else math.inf)


def train_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Sequence[Any],
    device: torch.device,
    label_smoothing: float,
    clip_norm: float,
    autocast: ContextFactory = contextlib.nullcontext,
    forward: Callable[[Any], Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """One update in one process: the gradients of the mean token loss over `batches`, clipped, then the optimizer
    step. The trainer's step without its checks (it also skips an update on a non-finite loss or norm, which needs
    a copy to the host). Returns the summed loss and the gradient norm, both 0-dim on the device.

    forward: batch -> logits (B, T, V); the model itself when None (pass a compiled model's here).
    """
    divisor = max(sum(b.num_tgt_tokens for b in batches), 1)
    loss = forward_backward(forward or model_forward(model), batches, divisor, label_smoothing, device, autocast)
    grad_norm = clip_gradients(model, clip_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss, grad_norm
