"""The training loop: exact resume, NaN handling, early stopping, schedules, budgets, the nmt-train CLI."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import sys
import time
from pathlib import Path

import pytest
import torch
import torch._dynamo
from omegaconf import OmegaConf
from train_utils import assert_same_parameters, overrides, parameters, tiny_config, train_cli, write_corpus

import nmt.metrics.scores
import nmt.models
import nmt.training.run_log as run_log
import nmt.training.step as step_module
import nmt.training.trainer as trainer_module
import nmt.training.validate as validate_module
from nmt.config import TransformerConfig
from nmt.errors import NMTError
from nmt.training.checkpoint import load_checkpoint
from nmt.training.run_log import Progress, RunLogger
from nmt.training.schedules import LRSchedule, budget_used, inverse_sqrt_factor
from nmt.training.trainer import Trainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(mirror, tmp_path_factory):
    """(corpus dir, prepared-data root) shared by the module: the tokenizer is trained once."""
    base = tmp_path_factory.getbasetemp() / "nmt-train"
    return write_corpus(mirror, base / "corpus"), base / "data"


def test_resumed_run_equals_uninterrupted_run(setup, tmp_path):
    # Dropout on, gradient accumulation, a plateau schedule that changes the rate at every validation, and an
    # epoch boundary (inside one accumulated step) between the resume point (step 3) and the end (step 8).
    extra = (
        "train.max_steps=8", "train.accum_steps=2", "train.eval_every=3", "train.save_every=3",
        "train.keep_last=5", "train.schedule=plateau", "train.plateau_patience=0", "train.plateau_factor=0.5",
        "train.warmup_steps=2", "train.batch_tokens=600",
    )  # fmt: skip
    straight = Trainer(tiny_config(*setup, *extra), tmp_path / "straight")
    summary = straight.fit()
    assert summary.step == 8 and straight.state.epoch >= 1, "the run must cross an epoch boundary"
    step3 = load_checkpoint(tmp_path / "straight" / "step-3.pt")
    assert step3["step"] == 3 and step3["train_state"]["epoch"] == 0 and step3["train_state"]["batch_in_epoch"] == 6
    assert (step3["train_state"]["world_size"], step3["train_state"]["accum_steps"]) == (1, 2)

    resumed = Trainer(tiny_config(*setup, *extra, f"train.resume={tmp_path / 'straight' / 'step-3.pt'}"),
                      tmp_path / "resumed")  # fmt: skip
    resumed.fit()
    assert resumed.state.step == 8
    assert_same_parameters(parameters(straight.model), parameters(resumed.model))
    final = load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert_same_parameters(parameters(final["model"]), parameters(straight.model))
    assert final["scheduler"] == load_checkpoint(tmp_path / "straight" / "last.pt")["scheduler"]
    assert [h["valid_loss"] for h in resumed.state.history] == [h["valid_loss"] for h in straight.state.history]

    # The same run without resuming from step 3 would have diverged: the check above is not vacuous.
    assert not all(torch.equal(v, step3["model"][k].cpu()) for k, v in parameters(straight.model).items())


def test_nan_loss_skips_the_update(setup, tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = step_module.sequence_loss

    def flaky_loss(logits, targets, label_smoothing=0.0):
        calls["n"] += 1
        loss = real_loss(logits, targets, label_smoothing)
        return loss * math.nan if calls["n"] in (2, 3) else loss

    monkeypatch.setattr(step_module, "sequence_loss", flaky_loss)
    trainer = Trainer(tiny_config(*setup, "train.max_steps=3", "train.max_bad_steps=3"), tmp_path)
    summary = trainer.fit()
    assert summary.bad_steps == 2
    assert summary.step == 3  # only applied updates count as steps ...
    payload = load_checkpoint(tmp_path / "last.pt")
    assert payload["train_state"]["batch_in_epoch"] == 5  # ... but the skipped batches were consumed
    assert all(torch.isfinite(v).all() for v in payload["model"].values())
    assert next(iter(payload["optimizer"]["state"].values()))["step"] == 3  # Adam saw 3 updates, not 5
    assert "skipped an update" in (tmp_path / "train.log").read_text()


def test_consecutive_nan_losses_stop_with_an_error(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(step_module, "sequence_loss", lambda logits, *a, **k: logits.sum() * math.nan)
    trainer = Trainer(tiny_config(*setup, "train.max_steps=20", "train.max_bad_steps=3"), tmp_path)
    with pytest.raises(NMTError, match="3 non-finite steps in a row"):
        trainer.fit()
    assert trainer.state.step == 0 and not (tmp_path / "last.pt").exists()


def test_early_stopping_on_valid_bleu(setup, tmp_path, monkeypatch):
    bleus = iter([5.0, 7.0, 6.0, 6.5, 9.0, 9.0])
    real_scores = nmt.metrics.scores.corpus_scores

    def scripted_scores(hyps, refs):
        return dataclasses.replace(real_scores(hyps, refs), bleu=next(bleus))

    monkeypatch.setattr(validate_module, "corpus_scores", scripted_scores)
    cfg = tiny_config(*setup, "train.max_steps=50", "train.eval_every=1", "train.patience=2")
    summary = Trainer(cfg, tmp_path).fit()
    assert summary.stop_reason == "early_stopping"
    assert summary.step == 4 and summary.best_step == 2 and summary.best_bleu == 7.0
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 2
    assert load_checkpoint(tmp_path / "last.pt")["step"] == 4
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [h["bleu"] for h in metrics["history"]] == [5.0, 7.0, 6.0, 6.5]


def test_epoch_budget_and_checkpoint_policy(setup, tmp_path):
    cfg = tiny_config(*setup, "train.max_steps=0", "train.max_epochs=1", "train.eval_every=0", "train.batch_tokens=700",
                      "train.save_every=2", "train.keep_last=2")  # fmt: skip
    trainer = Trainer(cfg, tmp_path)
    summary = trainer.fit()
    n_batches = len(trainer.data.sampler)
    assert summary.stop_reason == "max_epochs" and summary.step == n_batches
    assert (trainer.state.epoch, trainer.state.batch_in_epoch) == (1, 0)
    assert len(trainer.state.history) == 1  # eval_every=0: once, at the epoch end
    kept = sorted(int(p.stem.split("-")[1]) for p in tmp_path.glob("step-*.pt"))
    last_even = n_batches - n_batches % 2
    assert kept == [last_even - 2, last_even]
    assert (tmp_path / "best.pt").exists() and (tmp_path / "last.pt").exists()


def test_no_budget_is_a_user_error(setup, tmp_path):
    with pytest.raises(NMTError, match="no budget"):
        Trainer(tiny_config(*setup, "train.max_steps=0"), tmp_path)


def test_inverse_sqrt_schedule_shape():
    factors = [inverse_sqrt_factor(s, 100) for s in range(1, 1001)]
    assert factors[0] == pytest.approx(0.01) and factors[49] == pytest.approx(0.5)  # linear warmup
    assert max(factors) == factors[99] == pytest.approx(1.0)  # peak at the end of warmup
    assert factors[399] == pytest.approx(0.5)  # then lr * sqrt(warmup / step)
    assert all(a < b for a, b in zip(factors[:99], factors[1:100], strict=True))
    assert all(a > b for a, b in zip(factors[100:-1], factors[101:], strict=True))


def test_plateau_schedule_halves_after_patience_and_keeps_its_state():
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = LRSchedule(opt, "plateau", lr=1e-3, warmup_steps=10, factor=0.5, patience=1, min_lr=3e-4)
    assert sched.set_step(5) == pytest.approx(5e-4)  # warmup
    assert sched.set_step(20) == pytest.approx(1e-3) == opt.param_groups[0]["lr"]
    assert not sched.on_validation(10.0)  # best
    assert not sched.on_validation(9.0)  # 1 bad validation: within patience
    assert sched.on_validation(10.0) and sched.lr == pytest.approx(5e-4)  # 2nd: halve
    saved = sched.state_dict()
    assert not sched.on_validation(11.0)
    assert not sched.on_validation(1.0)
    assert sched.on_validation(1.0) and sched.lr == pytest.approx(3e-4)  # floored at min_lr
    assert not sched.on_validation(1.0) and not sched.on_validation(1.0)  # nothing below min_lr
    other = LRSchedule(torch.optim.SGD([param], lr=1.0), "plateau", lr=1e-3, patience=1, min_lr=3e-4)
    other.load_state_dict(saved)
    assert other.lr == pytest.approx(5e-4) and other.best == 10.0


def test_constant_schedule_with_warmup():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = LRSchedule(opt, "constant", lr=2e-3, warmup_steps=4)
    assert [sched.set_step(s) for s in (1, 2, 4, 100)] == pytest.approx([5e-4, 1e-3, 2e-3, 2e-3])
    assert not sched.on_validation(0.0) and sched.lr == pytest.approx(2e-3)


def test_train_cli_writes_checkpoints_and_metrics(setup, tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    args = overrides(*setup, "train.max_steps=3", "train.eval_every=2", f"hydra.run.dir={run_dir}")
    assert train_cli(monkeypatch, args) == 0
    out = capsys.readouterr().out
    for name in ("last.pt", "best.pt", "metrics.json", "train.log", ".hydra/config.yaml"):
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    payload = load_checkpoint(run_dir / "last.pt")
    assert payload["step"] == 3 and metrics["stop_reason"] == "max_steps"
    tables = {v.data_ptr(): v for v in payload["model"].values()}  # a tied table is saved under each of its names
    assert metrics["num_parameters"] == payload["num_parameters"] == sum(v.numel() for v in tables.values())
    assert f"{metrics['num_parameters']:,} parameters" in out
    assert f"{metrics['num_parameters']:,} parameters" in (run_dir / "train.log").read_text()
    assert [h["step"] for h in metrics["history"]] == [2, 3]  # every 2 steps and at the end
    assert payload["config"]["train"]["max_steps"] == 3  # the resolved config travels with the weights


def test_train_cli_user_error_is_one_line_and_exit_2(setup, tmp_path, monkeypatch, capsys):
    args = overrides(*setup, "train.max_steps=0", f"hydra.run.dir={tmp_path}")
    assert train_cli(monkeypatch, args) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "error: no budget: set train.max_steps, train.max_epochs or train.max_minutes (all are 0)"
    ]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_live_line_on_a_terminal_plain_lines_otherwise(tmp_path):
    train_cfg = OmegaConf.create({"max_steps": 10, "max_epochs": 0, "max_minutes": 0, "log_every": 2})
    for name, stream in (("tty", _Terminal()), ("pipe", io.StringIO())):
        log = RunLogger(tmp_path / name, tensorboard=False, stream=stream)
        progress = Progress(log, train_cfg, step=0, epochs=0.0, seconds_before=0.0)
        for step in (1, 2):
            progress.meter.add(loss_sum=8.0, targets=2.0, tokens=10.0, padding=0.1, grad_norm=1.0)
            log._last_draw = 0.0  # redraws are rate-limited in time; this test is about what gets drawn
            progress.update(step, epochs=step / 5, epoch=0, index=step - 1, n_batches=5, lr=1e-3)
        log.info("valid step 2: BLEU 1.00")
        log.close()
        console = stream.getvalue()
        logged = (tmp_path / name / "train.log").read_text()
        assert "step 2 | epoch 1  40% | loss 4.000 | lr 1.00e-03" in logged  # the log_every line
        # ... with time per step, the part spent waiting for data, and the process's peak memory
        assert re.search(r"\| \d+ ms/step \(data \d+\) \| peak RSS \d+\.\d\d GB\n", logged), logged
        assert "step 1 |" not in logged and "valid step 2: BLEU 1.00" in logged
        if name == "tty":  # redrawn in place, cleared before a log line; periodic lines only in train.log
            assert console.startswith("\rstep 1 | epoch 1  20% | loss 4.000")
            assert "\rstep 2 |" in console and "gnorm" not in console
            assert console.endswith("\rvalid step 2: BLEU 1.00\n")
        else:  # no carriage returns in a log file or pipe: just the periodic lines
            assert "\r" not in console
            assert console.splitlines()[0].startswith("step 2 | epoch 1  40% | loss 4.000")
            assert console.splitlines()[1] == "valid step 2: BLEU 1.00"


class ShiftedClock:
    """The time module with `monotonic` moved forward by `offset` seconds (a fake slow validation adds to it)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __getattr__(self, name):
        return getattr(time, name)

    def monotonic(self) -> float:
        return time.monotonic() + self.offset


