"""Export a Transformer checkpoint to CTranslate2 (a fast C++ inference engine), and plan the engine's batches.

    export_ctranslate2("outputs/.../best.pt", "exports/ct2-int8", quantization="int8")
    Translator.from_ctranslate2("exports/ct2-int8").translate(["Ein Hund läuft."])   # nmt.inference.translator

The model directory holds what CTranslate2 writes (model.bin, config.json, the vocabularies: SentencePiece
pieces in id order, so ids agree with ours), the SentencePiece model(s) and `nmt_export.json` (what it was
converted from). Every weight maps onto the engine's pre-norm TransformerSpec one to one:

    ours (Transformer)                        CTranslate2 spec
    src_embed / tgt_embed (V, D)              encoder.embeddings[0] / decoder.embeddings (times sqrt(D))
    pos_table or pos_embed (max_positions, D) encoder/decoder.position_encodings.encodings (copied)
    self_norm, cross_norm, ff_norm            self_attention / attention / ffn .layer_norm
    self_attn q_proj + kv_proj                self_attention.linear[0] (3D, D): rows q, k, v
    cross_attn q_proj, kv_proj                attention.linear[0] (D, D), attention.linear[1] (2D, D): rows k, v
    *.out_proj                                *.linear[2] (self: linear[1])
    ff[0], ff[3]                              ffn.linear_0 (F, D), ffn.linear_1 (D, F), ReLU between
    encoder_norm, decoder_norm, proj (V, D)   encoder/decoder.layer_norm, decoder.projection (no bias)

The position table is always copied: CTranslate2's own sinusoids lay sin and cos out in two halves, with
another frequency spacing and positions counted from 1, while ours interleave them from position 0.
`ctranslate2` is imported only when used (`pip install -e .[fast]`).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nmt.config import BOS_ID, EOS_ID, UNK_ID
from nmt.errors import NMTError
from nmt.io import canonical_json, read_json, write_json
from nmt.models.transformer import Transformer
from nmt.training.checkpoint import load_model

INFO_FILE = "nmt_export.json"
INFO_FORMAT = "nmt-ctranslate2"
BATCH_TYPES = ("examples", "tokens")
QUANTIZATIONS = ("int8", "int8_float32", "int8_float16", "int8_bfloat16", "int16", "float16", "bfloat16", "float32")


def load_ctranslate2() -> Any:
    """The ctranslate2 module, or one clear line when the optional extra is missing."""
    try:
        import ctranslate2
    except ImportError:
        raise NMTError("the CTranslate2 engine is not installed; install it with: pip install -e .[fast]") from None
    return ctranslate2


# ---------------------------------------------------------------------------------------------- weights


def _array(t: torch.Tensor) -> Any:
    """A float32 NumPy copy (the spec quantizes on save)."""
    return t.detach().to("cpu", torch.float32).numpy().copy()


def _set_linear(spec: Any, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """weight (out, in), bias (out,): nn.Linear's layout is the engine's."""
    spec.weight = _array(weight)
    if bias is not None:
        spec.bias = _array(bias)


def _set_norm(spec: Any, norm: torch.nn.LayerNorm) -> None:
    spec.gamma = _array(norm.weight)
    spec.beta = _array(norm.bias)


def _set_attention(spec: Any, attn: Any, norm: torch.nn.LayerNorm, self_attention: bool) -> None:
    """Self-attention: one fused (3D, D) projection [q; k; v]. Cross-attention: q (D, D) and [k; v] (2D, D).
    kv_proj's rows are already [k; v] (`keys_values` chunks its output in that order)."""
    _set_norm(spec.layer_norm, norm)
    q, kv = attn.q_proj, attn.kv_proj
    if self_attention:
        _set_linear(spec.linear[0], torch.cat([q.weight, kv.weight]), torch.cat([q.bias, kv.bias]))
    else:
        _set_linear(spec.linear[0], q.weight, q.bias)
        _set_linear(spec.linear[1], kv.weight, kv.bias)
    _set_linear(spec.linear[-1], attn.out_proj.weight, attn.out_proj.bias)


def _set_ffn(spec: Any, ff: torch.nn.Sequential, norm: torch.nn.LayerNorm) -> None:
    _set_norm(spec.layer_norm, norm)
    _set_linear(spec.linear_0, ff[0].weight, ff[0].bias)
    _set_linear(spec.linear_1, ff[3].weight, ff[3].bias)


