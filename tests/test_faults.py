"""Faults outside the user's input, through every console script: a full or read-only disk (tests/faults/: writes
fail at a chosen path), Ctrl-C at chosen moments of start-up, a closed stdin and a closed stdout pipe, and a
refused resume. Each ends in one line and a non-zero exit and leaves no partial output and no changed file."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest
from console import BIN, fault_env, run_script, script_env
from train_utils import overrides, write_corpus

MIRROR = Path(os.environ.get("NMT_DATA_MIRROR", "/work/shared/data"))


def only_line(result: subprocess.CompletedProcess, code: int = 2) -> str:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, f"exit {result.returncode}: {result.stderr[-3000:]}"
    assert len(lines) == 1, result.stderr[-3000:]
    return lines[0]


def snapshot(directory: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `directory`: its bytes and mtime."""
    return {str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    if not (MIRROR / "multi30k").is_dir():
        pytest.skip("no Multi30k mirror (NMT_DATA_MIRROR)")
    base = tmp_path_factory.mktemp("tiny")
    return write_corpus(MIRROR, base / "corpus"), base / "data"


@pytest.fixture(scope="module")
def trained(tiny, tmp_path_factory) -> Path:
    """A tiny RNN-attention run (nmt-train, model=rnn_fixed would do as well) with last.pt and its .hydra/."""
    run_dir = tmp_path_factory.mktemp("runs") / "rnn"
    result = run_script("nmt-train", overrides(*tiny, "train.max_steps=2", "model=rnn_fixed", "train.resume=auto",
                                               f"hydra.run.dir={run_dir}"), cwd=run_dir.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir


# 1. Write faults -----------------------------------------------------------------------------------------------
def test_a_write_fault_in_the_library_is_one_line(tmp_path, fail_writes, capsys):
    from nmt.errors import user_errors
    from nmt.io import undo_on_failure

    out = tmp_path / "out"

    @user_errors
    def command() -> None:
        with undo_on_failure(out):
            out.mkdir()
            (out / "part.txt").write_text("half")
            fail_writes("ENOSPC", out / "plot.png")
            with open(out / "plot.png", "wb") as f:
                f.write(b"png")

    with pytest.raises(SystemExit) as e:
        command()
    assert e.value.code == 2
    assert capsys.readouterr().err == f"error: cannot write {out / 'plot.png'}: No space left on device\n"
    assert not out.exists()  # what the command half-wrote is gone


@pytest.mark.slow
@pytest.mark.parametrize("errno_name, reason", [("ENOSPC", "No space left on device"),
                                                ("EROFS", "Read-only file system")])
def test_nmt_train_on_a_full_or_read_only_disk_is_one_line_and_leaves_no_record(tiny, tmp_path, errno_name, reason):
    run_dir = tmp_path / "run"
    result = run_script("nmt-train", overrides(*tiny, f"hydra.run.dir={run_dir}"), cwd=tmp_path,
                        env=fault_env(write=f"{errno_name}:{run_dir / '.hydra'}"))
    line = only_line(result)
    assert line.startswith(f"error: cannot write {run_dir.resolve() / '.hydra'}") and line.endswith(reason), line
    assert not (run_dir / ".hydra").exists() and not (run_dir / "train.log").exists()


@pytest.mark.slow
def test_nmt_prepare_on_a_full_disk_leaves_no_partial_dataset(tiny, tmp_path):
    corpus, _ = tiny
    root = tmp_path / "data"
    args = [a for a in overrides(corpus, root) if a.startswith(("data", "+data"))]
    result = run_script("nmt-prepare", args, cwd=tmp_path,
                        env=fault_env(write=f"ENOSPC:{root / 'prepared' / 'tiny' / 'dataset.tmp'}"))
    line = only_line(result)
    assert line.startswith("error: cannot write ") and "dataset.tmp" in line, line
    assert line.endswith("No space left on device"), line
    assert not (root / "prepared" / "tiny").exists()
    assert run_script("nmt-prepare", args, cwd=tmp_path).returncode == 0  # a rerun starts clean


@pytest.mark.slow
def test_nmt_evaluate_on_a_full_disk_removes_its_output_and_a_rerun_works(trained, tmp_path):
    out = tmp_path / "eval"
    args = [f"checkpoints=[{trained}]", "split=valid", f"out_dir={out}", "bootstrap_samples=0", "device=cpu",
            "attention_sentences=[0]"]
    result = run_script("nmt-evaluate", args, cwd=tmp_path, env=fault_env(write=f"ENOSPC:{out / 'bleu_by_length.png'}"))
    assert only_line(result) == f"error: cannot write {out / 'bleu_by_length.png'}: No space left on device"
    assert not out.exists()
    result = run_script("nmt-evaluate", args, cwd=tmp_path)
    assert result.returncode == 0 and (out / "bleu_by_length.png").is_file(), result.stderr[-3000:]


@pytest.mark.slow
@pytest.mark.parametrize("script, args", [
    ("nmt-translate", ["input=src.txt", "output={out}/hyp.txt"]),
    ("nmt-score", ["src_file=src.txt", "ref_file=src.txt", "out={out}/scores.tsv"]),
    ("nmt-average", []),
])
def test_every_writing_script_names_the_file_it_cannot_write(trained, tmp_path, script, args):
    (tmp_path / "src.txt").write_text("ein hund .\n", encoding="utf-8")
    out = tmp_path / "ro"
    if script == "nmt-average":
        args = [str(trained / "last.pt"), str(trained / "last.pt"), "--output", f"{out}/avg.pt"]
    else:
        args = [f"checkpoint={trained}", "device=cpu", *(a.format(out=out) for a in args)]
    result = run_script(script, args, cwd=tmp_path, env=fault_env(write=f"EROFS:{out}"))
    line = only_line(result)
    assert line.startswith(f"error: cannot write {out}") and "Read-only file system" in line, line
    assert not out.exists()


@pytest.mark.slow
def test_nmt_export_to_an_unwritable_place_is_one_line(tmp_path):
    pytest.importorskip("ctranslate2")
    result = run_script("nmt-export", ["checkpoint=tests/fixtures/none.pt", "out=/proc/x/exp"],
                        cwd=Path(__file__).resolve().parents[1])
    assert only_line(result).startswith("error: ")


# 2. Ctrl-C at any moment ---------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("script, moment", [
    ("nmt-prepare", "hydra"),                                          # importing
    ("nmt-prepare", "nmt.data.corpus:prepare_corpus"),                 # preparing the corpus
    ("nmt-prepare", "sentencepiece:SentencePieceTrainer.train"),       # training SentencePiece
    ("nmt-train", "torch"),                                            # importing
    ("nmt-train", "nmt.training.setup:prepare"),                       # preparing the run
    ("nmt-train", "nmt.models:build_model"),                           # building the model
])
def test_ctrl_c_at_start_up_is_one_line_and_exit_130(tiny, tmp_path, script, moment):
    corpus, _ = tiny
    root = tmp_path / "data"
    args = overrides(corpus, root, f"hydra.run.dir={tmp_path / 'run'}")
    if script == "nmt-prepare":
        args = [a for a in args if a.startswith(("data", "+data"))]
    result = run_script(script, args, cwd=tmp_path, env=fault_env(sigint_at=moment))
    assert only_line(result, 130) == "interrupted"
    if script == "nmt-prepare":  # interrupted before the dataset was complete: nothing of it is left
        assert not (root / "prepared" / "tiny").exists()


