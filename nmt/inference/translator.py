"""Translate from Python with a trained checkpoint; `nmt-translate` uses the same class.

    from nmt import Translator
    translator = Translator.from_checkpoint("outputs/multi30k_de_en/rnn_attention/<time>")  # its best.pt
    translator.translate(["Ein Hund läuft im Schnee."])        # -> ["A dog runs in the snow."]
    translator.translate("Ein Hund läuft im Schnee.")          # one sentence -> "A dog runs in the snow."
    translator.translate_full(lines, nbest=5)                   # Translations: n-best lists, scores, timing
    translator.translate_full(lines, with_attention=True).attention[0]   # (T, S) weights of sentence 0
    Translator.from_ctranslate2("exports/ct2-int8").translate(lines)   # a Transformer exported by nmt-export
    Translator.from_pretrained("packages/de-en")               # a model package: a directory or a hub id
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import sentencepiece as spm
import torch
from omegaconf import OmegaConf

from nmt.config import BOS_ID, PAD_ID, DecodeConfig
from nmt.decoding.search import Translations, max_output_lengths, translate
from nmt.errors import NMTError
from nmt.inference.export import BATCH_TYPES, load_ctranslate2, plan_batches, read_export_info
from nmt.runtime import pick_device
from nmt.training.checkpoint import load_model, resolve_checkpoint
from nmt.training.package import fetch_package, is_package


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

    @classmethod
    def from_pretrained(cls, name: str | Path, revision: str | None = None, **options: Any) -> Translator:
        """A model package (nmt-export format=package): a local directory, or a Hugging Face hub id
        ("org/name", pinned by `revision`; cached, and served from the cache with HF_HUB_OFFLINE=1). `options`
        as for `from_checkpoint`."""
        path = Path(name)
        if not path.exists():
            path = fetch_package(str(name), revision)
        if not is_package(path):
            raise NMTError(f"{path} is not a model package (no manifest.json and config.json; make one with "
                           f"nmt-export format=package)")
        return cls.from_checkpoint(path, **options)

    @property
    def model(self) -> Any:
        return self.loaded.model

    @property
    def max_positions(self) -> int | None:
        """The model's position table size (None: no table, as in the RNN models)."""
        return getattr(self.model, "max_positions", None)

    @property
    def input_limit(self) -> int | None:
        """Most source pieces translated per line: max_input_tokens, and the room a position table leaves
        beside EOS (as `translate` truncates); None when unlimited."""
        limit, max_positions = self.max_input_tokens, self.max_positions
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
                         threads: int = 1, *, inter_threads: int = 1, device: str = "cpu",
                         compute_type: str = "default", max_input_tokens: int | None = 250,
                         batch_type: str = "examples", batch_tokens: int = 1024) -> ExportedTranslator:
        """A translator over a CTranslate2 export (nmt-export), loaded once: the same decode settings and input
        limit, the engine's search (see ExportedTranslator for what differs in beam search). threads: the
        engine's intra-op threads per batch; inter_threads: batches decoded in parallel."""
        return ExportedTranslator(model_dir, _decode_settings(decode), device=device, compute_type=compute_type,
                                  inter_threads=inter_threads, intra_threads=threads,
                                  max_input_tokens=max_input_tokens, batch_type=batch_type, batch_tokens=batch_tokens)


