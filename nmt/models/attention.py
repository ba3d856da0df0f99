"""Attention of an RNN decoder over the encoder states: four scorers, temperature, hard attention, heads.

Shapes: B = batch, S = source length, h = heads, Dq = query (decoder state) size, Dk = key (encoder state)
size, d = per-head size of the scored space.

A scorer turns one decoder query per sentence into one score per source position and head:
- `dot`:        q . k                          (Luong et al. 2015)
- `scaled_dot`: q . k / sqrt(d_k)              (Vaswani et al. 2017; d_k is the per-head key size)
- `general`:    q W k                          (Luong et al. 2015)
- `additive`:   v . tanh(W_q q + W_k k)        (Bahdanau et al. 2015, "concat" in Luong et al.)
`dot` and `scaled_dot` have no parameters: the query and the key must have the same size. A bidirectional
encoder's states (Dk = 2 Dq) are used as keys with their forward and backward halves summed (Dq), the
values stay the full states. With `attention_dim` = d > 0 they instead project queries and keys to d with
bias-free W_q (Dq -> d), W_k (Dk -> d), as in multi-head attention: that varies d_k at a fixed model size.
Everything that depends only on the keys (W_k k, W k, the head split) is computed once per batch by
`Attention.prepare`, never per decoder step.

Heads: the scored space is split into h equal slices, one softmax per head; each head reads its own slice of
the encoder states (the values) and the h contexts are concatenated back to Dk. Heads add no parameters, so
1 and h heads compare at an equal parameter count.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nmt.config import CHOICES

Tensor = torch.Tensor

SCORERS = CHOICES["model.scorer"]


def split_heads(x: Tensor, heads: int) -> Tensor:
    """(B, S, h*d) -> (B, h, S, d)."""
    b, s, _ = x.shape
    return x.view(b, s, heads, -1).transpose(1, 2)


class Scale(nn.Module):
    """Multiplies the raw scores by a constant; a module of its own so probes can hook the raw q . k (its
    input) and the scaled scores (its output)."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, scores: Tensor) -> Tensor:
        return scores * self.factor if self.factor != 1.0 else scores


class DotScorer(nn.Module):
    """q . k, optionally scaled by 1/sqrt(d_k); parameter-free unless `attention_dim` projects q and k."""

    def __init__(self, query_dim: int, key_dim: int, heads: int = 1, scaled: bool = False,
                 attention_dim: int = 0) -> None:
        super().__init__()
        self.heads = heads
        if attention_dim > 0:
            self.query_proj: nn.Module = nn.Linear(query_dim, attention_dim, bias=False)
            self.key_proj: nn.Module | None = nn.Linear(key_dim, attention_dim, bias=False)
            self.sum_directions = False
            d = attention_dim
        else:
            if key_dim not in (query_dim, 2 * query_dim):
                raise ValueError(f"dot attention without parameters needs keys of the query size {query_dim} (or "
                                 f"a bidirectional encoder's {2 * query_dim}), got {key_dim}: set attention_dim")
            self.query_proj, self.key_proj = nn.Identity(), None
            self.sum_directions = key_dim == 2 * query_dim
            d = query_dim
        self.d_k = d // heads
        self.scale = Scale(1.0 / math.sqrt(self.d_k) if scaled else 1.0)

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """keys (B, S, Dk) -> (B, h, S, d_k): projected, or the two directions summed, or as they are."""
        if self.key_proj is not None:
            keys = self.key_proj(keys)
        elif self.sum_directions:
            forward, backward = keys.chunk(2, dim=-1)
            keys = forward + backward
        return split_heads(keys, self.heads)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (B, Dq), prepared keys (B, h, S, d_k) -> scores (B, h, S)."""
        q = self.query_proj(query).view(query.size(0), self.heads, -1, 1)  # (B, h, d_k, 1)
        return self.scale(torch.matmul(keys, q).squeeze(-1))


class ScaledDotScorer(DotScorer):
    """q . k / sqrt(d_k), d_k = the per-head size of the scored space."""

    def __init__(self, query_dim: int, key_dim: int, heads: int = 1, attention_dim: int = 0) -> None:
        super().__init__(query_dim, key_dim, heads, scaled=True, attention_dim=attention_dim)


class GeneralScorer(nn.Module):
    """q W k with W (Dq x Dk); W k is computed once per batch, so a step is a dot product with the query."""

    def __init__(self, query_dim: int, key_dim: int, heads: int = 1) -> None:
        super().__init__()
        self.heads = heads
        self.key_proj = nn.Linear(key_dim, query_dim, bias=False)  # weight is W (Dq, Dk)

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """keys (B, S, Dk) -> W k split into heads (B, h, S, Dq/h)."""
        return split_heads(self.key_proj(keys), self.heads)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (B, Dq), prepared keys (B, h, S, d) -> scores (B, h, S)."""
        q = query.view(query.size(0), self.heads, -1, 1)
        return torch.matmul(keys, q).squeeze(-1)


