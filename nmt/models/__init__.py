"""Models: `build_model(cfg.model, src_vocab, tgt_vocab)` builds the architecture registered as `cfg.arch`.

- rnn_attention: `AttentionSeq2Seq` (nmt/models/rnn.py), scorers in nmt/models/attention.py
- rnn_fixed:     `FixedContextSeq2Seq` (nmt/models/rnn.py), the fixed-length-context baseline
- transformer:   `Transformer` (nmt/models/transformer.py)
All follow the contract in nmt/models/base.py and register themselves there with their config dataclass
(`@register_model(name, <Name>Config)` on the class; the dataclasses are in nmt/config.py);
importing a module registers its architectures, so a new architecture's registry line is its import below.
"""

from __future__ import annotations

from typing import Any

from nmt.config import ModelConfig, check_model_config, check_values
from nmt.errors import NMTError
from nmt.models.base import MODELS, Seq2Seq, select_batch
from nmt.models.rnn import AttentionSeq2Seq, FixedContextSeq2Seq
from nmt.models.transformer import Transformer
from nmt.runtime import StateDict

ARCHS = tuple(sorted(MODELS))

__all__ = ["ARCHS", "AttentionSeq2Seq", "FixedContextSeq2Seq", "MODELS", "Seq2Seq", "Transformer", "build_model",
           "fit_config_to_weights", "model_class", "position_limit", "select_batch"]


def model_class(arch: str) -> type[Seq2Seq]:
    """The class registered as model.arch=`arch`; NMTError naming the valid values for an unknown one."""
    if arch not in MODELS:
        raise NMTError(f"unknown model.arch={arch!r}; valid values: {', '.join(ARCHS)}")
    return MODELS[arch]


def _check_common(cfg: Any, src_vocab: int, tgt_vocab: int) -> None:
    """The values every architecture's options share a rule for, checked wherever the architecture has the
    option, so a typo never hides."""
    check_values(cfg, "model")
    for name in ("emb_dim", "hidden", "enc_layers", "dec_layers", "heads", "max_positions", "ff_dim"):
        if getattr(cfg, name, 1) < 1:
            raise NMTError(f"model.{name} must be at least 1, got {getattr(cfg, name)}")
    if min(src_vocab, tgt_vocab) < 4:
        raise NMTError(f"vocabularies need the 4 special ids, got src {src_vocab}, tgt {tgt_vocab}")
    if not 0.0 <= cfg.dropout < 1.0:
        raise NMTError(f"model.dropout must be in [0, 1), got {cfg.dropout}")
    if not getattr(cfg, "temperature", 1.0) > 0.0:
        raise NMTError(f"model.temperature must be > 0, got {cfg.temperature}")
    if getattr(cfg, "attention_dim", 0) < 0:
        raise NMTError(f"model.attention_dim must not be negative, got {cfg.attention_dim}")


def build_model(cfg: ModelConfig, src_vocab: int, tgt_vocab: int, joint_vocab: bool = True) -> Seq2Seq:
    """A freshly initialised model for `cfg` (its architecture's config dataclass, e.g. a TransformerConfig, or
    its OmegaConf node); NMTError on bad options.

    joint_vocab: source and target ids name the same pieces (a joint tokenizer), so with model.tie_embeddings
    the source embedding can be the target's table as well.
    """
    cls = model_class(cfg.arch)
    check_model_config(cfg)  # the arch's own dataclass, not another's
    _check_common(cfg, src_vocab, tgt_vocab)
    cls.check_config(cfg)
    share_src = cfg.tie_embeddings and joint_vocab and src_vocab == tgt_vocab
    return cls.from_config(cfg, src_vocab, tgt_vocab, share_src)


def position_limit(cfg: Any) -> int | None:
    """Most pieces a sentence may have for the model of `cfg` (its config): its position table less the one
    position EOS or BOS takes; None for models without a limit."""
    return model_class(cfg.arch).position_limit(cfg)


def fit_config_to_weights(cfg: Any, state: StateDict) -> None:
    """Set in `cfg` (a model config node, changed in place) the options an older checkpoint's weights `state` were
    made with where its saved config says otherwise (Seq2Seq.weights_config)."""
    for key, value in model_class(cfg.arch).weights_config(state).items():
        cfg[key] = value