def transformer_spec(model: Any, tokenizer: Any) -> Any:
    """A ctranslate2.specs.TransformerSpec holding `model`'s weights and the tokenizer's vocabularies."""
    ct2 = load_ctranslate2()
    specs = ct2.specs
    enc_layers, dec_layers = len(model.encoder_layers), len(model.decoder_layers)
    encoder = specs.TransformerEncoderSpec(enc_layers, model.heads, pre_norm=True)
    decoder = specs.TransformerDecoderSpec(dec_layers, model.heads, pre_norm=True)
    positions = model.pos_embed.weight if model.pos_embed is not None else model.pos_table

    for side, embed in ((encoder, model.src_embed), (decoder, model.tgt_embed)):
        table = side.embeddings[0] if isinstance(side.embeddings, list) else side.embeddings
        table.weight = _array(embed.weight)
        side.scale_embeddings = True  # multiply by sqrt(D), as Transformer._embed does
        side.position_encodings.encodings = _array(positions)
    for spec, layer in zip(encoder.layer, model.encoder_layers, strict=True):
        _set_attention(spec.self_attention, layer.self_attn, layer.self_norm, self_attention=True)
        _set_ffn(spec.ffn, layer.ff, layer.ff_norm)
    for spec, layer in zip(decoder.layer, model.decoder_layers, strict=True):
        _set_attention(spec.self_attention, layer.self_attn, layer.self_norm, self_attention=True)
        _set_attention(spec.attention, layer.cross_attn, layer.cross_norm, self_attention=False)
        _set_ffn(spec.ffn, layer.ff, layer.ff_norm)
    _set_norm(encoder.layer_norm, model.encoder_norm)
    _set_norm(decoder.layer_norm, model.decoder_norm)
    _set_linear(decoder.projection, model.proj.weight)

    spec = specs.TransformerSpec(encoder, decoder)
    src_sp, tgt_sp = tokenizer.src_sp, tokenizer.tgt_sp
    spec.register_source_vocabulary([src_sp.id_to_piece(i) for i in range(src_sp.get_piece_size())])
    spec.register_target_vocabulary([tgt_sp.id_to_piece(i) for i in range(tgt_sp.get_piece_size())])
    # Our batches: source ids + EOS; the target side starts from BOS and ends at EOS (ids 2 and 3).
    spec.config.unk_token = tgt_sp.id_to_piece(UNK_ID)
    spec.config.bos_token = tgt_sp.id_to_piece(BOS_ID)
    spec.config.eos_token = tgt_sp.id_to_piece(EOS_ID)
    spec.config.decoder_start_token = tgt_sp.id_to_piece(BOS_ID)
    spec.config.add_source_bos = False
    spec.config.add_source_eos = True
    spec.config.layer_norm_epsilon = model.encoder_norm.eps
    return spec


# ----------------------------------------------------------------------------------------------- export


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise NMTError(f"{out_dir} already exists and is not empty; exports are never overwritten, choose another out")


