"""RNN encoder-decoders: the shared encoder, the fixed-context baseline and the attention model.

Shapes: B = batch, S = source length, T = target length, E = emb_dim, H = hidden, L = decoder layers,
C = encoder state size (2H when bidirectional), V = target vocabulary.

The two models are built to differ only in what the decoder sees of the source. They share the encoder, the
bridge that initialises the decoder from the encoder summary, the embedding and hidden sizes, the readout
layer tanh(W [state; context; embedding]) -> E and the output projection E -> V:
- `FixedContextSeq2Seq` (Cho et al. 2014): the decoder gets one vector c (B, C), the encoder summary, and
  sees it at every step (RNN input and readout); `init_only` (Sutskever et al. 2014) uses c only to
  initialise the decoder state. With summary_dim = D > 0, c = tanh(W h) (B, D) is a projection of the encoder
  summary h (B, C), so the size of c can vary while the encoder and decoder hidden sizes stay fixed.
- `AttentionSeq2Seq` (Bahdanau et al. 2015): at step t the previous decoder state attends over all encoder
  states to give c_t, [embedding; c_t] is the RNN input and the readout sees [s_t; c_t; embedding].
  With input feeding (Luong et al. 2015) the previous readout vector is fed to the RNN input as well.
With tie_embeddings (Press & Wolf 2017) the decoder's embedding table is also its output projection (both are
V x E, since the readout has size E), and with share_src (a joint vocabulary) the encoder reads the same
table. The tied table starts at N(0, E^-1/2) so that the first logits have unit scale, and its lookups are
scaled by sqrt(E) (as in the Transformer) so that the RNN inputs do too.

Precision: the recurrences (the encoder's nn.GRU/nn.LSTM, the fixed-context decoder's, the attention decoder's
cells) run in their weights' dtype, fp32, with autocast switched off around them and their inputs and states
cast to that dtype (`no_autocast`, `cast_to`); under bf16 autocast the layers around them (bridge, attention,
readout, projection) still run in bf16. Autocast would otherwise run cuDNN's nn.GRU/nn.LSTM in fp16 whatever
its dtype (and without a loss scaler, as none is needed for bf16), but the cells in bf16: the two models
compared here would not even share a precision. fp32 rather than bf16 weights, because a recurrent state is
rounded again at every step, so the error grows with sentence length, the very axis the bottleneck
experiment measures.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nmt.config import CHOICES, PAD_ID, FixedContextConfig, RNNAttentionConfig
from nmt.errors import NMTError
from nmt.models.attention import Attention, make_scorer
from nmt.models.base import BatchState, Seq2Seq, lengths_to_mask, register_model

Tensor = torch.Tensor

RNN_TYPES = CHOICES["model.rnn_type"]
CONTEXT_MODES = CHOICES["model.context_mode"]


def make_rnn(rnn_type: str, input_size: int, hidden: int, layers: int, dropout: float,
             bidirectional: bool = False) -> nn.RNNBase:
    """A batch-first nn.GRU / nn.LSTM; dropout applies between stacked layers only."""
    cls = {"gru": nn.GRU, "lstm": nn.LSTM}[rnn_type]
    return cls(input_size, hidden, layers, batch_first=True, bidirectional=bidirectional,
               dropout=dropout if layers > 1 else 0.0)


def no_autocast(x: Tensor) -> contextlib.AbstractContextManager[Any]:
    """The context the recurrences run in: autocast off on x's device when it is on (else nothing changes).
    The caller casts the RNN's inputs and states to the RNN's weight dtype inside it (`cast_to`)."""
    device = x.device.type
    return torch.autocast(device, enabled=False) if torch.is_autocast_enabled(device) else contextlib.nullcontext()


def cast_to(module: nn.Module, state: Tensor | tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    """A tensor, or an LSTM's (h, c), in the dtype of `module`'s weights (the same tensors when they already are)."""
    dtype = next(module.parameters()).dtype
    return tuple(s.to(dtype) for s in state) if isinstance(state, tuple) else state.to(dtype)


class ScaledEmbedding(nn.Embedding):
    """nn.Embedding whose lookups are multiplied by `scale`: 1, or sqrt(E) for a tied table (see `tie`).
    Same parameters and state-dict keys as nn.Embedding."""

    scale = 1.0

    def forward(self, ids: Tensor) -> Tensor:
        """ids (...) -> (..., E)."""
        return super().forward(ids) * self.scale


def tie(encoder: RNNEncoder, decoder: nn.Module, share_src: bool) -> None:
    """Share decoder.embed with decoder.proj and, with share_src and equal shapes, with encoder.embed."""
    dim = decoder.embed.embedding_dim
    nn.init.normal_(decoder.embed.weight, 0.0, dim ** -0.5)
    with torch.no_grad():
        decoder.embed.weight[PAD_ID].zero_()
    decoder.proj.weight = decoder.embed.weight
    if share_src and encoder.embed.weight.shape == decoder.embed.weight.shape:
        encoder.embed = decoder.embed
    for embed in (encoder.embed, decoder.embed):
        embed.scale = dim ** 0.5


class RNNEncoder(nn.Module):
    """Embeddings + (bi)GRU/LSTM over packed sequences, so padding never reaches any state.

    forward: src (B, S), src_lens (B,) -> states (B, S, C), zero at padding, and summary (B, C), the top
    layer's final forward state concatenated with its final backward state (the backward RNN's state after
    reading the whole sentence from its true last token).
    """

    def __init__(self, vocab: int, emb_dim: int, hidden: int, layers: int = 1, dropout: float = 0.0,
                 rnn_type: str = "gru", bidirectional: bool = True) -> None:
        super().__init__()
        self.embed = ScaledEmbedding(vocab, emb_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.rnn = make_rnn(rnn_type, emb_dim, hidden, layers, dropout, bidirectional)
        self.directions = 2 if bidirectional else 1
        self.out_dim = hidden * self.directions

    def forward(self, src: Tensor, src_lens: Tensor) -> tuple[Tensor, Tensor]:
        emb = self.dropout(self.embed(src))
        # pack_padded_sequence needs the lengths on the CPU: .cpu() copies nothing for a Batch's lengths, which stay
        # there (lengths on a GPU would be copied back, a host sync). Training batches come with descending lengths
        # (batch_stream) and pack as they are; any other order is sorted and restored by the packing (index copies).
        lens = src_lens.cpu()
        in_order = bool((lens[:-1] >= lens[1:]).all())
        packed = pack_padded_sequence(cast_to(self.rnn, emb), lens, batch_first=True, enforce_sorted=in_order)
        with no_autocast(emb):
            out, final = self.rnn(packed)
        states, _ = pad_packed_sequence(out, batch_first=True, total_length=src.size(1))
        if isinstance(final, tuple):  # LSTM (h, c): the summary is built from h
            final = final[0]
        # final: (layers * directions, B, H), already back in batch order; the last rows are the top layer.
        summary = final[-self.directions:].transpose(0, 1).reshape(src.size(0), self.out_dim)
        return states, summary


class Bridge(nn.Module):
    """summary (B, C) -> initial decoder state tanh(W summary + b): hidden (B, L, H) and, for LSTM, cell."""

    def __init__(self, in_dim: int, hidden: int, layers: int, lstm: bool) -> None:
        super().__init__()
        self.shape = (2 if lstm else 1, layers, hidden)
        self.proj = nn.Linear(in_dim, (2 if lstm else 1) * layers * hidden)

    def forward(self, summary: Tensor) -> tuple[Tensor, Tensor | None]:
        init = torch.tanh(self.proj(summary)).view(summary.size(0), *self.shape)
        return init[:, 0], (init[:, 1] if self.shape[0] == 2 else None)


class FixedContextDecoder(nn.Module):
    """A decoder that sees the source only through one fixed-size vector c (B, C).

    Every method takes c (or a state built from c) and nothing else from the encoder: there is no argument
    through which per-position encoder states could arrive.
    every_step: the RNN input is [emb(y_{t-1}); c] and the readout sees [s_t; c; emb(y_{t-1})] (Cho et al.).
    init_only:  c only initialises s_0; input emb(y_{t-1}), readout [s_t; emb(y_{t-1})] (Sutskever et al.).
    The teacher-forced pass runs the RNN over all T steps in one call, which is possible because no input
    depends on the previous step's output.
    """

    def __init__(self, vocab: int, emb_dim: int, hidden: int, layers: int, dropout: float, rnn_type: str,
                 context_dim: int, every_step: bool = True) -> None:
        super().__init__()
        self.every_step = every_step
        ctx = context_dim if every_step else 0
        self.embed = ScaledEmbedding(vocab, emb_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.bridge = Bridge(context_dim, hidden, layers, lstm=rnn_type == "lstm")
        self.rnn = make_rnn(rnn_type, emb_dim + ctx, hidden, layers, dropout)
        self.readout = nn.Linear(hidden + ctx + emb_dim, emb_dim)
        self.proj = nn.Linear(emb_dim, vocab)

    def init_state(self, context: Tensor) -> dict[str, Tensor]:
        """context c (B, C) -> {"hidden": (B, L, H), ["cell": (B, L, H)], ["context": c]}."""
        hidden, cell = self.bridge(context)
        state = {"hidden": hidden}
        if cell is not None:
            state["cell"] = cell
        if self.every_step:
            state["context"] = context
        return state

    def _run(self, emb: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """emb (B, T, E) -> logits (B, T, V) and the state after the last step."""
        b, t, _ = emb.shape
        h0 = state["hidden"].transpose(0, 1).contiguous()  # nn.GRU wants (L, B, H)
        rnn_state = (h0, state["cell"].transpose(0, 1).contiguous()) if "cell" in state else h0
        ctx = state["context"].unsqueeze(1).expand(b, t, -1) if self.every_step else None
        rnn_in = torch.cat([emb, ctx], dim=-1) if self.every_step else emb
        with no_autocast(emb):
            out, final = self.rnn(cast_to(self.rnn, rnn_in), cast_to(self.rnn, rnn_state))
        features = torch.cat([out, ctx, emb] if self.every_step else [out, emb], dim=-1)
        logits = self.proj(self.dropout(torch.tanh(self.readout(features))))
        new_state = dict(state)
        if isinstance(final, tuple):
            new_state["hidden"], new_state["cell"] = final[0].transpose(0, 1), final[1].transpose(0, 1)
        else:
            new_state["hidden"] = final.transpose(0, 1)
        return logits, new_state

    def forward(self, tgt_in: Tensor, state: dict[str, Tensor]) -> Tensor:
        """Teacher forcing: tgt_in (B, T) -> logits (B, T, V)."""
        return self._run(self.dropout(self.embed(tgt_in)), state)[0]

    def step(self, tokens: Tensor, state: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        """tokens (B,) -> logits (B, V), next state."""
        logits, state = self._run(self.dropout(self.embed(tokens)).unsqueeze(1), state)
        return logits.squeeze(1), state


class RNNSeq2Seq(Seq2Seq):
    """What the two RNN models share in the contract: their common options and the untied tables of old
    checkpoints."""

    compiles = False  # the decoder's Python loop over target positions: torch.compile would recompile per length

    @staticmethod
    def rnn_options(cfg: Any, share_src: bool) -> dict[str, Any]:
        """The constructor options both RNN models take from their config (an RNNConfig)."""
        return dict(emb_dim=cfg.emb_dim, hidden=cfg.hidden, enc_layers=cfg.enc_layers, dec_layers=cfg.dec_layers,
                    dropout=cfg.dropout, rnn_type=cfg.rnn_type, bidirectional=cfg.bidirectional,
                    tie_embeddings=cfg.tie_embeddings, share_src=share_src)

    @classmethod
    def weights_config(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        """A checkpoint from before the RNN models honoured model.tie_embeddings has separate output and
        embedding tables although its config says true."""
        proj, embed = state.get("decoder.proj.weight"), state.get("decoder.embed.weight")
        if proj is not None and embed is not None and not torch.equal(proj, embed):
            return {"tie_embeddings": False}
        return {}


@register_model("rnn_fixed", FixedContextConfig)
class FixedContextSeq2Seq(RNNSeq2Seq):
    """The fixed-context baseline (arch=rnn_fixed).

    `encode` returns the per-position states too, for uniformity with the other models, but only
    enc["summary"] (the vector c) is ever handed to the decoder; `decode_step` does not read `enc` at all.
    summary_dim = 0: c is the encoder summary h (B, C); D > 0: c = tanh(W h + b) (B, D), W (D, C), the only
    parameters added (besides the decoder's inputs, which take c): the capacity of c varies alone.
    """

    sees_source = "summary"

    def __init__(self, src_vocab: int, tgt_vocab: int, emb_dim: int, hidden: int, enc_layers: int = 1,
                 dec_layers: int = 1, dropout: float = 0.0, rnn_type: str = "gru", bidirectional: bool = True,
                 context_mode: str = "every_step", tie_embeddings: bool = False,
                 share_src: bool = True, summary_dim: int = 0) -> None:
        super().__init__()
        self.encoder = RNNEncoder(src_vocab, emb_dim, hidden, enc_layers, dropout, rnn_type, bidirectional)
        self.decoder = FixedContextDecoder(tgt_vocab, emb_dim, hidden, dec_layers, dropout, rnn_type,
                                           summary_dim or self.encoder.out_dim,
                                           every_step=context_mode == "every_step")
        if tie_embeddings:
            tie(self.encoder, self.decoder, share_src)
        # Created last, and only when asked for: at summary_dim = 0 a seeded model draws exactly the parameters
        # it drew before the option existed.
        self.summary_proj = nn.Linear(self.encoder.out_dim, summary_dim) if summary_dim else None

    @classmethod
    def summary_size(cls, cfg: Any) -> int:
        """c is the encoder summary (2 x hidden when bidirectional) or its projection to model.summary_dim."""
        return int(cfg.summary_dim) or int(cfg.hidden) * (2 if cfg.bidirectional else 1)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        if cfg.summary_dim < 0:
            raise NMTError(f"model.summary_dim must not be negative, got {cfg.summary_dim}")

    @classmethod
    def from_config(cls, cfg: Any, src_vocab: int, tgt_vocab: int, share_src: bool) -> FixedContextSeq2Seq:
        return cls(src_vocab, tgt_vocab, context_mode=cfg.context_mode, summary_dim=cfg.summary_dim,
                   **cls.rnn_options(cfg, share_src))

    def context(self, summary: Tensor) -> Tensor:
        """The encoder summary h (B, C) -> the vector c the decoder sees: h itself, or tanh(W h) (B, D)."""
        return summary if self.summary_proj is None else torch.tanh(self.summary_proj(summary))

    def encode(self, src: Tensor, src_lens: Tensor) -> BatchState:
        """-> {"states": (B, S, C) (never used by the decoder), "summary": c (B, C), or (B, D) with summary_dim
        D, "src_mask": (B, S)}."""
        states, summary = self.encoder(src, src_lens)
        return {"states": states, "summary": self.context(summary),
                "src_mask": lengths_to_mask(src_lens, src.size(1), src.device)}

    def init_state(self, enc: BatchState) -> BatchState:
        return self.decoder.init_state(enc["summary"])

    def decode_step(self, tokens: Tensor, state: BatchState, enc: BatchState, need_attention: bool = False
                    ) -> tuple[Tensor, BatchState, Tensor | None]:
        logits, state = self.decoder.step(tokens, state)
        return logits, state, None

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        _, summary = self.encoder(src, src_lens)
        return self.decoder(tgt_in, self.decoder.init_state(self.context(summary)))


class AttentionDecoder(nn.Module):
    """Bahdanau-style attention decoder: attend with s_{t-1}, RNN on [emb; c_t (; feed)], readout.

    One step, with s_{t-1} the top layer's previous state:
        c_t, a_t = attention(s_{t-1}, encoder states)
        s_t      = RNN([emb(y_{t-1}); c_t (; o_{t-1} with input feeding)], s_{t-1})
        o_t      = tanh(W_o [s_t; c_t; emb(y_{t-1})])          (the readout, size E)
        logits_t = W_p dropout(o_t)
    """

    def __init__(self, vocab: int, emb_dim: int, hidden: int, layers: int, dropout: float, rnn_type: str,
                 enc_dim: int, scorer: str = "additive", heads: int = 1, temperature: float = 1.0,
                 hard: bool = False, input_feeding: bool = False, attention_dim: int = 0) -> None:
        super().__init__()
        self.lstm = rnn_type == "lstm"
        self.input_feeding = input_feeding
        self.embed = ScaledEmbedding(vocab, emb_dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.bridge = Bridge(enc_dim, hidden, layers, lstm=self.lstm)
        self.attention = Attention(make_scorer(scorer, hidden, enc_dim, heads, attention_dim), heads, temperature, hard)
        cell = nn.LSTMCell if self.lstm else nn.GRUCell
        in_dim = emb_dim + enc_dim + (emb_dim if input_feeding else 0)
        self.cells = nn.ModuleList([cell(in_dim if i == 0 else hidden, hidden) for i in range(layers)])
        self.readout = nn.Linear(hidden + enc_dim + emb_dim, emb_dim)
        self.proj = nn.Linear(emb_dim, vocab)

    def init_state(self, summary: Tensor) -> BatchState:
        """summary (B, C) -> {"hidden": [(B, H)] * L, ["cell": [(B, H)] * L], ["feed": (B, E) zeros]}."""
        hidden, cell = self.bridge(summary)
        state: BatchState = {"hidden": list(hidden.unbind(1))}
        if cell is not None:
            state["cell"] = list(cell.unbind(1))
        if self.input_feeding:
            state["feed"] = summary.new_zeros(summary.size(0), self.readout.out_features)
        return state

    def _step(self, emb: Tensor, state: BatchState, memory: dict[str, Tensor]
              ) -> tuple[Tensor, Tensor, Tensor, BatchState]:
        """emb (B, E) -> top state s_t (B, H), context c_t (B, C), weights (B, heads, S), new state."""
        hidden = state["hidden"]
        context, weights = self.attention(hidden[-1], memory)
        x = torch.cat([emb, context, state["feed"]] if self.input_feeding else [emb, context], dim=-1)
        new_hidden, new_cell = [], []
        with no_autocast(x):
            x = cast_to(self.cells, x)
            for i, cell in enumerate(self.cells):
                if self.lstm:
                    h, c = cell(x, cast_to(cell, (hidden[i], state["cell"][i])))
                    new_cell.append(c)
                else:
                    h = cell(x, cast_to(cell, hidden[i]))
                new_hidden.append(h)
                if i + 1 < len(self.cells):
                    x = self.dropout(h)  # between layers only; the readout gets the undropped top state
        new_state = {"hidden": new_hidden}
        if self.lstm:
            new_state["cell"] = new_cell
        return new_hidden[-1], context, weights, new_state

    def _readout(self, s: Tensor, context: Tensor, emb: Tensor) -> Tensor:
        """(..., H), (..., C), (..., E) -> o (..., E)."""
        return torch.tanh(self.readout(torch.cat([s, context, emb], dim=-1)))

    def step(self, tokens: Tensor, state: BatchState, memory: dict[str, Tensor]
             ) -> tuple[Tensor, BatchState, Tensor]:
        """tokens (B,) -> logits (B, V), next state, attention (B, S) averaged over heads."""
        emb = self.dropout(self.embed(tokens))
        s, context, weights, new_state = self._step(emb, state, memory)
        out = self._readout(s, context, emb)
        if self.input_feeding:
            new_state["feed"] = out
        return self.proj(self.dropout(out)), new_state, weights.mean(1)

    def forward(self, tgt_in: Tensor, state: BatchState, memory: dict[str, Tensor],
                need_attention: bool = False) -> tuple[Tensor, Tensor | None]:
        """Teacher forcing: tgt_in (B, T) -> logits (B, T, V) and, when asked, attention (B, T, S)
        averaged over heads.

        The loop over T runs only the recurrence; the readout (unless input feeding needs it per step) and
        the vocabulary projection are applied once to all steps.
        """
        emb = self.dropout(self.embed(tgt_in))
        states, contexts, outs, attn = [], [], [], []
        # unbind, not emb[:, t]: the backward of T slices would allocate T zero-filled (B, T, E) gradients.
        for emb_t in emb.unbind(1):
            s, context, weights, state = self._step(emb_t, state, memory)
            if self.input_feeding:
                state["feed"] = self._readout(s, context, emb_t)
                outs.append(state["feed"])
            else:
                states.append(s)
                contexts.append(context)
            if need_attention:
                attn.append(weights.mean(1))
        if self.input_feeding:
            out = torch.stack(outs, dim=1)
        else:
            out = self._readout(torch.stack(states, dim=1), torch.stack(contexts, dim=1), emb)
        return self.proj(self.dropout(out)), (torch.stack(attn, dim=1) if need_attention else None)


@register_model("rnn_attention", RNNAttentionConfig)
class AttentionSeq2Seq(RNNSeq2Seq):
    """The attention model (arch=rnn_attention): RNNEncoder + AttentionDecoder."""

    attention_cell = True

    def __init__(self, src_vocab: int, tgt_vocab: int, emb_dim: int, hidden: int, enc_layers: int = 1,
                 dec_layers: int = 1, dropout: float = 0.0, rnn_type: str = "gru", bidirectional: bool = True,
                 scorer: str = "additive", heads: int = 1, temperature: float = 1.0, hard: bool = False,
                 input_feeding: bool = False, attention_dim: int = 0, tie_embeddings: bool = False,
                 share_src: bool = True) -> None:
        super().__init__()
        self.encoder = RNNEncoder(src_vocab, emb_dim, hidden, enc_layers, dropout, rnn_type, bidirectional)
        self.decoder = AttentionDecoder(tgt_vocab, emb_dim, hidden, dec_layers, dropout, rnn_type,
                                        self.encoder.out_dim, scorer, heads, temperature, hard, input_feeding,
                                        attention_dim)
        if tie_embeddings:
            tie(self.encoder, self.decoder, share_src)

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        enc_dim = cfg.hidden * (2 if cfg.bidirectional else 1)
        # The scored space is split into heads (its size: attention_dim, else the query size), and so are the
        # values (the encoder states).
        scored = cfg.attention_dim or cfg.hidden
        if enc_dim % cfg.heads or scored % cfg.heads:
            raise NMTError(f"model.heads={cfg.heads} must divide the attention sizes ({scored}, {enc_dim}) "
                           f"of scorer {cfg.scorer}")

    @classmethod
    def from_config(cls, cfg: Any, src_vocab: int, tgt_vocab: int, share_src: bool) -> AttentionSeq2Seq:
        return cls(src_vocab, tgt_vocab, scorer=cfg.scorer, heads=cfg.heads, temperature=cfg.temperature,
                   hard=cfg.hard, input_feeding=cfg.input_feeding, attention_dim=cfg.attention_dim,
                   **cls.rnn_options(cfg, share_src))

    def encode(self, src: Tensor, src_lens: Tensor) -> BatchState:
        """-> {"states": (B, S, C), "summary": (B, C), "src_mask": (B, S), and the attention's per-batch
        keys/values from `Attention.prepare` ("attn_keys", "attn_values", "attn_pad")}."""
        states, summary = self.encoder(src, src_lens)
        mask = lengths_to_mask(src_lens, src.size(1), src.device)
        return {"states": states, "summary": summary, "src_mask": mask,
                **self.decoder.attention.prepare(states, mask)}

    def init_state(self, enc: BatchState) -> BatchState:
        return self.decoder.init_state(enc["summary"])

    def decode_step(self, tokens: Tensor, state: BatchState, enc: BatchState, need_attention: bool = False
                    ) -> tuple[Tensor, BatchState, Tensor | None]:
        logits, state, weights = self.decoder.step(tokens, state, enc)  # the weights make the context: no extra cost
        return logits, state, weights if need_attention else None

    def forward(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        enc = self.encode(src, src_lens)
        return self.decoder(tgt_in, self.init_state(enc), enc)[0]

    def forward_attention(self, src: Tensor, src_lens: Tensor, tgt_in: Tensor) -> Tensor:
        """Teacher-forced attention weights (B, T, S), averaged over heads (use eval mode for plots)."""
        enc = self.encode(src, src_lens)
        return self.decoder(tgt_in, self.init_state(enc), enc, need_attention=True)[1]