def test_max_minutes_and_tokens_per_second_leave_validation_out(setup, tmp_path, monkeypatch):
    clock = ShiftedClock()
    monkeypatch.setattr(trainer_module, "time", clock)
    monkeypatch.setattr(run_log, "time", clock)
    real_validate = trainer_module.validate

    def slow_validate(*args, **kwargs):  # ten minutes by the clock the trainer reads
        clock.offset += 600
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "validate", slow_validate)
    summary = Trainer(tiny_config(*setup, "train.max_steps=4", "train.eval_every=1", "train.max_minutes=5"),
                      tmp_path).fit()
    assert clock.offset == 4 * 600  # every step validated: 40 minutes of validation ...
    assert summary.stop_reason == "max_steps" and summary.step == 4  # ... not counted in the 5-minute budget
    assert summary.train_seconds < 60
    assert summary.tokens_per_sec > summary.step * 300 / 60  # 4 steps of ~300 tokens took under a minute


def test_out_of_memory_is_one_line_naming_what_to_lower_and_exit_2(setup, tmp_path, monkeypatch, capsys):
    def no_memory(self, group, time_up, used):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")

    monkeypatch.setattr(Trainer, "_train_step", no_memory)
    args = overrides(*setup, "train.batch_tokens=300", "decode.batch_size=16", f"hydra.run.dir={tmp_path}")
    assert train_cli(monkeypatch, args) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: out of memory on cpu at step 0 (CUDA out of memory. Tried to allocate 2.00 GiB)")
    assert "train.batch_tokens (now 300)" in line and "decode.batch_size (now 16)" in line


