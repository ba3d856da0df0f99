"""User mistakes end in one line "error: ..." naming the key, file or cause, exit code 2, no traceback, and
never destroy earlier results: optimizer values, missing devices, unwritable outputs, a full disk while a
checkpoint is written, two nmt-train runs on one run directory, sentences longer than the position table."""

from __future__ import annotations

import errno
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from train_utils import cli_env, overrides, start_train_cli, tiny_config, train_cli, write_corpus

import nmt.cli.evaluate
import nmt.cli.translate
import nmt.training.checkpoint as checkpoint_module
from nmt.config import CONFIG_DIR
from nmt.data.corpus import prepare_corpus, prepared_dir
from nmt.errors import NMTError
from nmt.io import acquire_lock
from nmt.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, save_under
from nmt.training.setup import build_optimizer
from nmt.training.trainer import Trainer

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


@pytest.fixture(scope="module")
def setup(mirror, tmp_path_factory):
    """(corpus dir, prepared-data root), the same tiny corpus as the training tests."""
    base = tmp_path_factory.getbasetemp() / "nmt-train"
    return write_corpus(mirror, base / "corpus"), base / "data"


def error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The one line a failed command wrote to stderr."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def translate_cli(*args: str) -> int:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="translate", overrides=["device=cpu", "decode=greedy", *args])
    try:
        nmt.cli.translate.translate_command(cfg)
        return 0
    except SystemExit as e:
        return int(e.code or 0)


def evaluate_cli(*args: str) -> int:
    fast = ["device=cpu", "decode=greedy", "decode.batch_size=16", "bootstrap_samples=10"]
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[*fast, *args])
    try:
        nmt.cli.evaluate.evaluate_command(cfg)
        return 0
    except SystemExit as e:
        return int(e.code or 0)


def temp_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.name.endswith(".tmp"))


@pytest.fixture
def unwritable(tmp_path):
    """A path under which nothing can be created: a read-only directory, or (as root, whom permissions do not
    stop) a regular file."""
    if os.geteuid() != 0:
        path = tmp_path / "read-only"
        path.mkdir()
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
    else:
        path = tmp_path / "a-file"
        path.write_text("not a directory\n")
        yield path


# 1. Optimizer and loop values a library would reject -----------------------------------------------------
@pytest.mark.parametrize("override, message", [
    ("train.lr=-1", "train.lr=-1.0: Invalid learning rate: -1.0"),
    ("train.betas=[0.9,1.5]", "train.betas=[0.9, 1.5]: Invalid beta parameter at index 1: 1.5"),
    ("train.betas=[-0.1,0.98]", "train.betas=[-0.1, 0.98]: Invalid beta parameter at index 0: -0.1"),
    ("train.weight_decay=-0.01", "train.weight_decay=-0.01: Invalid weight_decay value: -0.01"),
    ("train.betas=[0.9]", "train.betas must be two numbers [beta1, beta2], got [0.9]"),
    ("train.lr=0", "train.lr"),  # the schedule's own check
    ("train.label_smoothing=1.5", "train.label_smoothing must be in [0, 1], got 1.5"),
    ("train.num_workers=-1", "train.num_workers must not be negative, got -1"),
    ("train.warmup_steps=-5", "train.warmup_steps must not be negative, got -5"),
    ("train.eval_beam=0", "train.eval_beam must be at least 1, got 0"),  # was greedy, silently
    ("train.eval_beam=-3", "train.eval_beam must be at least 1, got -3"),
    ("train.max_steps=-1", "train.max_steps must not be negative, got -1"),
    ("train.schedule=cosine", "train.schedule='cosine'"),
    ("train.plateau_factor=2", "train.plateau_factor"),
])  # fmt: skip
def test_rejected_optimizer_and_loop_values_name_the_key(setup, tmp_path, monkeypatch, capsys, override, message):
    line = refused_at_start_up(setup, tmp_path, monkeypatch, capsys, override)
    assert line == f"error: {message}" or (" " not in message and message in line), line


def refused_at_start_up(setup, tmp_path: Path, monkeypatch, capsys, override: str) -> str:
    """nmt-train with `override` exits 2 before writing a checkpoint or train.log; its one error line."""
    run_dir = tmp_path / "run"
    assert train_cli(monkeypatch, overrides(*setup, override, f"hydra.run.dir={run_dir}")) == 2
    assert not list(run_dir.glob("*.pt")) and not (run_dir / "train.log").exists()
    return error_line(capsys)


