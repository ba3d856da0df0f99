"""The one contract every model follows, so training, search and evaluation never branch on the model type.

Shapes: B = batch, S = source length, T = target length, V = target vocabulary.

- `encode(src, src_lens) -> enc`: a dict of batch-first tensors; always holds `src_mask` (B, S), True at real
  tokens. What else it holds is the model's business.
- `init_state(enc) -> state`: the decoder state before the first step: a dict whose values are batch-first
  tensors, or lists/tuples of them (e.g. a key/value cache).
- `decode_step(tokens, state, enc) -> (logits, state, attn)`: one step; tokens (B,), logits (B, V),
  attn (B, S) attention over the source for plots (None when the model has none).
- `forward(src, src_lens, tgt_in) -> logits (B, T, V)`: teacher-forced training pass.
- `forward_attention(src, src_lens, tgt_in) -> (B, T, S)`: attention weights of a teacher-forced pass, for
  heatmaps (None when the model has none).
- `head_attention(src, src_lens, tgt_in) -> (B, heads, T, S)`: per-head attention of the last decoder layer
  for per-head plots (None when the model does not have several heads to show).
- `train_flops(src_lens, tgt_lens) -> float`: model FLOPs of a training pass (forward + backward) over a batch
  of sentences with these real lengths (B,), for model FLOP utilisation (None when the model does not count them).

Beam search reorders `enc` and `state` with `select_batch`, so both must be batch-first all the way down.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

Tensor = torch.Tensor


class Seq2Seq(nn.Module):
    """Base class of every encoder-decoder."""

    def encode(self, src: Tensor, src_lens: Tensor) -> dict[str, Any]:
        raise NotImplementedError

    def init_state(self, enc: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def decode_step(
        self, tokens: Tensor, state: dict[str, Any], enc: dict[str, Any]
    ) -> tuple[Tensor, dict[str, Any], Tensor | None]:
        raise NotImplementedError

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_attention(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor | None:
        return None

    def head_attention(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor | None:
        return None

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def train_flops(self, src_lens: Tensor, tgt_lens: Tensor) -> float | None:
        return None


def select_batch(obj: Any, index: Tensor) -> Any:
    """Pick rows `index` (1-D LongTensor) along dim 0 of every tensor in a nested dict/list/tuple."""
    if isinstance(obj, Tensor):
        return obj.index_select(0, index)
    if isinstance(obj, dict):
        return {k: select_batch(v, index) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(select_batch(v, index) for v in obj)
    return obj


def lengths_to_mask(lengths: Tensor, max_len: int) -> Tensor:
    """lengths (B,) -> mask (B, max_len), True at the first lengths[b] positions (real tokens)."""
    return torch.arange(max_len, device=lengths.device).unsqueeze(0) < lengths.unsqueeze(1)