def test_deterministic_mode_switches_deterministic_kernels_on_and_changes_nothing_on_the_cpu(
        setup, tmp_path, monkeypatch):
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    extra = ("train.max_steps=3", "train.eval_every=2")
    default = Trainer(tiny_config(*setup, *extra), tmp_path / "default")
    default.fit()
    assert not torch.are_deterministic_algorithms_enabled()
    try:
        deterministic = Trainer(tiny_config(*setup, *extra, "train.deterministic=true"), tmp_path / "deterministic")
        deterministic.fit()  # training and greedy validation: no op without a deterministic kernel
        assert torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.deterministic
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"
    finally:
        torch.use_deterministic_algorithms(False)
    assert_same_parameters(parameters(default.model), parameters(deterministic.model))


class SyncCounter:
    """Counts the calls of the package's training and model code that copy a tensor to the host (.item(),
    float(), .cpu(), .tolist()) while `active`. Left out: the token counts of a batch, which nmt/data computes
    on the host before the batch goes to the device, and torch's own calls (the CPU optimizer reads its step
    counts; fused AdamW on CUDA does not)."""

    METHODS = ("item", "__float__", "cpu", "tolist")
    COUNTED = (str(Path(trainer_module.__file__).parent), str(Path(nmt.models.__file__).parent))

    def __init__(self, monkeypatch) -> None:
        self.active, self.calls = False, {name: 0 for name in self.METHODS}
        for name in self.METHODS:
            monkeypatch.setattr(torch.Tensor, name, self._counting(name, getattr(torch.Tensor, name)))

    def _counting(self, name, method):
        def counted(tensor, *args, **kwargs):
            if self.active and sys._getframe(1).f_code.co_filename.startswith(self.COUNTED):
                self.calls[name] += 1
            return method(tensor, *args, **kwargs)

        return counted