def export_ctranslate2(checkpoint_path: str | Path, out_dir: str | Path, quantization: str = "int8") -> Path:
    """Convert a Transformer checkpoint into a CTranslate2 model directory `out_dir`; returns it.

    quantization: how the weights are stored (one of QUANTIZATIONS; int8 is about 4x smaller and faster on
    CPU, float32 keeps our numbers). `out_dir` must not exist or be empty. The directory is assembled next to
    it and renamed into place, so a failed export leaves nothing behind.
    """
    ct2 = load_ctranslate2()
    if quantization not in QUANTIZATIONS:
        raise NMTError(f"quantization must be one of {', '.join(QUANTIZATIONS)}, got {quantization!r}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    loaded = load_model(checkpoint_path, "cpu")
    if not isinstance(loaded.model, Transformer):
        raise NMTError(f"{checkpoint_path}: the CTranslate2 engine supports Transformer checkpoints only, this one "
                       f"is model.arch={loaded.cfg.model.arch}")
    spec = transformer_spec(loaded.model, loaded.tokenizer)

    class _Converter(ct2.converters.Converter):
        def _load(self) -> Any:
            return spec

    tok = loaded.tokenizer
    spm_files = {"src": "spm.model", "tgt": "spm.model"} if tok.joint else {"src": "spm.src.model",
                                                                           "tgt": "spm.tgt.model"}
    info = {
        "format": INFO_FORMAT,
        "checkpoint": str(Path(checkpoint_path).resolve()),
        "step": loaded.checkpoint.step,
        "config_sha256": hashlib.sha256(canonical_json(loaded.checkpoint.config).encode()).hexdigest(),
        "quantization": quantization,
        "ctranslate2": ct2.__version__,
        "max_positions": loaded.model.max_positions,
        "tokenizer_sha256": tok.sha256,
        "spm": spm_files,
    }
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as e:
        raise NMTError(f"cannot write {out_dir}: {e.strerror or e}") from None
    try:
        model_dir = staging / "model"
        _Converter().convert(str(model_dir), quantization=quantization)
        (model_dir / spm_files["src"]).write_bytes(tok.src_model)
        (model_dir / spm_files["tgt"]).write_bytes(tok.tgt_model)
        write_json(model_dir / INFO_FILE, info)
        _check_out_dir(out_dir)  # still free after the conversion
        if out_dir.exists():
            out_dir.rmdir()
        os.replace(model_dir, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir


# -------------------------------------------------------------------------------------------- translate


def read_export_info(model_dir: str | Path) -> dict[str, Any]:
    """The manifest of an nmt-export directory, checked before the engine loads anything: valid JSON, the keys
    the translator reads, and the files they name present; one NMTError naming what is missing."""
    model_dir = Path(model_dir)
    path = model_dir / INFO_FILE
    if not model_dir.is_dir():
        raise NMTError(f"export_dir {model_dir} is not a directory written by nmt-export")
    if not path.is_file():
        raise NMTError(f"{model_dir} is not a model directory written by nmt-export (no {INFO_FILE})")
    info = read_json(path)  # not JSON: one line naming the file
    if not isinstance(info, dict) or info.get("format") != INFO_FORMAT:
        got = info.get("format") if isinstance(info, dict) else type(info).__name__
        raise NMTError(f"{path} is not an nmt CTranslate2 export (format {got!r})")
    spm_files = info.get("spm")
    if not isinstance(spm_files, dict) or not all(isinstance(spm_files.get(k), str) for k in ("src", "tgt")):
        raise NMTError(f"{path}: no SentencePiece models named (the key spm with src and tgt); export again")
    if not isinstance(info.get("max_positions"), int):
        raise NMTError(f"{path}: no max_positions; export again")
    missing = [name for name in ("model.bin", spm_files["src"], spm_files["tgt"]) if not (model_dir / name).is_file()]
    if missing:
        raise NMTError(f"{model_dir}: missing {', '.join(sorted(set(missing)))} (named by {INFO_FILE}); export again")
    return info


def plan_batches(lengths: Sequence[int], limits: Sequence[int], batch_type: str = "examples", size: int = 64,
                 one_limit: bool = False) -> list[list[int]]:
    """Positions 0..N-1 sorted by length (shortest first, stable) and cut into batches.

    lengths: source tokens per sentence (EOS included); limits: its output length limit. batch_type "examples":
    at most `size` sentences; "tokens": at most `size` padded source tokens (sentences x the longest), CTranslate2's
    rule, a longer sentence alone. one_limit: also cut wherever the limit changes, so that every batch can be
    one engine call (CTranslate2 takes one max_decoding_length per call).
    """
    if batch_type not in BATCH_TYPES:
        raise NMTError(f"batch_type must be one of {', '.join(BATCH_TYPES)}, got {batch_type!r}")
    if size < 1:
        raise NMTError(f"the batch size must be at least 1, got {size}")
    batches: list[list[int]] = []
    batch: list[int] = []
    longest = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        longest_with = max(longest, lengths[i])
        full = len(batch) + 1 > size if batch_type == "examples" else (len(batch) + 1) * longest_with > size
        if batch and (full or (one_limit and limits[i] != limits[batch[0]])):
            batches.append(batch)
            batch, longest_with = [], lengths[i]
        batch.append(i)
        longest = longest_with
    if batch:
        batches.append(batch)
    return batches
