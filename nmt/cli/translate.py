"""`nmt-translate`: translate a file or stdin with a checkpoint, one output line per input line.

    nmt-translate checkpoint=outputs/.../best.pt input=test.de output=test.hyp.en
    cat test.de | nmt-translate checkpoint=outputs/<run dir> decode=greedy > out.en
    nmt-translate checkpoint=... input=test.de decode.nbest=5       # "i ||| hypothesis ||| score" lines
    nmt-translate checkpoint=...                                     # at a terminal: line by line

Empty input lines give empty output lines. Lines longer than max_input_tokens pieces are truncated, with a
warning on stderr. Output files are written whole or not at all (temp file + rename).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import hydra
from omegaconf import DictConfig

from nmt.cli.common import CONFIG_DIR, pick_device
from nmt.cli.evaluate import decode_lines, read_lines, resolve_checkpoint
from nmt.errors import NMTError, user_errors


def format_lines(out: Any, nbest: int, first_index: int = 0) -> list[str]:
    """Output lines for a `Translations`: the best hypothesis per input, or Moses-style n-best lines."""
    if nbest <= 1:
        return list(out.hypotheses)
    return [
        f"{first_index + i} ||| {hyp} ||| {score:.4f}"
        for i, (hyps, scores) in enumerate(zip(out.nbest, out.scores, strict=True))
        for hyp, score in zip(hyps, scores, strict=True)
    ]


def read_stream(stream: TextIO) -> list[str]:
    """All lines of a text stream (split at newlines, like a file), decoded strictly as UTF-8."""
    data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode("utf-8")
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the newline that ends the last line does not start another
    return decode_lines(raw_lines, "stdin")


def write_atomic(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _warn_truncated(out: Any, limit: int, first_line: int, stderr: TextIO) -> None:
    for i in out.truncated:
        print(f"warning: line {first_line + i}: longer than max_input_tokens={limit} pieces, truncated",
              file=stderr)


@user_errors
def run(cfg: DictConfig, stdin: TextIO | None = None, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    """Translate as configured; returns the number of input lines."""
    from nmt.decoding.search import translate
    from nmt.training.checkpoint import load_model

    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    if not cfg.checkpoint:
        raise NMTError("no checkpoint given: nmt-translate checkpoint=path/to/best.pt (or a run dir)")
    if cfg.max_input_tokens < 1:
        raise NMTError(f"max_input_tokens must be at least 1, got {cfg.max_input_tokens}")
    device = pick_device(cfg.device)
    loaded = load_model(resolve_checkpoint(cfg.checkpoint), device, list(cfg.model_overrides))

    def decode(lines: list[str]) -> Any:
        return translate(loaded.model, loaded.tokenizer, lines, cfg.decode, device,
                         max_input_tokens=cfg.max_input_tokens)

    if cfg.input == "-" and cfg.output == "-" and stdin.isatty():
        print("type a sentence and press Enter (Ctrl-D to quit)", file=stderr)
        count = 0
        for line in stdin:
            out = decode([line.rstrip("\r\n")])
            _warn_truncated(out, cfg.max_input_tokens, count + 1, stderr)
            print("\n".join(format_lines(out, cfg.decode.nbest, count)), file=stdout, flush=True)
            count += 1
        return count

    lines = read_stream(stdin) if cfg.input == "-" else read_lines(cfg.input, "input file")
    out = decode(lines)
    _warn_truncated(out, cfg.max_input_tokens, 1, stderr)
    result = format_lines(out, cfg.decode.nbest)
    if cfg.output == "-":
        stdout.writelines(line + "\n" for line in result)
        stdout.flush()
    else:
        write_atomic(Path(cfg.output), result)
    print(f"translated {len(lines)} lines in {out.seconds:.2f} s ({out.sentences_per_second:.1f} sentences/s, "
          f"{out.tokens_per_second:.0f} tokens/s)", file=stderr)
    return len(lines)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="translate")
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