# 3. Closed streams ---------------------------------------------------------------------------------------------
def test_nmt_translate_with_stdin_closed_is_one_line(tmp_path):
    result = subprocess.run(["bash", "-c", f"exec 0<&-; {shlex.quote(str(BIN / 'nmt-translate'))} checkpoint=x.pt"],
                            cwd=tmp_path, env=script_env(), capture_output=True, text=True, timeout=120)
    assert only_line(result) == "error: stdin is closed: give input=<file>, or pipe the text in"


@pytest.mark.slow
def test_nmt_translate_into_a_closed_pipe_exits_quietly(trained, tmp_path):
    (tmp_path / "src.txt").write_text("ein hund .\n" * 50, encoding="utf-8")
    # `true` has exited long before the model is loaded: every write to the pipe fails with EPIPE
    command = f"{shlex.quote(str(BIN / 'nmt-translate'))} checkpoint={trained} input=src.txt device=cpu | true; " \
              f"exit ${{PIPESTATUS[0]}}"
    result = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=script_env(), capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 141 and result.stderr == "", result.stderr[-3000:]


# 4. A refused resume changes nothing ---------------------------------------------------------------------------
@pytest.mark.slow
def test_a_refused_resume_leaves_the_run_byte_identical_and_says_how_to_continue(trained, tiny, tmp_path):
    before = snapshot(trained)
    # The README's instruction without the run's own model=rnn_fixed: another model config
    args = [a for a in overrides(*tiny, "train.max_steps=3", "train.resume=auto") if a != "model=rnn_fixed"]
    result = run_script("nmt-train", [*args, f"hydra.run.dir={trained}"], cwd=tmp_path)
    line = only_line(result)
    assert line.startswith(f"error: cannot resume {trained.resolve() / 'last.pt'}: the model config changed"), line
    assert snapshot(trained) == before
    command = line.split("to continue this run: ", 1)[1].rsplit(" (or give", 1)[0]
    argv = shlex.split(command)
    assert argv[0] == "nmt-train" and "model=rnn_fixed" in argv
    result = run_script("nmt-train", [*argv[1:], "train.max_steps=3"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (trained / ".hydra" / "config.yaml").read_bytes() == before[".hydra/config.yaml"][0]  # never rewritten


@pytest.mark.slow
def test_a_resume_refused_for_another_tokenizer_leaves_the_run_byte_identical(trained, tiny, tmp_path):
    """Decided from the config before the corpus is prepared: no line in train.log, no events file, no record."""
    before = snapshot(trained)
    data_root = tiny[1]
    prepared_before = sorted(p.name for p in data_root.rglob("*"))
    args = overrides(*tiny, "train.max_steps=3", "model=rnn_fixed", "train.resume=auto",
                     "data.tokenizer.vocab_size=150", f"hydra.run.dir={trained}")
    line = only_line(run_script("nmt-train", args, cwd=tmp_path))
    assert line.startswith(f"error: cannot resume {trained.resolve() / 'last.pt'}: it was trained with a different "
                           f"tokenizer (the data config changed: data.tokenizer.vocab_size: 200 -> 150); "), line
    assert "to continue this run: nmt-train " in line, line
    assert snapshot(trained) == before
    assert sorted(p.name for p in data_root.rglob("*")) == prepared_before  # refused before preparing the data


@pytest.mark.slow
def test_a_resume_refused_for_changed_input_files_leaves_the_run_byte_identical(tmp_path):
    """The same config, but the corpus files changed since the run started: the tokenizer trained on them differs,
    which only the prepared corpus shows. Refused then, and still nothing in the run changed: train.log's lines
    were held, no events file was opened, no record written."""
    if not (MIRROR / "multi30k").is_dir():
        pytest.skip("no Multi30k mirror (NMT_DATA_MIRROR)")
    corpus, data_root, run_dir = write_corpus(MIRROR, tmp_path / "corpus"), tmp_path / "data", tmp_path / "run"
    args = overrides(corpus, data_root, "train.max_steps=2", "model=rnn_fixed", "train.resume=auto",
                     f"hydra.run.dir={run_dir}")
    assert run_script("nmt-train", args, cwd=tmp_path).returncode == 0
    before = snapshot(run_dir)
    train = corpus / "train.en"
    train.write_text(train.read_text(encoding="utf-8").replace("a", "ä"), encoding="utf-8")
    line = only_line(run_script("nmt-train", [*args[:-1], "train.max_steps=4", args[-1]], cwd=tmp_path))
    assert line.startswith(f"error: cannot resume {run_dir.resolve() / 'last.pt'}: it was trained with a different "
                           f"tokenizer"), line
    assert snapshot(run_dir) == before


@pytest.mark.slow
@pytest.mark.parametrize("script, args, written", [
    ("nmt-bench", ["--small", "--models", "rnn_fixed", "--steps", "1", "--warmup", "0", "--decode-sentences", "0",
                   "--out", "{full}/bench.json"], "cannot write {full}/bench.json"),
    ("nmt-gpu-check", ["--device", "cpu", "--steps", "4", "--out", "{full}/gpu"], "cannot write {full}/gpu/"),
    ("nmt-bottleneck", ["out_dir={full}/out"], "cannot create output directory {full}/out"),
    ("nmt-claims", ["out_dir={full}/out"], "cannot create output directory {full}/out"),
])
def test_benchmarks_and_experiments_on_a_full_disk_are_one_line(tmp_path, script, args, written):
    full = tmp_path / "full"
    full.mkdir()
    result = run_script(script, [a.format(full=full) for a in args], cwd=tmp_path,
                        env=fault_env(write=f"ENOSPC:{full}"))
    # nmt-bench reports its progress on stderr before the write fails; the failure is its one error line, at the end
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    line = result.stderr.strip().splitlines()[-1]
    assert errors == [line] and line.startswith(f"error: {written.format(full=full)}"), result.stderr[-3000:]
    assert line.endswith("No space left on device"), line
    assert list(full.iterdir()) == []  # nothing half-written