@pytest.mark.parametrize("override, message", [
    ("decode.alpha=-1", "decode.alpha must be at least 0.0, got -1.0"),
    ("decode.max_len_b=-2", "decode.max_len_b must be at least 0, got -2"),
    ("decode.beam=0", "decode.beam must be at least 1, got 0"),
    ("data.max_ratio=0.5", "data.max_ratio must be at least 1.0, got 0.5"),
    ("data.max_words=0", "data.max_words must be at least 1, got 0"),
    ("data.concat.share=1.5", "data.concat.share must be in [0.0, 1.0], got 1.5"),
    ("data.tokenizer.character_coverage=2", "data.tokenizer.character_coverage must be in [0.0, 1.0], got 2.0"),
])  # fmt: skip
def test_values_outside_their_range_are_refused_at_start_up(setup, tmp_path, monkeypatch, capsys, override, message):
    """Refused before the corpus is prepared or the run directory written, naming the key (never clamped)."""
    assert refused_at_start_up(setup, tmp_path, monkeypatch, capsys, override) == f"error: {message}"


def test_build_optimizer_turns_what_torch_rejects_into_the_key():
    tc = OmegaConf.create({"optimizer": "adam", "lr": 1e-3, "betas": [0.9, 0.98], "weight_decay": -1.0})
    with pytest.raises(NMTError, match=re.escape("train.weight_decay=-1.0: Invalid weight_decay value: -1.0")):
        build_optimizer([torch.zeros(1, requires_grad=True)], tc)


# 2. Devices this machine lacks ---------------------------------------------------------------------------
@NO_CUDA
@pytest.mark.parametrize("device, message", [
    ("cuda", "device 'cuda' requested but CUDA is not available on this machine"),
    ("cuda:3", "device 'cuda:3' requested but CUDA is not available on this machine"),
    ("tpu", "unknown device 'tpu'; use auto, cpu, cuda, cuda:<index> or mps"),
])  # fmt: skip
def test_train_on_a_missing_or_unknown_device(setup, tmp_path, monkeypatch, capsys, device, message):
    assert train_cli(monkeypatch, overrides(*setup, f"train.device={device}", f"hydra.run.dir={tmp_path}")) == 2
    assert error_line(capsys) == f"error: {message}"


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has Apple MPS")
def test_train_on_mps_without_mps(setup, tmp_path, monkeypatch, capsys):
    assert train_cli(monkeypatch, overrides(*setup, "train.device=mps", f"hydra.run.dir={tmp_path}")) == 2
    assert error_line(capsys) == "error: device 'mps' requested but Apple MPS is not available on this machine"


@NO_CUDA
def test_translate_and_evaluate_on_a_missing_device(tiny_run, tmp_path, capsys):
    cuda = "error: device 'cuda' requested but CUDA is not available on this machine"
    assert translate_cli(f"checkpoint={tiny_run.run_dir}", "device=cuda", "input=-") == 2
    assert error_line(capsys) == cuda
    assert evaluate_cli(f"checkpoints=[{tiny_run.run_dir}]", "device=cuda", f"out_dir={tmp_path / 'eval'}") == 2
    assert error_line(capsys) == cuda
    assert translate_cli(f"checkpoint={tiny_run.run_dir}", "device=tpu", "input=-") == 2
    assert "unknown device 'tpu'" in error_line(capsys)
    assert not (tmp_path / "eval").exists()


@pytest.mark.slow
@NO_CUDA
def test_train_command_line_on_a_missing_device_prints_one_line(setup, tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "nmt.cli.train", *overrides(*setup, "train.device=cuda", f"hydra.run.dir={tmp_path}")],
        capture_output=True, text=True, env=cli_env(), cwd=REPO, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: device 'cuda' requested but CUDA is not available on this machine"
    ]


