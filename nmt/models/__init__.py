"""Models: `build_model(cfg.model, src_vocab, tgt_vocab)` picks the architecture named by `cfg.arch`.

- rnn_attention: `AttentionSeq2Seq` (nmt/models/rnn.py), scorers in nmt/models/attention.py
- rnn_fixed:     `FixedContextSeq2Seq` (nmt/models/rnn.py), the fixed-length-context baseline
- transformer:   `Transformer` (nmt/models/transformer.py)
All follow the contract in nmt/models/base.py.
"""

from __future__ import annotations

from typing import Any

from nmt.config import CHOICES, ModelConfig, check_choices
from nmt.errors import NMTError
from nmt.models.base import Seq2Seq, select_batch
from nmt.models.rnn import AttentionSeq2Seq, FixedContextSeq2Seq
from nmt.models.transformer import Transformer

ARCHS = CHOICES["model.arch"]

__all__ = ["ARCHS", "AttentionSeq2Seq", "FixedContextSeq2Seq", "Seq2Seq", "Transformer", "build_model",
           "select_batch"]


def _check(cfg: Any, src_vocab: int, tgt_vocab: int) -> None:
    """Every option named in the config is checked, whatever the architecture, so a typo never hides."""
    check_choices(cfg, "model")
    for name in ("emb_dim", "hidden", "enc_layers", "dec_layers", "heads", "max_positions", "ff_dim"):
        if getattr(cfg, name) < 1:
            raise NMTError(f"model.{name} must be at least 1, got {getattr(cfg, name)}")
    if min(src_vocab, tgt_vocab) < 4:
        raise NMTError(f"vocabularies need the 4 special ids, got src {src_vocab}, tgt {tgt_vocab}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise NMTError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
    if not cfg.temperature > 0.0:
        raise NMTError(f"model.temperature must be > 0, got {cfg.temperature}")
    if cfg.arch != "rnn_attention":
        # Silently ignoring these would make a run look like something it is not.
        if cfg.temperature != 1.0 or cfg.hard or cfg.input_feeding:
            raise NMTError(f"model.temperature, model.hard and model.input_feeding apply to arch=rnn_attention "
                           f"only (arch={cfg.arch})")
    if cfg.arch == "rnn_fixed" and cfg.heads != 1:
        raise NMTError("model.heads applies to arch=rnn_attention and transformer, not rnn_fixed")
    if cfg.attention_dim < 0:
        raise NMTError(f"model.attention_dim must not be negative, got {cfg.attention_dim}")
    if cfg.arch != "rnn_attention" and cfg.attention_dim:
        raise NMTError(f"model.attention_dim applies to arch=rnn_attention only (arch={cfg.arch})")
    if cfg.arch == "rnn_attention":
        enc_dim = cfg.hidden * (2 if cfg.bidirectional else 1)
        # The scored space is split into heads (its size: attention_dim, else the query size), and so are the
        # values (the encoder states).
        scored = cfg.attention_dim or cfg.hidden
        if enc_dim % cfg.heads or scored % cfg.heads:
            raise NMTError(f"model.heads={cfg.heads} must divide the attention sizes ({scored}, {enc_dim}) "
                           f"of scorer {cfg.scorer}")
    if cfg.arch == "transformer" and cfg.hidden % cfg.heads:
        raise NMTError(f"model.heads={cfg.heads} must divide model.hidden={cfg.hidden} (d_model)")


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, joint_vocab: bool = True) -> Seq2Seq:
    """A freshly initialised model for `cfg` (a ModelConfig or its OmegaConf node); NMTError on bad options.

    joint_vocab: source and target ids name the same pieces (a joint tokenizer), so with model.tie_embeddings
    the source embedding can be the target's table as well.
    """
    _check(cfg, src_vocab, tgt_vocab)
    share_src = cfg.tie_embeddings and joint_vocab and src_vocab == tgt_vocab
    if cfg.arch == "transformer":
        return Transformer(src_vocab, tgt_vocab, dim=cfg.hidden, ff_dim=cfg.ff_dim, heads=cfg.heads,
                           enc_layers=cfg.enc_layers, dec_layers=cfg.dec_layers, dropout=cfg.dropout,
                           positions=cfg.positions, tie_embeddings=cfg.tie_embeddings, share_src=share_src,
                           max_positions=cfg.max_positions)
    shared = dict(emb_dim=cfg.emb_dim, hidden=cfg.hidden, enc_layers=cfg.enc_layers, dec_layers=cfg.dec_layers,
                  dropout=cfg.dropout, rnn_type=cfg.rnn_type, bidirectional=cfg.bidirectional,
                  tie_embeddings=cfg.tie_embeddings, share_src=share_src)
    if cfg.arch == "rnn_fixed":
        return FixedContextSeq2Seq(src_vocab, tgt_vocab, context_mode=cfg.context_mode, **shared)
    return AttentionSeq2Seq(src_vocab, tgt_vocab, scorer=cfg.scorer, heads=cfg.heads,
                            temperature=cfg.temperature, hard=cfg.hard, input_feeding=cfg.input_feeding,
                            attention_dim=cfg.attention_dim, **shared)