class ExportedTranslator:
    """A CTranslate2 model directory written by nmt-export, loaded once (model and SentencePiece models).

    Decoding follows `nmt.decoding.search.translate` step for step: the source is our pieces + EOS, cut to
    `input_limit` pieces (listed in `.truncated`, as the torch engine does); decoding starts from BOS, PAD and
    BOS are never produced, an immediate EOS is allowed, and a sentence of S source tokens (EOS included) gets
    at most floor(max_len_a * S + max_len_b) output tokens. Sentences are sorted by length and cut into batches
    of decode.batch_size sentences (batch_type="examples") or of `batch_tokens` padded source tokens ("tokens");
    each batch is one asynchronous engine call, so inter_threads > 1 decodes batches in parallel.

    The engine takes one length limit per call. Greedy search decodes each batch with its largest limit and cuts
    every output to its own limit, which is exact (greedy's first L tokens do not depend on the limit; a cut
    output keeps the engine's score of the longer output). Beam search is not cut that way (where a search stops
    decides which hypotheses finish), so its batches are also cut wherever the limit changes.

    With beam=1 the outputs are ours, up to float rounding in near ties. Beam search ranks finished hypotheses
    by log-probability / length ** alpha, length counting EOS (CTranslate2 4.x: `length_penalty=alpha`), which
    is ours with decode.length_norm=power; ours defaults to the GNMT penalty (length_norm=gnmt), so beam outputs
    then differ. Two smaller differences remain: the engine rules out PAD/BOS before the softmax (ours after),
    and a hypothesis that reaches the length limit ends there unscored by EOS, where ours scores a forced EOS.

    compute_type "default" computes in the stored type. int8 computation quantizes the activations of every
    matrix product too, which can move a small model's outputs away from float32; compute_type="float32" runs
    int8 weights dequantized.
    """

    def __init__(self, model_dir: str | Path, decode: Any = None, *, device: str = "cpu",
                 compute_type: str = "default", inter_threads: int = 1, intra_threads: int = 1,
                 max_input_tokens: int | None = 250, batch_type: str = "examples", batch_tokens: int = 1024) -> None:
        self.model_dir, self.decode = Path(model_dir), decode if decode is not None else _decode_settings(None)
        info = read_export_info(model_dir)  # one clear line if this is not an export
        if min(inter_threads, intra_threads) < 1:
            raise NMTError(f"threads must be at least 1, got inter_threads={inter_threads}, "
                           f"intra_threads={intra_threads}")
        if max_input_tokens is not None and max_input_tokens < 1:
            raise NMTError(f"max_input_tokens must be at least 1, got {max_input_tokens}")
        if batch_type not in BATCH_TYPES or batch_tokens < 1 or self.decode.batch_size < 1:
            raise NMTError(f"batch_type must be one of {', '.join(BATCH_TYPES)} with a batch size of at least 1, "
                           f"got {batch_type!r}, batch_size={self.decode.batch_size}, batch_tokens={batch_tokens}")
        if not 1 <= self.decode.nbest <= self.decode.beam:
            raise NMTError(f"decode.nbest={self.decode.nbest} must be between 1 and decode.beam={self.decode.beam}")
        ct2 = load_ctranslate2()
        self.src_sp = spm.SentencePieceProcessor(model_file=str(self.model_dir / info["spm"]["src"]))
        self.tgt_sp = spm.SentencePieceProcessor(model_file=str(self.model_dir / info["spm"]["tgt"]))
        try:
            self.engine = ct2.Translator(str(self.model_dir), device=device, compute_type=compute_type,
                                         inter_threads=inter_threads, intra_threads=intra_threads)
        except (ValueError, RuntimeError) as e:
            raise NMTError(f"CTranslate2 cannot load {model_dir} on {device} ({compute_type}): {e}") from None
        self.info, self.max_positions, self.max_input_tokens = info, int(info["max_positions"]), max_input_tokens
        self.device, self.compute_type = self.engine.device, self.engine.compute_type  # as resolved by the engine
        self.inter_threads, self.intra_threads = inter_threads, intra_threads
        self.batch_type, self.batch_tokens = batch_type, batch_tokens
        self.length_norm = "power"  # the engine's only normalisation
        self._never = [[self.tgt_sp.id_to_piece(PAD_ID)], [self.tgt_sp.id_to_piece(BOS_ID)]]
        self.last_batches = 0  # engine calls of the last translate_full

    @property
    def input_limit(self) -> int:
        """Most source pieces translated per line: max_input_tokens and the room the position table leaves."""
        return min(self.max_input_tokens or self.max_positions, self.max_positions - 1)

    def translate_full(self, lines: str | Sequence[str], nbest: int | None = None) -> Translations:
        """As Translator.translate_full, without attention: .hypotheses, .nbest / .scores (the engine's
        normalised scores, best first), .ids, .truncated, .seconds (the engine calls)."""
        lines, d = check_lines(lines), self.decode
        nbest = d.nbest if nbest is None else nbest
        if not 1 <= nbest <= d.beam:
            raise NMTError(f"nbest={nbest} must be between 1 and decode.beam={d.beam}")
        ids = self.src_sp.encode([line.strip() for line in lines], out_type=int)
        truncated = [i for i, seq in enumerate(ids) if len(seq) > self.input_limit]
        for i in truncated:
            ids[i] = ids[i][: self.input_limit]
        src_lens = torch.tensor([len(seq) + 1 for seq in ids], dtype=torch.long)
        # The same limits as our search: one shared implementation, given the export's position table size.
        limits = max_output_lengths(SimpleNamespace(max_positions=self.max_positions), src_lens, d.max_len_a,
                                    d.max_len_b).tolist()
        todo = [i for i, line in enumerate(lines) if line.strip() and limits[i] > 0]  # limit 0: EOS at once, ""
        size = d.batch_size if self.batch_type == "examples" else self.batch_tokens
        batches = [[todo[j] for j in batch] for batch in plan_batches(
            [len(ids[i]) + 1 for i in todo], [limits[i] for i in todo], self.batch_type, size, one_limit=d.beam > 1)]

        self.last_batches = len(batches)
        start = time.perf_counter()
        pending = [self.engine.translate_batch(
            [[self.src_sp.id_to_piece(t) for t in ids[i]] for i in batch], max_batch_size=0, asynchronous=True,
            beam_size=d.beam, num_hypotheses=nbest, length_penalty=d.alpha, return_scores=True,
            max_decoding_length=max(limits[i] for i in batch), min_decoding_length=0, max_input_length=0,
            suppress_sequences=self._never) for batch in batches]
        nbest_ids: list[list[list[int]]] = [[[]] for _ in lines]
        scores: list[list[float]] = [[0.0] for _ in lines]
        for batch, results in zip(batches, pending, strict=True):
            for i, result in zip(batch, results, strict=True):
                out = result.result()
                nbest_ids[i] = [[self.tgt_sp.piece_to_id(p) for p in hyp[: limits[i]]] for hyp in out.hypotheses]
                scores[i] = list(out.scores)
        seconds = time.perf_counter() - start

        flat = [hyp for hyps in nbest_ids for hyp in hyps]
        decoded = iter(self.tgt_sp.decode(flat))
        nbest_text = [[next(decoded) for _ in hyps] for hyps in nbest_ids]
        return Translations(hypotheses=[hyps[0] for hyps in nbest_text], nbest=nbest_text, scores=scores,
                            ids=[hyps[0] for hyps in nbest_ids], attention=None,
                            num_tokens=sum(len(hyps[0]) for hyps in nbest_ids), seconds=seconds, truncated=truncated)

    def translate(self, lines: str | Sequence[str]) -> str | list[str]:
        """As Translator.translate: a str is one sentence and gets a str back; TypeError for non-strings."""
        hypotheses = self.translate_full(lines).hypotheses
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
