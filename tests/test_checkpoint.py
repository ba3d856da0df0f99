"""Checkpoints under faults: torn writes, kill -9 leftovers, unsafe pickles, non-finite weights, SIGTERM."""

from __future__ import annotations

import dataclasses
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import fields
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from omegaconf import OmegaConf
from train_utils import (
    assert_same_parameters,
    overrides,
    parameters,
    start_train_cli,
    tiny_config,
    write_corpus,
)

import nmt.cli.train
import nmt.training.checkpoint as checkpoint_module
from nmt.config import (
    Config,
    FixedContextConfig,
    RNNAttentionConfig,
    TransformerConfig,
    model_config_class,
    upgrade_model_config,
)
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NMTError
from nmt.models import build_model
from nmt.training.checkpoint import (
    V1_TOP_LEVEL_STATE,
    Checkpoint,
    check_resumable,
    load_checkpoint,
    load_model,
    resolve_checkpoint,
    save_checkpoint,
)
from nmt.training.state import TrainState
from nmt.training.trainer import Trainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(mirror, tmp_path_factory):
    base = tmp_path_factory.getbasetemp() / "nmt-train"
    return write_corpus(mirror, base / "corpus"), base / "data"


def _payload(value: float, step: int | None = None) -> dict:
    step = int(value) if step is None else step
    return {"config": {}, "model": {"w": torch.full((3,), value)}, "tokenizer": {}, "step": step}


