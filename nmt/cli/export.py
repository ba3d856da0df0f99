"""`nmt-export`: a trained model for others: a model package to share, or a CTranslate2 conversion for speed.

    nmt-export format=package checkpoint=outputs/<run dir> out=packages/de-en \\
        evaluations=[outputs/eval/<time>/metrics.json]                     # weights, config, tokenizer, card
    nmt-export format=package checkpoint=... out=... push_to=<org>/<name>    # ... and upload it to the hub
    nmt-export checkpoint=outputs/.../best.pt out=exports/ct2-int8          # CTranslate2, int8 weights
    nmt-export checkpoint=outputs/<run dir> out=exports/ct2-fp32 quantization=float32

`out` must not exist or be empty: an export is never overwritten. A package (nmt/training/package.py) is taken
by every command that takes a checkpoint (`checkpoint=<package>`, or `checkpoint=hf:<org>/<name>` from the hub)
and by `Translator.from_pretrained`; `ct2=true` adds a CTranslate2 conversion of a Transformer in its ct2/.
A CTranslate2 export translates through `nmt-translate engine=ctranslate2 export_dir=<out>` or
`Translator.from_ctranslate2(<out>)`; it needs the optional engine: pip install -e .[fast]
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from nmt.cli.entry import hydra_command
from nmt.errors import NMTError, user_errors
from nmt.inference.export import export_ctranslate2
from nmt.training.checkpoint import Checkpoint, resolve_checkpoint
from nmt.training.package import evaluation_reports, model_card, push_package, size_of, write_package

FORMATS = ("ctranslate2", "package")


@user_errors
def export_command(cfg: DictConfig) -> Path:
    if not cfg.checkpoint:
        raise NMTError("no checkpoint given: nmt-export checkpoint=path/to/best.pt out=exports/ct2")
    if not cfg.out:
        raise NMTError("no output directory given: nmt-export checkpoint=... out=exports/ct2")
    if cfg.format not in FORMATS:
        raise NMTError(f"format must be one of {', '.join(FORMATS)}, got {cfg.format!r}")
    if cfg.format != "package" and (cfg.evaluations or cfg.ct2 or cfg.push_to):
        raise NMTError("evaluations, ct2 and push_to belong to format=package")
    checkpoint = resolve_checkpoint(cfg.checkpoint)
    if cfg.format == "ctranslate2":
        out = export_ctranslate2(checkpoint, cfg.out, cfg.quantization)
        print(f"exported {checkpoint} -> {out} ({cfg.format}, {cfg.quantization})")
        return out
    loaded = Checkpoint.load(checkpoint)
    payload = loaded.to_payload()
    card = model_card(payload, str(checkpoint), evaluation_reports(list(cfg.evaluations)))
    extra = (lambda staging: export_ctranslate2(checkpoint, staging / "ct2", cfg.quantization)) if cfg.ct2 else None
    out = write_package(payload, cfg.out, card, extra)
    print(f"packaged {checkpoint} -> {out} ({size_of(out) / 1e6:.1f} MB; the checkpoint: "
          f"{size_of(checkpoint) / 1e6:.1f} MB)")
    if cfg.push_to:
        url = push_package(out, cfg.push_to, f"nmt model package of {checkpoint} (step {loaded.step})")
        print(f"pushed to {cfg.push_to}: {url}")
    return out


@hydra_command("export")
def main(cfg: DictConfig) -> None:
    export_command(cfg)


if __name__ == "__main__":
    main()
