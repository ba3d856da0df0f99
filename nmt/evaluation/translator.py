"""Translate from Python with a trained checkpoint; `nmt-translate` uses the same class.

    from nmt import Translator
    translator = Translator.from_checkpoint("outputs/multi30k_de_en/rnn_attention/<time>")  # its best.pt
    translator.translate(["Ein Hund läuft im Schnee."])        # -> ["A dog runs in the snow."]
    translator.translate_full(lines, nbest=5)                   # Translations: n-best lists, scores, timing
    translator.translate_full(lines, with_attention=True).attention[0]   # (T, S) weights of sentence 0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from nmt.config import DecodeConfig
from nmt.decoding.search import Translations, translate
from nmt.errors import NMTError
from nmt.runtime import pick_device
from nmt.training.checkpoint import load_model, resolve_checkpoint


class Translator:
    """A loaded model with its tokenizer and decoding settings (beam 5 by default, as in decode=beam5)."""

    def __init__(self, loaded: Any, device: Any, decode: Any, max_input_tokens: int | None = None) -> None:
        self.loaded, self.device, self.decode, self.max_input_tokens = loaded, device, decode, max_input_tokens

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "auto",
                        decode: DecodeConfig | Mapping[str, Any] | None = None,
                        model_overrides: Sequence[str] = (), max_input_tokens: int | None = 250) -> Translator:
        """`path`: a checkpoint file or a run directory (its best.pt, else last.pt). `decode`: a DecodeConfig,
        or a dict of its fields (e.g. {"beam": 1}) over the defaults. `model_overrides`: inference-time model
        settings over the checkpoint's, e.g. ["model.temperature=0.5"]."""
        settings = OmegaConf.structured(DecodeConfig)
        if decode is not None:
            given = asdict(decode) if isinstance(decode, DecodeConfig) else dict(decode)
            try:
                settings = OmegaConf.merge(settings, given)
            except Exception as e:  # omegaconf names the key or the type
                raise NMTError(f"bad decode settings: {str(e).splitlines()[0]}") from None
        if max_input_tokens is not None and max_input_tokens < 1:
            raise NMTError(f"max_input_tokens must be at least 1, got {max_input_tokens}")
        dev = pick_device(device)
        loaded = load_model(resolve_checkpoint(path), dev, list(model_overrides))
        return cls(loaded, dev, settings, max_input_tokens)

    @property
    def model(self) -> Any:
        return self.loaded.model

    def translate_full(self, lines: Sequence[str], nbest: int = 1, with_attention: bool = False) -> Translations:
        """Everything search returns: .hypotheses, .nbest / .scores (nbest per line), .attention (one (T, S)
        tensor per line when asked and the model has attention), .truncated (lines cut to max_input_tokens),
        .seconds and speeds."""
        cfg = self.decode if nbest == self.decode.nbest else OmegaConf.merge(self.decode, {"nbest": nbest})
        return translate(self.loaded.model, self.loaded.tokenizer, list(lines), cfg, self.device,
                         with_attention=with_attention, max_input_tokens=self.max_input_tokens)

    def translate(self, lines: Sequence[str]) -> list[str]:
        """One translation per line, in order; empty lines give empty translations."""
        return self.translate_full(lines).hypotheses


def format_lines(out: Translations, nbest: int, first_index: int = 0) -> list[str]:
    """Output lines: the best hypothesis per input, or Moses-style "i ||| hypothesis ||| score" n-best lines."""
    if nbest <= 1:
        return list(out.hypotheses)
    return [
        f"{first_index + i} ||| {hyp} ||| {score:.4f}"
        for i, (hyps, scores) in enumerate(zip(out.nbest, out.scores, strict=True))
        for hyp, score in zip(hyps, scores, strict=True)
    ]