def test_a_training_step_copies_to_the_host_once(setup, tmp_path, monkeypatch):
    counter, steps = SyncCounter(monkeypatch), []
    real_step = Trainer._train_step

    def counted_step(self, group, time_up, used):
        counter.calls = dict.fromkeys(counter.METHODS, 0)
        counter.active = True
        try:
            return real_step(self, group, time_up, used)
        finally:
            counter.active = False
            steps.append(counter.calls)

    monkeypatch.setattr(Trainer, "_train_step", counted_step)
    # The Transformer: the RNN encoder calls .cpu() on its source lengths, once per batch, which copies nothing
    # because a Batch keeps them on the CPU (tests/test_batching.py).
    Trainer(tiny_config(*setup, "model=transformer_small", "train.max_steps=3", "train.accum_steps=2"),
            tmp_path).fit()
    assert steps == [{"item": 0, "__float__": 0, "cpu": 0, "tolist": 1}] * 3


class FailingCompile:
    """What torch.compile returns when its backend cannot compile: the first call raises."""

    def __init__(self, model, error: Exception) -> None:
        self.model, self.error, self.calls = model, error, 0

    def __call__(self, *args):
        self.calls += 1
        raise self.error


def compile_then_eager(setup, tmp_path, monkeypatch, wrapper, error) -> tuple[Trainer, Trainer, list]:
    """A 3-update Transformer run whose torch.compile returns `wrapper(model, error)`, and the same run eagerly."""
    compiled: list = []
    monkeypatch.setattr(torch, "compile", lambda model, **options: compiled.append(wrapper(model, error))
                        or compiled[-1])
    extra = ("train.max_steps=3", "model=transformer")
    fallback = Trainer(tiny_config(*setup, *extra, "train.compile=true"), tmp_path / "compile")
    fallback.fit()
    eager = Trainer(tiny_config(*setup, *extra), tmp_path / "eager")
    eager.fit()
    assert compiled[0].calls == 1 and fallback.state.step == 3
    warnings = [line for line in (tmp_path / "compile" / "train.log").read_text().splitlines() if "warning" in line]
    assert len(warnings) == 1
    return fallback, eager, warnings


