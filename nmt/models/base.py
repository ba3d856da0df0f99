"""The one contract every model follows, so training, search and evaluation never branch on the model type,
and the registry that maps a model.arch name to its class.

Shapes: B = batch, S = source length, T = target length, V = target vocabulary.
`src_lens` (B,) may be on the CPU or on src's device: a Batch keeps it on the CPU (the RNN encoder packs with
lengths there, and a copy back from the GPU would be a host sync per forward); masks come from `lengths_to_mask`
on src's device.

- `encode(src, src_lens) -> enc`: a dict of batch-first tensors; always holds `src_mask` (B, S), True at real
  tokens. What else it holds is the model's business.
- `init_state(enc) -> state`: the decoder state before the first step: a dict whose values are batch-first
  tensors, or lists/tuples of them (e.g. a key/value cache).
- `decode_step(tokens, state, enc, need_attention=False) -> (logits, state, attn)`: one step; tokens (B,),
  logits (B, V), attn (B, S) attention over the source when `need_attention` (for plots; None when not asked or
  the model has none: a model may compute its weights a faster way when nobody looks at them).
- `forward(src, src_lens, tgt_in) -> logits (B, T, V)`: teacher-forced training pass.
- `forward_attention(src, src_lens, tgt_in) -> (B, T, S)`: attention weights of a teacher-forced pass, for
  heatmaps (None when the model has none).
- `head_attention(src, src_lens, tgt_in) -> (B, heads, T, S)`: per-head attention of the last decoder layer
  for per-head plots (None when the model does not have several heads to show).
- `train_flops(src_lens, tgt_lens) -> float`: model FLOPs of a training pass (forward + backward) over a batch
  of sentences with these real lengths (B,), for model FLOP utilisation (None when the model does not count them).

Beam search reorders `enc` and `state` with `select_batch`, so both must be batch-first all the way down.

What callers need to know of an architecture, the class says itself (so nothing outside nmt/models/ tests
model.arch):
- `max_positions`: positions the model can embed (a sentence's pieces plus EOS or BOS); None without a limit.
- `config_class`: its options, a ModelConfig dataclass of its own (nmt/config.py), so an option of another
  architecture is an unknown key; `check_config(cfg)`, `from_config(cfg, src_vocab, tgt_vocab, share_src)`: the
  class's own checks of its values and its construction from its config; `position_limit(cfg)`: the most pieces a
  sentence may have, known from the config before the model is built (None: no limit).
- `weights_config(state)`: model options an older checkpoint's weights were made with where its saved config
  says otherwise (e.g. {"tie_embeddings": False}); {} when the weights match their config.
- `sees_source`: what the decoder sees of the source, "summary" (one fixed-size vector c) or "states" (every
  encoder state, through attention); `summary_size(cfg)`: the size of c for a "summary" model (None otherwise).
- `attention_cell`: the decoder attends through the configurable cell of nmt/models/attention.py (model.scorer,
  heads, attention_dim, temperature, hard), the one the attention claims vary.
- `compiles`: torch.compile traces its training forward into one graph (False for the RNNs: their decoder steps
  through the target in a Python loop, a graph per target length; train.compile=true is refused for them).

An architecture registers itself with `@register_model("<name>", <Name>Config)` on its class; `nmt.models.build_model`
finds it by model.arch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nmt.config import ModelConfig, register_model_config

Tensor = torch.Tensor
# `enc` and `state` of the contract above: batch-first tensors (or lists/tuples of them) by name, each model's own.
BatchState = dict[str, Any]


class Seq2Seq(nn.Module):
    """Base class of every encoder-decoder."""

    arch: str = ""  # the model.arch name the class is registered under
    config_class: type[ModelConfig] = ModelConfig  # its options: the dataclass it is registered with
    max_positions: int | None = None
    sees_source: str = "states"  # "summary": the decoder sees one fixed-size vector of the source, nothing else
    attention_cell: bool = False  # attends through nmt/models/attention.py's configurable cell
    compiles: bool = True  # torch.compile (train.compile) traces its training forward into one graph

    @classmethod
    def summary_size(cls, cfg: Any) -> int | None:
        """The size of the fixed-size source vector c the decoder sees; None when it sees the encoder states."""
        return None

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """NMTError naming the key for a value of `cfg` (the class's own config) that this architecture cannot
        honour (an option it does not have is not in its config at all)."""

    @classmethod
    def from_config(cls, cfg: Any, src_vocab: int, tgt_vocab: int, share_src: bool) -> Seq2Seq:
        raise NotImplementedError

    @classmethod
    def position_limit(cls, cfg: Any) -> int | None:
        return None

    @classmethod
    def weights_config(cls, state: dict[str, Tensor]) -> dict[str, Any]:
        return {}

    def encode(self, src: Tensor, src_lens: Tensor) -> BatchState:
        raise NotImplementedError

    def init_state(self, enc: BatchState) -> BatchState:
        raise NotImplementedError

    def decode_step(
        self, tokens: Tensor, state: BatchState, enc: BatchState, need_attention: bool = False
    ) -> tuple[Tensor, BatchState, Tensor | None]:
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


MODELS: dict[str, type[Seq2Seq]] = {}  # model.arch -> class, filled by @register_model


def register_model(arch: str, config: type[ModelConfig]) -> Callable[[type[Seq2Seq]], type[Seq2Seq]]:
    """Class decorator: `@register_model("transformer", TransformerConfig)` makes the class the model of
    model.arch=transformer and `config` (a ModelConfig dataclass) its options, stored in Hydra's ConfigStore as
    schema/model/transformer (nmt.config.register_model_config), which the presets in configs/model/ select."""

    def register(cls: type[Seq2Seq]) -> type[Seq2Seq]:
        if arch in MODELS:
            raise ValueError(f"model.arch={arch} is registered twice: {MODELS[arch].__name__} and {cls.__name__}")
        register_model_config(arch, config)
        cls.arch, cls.config_class = arch, config
        MODELS[arch] = cls
        return cls

    return register


def select_batch(obj: Any, index: Tensor) -> Any:
    """Pick rows `index` (1-D LongTensor) along dim 0 of every tensor in a nested dict/list/tuple."""
    if isinstance(obj, Tensor):
        return obj.index_select(0, index)
    if isinstance(obj, dict):
        return {k: select_batch(v, index) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(select_batch(v, index) for v in obj)
    return obj


def lengths_to_mask(lengths: Tensor, max_len: int, device: torch.device) -> Tensor:
    """lengths (B,), on any device -> mask (B, max_len) on `device`, True at the first lengths[b] positions (real
    tokens). Lengths on the CPU are copied without waiting for the device."""
    lengths = lengths.to(device, non_blocking=True)
    return torch.arange(max_len, device=device).unsqueeze(0) < lengths.unsqueeze(1)