# 3. Outputs that cannot be written -----------------------------------------------------------------------
@pytest.fixture
def source_file(tiny_run, tmp_path) -> Path:
    path = tmp_path / "in.de"
    lines = Path(tiny_run.files["test"][0]).read_text(encoding="utf-8").splitlines()[:3]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_translate_to_an_unwritable_output(tiny_run, source_file, unwritable, tmp_path, capsys):
    ckpt = f"checkpoint={tiny_run.run_dir}"
    # /proc: refused up front for a normal user; root gets past the up-front check and fails at the write.
    assert translate_cli(ckpt, f"input={source_file}", "output=/proc/x.txt") == 2
    assert error_line(capsys).startswith("error: cannot write /proc/x.txt: ")
    out = unwritable / "sub" / "out.txt"
    assert translate_cli(ckpt, f"input={source_file}", f"output={out}") == 2
    assert error_line(capsys).startswith(f"error: cannot write {out}: ")
    assert translate_cli(ckpt, f"input={source_file}", f"output={tmp_path}") == 2
    assert error_line(capsys) == f"error: cannot write {tmp_path}: it is a directory"
    before = source_file.read_bytes()
    assert translate_cli(ckpt, f"input={source_file}", f"output={source_file}") == 2
    assert error_line(capsys) == (f"error: output={source_file} is the input file; write the translations to "
                                  f"another file")
    assert source_file.read_bytes() == before
    assert not (unwritable / "sub").exists() and temp_files(tmp_path) == []