def test_a_failing_compile_falls_back_to_eager_with_one_warning(setup, tmp_path, monkeypatch):
    from torch._dynamo.exc import TorchDynamoException

    fallback, eager, warnings = compile_then_eager(setup, tmp_path, monkeypatch, FailingCompile,
                                                   TorchDynamoException("C++ compile error\ng++ not found"))
    assert warnings[0].endswith(
        "warning: torch.compile failed, training without it (train.compile=false): C++ compile error")
    assert_same_parameters(parameters(fallback.model), parameters(eager.model))


class FailingBackward:
    """A compiled model whose backward fails the way a compiled backward does (AOTAutograd compiles it lazily,
    at the first backward): the forward works, the gradient raises."""

    def __init__(self, model, error: Exception) -> None:
        self.model, self.error, self.calls = model, error, 0

    def __call__(self, *args):
        self.calls += 1
        error = self.error

        class Raise(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.clone()

            @staticmethod
            def backward(ctx, grad):
                raise error

        return Raise.apply(self.model(*args))


def test_a_failing_compiled_backward_falls_back_to_eager_and_redoes_the_update(setup, tmp_path, monkeypatch):
    from torch._dynamo.exc import TorchDynamoException

    fallback, eager, warnings = compile_then_eager(setup, tmp_path, monkeypatch, FailingBackward,
                                                   TorchDynamoException("backward compile failed"))
    assert warnings[0].endswith("(train.compile=false): backward compile failed")
    assert_same_parameters(parameters(fallback.model), parameters(eager.model))  # no gradient of the failed try


@pytest.mark.slow
def test_the_compiled_model_has_one_graph_for_batches_of_every_shape(one_thread):
    """The trainer's torch.compile (dynamic shapes) traces the Transformer once for batches of four different sizes
    and lengths, not once per shape; the "eager" backend builds the same graphs without generating code."""
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    cfg = TransformerConfig(hidden=16, ff_dim=32, heads=2, enc_layers=1, dec_layers=1, dropout=0.0)
    model = nmt.models.build_model(cfg, 30, 30)
    compiled = step_module.compile_dynamic(model, backend="eager")
    for b, s, t in ((4, 5, 6), (3, 9, 7), (6, 12, 13), (2, 17, 15)):
        src, tgt_in = torch.randint(4, 30, (b, s)), torch.randint(4, 30, (b, t))
        src_lens = torch.tensor([s] + [s - 2] * (b - 1))
        torch.testing.assert_close(compiled(src, src_lens, tgt_in), model(src, src_lens, tgt_in))
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    torch._dynamo.reset()


def test_an_error_of_the_model_itself_is_not_taken_for_a_compile_failure(setup, tmp_path, monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda model, **options: FailingCompile(model, ValueError("bad shapes")))
    with pytest.raises(ValueError, match="bad shapes"):
        Trainer(tiny_config(*setup, "train.max_steps=1", "model=transformer", "train.compile=true"), tmp_path).fit()


def test_compile_is_refused_for_the_rnns_in_one_line(setup, tmp_path):
    with pytest.raises(NMTError, match="train.compile=true does not suit model.arch=rnn_attention: its decoder steps"):
        Trainer(tiny_config(*setup, "train.max_steps=1", "train.compile=true"), tmp_path)
    assert not tmp_path.joinpath("train.log").exists()


def test_validation_decodes_in_decode_precision_not_in_the_training_autocast(setup, tmp_path, monkeypatch):
    """The valid loss is computed like the training loss (under its autocast); the search is not: it runs in
    decode.precision, so valid BLEU is the BLEU nmt-evaluate gives the same checkpoint."""
    entered: list[bool] = []

    class TrainingAutocast:
        def __enter__(self) -> None:
            entered.append(True)

        def __exit__(self, *exc: object) -> None:
            entered.pop()

    real_translate = validate_module.translate
    searched: list[bool] = []

    def translate(*args, **kwargs):
        searched.append(bool(entered))
        return real_translate(*args, **kwargs)

    monkeypatch.setattr(Trainer, "_autocast", lambda self: TrainingAutocast())
    monkeypatch.setattr(validate_module, "translate", translate)
    Trainer(tiny_config(*setup, "train.max_steps=2", "train.eval_every=2"), tmp_path).fit()
    assert searched == [False]


def test_the_cooldown_brings_the_rate_to_its_floor_as_each_kind_of_budget_ends():
    """train.cooldown=0.2: full rate until 80% of the budget, then linearly to min_lr at its end, for a budget in
    steps, epochs or training minutes (the first to end governs)."""
    def cfg(**budget: float) -> OmegaConf:
        return OmegaConf.create({"max_steps": 0, "max_epochs": 0, "max_minutes": 0.0} | budget)

    assert budget_used(cfg(max_steps=100), 50, 0.0, 0.0) == 0.5
    assert budget_used(cfg(max_epochs=4), 999, 3.0, 0.0) == 0.75
    assert budget_used(cfg(max_minutes=20), 5, 0.1, 600.0) == 0.5  # training seconds, not wall time
    assert budget_used(cfg(max_steps=100, max_minutes=20), 10, 0.0, 900.0) == 0.75  # the first budget to end
    schedule = LRSchedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), "constant", lr=1e-3,
                          min_lr=1e-6, cooldown=0.2)
    assert schedule.set_step(10, 0.5) == 1e-3 and schedule.set_step(80, 0.8) == 1e-3
    assert schedule.set_step(90, 0.9) == pytest.approx(5e-4)
    assert schedule.set_step(100, 0.99) == pytest.approx(5e-5) and schedule.set_step(101, 1.0) == 1e-6
    with pytest.raises(NMTError, match=r"train.cooldown must be in \[0, 1\), got 1.0"):
        LRSchedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), "constant", lr=1e-3, cooldown=1.0)


