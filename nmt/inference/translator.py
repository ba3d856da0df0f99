"""Translate from Python with a trained checkpoint; `nmt-translate` uses the same class.

    from nmt import Translator
    translator = Translator.from_checkpoint("outputs/multi30k_de_en/rnn_attention/<time>")  # its best.pt
    translator.translate(["Ein Hund läuft im Schnee."])        # -> ["A dog runs in the snow."]
    translator.translate("Ein Hund läuft im Schnee.")          # one sentence -> "A dog runs in the snow."
    translator.translate_full(lines, nbest=5)                   # Translations: n-best lists, scores, timing
    translator.translate_full(lines, with_attention=True).attention[0]   # (T, S) weights of sentence 0
    Translator.from_ctranslate2("exports/ct2-int8").translate(lines)   # a Transformer exported by nmt-export
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
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
        settings = _decode_settings(decode)
        overrides = _check_model_overrides(model_overrides)
        if max_input_tokens is not None and max_input_tokens < 1:
            raise NMTError(f"max_input_tokens must be at least 1, got {max_input_tokens}")
        dev = pick_device(device)
        loaded = load_model(resolve_checkpoint(path), dev, overrides)
        return cls(loaded, dev, settings, max_input_tokens)

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def input_limit(self) -> int | None:
        """Most source pieces translated per line: max_input_tokens, and the room a position table leaves
        beside EOS (as `translate` truncates); None when unlimited."""
        limit, max_positions = self.max_input_tokens, getattr(self.model, "max_positions", None)
        if max_positions is not None:
            limit = min(limit or max_positions, int(max_positions) - 1)
        return limit

    def translate_full(self, lines: str | Sequence[str], nbest: int = 1, with_attention: bool = False
                       ) -> Translations:
        """Everything search returns: .hypotheses, .nbest / .scores (nbest per line), .attention (one (T, S)
        tensor per line when asked and the model has attention), .truncated (lines cut to max_input_tokens),
        .seconds and speeds. A str is one line. TypeError for anything but strings."""
        cfg = self.decode if nbest == self.decode.nbest else OmegaConf.merge(self.decode, {"nbest": nbest})
        return translate(self.loaded.model, self.loaded.tokenizer, check_lines(lines), cfg, self.device,
                         with_attention=with_attention, max_input_tokens=self.max_input_tokens)

    def translate(self, lines: str | Sequence[str]) -> str | list[str]:
        """One translation per line, in order; empty lines give empty translations. A str is one sentence and
        gets a str back (as fairseq's hub interface does): translate("Ein Hund.") -> "A dog.". None, bytes or
        any other non-string, in place of the list or in it, is a TypeError naming the position."""
        hypotheses = self.translate_full(lines).hypotheses
        return hypotheses[0] if isinstance(lines, str) else hypotheses

    @staticmethod
    def from_ctranslate2(model_dir: str | Path, decode: DecodeConfig | Mapping[str, Any] | None = None,
                         threads: int = 1) -> ExportedTranslator:
        """A translator over a CTranslate2 export (nmt-export): the same decode settings, the engine's search
        (see nmt.inference.export.translate_ctranslate2 for what differs in beam search)."""
        from nmt.inference.export import read_export_info

        read_export_info(model_dir)  # one clear line if this is not an export
        if threads < 1:
            raise NMTError(f"threads must be at least 1, got {threads}")
        return ExportedTranslator(Path(model_dir), _decode_settings(decode), threads)


class ExportedTranslator:
    """Translate with a CTranslate2 model directory written by nmt-export; best hypothesis only."""

    def __init__(self, model_dir: Path, decode: Any, threads: int) -> None:
        if decode.nbest != 1:
            raise NMTError("the ctranslate2 engine returns the best translation only: use decode.nbest=1")
        self.model_dir, self.decode, self.threads = model_dir, decode, threads

    def translate(self, lines: str | Sequence[str]) -> str | list[str]:
        """As Translator.translate: a str is one sentence and gets a str back; TypeError for non-strings."""
        from nmt.inference.export import translate_ctranslate2

        d = self.decode
        hypotheses = translate_ctranslate2(self.model_dir, check_lines(lines), beam=d.beam, alpha=d.alpha,
                                           max_len_a=d.max_len_a, max_len_b=d.max_len_b, batch_size=d.batch_size,
                                           threads=self.threads)
        return hypotheses[0] if isinstance(lines, str) else hypotheses


def check_lines(lines: Any) -> list[str]:
    """`lines` as a list of str (a str is one line); TypeError, naming the position and the fix, otherwise."""
    if isinstance(lines, str):
        return [lines]
    if lines is None or isinstance(lines, bytes | bytearray) or not isinstance(lines, Iterable):
        raise TypeError(f"translate takes a list of sentences (str) or one sentence, got {type(lines).__name__}"
                        + (": decode bytes first, e.g. data.decode('utf-8')" if isinstance(lines, bytes) else ""))
    lines = list(lines)
    for i, line in enumerate(lines):
        if not isinstance(line, str):
            raise TypeError(f"sentence {i} is {type(line).__name__}, not str: pass '' for an empty line, and decode "
                            f"bytes or convert other values to str first")
    return lines


def _check_model_overrides(overrides: Any) -> list[str]:
    """`model_overrides` as a list of 'key=value' strings; TypeError for a bare str (it would be split into
    characters) or non-string items."""
    if isinstance(overrides, str):
        raise TypeError(f"model_overrides takes a list of 'key=value' strings: use [{overrides!r}]")
    overrides = list(overrides or [])
    bad = next((o for o in overrides if not isinstance(o, str)), None)
    if bad is not None:
        raise TypeError(f"model_overrides takes 'key=value' strings, got {type(bad).__name__} {bad!r}")
    return overrides


def _decode_settings(decode: DecodeConfig | Mapping[str, Any] | None) -> Any:
    """A DecodeConfig node: the defaults, updated by a DecodeConfig or a dict of its fields."""
    settings = OmegaConf.structured(DecodeConfig)
    if decode is None:
        return settings
    given = asdict(decode) if isinstance(decode, DecodeConfig) else dict(decode)
    try:
        return OmegaConf.merge(settings, given)
    except Exception as e:  # omegaconf names the key or the type
        raise NMTError(f"bad decode settings: {str(e).splitlines()[0]}") from None


def format_lines(out: Translations, nbest: int, first_index: int = 0) -> list[str]:
    """Output lines: the best hypothesis per input, or Moses-style "i ||| hypothesis ||| score" n-best lines."""
    if nbest <= 1:
        return list(out.hypotheses)
    return [
        f"{first_index + i} ||| {hyp} ||| {score:.4f}"
        for i, (hyps, scores) in enumerate(zip(out.nbest, out.scores, strict=True))
        for hyp, score in zip(hyps, scores, strict=True)
    ]