class AdditiveScorer(nn.Module):
    """v . tanh(W_q q + W_k k); W_k k (with the only bias) is computed once per batch."""

    def __init__(self, query_dim: int, key_dim: int, attn_dim: int, heads: int = 1) -> None:
        super().__init__()
        self.heads = heads
        self.key_proj = nn.Linear(key_dim, attn_dim)
        self.query_proj = nn.Linear(query_dim, attn_dim, bias=False)
        self.v = nn.Parameter(torch.empty(heads, attn_dim // heads, 1))
        nn.init.uniform_(self.v, -1.0 / math.sqrt(attn_dim // heads), 1.0 / math.sqrt(attn_dim // heads))

    def prepare_keys(self, keys: Tensor) -> Tensor:
        """keys (B, S, Dk) -> W_k k + b split into heads (B, h, S, attn_dim/h)."""
        return split_heads(self.key_proj(keys), self.heads)

    def forward(self, query: Tensor, keys: Tensor) -> Tensor:
        """query (B, Dq), prepared keys (B, h, S, d) -> scores (B, h, S)."""
        q = self.query_proj(query).view(query.size(0), self.heads, 1, -1)  # (B, h, 1, d)
        return torch.matmul(torch.tanh(keys + q), self.v).squeeze(-1)


def make_scorer(name: str, query_dim: int, key_dim: int, heads: int = 1, attention_dim: int = 0) -> nn.Module:
    """Build a scorer by its config name (one of SCORERS). `attention_dim`: the projected size of dot /
    scaled_dot (0: parameter-free) and the hidden size of additive (0: query_dim)."""
    if name == "dot":
        return DotScorer(query_dim, key_dim, heads, attention_dim=attention_dim)
    if name == "scaled_dot":
        return ScaledDotScorer(query_dim, key_dim, heads, attention_dim)
    if name == "general":
        return GeneralScorer(query_dim, key_dim, heads)
    if name == "additive":
        return AdditiveScorer(query_dim, key_dim, attention_dim or query_dim, heads)
    raise ValueError(f"unknown scorer {name!r}; valid: {', '.join(SCORERS)}")


class Attention(nn.Module):
    """Softmax (or hard) attention of one decoder query over the encoder states.

    weights = softmax(scores / temperature) with padded positions at exactly zero weight. A temperature
    below 1 sharpens the distribution, above 1 flattens it; as it goes to 0 the weights approach the hard
    argmax.

    Hard attention (`hard=True`): the weights are the one-hot argmax of the scores, so the context is exactly
    one encoder state. The argmax has no gradient, so in training a straight-through estimator is used:
    the forward value is the one-hot vector, the backward pass uses the gradient of the soft weights
    (`hard + (soft - soft.detach())`, which equals `hard` exactly because the bracket is 0).
    In eval mode only the one-hot weights are computed.
    """

    def __init__(self, scorer: nn.Module, heads: int = 1, temperature: float = 1.0, hard: bool = False) -> None:
        super().__init__()
        self.scorer = scorer
        self.heads = heads
        self.temperature = temperature
        self.hard = hard

    def prepare(self, keys: Tensor, mask: Tensor) -> dict[str, Tensor]:
        """Everything per-batch, computed once before decoding.

        keys (B, S, Dk) encoder states, mask (B, S) True at real tokens ->
        {"attn_keys": (B, h, S, d), "attn_values": (B, h, S, Dk/h), "attn_pad": (B, 1, S) True at padding}.
        """
        return {
            "attn_keys": self.scorer.prepare_keys(keys),
            "attn_values": split_heads(keys, self.heads),
            "attn_pad": ~mask.unsqueeze(1),
        }

    def weights(self, scores: Tensor, pad: Tensor) -> Tensor:
        """scores (B, h, S), pad (B, 1, S) -> attention weights (B, h, S), zero at padding, rows sum to 1."""
        scores = scores.masked_fill(pad, float("-inf"))
        if self.hard and not (self.training and torch.is_grad_enabled()):
            return torch.zeros_like(scores).scatter_(-1, scores.argmax(-1, keepdim=True), 1.0)
        soft = torch.softmax(scores / self.temperature if self.temperature != 1.0 else scores, dim=-1)
        if not self.hard:
            return soft
        hard = torch.zeros_like(soft).scatter_(-1, scores.argmax(-1, keepdim=True), 1.0)
        return hard + (soft - soft.detach())  # parenthesised: adds exactly 0.0, so the forward is one-hot

    def forward(self, query: Tensor, memory: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """query (B, Dq), memory from `prepare` -> context (B, Dk), weights per head (B, h, S)."""
        scores = self.scorer(query, memory["attn_keys"])
        weights = self.weights(scores, memory["attn_pad"])
        context = torch.matmul(weights.unsqueeze(2), memory["attn_values"])  # (B, h, 1, Dk/h)
        return context.view(query.size(0), -1), weights
