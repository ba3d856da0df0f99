"""`nmt-export`: convert a Transformer checkpoint for a fast inference engine (CTranslate2).

    nmt-export checkpoint=outputs/.../best.pt out=exports/ct2-int8                   # int8 weights
    nmt-export checkpoint=outputs/<run dir> out=exports/ct2-fp32 quantization=float32

`out` must not exist or be empty: an export is never overwritten. Translate with the result through
`nmt-translate engine=ctranslate2 export_dir=<out>` or `Translator.from_ctranslate2(<out>)` (the SentencePiece
model is inside).
Needs the optional engine: pip install -e .[fast]
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from nmt.cli.entry import hydra_command
from nmt.errors import NMTError, user_errors
from nmt.inference.export import export_ctranslate2
from nmt.training.checkpoint import resolve_checkpoint

FORMATS = ("ctranslate2",)


@user_errors
def export_command(cfg: DictConfig) -> Path:
    if not cfg.checkpoint:
        raise NMTError("no checkpoint given: nmt-export checkpoint=path/to/best.pt out=exports/ct2")
    if not cfg.out:
        raise NMTError("no output directory given: nmt-export checkpoint=... out=exports/ct2")
    if cfg.format not in FORMATS:
        raise NMTError(f"format must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
    checkpoint = resolve_checkpoint(cfg.checkpoint)
    out = export_ctranslate2(checkpoint, cfg.out, cfg.quantization)
    print(f"exported {checkpoint} -> {out} ({cfg.format}, {cfg.quantization})")
    return out


@hydra_command("export")
def main(cfg: DictConfig) -> None:
    export_command(cfg)


if __name__ == "__main__":
    main()