def test_translate_on_a_full_disk_keeps_the_old_output(tiny_run, source_file, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out.en"
    out.write_text("earlier translations\n")

    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    assert translate_cli(f"checkpoint={tiny_run.run_dir}", f"input={source_file}", f"output={out}") == 2
    monkeypatch.undo()
    assert error_line(capsys) == f"error: cannot write {out}: No space left on device"
    assert out.read_text() == "earlier translations\n" and temp_files(tmp_path) == []


def test_evaluate_into_an_unwritable_directory(tiny_run, unwritable, tmp_path, capsys):
    run = f"checkpoints=[{tiny_run.run_dir}]"
    assert evaluate_cli(run, "out_dir=/proc/x") == 2
    assert error_line(capsys).startswith("error: cannot create output directory /proc/x")
    out = unwritable / "eval"
    assert evaluate_cli(run, f"out_dir={out}") == 2
    assert error_line(capsys).startswith(f"error: cannot create output directory {out}: ")
    tb = unwritable / "tb"
    assert evaluate_cli(run, f"out_dir={tmp_path / 'eval'}", f"tensorboard_dir={tb}") == 2
    assert error_line(capsys).startswith(f"error: cannot write {tb}: ")
    assert not (tmp_path / "eval").exists()  # refused before anything was made
    if unwritable.is_dir():
        assert list(unwritable.iterdir()) == []
    else:
        assert unwritable.read_text() == "not a directory\n"


def test_train_into_an_unwritable_run_dir(setup, unwritable, monkeypatch, capsys):
    # Hydra would make the directory (with a traceback when it cannot) before the trainer runs.
    assert train_cli(monkeypatch, overrides(*setup, "hydra.run.dir=/proc/x")) == 2
    assert error_line(capsys).startswith("error: cannot create run directory /proc/x: ")
    run_dir = unwritable / "run"
    assert train_cli(monkeypatch, overrides(*setup, f"hydra.run.dir={run_dir}")) == 2
    assert error_line(capsys).startswith(f"error: cannot create run directory {run_dir}: ")


# 4. A full disk while a checkpoint is written ------------------------------------------------------------
class DiskFillsUp:
    """A file object over `f` that takes `room` bytes, then fails (after a partial write) like a full disk."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def write(self, data) -> int:
        data = bytes(data)
        if len(data) > self.room:
            self.f.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.f.write(data)

    def flush(self) -> None:
        self.f.flush()


def _payload(step: int) -> dict:
    return {"config": {}, "model": {"w": torch.full((1000,), float(step))}, "tokenizer": {}, "step": step}


def _fails_once_full(monkeypatch, from_call: int, room: int = 2000) -> None:
    """torch.save as the checkpoint module calls it: the disk is full from call number `from_call` on."""
    real_save, calls = torch.save, {"n": 0}

    def save(obj, f, *args, **kwargs):
        calls["n"] += 1
        return real_save(obj, DiskFillsUp(f, room) if calls["n"] >= from_call else f, *args, **kwargs)

    monkeypatch.setattr(checkpoint_module.torch, "save", save)


@pytest.mark.parametrize("room", [0, 2000], ids=["nothing-written", "half-written"])
def test_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, room):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(1))
    _fails_once_full(monkeypatch, from_call=1, room=room)  # torch raises OSError, or RuntimeError over it
    with pytest.raises(NMTError) as exc:
        save_checkpoint(path, _payload(2))
    monkeypatch.undo()
    assert str(exc.value) == f"cannot write {path}: No space left on device"
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no .last.pt.*.tmp left behind


def test_full_disk_where_hard_links_fail_keeps_the_old_names(tmp_path, monkeypatch):
    save_under(tmp_path, ["last.pt"], Checkpoint.from_payload(_payload(1)), keep_last=0)

    def no_links(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(checkpoint_module.os, "link", no_links)
    _fails_once_full(monkeypatch, from_call=2)  # best.pt is written, its copy as last.pt is not
    with pytest.raises(NMTError, match=re.escape(f"cannot write {tmp_path / 'last.pt'}: No space left on device")):
        save_under(tmp_path, ["best.pt", "last.pt"], Checkpoint.from_payload(_payload(2)), keep_last=0)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 2
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "last.pt"]


def test_full_disk_mid_training_stops_with_one_line_and_keeps_the_checkpoints(setup, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    _fails_once_full(monkeypatch, from_call=3)  # steps 1 and 2 are saved, step 3 meets a full disk
    args = overrides(*setup, "train.max_steps=4", "train.save_every=1", "train.keep_last=5", f"hydra.run.dir={run_dir}")
    assert train_cli(monkeypatch, args) == 2
    monkeypatch.undo()
    run_dir = run_dir.resolve()
    assert error_line(capsys) == (f"error: cannot write {run_dir / 'last.pt'}: No space left on device; training "
                                  f"stopped at step 3, the checkpoints already in {run_dir} are intact")
    assert load_checkpoint(run_dir / "last.pt")["step"] == 2
    assert [load_checkpoint(run_dir / f"step-{n}.pt")["step"] for n in (1, 2)] == [1, 2]
    assert not (run_dir / "step-3.pt").exists() and temp_files(run_dir) == []
    acquire_lock(run_dir / ".lock", busy="the failed run kept its lock").release()


# 5. Two nmt-train runs on one run directory --------------------------------------------------------------
@pytest.mark.slow
def test_a_second_train_on_a_busy_run_dir_refuses_and_a_killed_run_frees_it(setup, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    args = overrides(*setup, "train.max_steps=100000", f"hydra.run.dir={run_dir}")
    first = start_train_cli(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
    try:
        seen = []
        for line in first.stdout:  # training has started: the lock is held
            seen.append(line)
            if line.startswith("step 1 |"):
                break
        assert (run_dir / ".lock").exists(), "".join(seen)
        hydra_files = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}

        assert train_cli(monkeypatch, [*args, "train.max_steps=5"]) == 2
        lock = run_dir.resolve() / ".lock"
        assert error_line(capsys) == (f"error: run directory {run_dir.resolve()} is in use by another nmt-train "
                                      f"(lock file {lock})")
        assert first.poll() is None  # the first run goes on ...
        assert {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()} == hydra_files  # ... its record too
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
    assert first.returncode == -signal.SIGKILL

    # The kernel dropped the dead process's lock: a third run takes it (the lock file itself stays).
    summary = Trainer(tiny_config(*setup, "train.max_steps=1"), run_dir).fit()
    assert summary.step == 1 and load_checkpoint(run_dir / "last.pt")["step"] == 1


def test_a_refused_run_touches_nothing(setup, tmp_path):
    run_dir = tmp_path / "run"
    Trainer(tiny_config(*setup, "train.max_steps=1", "train.eval_every=1"), run_dir).fit()
    before = {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    held = acquire_lock(run_dir / ".lock", busy="taken")  # as another nmt-train would hold it
    try:
        with pytest.raises(NMTError, match="is in use by another nmt-train"):
            Trainer(tiny_config(*setup, "train.max_steps=3", "train.resume=auto"), run_dir).fit()
    finally:
        held.release()
    assert {p.name: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_corpus_preparation_waits_for_the_corpus_lock(setup, tmp_path):
    cfg = tiny_config(*setup).data
    prepare_corpus(cfg, log=lambda _: None)  # cached
    held = acquire_lock(prepared_dir(cfg) / ".lock")
    done = threading.Event()
    worker = threading.Thread(target=lambda: (prepare_corpus(cfg, log=lambda _: None), done.set()))
    worker.start()
    try:
        assert not done.wait(1.0), "prepare_corpus did not wait for the lock"
    finally:
        held.release()
    worker.join(timeout=300)
    assert done.is_set()


# 6. Sentences longer than the Transformer's position table -----------------------------------------------
TINY_TRANSFORMER = ("model=transformer_small", "model.hidden=16", "model.ff_dim=32", "model.heads=2",
                    "model.enc_layers=1", "model.dec_layers=1", "model.dropout=0.0")  # fmt: skip


def test_long_valid_sentences_are_cut_for_validation_with_a_warning(setup, tmp_path):
    # With this corpus's 200-piece vocabulary, 3 of the 6 valid pairs and many train pairs exceed 40 pieces.
    cfg = tiny_config(*setup, *TINY_TRANSFORMER, "model.max_positions=41", "train.max_steps=2", "train.eval_every=1")
    trainer = Trainer(cfg, tmp_path)
    summary = trainer.fit()
    assert summary.step == 2 and len(trainer.state.history) == 2
    assert all(math.isfinite(h["valid_loss"]) for h in trainer.state.history)
    log = (tmp_path / "train.log").read_text()
    valid = re.search(r"warning: (\d+) of 6 valid sentences are longer than model.max_positions=41 allows "
                      r"\(40 pieces \+ EOS or BOS\)", log)
    train = re.search(r"warning: (\d+) train pairs are longer than model.max_positions=41 allows", log)
    assert valid and int(valid.group(1)) > 0, log
    assert train and int(train.group(1)) > 0, log
    assert max(len(s) for s in trainer.data.valid.src_ids + trainer.data.valid.tgt_ids) == 40
    assert max(len(s) for s in [*trainer.data.src_ids, *trainer.data.tgt_ids]) <= 40
    assert len(trainer.data.valid.references) == 6  # BLEU is against every full reference
    assert load_checkpoint(tmp_path / "best.pt")["step"] in (1, 2)


def test_a_position_table_too_small_for_any_train_pair(setup, tmp_path, capsys, monkeypatch):
    args = overrides(*setup, *TINY_TRANSFORMER, "model.max_positions=8", f"hydra.run.dir={tmp_path}")
    assert train_cli(monkeypatch, args) == 2
    assert error_line(capsys) == ("error: every train pair is longer than model.max_positions=8 allows (7 pieces + "
                                  "EOS or BOS); raise model.max_positions")


def test_translate_and_evaluate_cut_long_sentences_with_a_warning(tiny_transformer_run, source_file, tmp_path,
                                                                  capsys):
    small = "model_overrides=['model.max_positions=6']"  # sinusoidal positions: the table is not in the weights
    out = tmp_path / "out.en"
    assert translate_cli(f"checkpoint={tiny_transformer_run.run_dir}", f"input={source_file}", f"output={out}",
                         small, "decode.max_len_b=2") == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert warnings and all(re.fullmatch(rf"warning: input file {re.escape(str(source_file))} line \d+: longer than 5 "
                                         r"pieces \(model.max_positions=6, one is EOS\), truncated", w)
                            for w in warnings)
    assert len(out.read_text().splitlines()) == 3
    assert evaluate_cli(f"checkpoints=[{tiny_transformer_run.run_dir}]", "split=valid", f"out_dir={tmp_path / 'e'}",
                        small, "decode.max_len_b=2", "attention_sentences=[]") == 0
    notes = json.loads((tmp_path / "e" / "metrics.json").read_text())["notes"]
    assert any("longer than the model's position table and were truncated" in n for n in notes)


# 7. An option of another architecture ---------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("model, option, owners, valid", [
    ("rnn_fixed", "heads=4", "rnn_attention, transformer",
     "arch, hidden, enc_layers, dec_layers, dropout, tie_embeddings, emb_dim, rnn_type, bidirectional, context_mode, "
     "summary_dim"),
    ("transformer", "rnn_type=gru", "rnn_attention, rnn_fixed",
     "arch, hidden, enc_layers, dec_layers, dropout, tie_embeddings, heads, ff_dim, positions, max_positions"),
])  # fmt: skip
def test_an_option_of_another_architecture_is_refused_in_one_line(tmp_path, model, option, owners, valid):
    """Each architecture's config holds only its own options: Hydra refuses the others' at composition, before
    anything is prepared or written, naming the key, the architectures that have it and the valid keys."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "nmt.cli.train", f"model={model}", f"model.{option}", f"hydra.run.dir={run_dir}"],
        capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 2
    key = option.split("=")[0]
    assert proc.stderr.strip().splitlines() == [
        f"error: unknown key model.{key} for model.arch={model} (an option of {owners}); valid keys of model: {valid}"
    ]
    assert not run_dir.exists()
