"""Training sized for a GPU: validation and checkpoints every so many minutes of training time, weights-only step
files beside a last.pt that resumes exactly, and torch.compile's time reported apart from training time."""

from __future__ import annotations

import json

import pytest
import torch
from test_training import ShiftedClock
from train_utils import assert_same_parameters, parameters, tiny_config, write_corpus

import nmt.training.run_log as run_log
import nmt.training.trainer as trainer_module
from nmt.errors import NMTError
from nmt.training.checkpoint import Checkpoint, load_checkpoint
from nmt.training.schedules import due
from nmt.training.trainer import Trainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(mirror, tmp_path_factory):
    """(corpus dir, prepared-data root) shared by the module: the tokenizer is trained once."""
    base = tmp_path_factory.getbasetemp() / "nmt-cadence"
    return write_corpus(mirror, base / "corpus"), base / "data"


def test_a_minute_cadence_is_due_when_a_step_crosses_a_multiple_of_it_and_replaces_the_step_cadence():
    assert due(0, 1.0, step=7, seconds_before=59.0, seconds_after=61.0)
    assert not due(0, 1.0, step=8, seconds_before=61.0, seconds_after=119.9)
    assert due(5, 0.5, step=3, seconds_before=29.0, seconds_after=30.0)  # minutes given: steps ignored ...
    assert not due(5, 0.5, step=5, seconds_before=31.0, seconds_after=32.0)
    assert due(5, 0.0, step=10, seconds_before=0.0, seconds_after=1.0)  # ... else every 5 steps, as before
    assert not due(0, 0.0, step=10, seconds_before=0.0, seconds_after=999.0)
    # a step longer than the period is one validation, not one per minute it spanned
    assert due(0, 1.0, step=1, seconds_before=0.0, seconds_after=300.0)


def steps_taking(seconds: float, clock: ShiftedClock, monkeypatch) -> None:
    """Every training step takes `seconds` more by the clock the trainer reads."""
    real_step = Trainer._train_step

    def slow_step(self, group, time_up, used):
        clock.offset += seconds
        return real_step(self, group, time_up, used)

    monkeypatch.setattr(Trainer, "_train_step", slow_step)


def fake_clock(monkeypatch) -> ShiftedClock:
    clock = ShiftedClock()
    monkeypatch.setattr(trainer_module, "time", clock)
    monkeypatch.setattr(run_log, "time", clock)
    return clock


def test_validation_and_checkpoints_every_minute_of_training_time(setup, tmp_path, monkeypatch):
    steps_taking(25.0, fake_clock(monkeypatch), monkeypatch)  # training time 25, 50, 75, ... seconds
    trainer = Trainer(tiny_config(*setup, "train.max_steps=6", "train.eval_every=1", "train.eval_every_minutes=1",
                                  "train.save_every=1", "train.save_every_minutes=1", "train.keep_last=9"), tmp_path)
    trainer.fit()
    # minutes 1 and 2 end in steps 3 and 5 (75 s, 125 s); the run's end validates once more
    assert [h["step"] for h in trainer.state.history] == [3, 5, 6]
    assert sorted(p.name for p in tmp_path.glob("step-*.pt")) == ["step-3.pt", "step-5.pt"]
    assert 150 <= trainer.state.train_seconds < 160


def test_weights_only_step_files_are_smaller_and_last_pt_resumes_exactly(setup, tmp_path):
    extra = ("train.eval_every=2", "train.save_every=2", "train.keep_last=5", "train.save_weights_only=true",
             "train.schedule=plateau", "train.plateau_patience=0", "train.warmup_steps=2")
    straight = Trainer(tiny_config(*setup, *extra, "train.max_steps=6"), tmp_path / "straight")
    straight.fit()
    step4, last = tmp_path / "straight" / "step-4.pt", tmp_path / "straight" / "last.pt"
    saved = load_checkpoint(step4)
    assert saved["optimizer"] is None and saved["scheduler"] is None and saved["step"] == 4
    assert load_checkpoint(last)["optimizer"] is not None
    weight_bytes = sum(p.numel() * p.element_size() for p in straight.model.parameters())
    assert last.stat().st_size - step4.stat().st_size >= 2 * weight_bytes  # AdamW's two moments per weight
    with pytest.raises(NMTError, match="a checkpoint without optimizer state"):
        Trainer(tiny_config(*setup, *extra, "train.max_steps=6", f"train.resume={step4}"), tmp_path / "no").fit()

    first = Trainer(tiny_config(*setup, *extra, "train.max_steps=4"), tmp_path / "stopped")
    first.fit()
    assert_same_parameters(parameters(load_checkpoint(tmp_path / "stopped" / "step-4.pt")["model"]),
                           parameters(first.model))
    resumed = Trainer(tiny_config(*setup, *extra, "train.max_steps=6", "train.resume=auto"), tmp_path / "stopped")
    resumed.fit()
    assert_same_parameters(parameters(straight.model), parameters(resumed.model))
    assert [h["valid_loss"] for h in resumed.state.history] == [h["valid_loss"] for h in straight.state.history]


class SlowCompile:
    """torch.compile's result whose first call takes ten minutes by the trainer's clock (compiling), then runs the
    model as it is."""

    def __init__(self, model, clock: ShiftedClock) -> None:
        self.model, self.clock, self.calls = model, clock, 0

    def __call__(self, *args):
        self.calls += 1
        if self.calls == 1:
            self.clock.offset += 600
        return self.model(*args)


def test_compile_time_is_reported_apart_from_training_time_and_tokens_per_second(setup, tmp_path, monkeypatch):
    clock = fake_clock(monkeypatch)
    monkeypatch.setattr(torch, "compile", lambda model, **options: SlowCompile(model, clock))
    summary = Trainer(tiny_config(*setup, "model=transformer_small", "train.compile=true", "train.max_steps=3",
                                  "train.max_minutes=5"), tmp_path).fit()
    assert summary.stop_reason == "max_steps" and summary.train_seconds < 60  # not stopped by the 5-minute budget
    assert summary.tokens_per_sec > 3 * 300 / 60
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert 600 <= metrics["compile_seconds"] < 660 and metrics["train_seconds"] < 60
    assert metrics["compile"] == {"fell_back": False, "graphs": 0}  # the stub built no graph
    (line,) = [x for x in (tmp_path / "train.log").read_text().splitlines() if "torch.compile: first step" in x]
    assert "left out of training time" in line
    assert Checkpoint.load(tmp_path / "last.pt").state.compile_seconds == metrics["compile_seconds"]
