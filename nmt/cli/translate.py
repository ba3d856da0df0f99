"""`nmt-translate`: translate a file or stdin with a checkpoint, one output line per input line.

    nmt-translate checkpoint=outputs/.../best.pt input=test.de output=test.hyp.en
    cat test.de | nmt-translate checkpoint=outputs/<run dir> decode=greedy > out.en
    nmt-translate checkpoint=... input=test.de decode.nbest=5       # "i ||| hypothesis ||| score" lines
    nmt-translate checkpoint=...                                     # at a terminal: line by line
    nmt-translate engine=ctranslate2 export_dir=exports/ct2-int8 input=test.de   # an nmt-export directory

Empty input lines give empty output lines. Lines longer than max_input_tokens pieces are truncated, with a
warning on stderr. Output files are written whole or not at all (temp file + rename).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from omegaconf import DictConfig, OmegaConf

from nmt.cli.entry import hydra_command
from nmt.errors import NMTError, user_errors, warn
from nmt.inference.translator import ExportedTranslator, Translator, format_lines
from nmt.io import check_writable, read_stream, read_text_lines, write_lines


def _warn_truncated(truncated: list[int], translator: Translator | ExportedTranslator, first_line: int,
                    stderr: TextIO, where: str) -> None:
    limit = translator.input_limit
    if limit == translator.max_input_tokens:
        why = f"max_input_tokens={limit} pieces"
    else:  # the model's position table is the tighter limit
        why = f"{limit} pieces (model.max_positions={translator.max_positions}, one is EOS)"
    for i in truncated:
        warn(f"{where} line {first_line + i}: longer than {why}, truncated", stderr)


def _input_name(cfg: DictConfig) -> str:
    return "stdin" if cfg.input == "-" else f"input file {cfg.input}"


@user_errors
def translate_command(cfg: DictConfig, stdin: TextIO | None = None, stdout: TextIO | None = None,
        stderr: TextIO | None = None) -> int:
    """Translate as configured; returns the number of input lines."""
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    if cfg.input == "-" and stdin is None:  # started with stdin closed (`exec 0<&-`): Python has no sys.stdin
        raise NMTError("stdin is closed: give input=<file>, or pipe the text in")
    if cfg.output == "-" and stdout is None:
        raise NMTError("stdout is closed: give output=<file>")
    if cfg.output != "-":
        check_writable(cfg.output)  # before the work, not after it
        if cfg.input != "-" and Path(cfg.input).resolve() == Path(cfg.output).resolve():
            raise NMTError(f"output={cfg.output} is the input file; write the translations to another file")
    if cfg.engine == "ctranslate2":
        return _run_exported(cfg, stdin, stdout, stderr)
    if cfg.engine != "torch":
        raise NMTError(f"engine must be torch or ctranslate2, got {cfg.engine!r}")
    if not cfg.checkpoint:
        raise NMTError("no checkpoint given: nmt-translate checkpoint=path/to/best.pt (or a run dir)")
    translator = Translator.from_checkpoint(cfg.checkpoint, cfg.device, OmegaConf.to_container(cfg.decode),
                                            list(cfg.model_overrides), cfg.max_input_tokens)
    nbest = cfg.decode.nbest
    if cfg.input == "-" and cfg.output == "-" and stdin.isatty():
        print("type a sentence and press Enter (Ctrl-D to quit)", file=stderr)
        count = 0
        for line in stdin:
            out = translator.translate_full([line.rstrip("\r\n")], nbest)
            _warn_truncated(out.truncated, translator, count + 1, stderr, "stdin")
            print("\n".join(format_lines(out, nbest, count)), file=stdout, flush=True)
            count += 1
        return count

    lines = read_stream(stdin, "stdin") if cfg.input == "-" else read_text_lines(cfg.input, "input file")
    out = translator.translate_full(lines, nbest)
    _warn_truncated(out.truncated, translator, 1, stderr, _input_name(cfg))
    result = format_lines(out, nbest)
    if cfg.output == "-":
        stdout.writelines(line + "\n" for line in result)
        stdout.flush()
    else:
        write_lines(cfg.output, result)
    print(f"translated {len(lines)} lines in {out.seconds:.2f} s ({out.sentences_per_second:.1f} sentences/s, "
          f"{out.tokens_per_second:.0f} tokens/s)", file=stderr)
    return len(lines)


def _run_exported(cfg: DictConfig, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> int:
    """engine=ctranslate2: a whole file or stdin through an nmt-export model directory."""
    if not cfg.export_dir:
        raise NMTError("engine=ctranslate2 needs export_dir=<directory written by nmt-export>")
    translator = Translator.from_ctranslate2(cfg.export_dir, OmegaConf.to_container(cfg.decode), cfg.threads,
                                             max_input_tokens=cfg.max_input_tokens)
    lines = read_stream(stdin, "stdin") if cfg.input == "-" else read_text_lines(cfg.input, "input file")
    start = time.perf_counter()
    out = translator.translate_full(lines)
    seconds = time.perf_counter() - start
    _warn_truncated(out.truncated, translator, 1, stderr, _input_name(cfg))
    result = out.hypotheses
    if cfg.output == "-":
        stdout.writelines(line + "\n" for line in result)
        stdout.flush()
    else:
        write_lines(cfg.output, result)
    print(f"translated {len(lines)} lines in {seconds:.2f} s with ctranslate2", file=stderr)
    return len(lines)


@hydra_command("translate")
def main(cfg: DictConfig) -> None:
    translate_command(cfg)


if __name__ == "__main__":
    main()