def test_a_run_resumed_inside_its_cooldown_equals_the_uninterrupted_one(setup, tmp_path):
    """Update u of 6 spends (u - 1) / 6 of the budget first: the rate falls from update 5 (2/3 of it) to 6 (1/3);
    a run resumed from step 4 follows the same rates to the same weights."""
    extra = ("train.max_steps=6", "train.schedule=constant", "train.cooldown=0.5", "train.eval_every=2",
             "train.save_every=2", "train.keep_last=5", "train.min_lr=0", "train.lr=3e-3")
    straight = Trainer(tiny_config(*setup, *extra), tmp_path / "straight")
    straight.fit()
    rates = [h["lr"] for h in straight.state.history]  # the rate of the update before each validation
    assert rates == pytest.approx([3e-3, 3e-3, 1e-3])
    resumed = Trainer(tiny_config(*setup, *extra, f"train.resume={tmp_path / 'straight' / 'step-4.pt'}"),
                      tmp_path / "resumed")
    resumed.fit()
    assert_same_parameters(parameters(straight.model), parameters(resumed.model))
    assert [h["lr"] for h in resumed.state.history] == rates


def test_the_moving_average_is_validated_saved_and_resumed_exactly(setup, tmp_path):
    """train.ema_decay: after every update ema = d * ema + (1 - d) * weights; at the end the average is validated
    (metrics.json "ema") and saved as ema.pt, weights only; it is part of last.pt, so a run resumed from step 4
    ends with the same average as the uninterrupted one."""
    extra = ("train.max_steps=6", "train.ema_decay=0.5", "train.eval_every=2", "train.save_every=2",
             "train.keep_last=5")
    straight = Trainer(tiny_config(*setup, *extra), tmp_path / "straight")
    straight.fit()
    ema = load_checkpoint(tmp_path / "straight" / "ema.pt")
    assert ema["optimizer"] is None and ema["step"] == 6
    metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert metrics["ema"]["step"] == 6 and metrics["ema"]["decay"] == 0.5 and "bleu" in metrics["ema"]
    last = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert any(not torch.equal(ema["model"][k], last["model"][k]) for k in ema["model"])  # the average, not the end
    step4 = load_checkpoint(tmp_path / "straight" / "step-4.pt")
    name = next(iter(step4["ema"]["shadow"]))
    assert set(step4["ema"]["shadow"]) == {k for k, v in step4["model"].items() if v.is_floating_point()}
    resumed = Trainer(tiny_config(*setup, *extra, f"train.resume={tmp_path / 'straight' / 'step-4.pt'}"),
                      tmp_path / "resumed")
    resumed.fit()
    again = load_checkpoint(tmp_path / "resumed" / "ema.pt")
    assert all(torch.equal(again["model"][k], ema["model"][k]) for k in ema["model"])
    assert not torch.equal(step4["ema"]["shadow"][name], ema["model"][name].float())
    with pytest.raises(NMTError, match=r"train.ema_decay must be in \[0, 1\)"):
        Trainer(tiny_config(*setup, "train.max_steps=2", "train.ema_decay=1.0"), tmp_path / "bad").fit()


def test_weight_average_follows_its_rule():
    from nmt.training.ema import WeightAverage

    model = torch.nn.Linear(2, 1)
    with torch.no_grad():
        model.weight.fill_(1.0)
    average = WeightAverage(model, 0.75)
    with torch.no_grad():
        model.weight.fill_(3.0)
    average.update(model)
    assert average.shadow["weight"].tolist() == [[1.5, 1.5]]  # 0.75 * 1 + 0.25 * 3
    with average.applied(model):
        assert model.weight.tolist() == [[1.5, 1.5]]
    assert model.weight.tolist() == [[3.0, 3.0]]  # its own weights again
