"""Pre-norm Transformer encoder-decoder (Vaswani et al. 2017; pre-norm as in Xiong et al. 2020).

Shapes: B = batch, S = source length, T = target length, D = d_model (model.hidden), h = heads,
d = D / h, L = decoder layers, V = target vocabulary.

Attention runs through torch.nn.functional.scaled_dot_product_attention (fused kernels on GPU). Where the
weights themselves are wanted (plots, decode_step's attn when asked for) the cross-attention is computed
explicitly instead, which gives the same result. Incremental decoding keeps, per decoder layer, the
self-attention keys/values of all previous steps (B, h, t, d) in the state; the cross-attention keys/values
depend only on the source and are computed once in `encode`. model.emb_dim is not used: embeddings have size d_model.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nmt.config import CHOICES, PAD_ID, TransformerConfig
from nmt.errors import NMTError
from nmt.models.base import BatchState, Seq2Seq, lengths_to_mask, register_model

Tensor = torch.Tensor

POSITIONS = CHOICES["model.positions"]


def sinusoidal_positions(max_len: int, dim: int) -> Tensor:
    """(max_len, dim): sin on even, cos on odd features, wavelengths 2*pi .. 10000*2*pi."""
    pos = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(max_len, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table


class MultiHeadAttention(nn.Module):
    """Multi-head attention; keys/values are projected separately (`keys_values`) so they can be cached."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.kv_proj = nn.Linear(dim, 2 * dim)
        self.out_proj = nn.Linear(dim, dim)

    def _split(self, x: Tensor) -> Tensor:
        """(B, N, D) -> (B, h, N, d)."""
        return x.view(x.size(0), x.size(1), self.heads, -1).transpose(1, 2)

    def keys_values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, N, D) -> keys, values (B, h, N, d)."""
        k, v = self.kv_proj(x).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: Tensor, k: Tensor, v: Tensor, mask: Tensor | None = None, causal: bool = False,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, N, D) queries, k/v (B, h, M, d), mask (B, 1, 1, M) True where attending is allowed
        -> output (B, N, D), weights (B, h, N, M) when need_weights (not with causal)."""
        q = self._split(self.q_proj(x))
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.size(-1)))
            if mask is not None:
                scores = scores.masked_fill(~mask, float("-inf"))
            weights = torch.softmax(scores, dim=-1)
            out = torch.matmul(F.dropout(weights, p, self.training), v)
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        out = out.transpose(1, 2).reshape(x.size(0), x.size(1), -1)
        return self.out_proj(out), weights


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ff_dim: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, ff_dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(ff_dim, dim))


class EncoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_norm = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """x (B, S, D), mask (B, 1, 1, S) -> (B, S, D)."""
        h = self.self_norm(x)
        x = x + self.dropout(self.self_attn(h, *self.self_attn.keys_values(h), mask=mask)[0])
        return x + self.dropout(self.ff(self.ff_norm(x)))


class DecoderLayer(nn.Module):
    def __init__(self, dim: int, heads: int, ff_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_norm = nn.LayerNorm(dim)
        self.self_attn = MultiHeadAttention(dim, heads, dropout)
        self.cross_norm = nn.LayerNorm(dim)
        self.cross_attn = MultiHeadAttention(dim, heads, dropout)
        self.ff_norm = nn.LayerNorm(dim)
        self.ff = FeedForward(dim, ff_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, cross_k: Tensor, cross_v: Tensor, src_mask: Tensor,
                cache: tuple[Tensor, Tensor] | None = None, need_weights: bool = False
                ) -> tuple[Tensor, tuple[Tensor, Tensor], Tensor | None]:
        """x (B, N, D); cross_k/v (B, h, S, d); src_mask (B, 1, 1, S).

        Without a cache, N = T positions attend causally to each other (teacher forcing). With a cache of
        the previous t steps' keys/values (B, h, t, d), x is the one new position (N = 1) and attends to all
        t + 1. Returns (B, N, D), the self-attention keys/values including x's, cross weights (B, h, N, S).
        """
        h = self.self_norm(x)
        k, v = self.self_attn.keys_values(h)
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=2), torch.cat([cache[1], v], dim=2)
        x = x + self.dropout(self.self_attn(h, k, v, causal=cache is None)[0])
        out, weights = self.cross_attn(self.cross_norm(x), cross_k, cross_v, mask=src_mask,
                                       need_weights=need_weights)
        x = x + self.dropout(out)
        return x + self.dropout(self.ff(self.ff_norm(x))), (k, v), weights


