"""`nmt-translate`: files and stdin, line counts with empty lines, n-best output, truncation, errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from nmt.cli.translate import translate_command
from nmt.config import CONFIG_DIR, DecodeConfig
from nmt.decoding.search import translate
from nmt.training.checkpoint import load_model

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]


def config(*overrides: str):
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="translate", overrides=["device=cpu", "decode.beam=2", *overrides])


class FakeStdin(io.TextIOWrapper):
    """A non-terminal stdin with the given bytes."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data), encoding="utf-8")

    def isatty(self) -> bool:
        return False


@pytest.fixture(scope="module")
def inputs(tiny_run) -> list[str]:
    """Test sentences with empty and blank lines mixed in."""
    src = Path(tiny_run.files["test"][0]).read_text(encoding="utf-8").splitlines()[:12]
    return src[:3] + [""] + src[3:8] + ["   "] + src[8:] + [""]


def test_file_to_file_keeps_one_line_per_input(tiny_run, inputs, tmp_path):
    (tmp_path / "in.de").write_text("\n".join(inputs) + "\n", encoding="utf-8")
    n = translate_command(config(f"checkpoint={tiny_run.run_dir}", f"input={tmp_path / 'in.de'}",
                                 f"output={tmp_path / 'out.en'}"))
    out = (tmp_path / "out.en").read_text(encoding="utf-8").split("\n")
    assert out[-1] == "" and len(out) - 1 == len(inputs) == n
    for src, hyp in zip(inputs, out, strict=False):
        if not src.strip():
            assert hyp == ""
    # Same output as calling the library on the same sentences.
    loaded = load_model(tiny_run.run_dir / "best.pt")
    expected = translate(loaded.model, loaded.tokenizer, inputs, DecodeConfig(beam=2), "cpu").hypotheses
    assert out[:-1] == expected
    assert not list(tmp_path.glob(".out.en.*"))  # no temp file left behind


def test_stdin_to_stdout_with_nbest_and_truncation(tiny_run, inputs, capsys):
    stdin = FakeStdin(("\n".join(inputs) + "\n").encode("utf-8"))
    stdout = io.StringIO()
    stderr = io.StringIO()
    translate_command(config(f"checkpoint={tiny_run.run_dir / 'best.pt'}", "decode.nbest=2", "max_input_tokens=4"),
        stdin=stdin, stdout=stdout, stderr=stderr)
    rows = [line.split(" ||| ") for line in stdout.getvalue().splitlines()]
    assert all(len(r) == 3 for r in rows)
    indices = [int(r[0]) for r in rows]
    assert indices == [i for i in range(len(inputs)) for _ in range(2 if inputs[i].strip() else 1)]
    for i in range(len(inputs)):
        scores = [float(r[2]) for r in rows if int(r[0]) == i]
        assert scores == sorted(scores, reverse=True)
    warnings = [line for line in stderr.getvalue().splitlines() if line.startswith("warning:")]
    pieces = load_model(tiny_run.run_dir / "best.pt").tokenizer.encode_src([s.strip() for s in inputs])
    long_lines = [i + 1 for i, p in enumerate(pieces) if len(p) > 4]
    assert all(w.startswith("warning: stdin line ") for w in warnings), warnings
    assert long_lines and [int(w.split()[3].rstrip(":")) for w in warnings] == long_lines


def test_interactive_mode_answers_line_by_line(tiny_run):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stdout = io.StringIO()
    n = translate_command(config(f"checkpoint={tiny_run.run_dir}", "decode.beam=1"),
            stdin=Terminal("Ein Hund läuft.\n\nZwei Männer.\n"), stdout=stdout, stderr=io.StringIO())
    assert n == 3
    assert len(stdout.getvalue().split("\n")) == 4 and stdout.getvalue().split("\n")[1] == ""


def test_missing_checkpoint_is_a_user_error(capsys):
    with pytest.raises(SystemExit) as exc:
        translate_command(config("checkpoint="))
    assert exc.value.code == 2
    assert capsys.readouterr().err.startswith("error: no checkpoint given")


@pytest.mark.slow
def test_command_line_pipe_and_error_exit(tiny_run, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    bad = tmp_path / "bad.de"
    bad.write_bytes(b"gut\n\xff\xfe kaputt\n")

    def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nmt.cli.translate", "device=cpu", *args], input=stdin,
                              capture_output=True, env=env, cwd=tmp_path)

    proc = cli(f"checkpoint={tiny_run.run_dir}", f"input={bad}")
    assert proc.returncode == 2
    assert proc.stderr.decode().strip().splitlines() == [f"error: input file {bad}: line 2 is not valid UTF-8"]
    # A working pipe: stdin to stdout, empty lines kept.
    proc = cli(f"checkpoint={tiny_run.run_dir}", "decode=greedy", stdin=b"Ein Hund.\n\nEine Katze.\n")
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode().split("\n")
    assert len(out) == 4 and out[1] == "" and out[3] == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.de"]  # no stray files