def test_a_torn_write_never_replaces_the_last_good_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(1.0))
    real_save = torch.save

    def crash_halfway(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        f.truncate(f.tell() // 2)  # the bytes a crash would leave behind ...
        raise OSError("disk full")  # ... and the crash

    monkeypatch.setattr(checkpoint_module.torch, "save", crash_halfway)
    with pytest.raises(NMTError, match="cannot write .*last.pt: disk full"):  # one line naming the file
        save_checkpoint(path, _payload(2.0))
    monkeypatch.undo()
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((3,), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the temp file was removed

    # kill -9 mid-write leaves a torn temp file (no cleanup runs): loading and saving go on regardless.
    (tmp_path / ".last.pt.abc123.tmp").write_bytes(path.read_bytes()[:100])
    assert load_checkpoint(path)["step"] == 1
    save_checkpoint(path, _payload(3.0))
    assert load_checkpoint(path)["step"] == 3

    # A torn checkpoint under the real name (e.g. copied by hand) is a clear error, not a traceback.
    torn = tmp_path / "torn.pt"
    torn.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(NMTError, match="truncated or corrupt"):
        load_checkpoint(torn)


class _RunsCode:
    """Unpickling this would call os.system: what a malicious 'checkpoint' does."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def test_loading_refuses_a_pickle_that_would_run_code(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    payload = _payload(1.0) | {"format": "nmt-checkpoint", "version": 1, "extra": _RunsCode(str(marker))}
    torch.save(payload, path)
    with pytest.raises(NMTError, match="not a safe checkpoint"):
        load_checkpoint(path)
    assert not marker.exists()


def test_non_finite_weights_are_never_saved(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, _payload(1.0))
    with pytest.raises(NMTError, match="non-finite"):
        save_checkpoint(path, _payload(float("nan"), step=2))
    assert load_checkpoint(path)["step"] == 1


def _full_state() -> TrainState:
    """A TrainState with every field away from its default."""
    history = [{"bleu": 5.0, "valid_loss": 3.5, "step": 4}, {"bleu": 7.0, "valid_loss": 3.1, "step": 8}]
    return TrainState(step=8, epoch=2, batch_in_epoch=3, best_bleu=7.0, best_step=8, bad_validations=1, bad_steps=2,
                      train_seconds=12.5, train_tokens=4321, mix_pairs={"a": 30, "b": 90}, last_validated_step=8,
                      history=history,
                      rng={"python": [3, [1, 2], None], "torch": torch.arange(4, dtype=torch.uint8)})


def test_the_train_state_is_saved_whole_and_loads_back(tmp_path):
    state = _full_state()
    assert {f.name for f in fields(TrainState)} == set(state.state_dict())
    checkpoint = Checkpoint(config={}, model={"w": torch.ones(2)}, tokenizer={}, state=state, optimizer={"state": {}})
    checkpoint.save(tmp_path / "c.pt")
    payload = load_checkpoint(tmp_path / "c.pt")
    assert payload["version"] == 2 and payload["step"] == 8 and set(payload["train_state"]) == set(state.state_dict())
    loaded = Checkpoint.load(tmp_path / "c.pt")
    assert torch.equal(loaded.state.rng.pop("torch"), state.rng.pop("torch"))
    assert loaded.state == state and loaded.step == 8 and loaded.optimizer == {"state": {}}


def test_a_version_1_checkpoint_becomes_one_train_state(tmp_path):
    """Version 1 kept the loop's counters as loose entries: step, epoch, batch_in_epoch, best_bleu and rng at
    the top, the rest under "metrics"; they load as the same TrainState (entries it does not know are dropped)."""
    state = _full_state()
    counters = {k: v for k, v in state.state_dict().items() if k not in V1_TOP_LEVEL_STATE}
    payload = {"format": "nmt-checkpoint", "version": 1, "config": {}, "model": {"w": torch.ones(2)},
               "tokenizer": {}, "optimizer": {"state": {}}, "scheduler": None, "scaler": None,
               "metrics": counters | {"train_loss": 4.2}, "num_parameters": 2,
               **{k: getattr(state, k) for k in V1_TOP_LEVEL_STATE}}
    torch.save(payload, tmp_path / "v1.pt")
    loaded = Checkpoint.load(tmp_path / "v1.pt")
    assert torch.equal(loaded.state.rng.pop("torch"), state.rng.pop("torch"))
    assert loaded.state == state and loaded.num_parameters == 2 and loaded.optimizer == {"state": {}}
    loaded.save(tmp_path / "v2.pt")  # saved again: the current layout
    assert set(load_checkpoint(tmp_path / "v2.pt")) >= {"train_state", "version"}
    assert "metrics" not in load_checkpoint(tmp_path / "v2.pt")
    bare = {"format": "nmt-checkpoint", "version": 1, "config": {}, "model": {}, "tokenizer": {}, "step": 5}
    assert Checkpoint.from_payload(bare).state == TrainState(step=5)


def test_a_train_state_that_does_not_fit_is_refused_in_one_line(tmp_path):
    good = Checkpoint(config={}, model={"w": torch.ones(2)}, tokenizer={}, state=TrainState(step=3)).to_payload()
    cases = {"unknown": {**good, "train_state": {**good["train_state"], "momentum": 1}},
             "other_step": {**good, "step": 4}}
    for name, payload in cases.items():
        save_checkpoint(tmp_path / f"{name}.pt", payload)
    with pytest.raises(NMTError, match=r"unknown.pt is not a readable checkpoint \(.*does not know: momentum\)$"):
        Checkpoint.load(tmp_path / "unknown.pt")
    with pytest.raises(NMTError, match=r"other_step.pt is not a readable checkpoint \(its step \(4\) is not"):
        Checkpoint.load(tmp_path / "other_step.pt")


def test_an_average_is_not_resumed(tmp_path):
    average = Checkpoint(config={}, model={}, tokenizer={}, state=TrainState(step=3), averaged_from=["a", "b"])
    with pytest.raises(NMTError, match="cannot resume x.pt: it is an average of checkpoints; train.init_from"):
        check_resumable(average, Path("x.pt"), None, None)


def test_a_checkpoint_resumes_only_on_as_many_ranks_as_wrote_it():
    """Its data position counts each rank's batches: another world size would skip or repeat data."""
    two_ranks = Checkpoint(config={}, model={}, tokenizer={}, state=TrainState(step=3, world_size=2), optimizer={})
    check_resumable(two_ranks, Path("x.pt"), None, world_size=2)
    with pytest.raises(NMTError) as refused:
        check_resumable(two_ranks, Path("x.pt"), None, world_size=1)
    assert str(refused.value) == (
        "cannot resume x.pt: it was trained on 2 rank(s) and this run has 1; its data position counts each rank's "
        "batches, so resume it on 2 rank(s) (torchrun --nproc_per_node=2), or start a new run from its weights "
        "with train.init_from=x.pt")
    unknown = Checkpoint(config={}, model={}, tokenizer={}, state=TrainState(step=3), optimizer={})
    check_resumable(unknown, Path("x.pt"), None, world_size=4)  # saved before the world size was recorded


def test_a_data_config_that_trains_another_tokenizer_is_refused_from_the_config_alone():
    from hydra import compose, initialize_config_dir

    from nmt.config import CONFIG_DIR, typed_config

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        composed = compose(config_name="config")
    saved = Checkpoint(config=OmegaConf.to_container(composed, resolve=True), model={}, tokenizer={},
                       state=TrainState(step=3), optimizer={})
    cfg = typed_config(composed)
    cfg.data.concat.max_k, cfg.data.test_sets, cfg.data.num_proc = 2, [], 1  # the same train text and settings
    check_resumable(saved, Path("x.pt"), None, data_cfg=cfg.data)
    for key, value, change in [("tokenizer.vocab_size", 4000, "8000 -> 4000"), ("max_words", 50, "100 -> 50"),
                               ("tokenizer.joint", False, "True -> False"), ("src_lang", "fr", "'de' -> 'fr'")]:
        changed = typed_config(composed)
        OmegaConf.update(changed, f"data.{key}", value)
        with pytest.raises(NMTError) as refused:
            check_resumable(saved, Path("x.pt"), None, how_to_continue="; to continue ...", data_cfg=changed.data)
        assert str(refused.value) == (f"cannot resume x.pt: it was trained with a different tokenizer (the data "
                                      f"config changed: data.{key}: {change}); to continue ...")


def _signal_at_step(lines, step: int, send) -> str:
    """Read the child's output until it logs `step`, then `send()` the signal; returns what was read."""
    seen = []
    for line in lines:
        seen.append(line)
        if line.startswith(f"step {step} |"):
            send()
            break
    return "".join(seen)


def _start_forked(target, *args):
    """`target(*args, fd)` in a forked child (modules already imported, so it starts fast) writing to the pipe `fd`;
    returns the child and the pipe's read end, a text file."""
    read_fd, write_fd = os.pipe()
    child = mp.get_context("fork").Process(target=target, args=(*args, write_fd))
    child.start()
    os.close(write_fd)
    return child, os.fdopen(read_fd)


def _cli_in_forked_child(argv: list[str], fd: int) -> None:
    sys.stdout = sys.stderr = os.fdopen(fd, "w", buffering=1)
    sys.argv = ["nmt-train", *argv]
    nmt.cli.train.main()


@pytest.mark.slow
def test_kill_9_then_sigterm_leave_resumable_checkpoints_and_resume_exactly(setup, tmp_path):
    run_dir = tmp_path / "run"
    args = overrides(*setup, "train.max_steps=100000", "train.save_every=1", f"hydra.run.dir={run_dir}")

    # kill -9 at some point (mid-step or mid-save) of a run that checkpoints every step. A forked child
    # (modules already imported) keeps this part fast; it runs the same nmt-train main().
    child, output = _start_forked(_cli_in_forked_child, args)
    with output as lines:
        out = _signal_at_step(lines, 3, lambda: os.kill(child.pid, signal.SIGKILL))
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL, out
    killed = load_checkpoint(run_dir / "last.pt")["step"]  # the newest complete checkpoint loads
    assert killed >= 2

    # SIGTERM to a real `python -m nmt.cli.train` resuming that run: it finishes its step, writes last.pt
    # (no validation on the way out) and exits 0.
    proc = start_train_cli([*args, "train.resume=auto"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1)
    try:
        out = _signal_at_step(proc.stdout, killed + 2, lambda: proc.send_signal(signal.SIGTERM))
        out += proc.communicate(timeout=120)[0]
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert f"resumed from {run_dir / 'last.pt'}: step {killed}," in out and "stopping on SIGTERM" in out
    assert "no validation yet" in out and "best valid BLEU" not in out
    stopped = load_checkpoint(run_dir / "last.pt")
    k = stopped["step"]
    assert killed + 2 <= k < 100000 and stopped["train_state"]["history"] == []

    # Continue in place (resume=auto) and compare with a run that was never stopped.
    extra = (f"train.max_steps={k + 2}", "train.save_every=1", "train.resume=auto")
    resumed = Trainer(tiny_config(*setup, *extra), run_dir)
    resumed.fit()
    straight = Trainer(tiny_config(*setup, *extra), tmp_path / "straight")
    straight.fit()
    assert resumed.state.step == straight.state.step == k + 2
    assert_same_parameters(parameters(resumed.model), parameters(straight.model))


def _cli_with_a_stalled_save(argv: list[str], step: int, fd: int) -> None:
    """nmt-train in a forked child whose checkpoint of `step` stalls half-written (a slow disk): it writes a few
    bytes, says "stalled" on `fd` and waits."""
    real_save = torch.save

    def stalling_save(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("step") == step:
            f.write(b"PK\x03\x04 the first bytes of a checkpoint")
            f.flush()
            print("stalled", flush=True)
            time.sleep(60)
        return real_save(obj, f, *args, **kwargs)

    torch.save = stalling_save
    os.dup2(fd, 2)  # what the trainer writes straight to stderr comes through the pipe too
    _cli_in_forked_child(argv, fd)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_exits_at_once_and_leaves_the_last_complete_checkpoint(setup, tmp_path, sig, code):
    """A second signal while a checkpoint is being written: the process exits at once with 128 + the signal, says
    so in train.log, and leaves the run dir as it was before that write (no temp file)."""
    run_dir = tmp_path / "run"
    args = overrides(*setup, "train.max_steps=100000", "train.save_every=1", f"hydra.run.dir={run_dir}")
    child, output = _start_forked(_cli_with_a_stalled_save, args, 3)
    with output as lines:
        out = "".join(itertools.takewhile(lambda line: line != "stalled\n", lines))
        os.kill(child.pid, sig)
        name = signal.Signals(sig).name
        first = f"{name}: stopping after this step and saving last.pt (another {name} exits at once)\n"
        out += "".join(itertools.takewhile(lambda line: line != first, lines))  # (two at once would merge into one)
        os.kill(child.pid, sig)
        child.join(timeout=20)
    assert child.exitcode == code, out
    log = (run_dir / "train.log").read_text(encoding="utf-8").splitlines()
    assert log[-1].endswith(f"] second {name}: exiting now") and f"stopping on {name}" not in "\n".join(log)
    assert sorted(p.name for p in run_dir.glob("*.pt")) == ["last.pt", "step-1.pt", "step-2.pt"]
    assert not [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")]
    assert load_checkpoint(run_dir / "last.pt")["step"] == 2  # the last complete one, intact


def _cli_in_a_process_group_of_its_own(argv: list[str], fd: int) -> None:
    os.setsid()
    _cli_in_forked_child(argv, fd)


@pytest.mark.slow
def test_one_ctrl_c_to_a_run_with_data_workers_is_one_signal(setup, tmp_path):
    """Ctrl-C reaches the trainer and its data worker (the terminal's process group): still one stop request,
    not the second one that exits at once."""
    run_dir = tmp_path / "run"
    args = overrides(*setup, "train.max_steps=100000", "train.num_workers=1", f"hydra.run.dir={run_dir}")
    child, output = _start_forked(_cli_in_a_process_group_of_its_own, args)
    with output as lines:
        out = _signal_at_step(lines, 2, lambda: os.killpg(child.pid, signal.SIGINT))
        out += lines.read()
        child.join(timeout=30)
    assert child.exitcode == 0, out
    assert "stopping on SIGINT" in out and "second SIGINT" not in (run_dir / "train.log").read_text(encoding="utf-8")


def test_a_signal_stop_before_any_validation_says_so(setup, tmp_path, monkeypatch):
    trainer = Trainer(tiny_config(*setup, "train.max_steps=50", "train.eval_every=1000"), tmp_path)
    install = trainer._install_signal_handlers

    def install_then_signal() -> None:  # SIGTERM arrives as the loop starts: it stops after the first step
        install()
        trainer._on_signal(signal.SIGTERM, None)

    monkeypatch.setattr(trainer, "_install_signal_handlers", install_then_signal)
    summary = trainer.fit()
    assert summary.stop_reason == "signal" and trainer.state.step == 1
    done = (tmp_path / "train.log").read_text(encoding="utf-8").strip().splitlines()[-1]
    assert "done (signal): step 1, no validation yet, " in done and "BLEU" not in done, done


def test_resume_refuses_a_different_model(setup, tmp_path):
    Trainer(tiny_config(*setup, "train.max_steps=1"), tmp_path).fit()
    other = Trainer(tiny_config(*setup, "train.max_steps=2", "train.resume=auto", "model.hidden=24"), tmp_path)
    with pytest.raises(NMTError, match=r"model config changed \(model.hidden: 16 -> 24\)"):
        other.fit()


def test_a_checkpoint_from_before_a_new_model_option_resumes(setup, tmp_path):
    """A model option added since the checkpoint was written (here attention_dim) takes its default: the run
    resumes instead of reporting a changed config."""
    Trainer(tiny_config(*setup, "train.max_steps=1"), tmp_path).fit()
    payload = load_checkpoint(tmp_path / "last.pt")
    del payload["config"]["model"]["attention_dim"]
    save_checkpoint(tmp_path / "last.pt", payload)
    resumed = Trainer(tiny_config(*setup, "train.max_steps=2", "train.resume=auto"), tmp_path)
    resumed.fit()
    assert resumed.state.step == 2


def test_checkpoints_with_separate_tables_where_the_model_ties_them(setup, tmp_path):
    """An RNN checkpoint from before RNN tying (config says tie_embeddings, weights are separate) loads as the
    untied model it is; resuming it into a tied model is refused in one line instead of merging the tables."""
    Trainer(tiny_config(*setup, "train.max_steps=1", "model.arch=rnn_attention"), tmp_path).fit()
    payload = load_checkpoint(tmp_path / "last.pt")
    assert payload["config"]["model"]["tie_embeddings"]
    state = payload["model"]
    assert torch.equal(state["decoder.proj.weight"], state["decoder.embed.weight"])
    state["decoder.proj.weight"] = torch.randn_like(state["decoder.proj.weight"])
    save_checkpoint(tmp_path / "last.pt", payload)
    loaded = checkpoint_module.load_model(tmp_path / "last.pt")
    assert not loaded.cfg.model.tie_embeddings
    assert torch.equal(loaded.model.decoder.proj.weight, state["decoder.proj.weight"])
    assert torch.equal(loaded.model.decoder.embed.weight, state["decoder.embed.weight"])
    resumed = Trainer(tiny_config(*setup, "train.max_steps=2", "train.resume=auto", "model.arch=rnn_attention"),
                      tmp_path)
    with pytest.raises(NMTError, match=r"has separate .*decoder.proj.weight where the model shares one table"):
        resumed.fit()


def test_nmt_average_writes_the_mean_of_the_last_k_checkpoints(setup, tmp_path, capsys):
    from nmt.cli.average import main as average_main
    from nmt.training.checkpoint import load_model

    cfg = tiny_config(*setup, "train.max_steps=4", "train.save_every=1", "train.keep_last=3")
    Trainer(cfg, tmp_path).fit()
    average_main([str(tmp_path), "--last", "3"])
    out = tmp_path / "averaged-last3.pt"
    assert "averaged 3 checkpoints (step-2.pt, step-3.pt, step-4.pt)" in capsys.readouterr().out
    averaged = load_checkpoint(out)["model"]
    steps = [load_checkpoint(tmp_path / f"step-{n}.pt")["model"] for n in (2, 3, 4)]
    for name, value in averaged.items():
        expected = sum(s[name].double() for s in steps) / 3
        torch.testing.assert_close(value, expected.to(value.dtype), rtol=0, atol=1e-7)
    assert any(not torch.equal(v, steps[-1][k]) for k, v in averaged.items())  # not just the newest one
    assert load_model(out).model.num_parameters() == load_checkpoint(tmp_path / "last.pt")["num_parameters"]

    with pytest.raises(SystemExit) as exit_info:
        average_main([str(tmp_path), "--last", "5"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path} has 3 checkpoints to average")
    with pytest.raises(SystemExit):
        average_main([str(tmp_path / "step-3.pt"), str(tmp_path / "step-4.pt"), "-o", str(tmp_path / "last.pt")])
    assert "refusing to write" in capsys.readouterr().err


# Checkpoint version 1: one flat model config with every architecture's options ----------------------------------
FLAT_V1 = {  # the flat config's keys and defaults, as version 1 wrote them
    "arch": "rnn_attention", "emb_dim": 256, "hidden": 256, "enc_layers": 1, "dec_layers": 1, "dropout": 0.3,
    "rnn_type": "gru", "bidirectional": True, "context_mode": "every_step", "summary_dim": 0, "scorer": "additive",
    "heads": 1, "attention_dim": 0, "temperature": 1.0, "hard": False, "input_feeding": False, "ff_dim": 1024,
    "positions": "sinusoidal", "tie_embeddings": True, "max_positions": 512,
}
GOLDEN = Path(__file__).parent / "fixtures" / "golden_rnn_attention.pt"


def _v1_checkpoint(path: Path, own: dict, foreign: dict) -> dict:
    """A version-1 checkpoint of a freshly built model of the architecture with options `own`, its flat config
    holding `foreign` (options of other architectures) and the remaining flat defaults; returns its weights."""
    tokenizer = torch.load(GOLDEN, weights_only=True)["tokenizer"]  # any real tokenizer will do
    tok = Tokenizer.from_state_dict(tokenizer)
    torch.manual_seed(0)
    model = build_model(model_config_class(own["arch"])(**own), tok.src_vocab_size, tok.tgt_vocab_size, tok.joint)
    config = OmegaConf.to_container(OmegaConf.structured(Config))
    config["model"] = {**FLAT_V1, **foreign, **own}
    torch.save({"format": "nmt-checkpoint", "version": 1, "config": config, "model": model.state_dict(),
                "tokenizer": tokenizer, "step": 1}, path)
    return model.state_dict()


@pytest.mark.parametrize("own, foreign", [
    (dict(arch="transformer", hidden=16, heads=2, ff_dim=32, enc_layers=1, dec_layers=1, positions="learned",
          max_positions=64, dropout=0.0),
     dict(emb_dim=16, rnn_type="lstm", scorer="dot")),  # never read by a Transformer: any value was ignored
    (dict(arch="rnn_fixed", emb_dim=8, hidden=8, context_mode="init_only", summary_dim=12, rnn_type="lstm"),
     dict(scorer="general", ff_dim=64, max_positions=128, positions="learned")),
])  # fmt: skip
def test_a_flat_version_1_checkpoint_loads_with_only_its_architectures_options(tmp_path, own, foreign):
    """Converted once, at load: the options foreign to the architecture are dropped, the model is the one saved,
    and saved again it is version 2 with the converted config."""
    path = tmp_path / "v1.pt"
    weights = _v1_checkpoint(path, own, foreign)
    loaded = load_model(path)
    cls = model_config_class(own["arch"])
    assert OmegaConf.get_type(loaded.cfg.model) is cls
    assert set(loaded.cfg.model) == {f.name for f in dataclasses.fields(cls)}
    assert all(loaded.cfg.model[k] == v for k, v in own.items())
    assert set(loaded.checkpoint.config["model"]) <= set(loaded.cfg.model)
    assert_same_parameters(parameters(loaded.model), weights)
    loaded.checkpoint.save(tmp_path / "v2.pt")
    again = load_checkpoint(tmp_path / "v2.pt")
    assert again["version"] == 2 and again["config"]["model"] == loaded.checkpoint.config["model"]


@pytest.mark.parametrize("own, foreign, key", [
    (dict(arch="rnn_fixed", emb_dim=8, hidden=8), dict(heads=2), "heads=2"),
    (dict(arch="transformer", hidden=16, heads=2, ff_dim=32), dict(temperature=0.5), "temperature=0.5"),
    (dict(arch="rnn_attention", emb_dim=8, hidden=8), dict(summary_dim=12), "summary_dim=12"),
])  # fmt: skip
def test_a_flat_config_the_old_code_could_not_build_is_refused_in_one_line(tmp_path, own, foreign, key):
    """A foreign option off its default was refused by the architecture: dropping it would change the model."""
    _v1_checkpoint(tmp_path / "v1.pt", own, foreign)
    with pytest.raises(NMTError, match=rf"v1.pt: model.{key} does not apply to model.arch={own['arch']}$"):
        load_checkpoint(tmp_path / "v1.pt")


def test_upgrading_a_model_config_of_today_changes_nothing():
    for cls in (RNNAttentionConfig, FixedContextConfig, TransformerConfig):
        today = OmegaConf.to_container(OmegaConf.structured(cls))
        assert upgrade_model_config(dict(today)) == today
    assert upgrade_model_config({"arch": "rnn_fancy", "heads": 3}) == {"arch": "rnn_fancy", "heads": 3}


def test_a_run_directory_gives_its_moving_average_only_where_it_validated_above_every_raw_validation(tmp_path):
    for name in ("best.pt", "last.pt", "ema.pt"):
        (tmp_path / name).write_bytes(b"")
    metrics = {"best_bleu": 30.0, "history": [{"step": 100, "bleu": 30.0}, {"step": 200, "bleu": 29.0}]}
    for average, expected in ((None, "best.pt"), (29.5, "best.pt"), (30.0, "best.pt"), (30.4, "ema.pt")):
        (tmp_path / "metrics.json").write_text(json.dumps(metrics | ({"ema": {"bleu": average}} if average else {})))
        assert resolve_checkpoint(tmp_path) == tmp_path / expected
    (tmp_path / "ema.pt").unlink()
    assert resolve_checkpoint(tmp_path) == tmp_path / "best.pt"  # metrics.json names an average that is gone
    (tmp_path / "metrics.json").write_text("{not json")
    assert resolve_checkpoint(tmp_path) == tmp_path / "best.pt"