@register_model("transformer", TransformerConfig)
class Transformer(Seq2Seq):
    """The Transformer (arch=transformer).

    tie_embeddings: the target embedding is also the output projection; with share_src (a joint vocabulary,
    src_vocab == tgt_vocab) the same table embeds the source too. Embeddings are scaled by sqrt(D) before the
    positions are added.
    """

    def __init__(self, src_vocab: int, tgt_vocab: int, dim: int = 256, ff_dim: int = 1024, heads: int = 4,
                 enc_layers: int = 3, dec_layers: int = 3, dropout: float = 0.1, positions: str = "sinusoidal",
                 tie_embeddings: bool = True, max_positions: int = 512, share_src: bool = True) -> None:
        super().__init__()
        self.dim, self.heads, self.max_positions = dim, heads, max_positions
        self.scale = math.sqrt(dim)
        self.tgt_embed = nn.Embedding(tgt_vocab, dim, padding_idx=PAD_ID)
        share_src = share_src and tie_embeddings and src_vocab == tgt_vocab
        self.src_embed = self.tgt_embed if share_src else nn.Embedding(src_vocab, dim, padding_idx=PAD_ID)
        if positions == "learned":
            self.pos_embed: nn.Embedding | None = nn.Embedding(max_positions, dim)
        else:
            self.pos_embed = None
            self.register_buffer("pos_table", sinusoidal_positions(max_positions, dim), persistent=False)
        self.dropout = nn.Dropout(dropout)
        self.encoder_layers = nn.ModuleList(EncoderLayer(dim, heads, ff_dim, dropout) for _ in range(enc_layers))
        self.decoder_layers = nn.ModuleList(DecoderLayer(dim, heads, ff_dim, dropout) for _ in range(dec_layers))
        self.encoder_norm = nn.LayerNorm(dim)
        self.decoder_norm = nn.LayerNorm(dim)
        self.proj = nn.Linear(dim, tgt_vocab, bias=False)
        self._init_weights()
        if tie_embeddings:
            self.proj.weight = self.tgt_embed.weight

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        if cfg.hidden % cfg.heads:
            raise NMTError(f"model.heads={cfg.heads} must divide model.hidden={cfg.hidden} (d_model)")

    @classmethod
    def from_config(cls, cfg: Any, src_vocab: int, tgt_vocab: int, share_src: bool) -> Transformer:
        return cls(src_vocab, tgt_vocab, dim=cfg.hidden, ff_dim=cfg.ff_dim, heads=cfg.heads,
                   enc_layers=cfg.enc_layers, dec_layers=cfg.dec_layers, dropout=cfg.dropout,
                   positions=cfg.positions, tie_embeddings=cfg.tie_embeddings, share_src=share_src,
                   max_positions=cfg.max_positions)

    @classmethod
    def position_limit(cls, cfg: Any) -> int:
        """model.max_positions less the one position EOS or BOS takes."""
        return int(cfg.max_positions) - 1

    def _init_weights(self) -> None:
        for name, p in self.named_parameters():
            if name.endswith("embed.weight"):
                # N(0, D^-1/2): unit-variance inputs after the sqrt(D) scaling, unit-scale tied logits.
                nn.init.normal_(p, 0.0, self.dim**-0.5)
            elif p.dim() > 1:
                nn.init.xavier_uniform_(p)
            elif name.endswith("bias"):
                nn.init.zeros_(p)
        with torch.no_grad():
            self.tgt_embed.weight[PAD_ID].zero_()
            self.src_embed.weight[PAD_ID].zero_()

    def _embed(self, table: nn.Embedding, tokens: Tensor, offset: int = 0) -> Tensor:
        """tokens (B, N) at positions offset..offset+N-1 -> (B, N, D)."""
        n = tokens.size(1)
        if offset + n > self.max_positions:
            raise NMTError(f"sequence of {offset + n} tokens exceeds model.max_positions={self.max_positions}")
        if self.pos_embed is not None:
            pos = self.pos_embed.weight[offset: offset + n]
        else:
            pos = self.pos_table[offset: offset + n]
        return self.dropout(table(tokens) * self.scale + pos)

    def encode(self, src: Tensor, src_lens: Tensor) -> BatchState:
        """-> {"memory": (B, S, D), "src_mask": (B, S), "cross_k"/"cross_v": per decoder layer (B, h, S, d)}."""
        src_mask = lengths_to_mask(src_lens, src.size(1), src.device)
        attn_mask = src_mask[:, None, None, :]
        x = self._embed(self.src_embed, src)
        for layer in self.encoder_layers:
            x = layer(x, attn_mask)
        memory = self.encoder_norm(x)
        cross = [layer.cross_attn.keys_values(memory) for layer in self.decoder_layers]
        return {"memory": memory, "src_mask": src_mask,
                "cross_k": [k for k, _ in cross], "cross_v": [v for _, v in cross]}

    def init_state(self, enc: BatchState) -> BatchState:
        """Empty self-attention caches: {"self_k", "self_v"}: per decoder layer (B, h, 0, d)."""
        k = enc["cross_k"][0]
        empty = k.new_zeros(k.size(0), self.heads, 0, k.size(-1))
        n = len(self.decoder_layers)
        return {"self_k": [empty] * n, "self_v": [empty] * n}

    def _decode(self, x: Tensor, enc: BatchState, state: BatchState | None, need_weights: str
                ) -> tuple[Tensor, BatchState | None, list[Tensor]]:
        """x (B, N, D) embedded targets -> logits (B, N, V), the updated caches (incremental) and the cross
        weights (B, h, N, S) of the layers asked for: need_weights is "none", "last" or "all"."""
        src_mask = enc["src_mask"][:, None, None, :]
        last = len(self.decoder_layers) - 1
        new_k, new_v, weights = [], [], []
        for i, layer in enumerate(self.decoder_layers):
            cache = (state["self_k"][i], state["self_v"][i]) if state is not None else None
            want = need_weights == "all" or (need_weights == "last" and i == last)
            x, (k, v), w = layer(x, enc["cross_k"][i], enc["cross_v"][i], src_mask, cache, want)
            new_k.append(k)
            new_v.append(v)
            if w is not None:
                weights.append(w)
        logits = self.proj(self.decoder_norm(x))
        return logits, ({"self_k": new_k, "self_v": new_v} if state is not None else None), weights

    def decode_step(self, tokens: Tensor, state: BatchState, enc: BatchState, need_attention: bool = False
                    ) -> tuple[Tensor, BatchState, Tensor | None]:
        """tokens (B,) -> logits (B, V), state with the caches grown by one, and when `need_attention` the last
        layer's cross-attention averaged over heads (B, S) (otherwise every layer runs the fused kernel)."""
        x = self._embed(self.tgt_embed, tokens.unsqueeze(1), offset=state["self_k"][0].size(2))
        logits, state, weights = self._decode(x, enc, state, need_weights="last" if need_attention else "none")
        return logits.squeeze(1), state, weights[-1].mean(1).squeeze(1) if need_attention else None

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        enc = self.encode(src, src_lens)
        return self._decode(self._embed(self.tgt_embed, tgt_in), enc, None, need_weights="none")[0]

    def cross_attention(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced cross-attention weights of every layer and head (B, L, h, T, S)."""
        enc = self.encode(src, src_lens)
        weights = self._decode(self._embed(self.tgt_embed, tgt_in), enc, None, need_weights="all")[2]
        return torch.stack(weights, dim=1)

    def head_attention(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """Cross-attention of every head of the last decoder layer: (B, heads, T, S)."""
        return self.cross_attention(src, src_lens, tgt_in)[:, -1]

    def forward_attention(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """The last layer's teacher-forced cross-attention, averaged over heads (B, T, S)."""
        enc = self.encode(src, src_lens)
        weights = self._decode(self._embed(self.tgt_embed, tgt_in), enc, None, need_weights="last")[2]
        return weights[-1].mean(1)

    def train_flops(self, src_lens: Tensor, tgt_lens: Tensor) -> float:
        """Model FLOPs of forward + backward over a batch of sentences with src_lens (B,) source and tgt_lens (B,)
        target tokens (EOS included; padding not counted), for the model FLOP utilisation (MFU).

        A weight matrix with P entries costs 2 * P FLOPs per token it multiplies in the forward pass (one
        multiply-add per entry) and twice that in the backward (gradients of input and weight), hence
        6 * P * tokens (Kaplan et al. 2020). Counted per token that each matrix actually multiplies:
          source tokens:  6 * (W_enc + W_cross_kv)     encoder layers; the decoder's cross-attention key/value
                                                       projections (they read the encoder output)
          target tokens:  6 * (W_dec + D * V)          the rest of the decoder layers and the output projection
                                                       (counted even when tied to the embeddings)
        where W counts weight-matrix entries only (biases, norms and embedding lookups are not matmuls), plus
        the attention score and weighted-sum matmuls, 2 * 2 * D per (query, key) pair forward, times 3:
          12 * D * (L_enc * sum s_i^2 + L_dec * sum (t_i^2 + t_i * s_i))
        over sentences i with s_i source and t_i target tokens (self-attention counted in full, not causally
        halved). Softmax, norms and the optimizer are left out, as in the usual MFU definition.
        """

        def matrices(module: nn.Module) -> int:
            return sum(p.numel() for p in module.parameters() if p.dim() >= 2)

        d, vocab = self.dim, self.proj.out_features
        cross_kv = sum(matrices(layer.cross_attn.kv_proj) for layer in self.decoder_layers)
        per_src = matrices(self.encoder_layers) + cross_kv
        per_tgt = matrices(self.decoder_layers) - cross_kv + d * vocab
        l_enc, l_dec = len(self.encoder_layers), len(self.decoder_layers)
        s, t = src_lens.double(), tgt_lens.double()
        flops = 6 * per_src * float(s.sum()) + 6 * per_tgt * float(t.sum())
        return flops + 12 * d * (l_enc * float((s * s).sum()) + l_dec * float((t * t + t * s).sum()))
