"""Two gloo processes on the CPU: DDP weights every target token alike across ranks, a rank that fails
makes every rank exit non-zero quickly instead of leaving the others waiting in a collective, and a launcher
killed with SIGKILL leaves no rank running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from train_utils import REPO, cli_env, free_port, overrides, tiny_config, write_corpus

from nmt.config import Config, TrainConfig
from nmt.training import distributed as dist
from nmt.training.trainer import Trainer

WORLD_SIZE = 2
# Rank r has ROWS[r] target rows of a linear model: unequal counts, as token-budget batches have.
ROWS = (1, 3)


def rank_env(rank: int, port: int) -> dict[str, str]:
    """The variables torchrun sets for one rank."""
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(WORLD_SIZE)}


def regression_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (sum(ROWS), 4) and targets (sum(ROWS),) of every rank, rank 0's rows first."""
    torch.manual_seed(0)
    return torch.randn(sum(ROWS), 4), torch.randn(sum(ROWS))


def row_losses(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed squared error of rows x (n, 4) against y (n,): the stand-in for a summed token loss."""
    return ((model(x).squeeze(-1) - y) ** 2).sum()


def _gradient_worker(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(rank_env(rank, port))
    info = dist.init_distributed(torch.device("cpu"))
    torch.manual_seed(1)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1))
    x, y = regression_data()
    start = sum(ROWS[:rank])
    mine = slice(start, start + ROWS[rank])
    (row_losses(model, x[mine], y[mine]) / dist.loss_divisor(ROWS[rank], torch.device("cpu"), info)).backward()
    torch.save([p.grad for p in model.module.parameters()], Path(out_dir) / f"grad{rank}.pt")
    dist.cleanup(info)


def test_ddp_gradient_is_the_mean_over_every_ranks_targets(tmp_path):
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])  # see test_ddp.py: imported before forking
    mp.start_processes(_gradient_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD_SIZE, join=True,
                       start_method="fork")
    grads = [torch.load(tmp_path / f"grad{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    torch.manual_seed(1)
    model = torch.nn.Linear(4, 1)
    x, y = regression_data()
    (row_losses(model, x, y) / len(y)).backward()  # one process, every row: the gradient DDP must reproduce
    for rank_grads in grads:
        for got, want in zip(rank_grads, model.parameters(), strict=True):
            torch.testing.assert_close(got, want.grad)
    # Dividing by each rank's own count would average the two ranks' means: a different gradient here.
    model.zero_grad()
    (row_losses(model, x[:1], y[:1]) / 1 / 2 + row_losses(model, x[1:], y[1:]) / 3 / 2).backward()
    assert not torch.allclose(model.weight.grad, grads[0][0])


def failing_rank(rank: int, port: int, corpus: str, data_root: str, run_dir: str) -> None:
    """One rank of a tiny DDP run in which rank 0's first validation raises (run as a child process)."""
    import nmt.training.trainer as trainer_module

    def broken_validate(*args, **kwargs):
        raise RuntimeError("validation failed on purpose")

    os.environ.update(rank_env(rank, port))
    if rank == 0:
        trainer_module.validate = broken_validate
    cfg = tiny_config(Path(corpus), Path(data_root), "train.max_steps=4", "train.eval_every=2")
    trainer_module.Trainer(cfg, run_dir).fit()


def run_children(commands: list[list[str]], logs: list[Path], timeout: float) -> list[int | None]:
    """Start each command in its own process group; their exit codes (None: still running at `timeout`
    seconds, then killed with its children)."""
    procs = []
    for cmd, log in zip(commands, logs, strict=True):
        with log.open("w") as f:
            procs.append(subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=f, stderr=subprocess.STDOUT,
                                          start_new_session=True))
    deadline = time.monotonic() + timeout
    codes: list[int | None] = []
    for proc in procs:
        try:
            codes.append(proc.wait(timeout=max(0.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            codes.append(None)
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return codes


@pytest.mark.slow
def test_a_rank_failing_in_validation_stops_every_rank_within_a_minute(mirror, tmp_path_factory, tmp_path):
    base = tmp_path_factory.getbasetemp() / "nmt-train"
    corpus, data_root = write_corpus(mirror, base / "corpus"), base / "data"
    tiny_config(corpus, data_root)  # fail here, not in a child, on a broken config
    port, tests = free_port(), Path(__file__).parent
    commands = [[sys.executable, "-c", f"import sys; sys.path.insert(0, {str(tests)!r}); import test_distributed; "
                 f"test_distributed.failing_rank({r}, {port}, {str(corpus)!r}, {str(data_root)!r}, "
                 f"{str(tmp_path / 'run')!r})"] for r in range(WORLD_SIZE)]
    logs = [tmp_path / f"rank{r}.log" for r in range(WORLD_SIZE)]
    codes = run_children(commands, logs, timeout=60)
    assert all(code is not None for code in codes), f"a rank was still running after 60 s: {codes}"
    assert all(code != 0 for code in codes), codes
    assert "validation failed on purpose" in logs[0].read_text()


def test_a_failed_run_aborts_its_process_groups_and_a_finished_one_destroys_them(monkeypatch, tmp_path):
    calls: list[str] = []
    monkeypatch.setattr(dist.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist.dist, "destroy_process_group", lambda: calls.append("destroy"))
    monkeypatch.setattr(dist.distributed_c10d, "_abort_process_group", lambda: calls.append("abort"))
    two_ranks = dist.DistInfo(rank=1, world_size=2, backend="nccl")
    dist.cleanup(two_ranks)
    dist.cleanup(two_ranks, failed=True)
    assert calls == ["destroy", "abort"]

    def setup_fails(self):
        self.dist = two_ranks
        raise RuntimeError("disk full")

    monkeypatch.setattr(Trainer, "_setup", setup_fails)
    with pytest.raises(RuntimeError, match="disk full"):
        Trainer(Config(train=TrainConfig(max_steps=1)), tmp_path).fit()
    assert calls == ["destroy", "abort", "abort"]


def processes_with(marker: str) -> list[int]:
    """Pids of the processes whose command line holds `marker` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:  # gone meanwhile
            pass
    return found


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the ranks follow their launcher on Linux (prctl)")
def test_ranks_stop_when_their_launcher_is_killed(mirror, tmp_path_factory, tmp_path):
    """torchrun starts each rank in a session of its own: killed with SIGKILL it cannot stop them, and they
    would train on unattended. Each rank asks for a SIGTERM on its parent's death and stops (writing last.pt)."""
    base = tmp_path_factory.getbasetemp() / "nmt-train"
    corpus, data_root = write_corpus(mirror, base / "corpus"), base / "data"
    run_dir = tmp_path / "orphan-check-run"  # the marker: in every rank's command line, and nowhere else
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--master-addr=127.0.0.1",
           f"--master-port={free_port()}", "-m", "nmt.cli.train",
           *overrides(corpus, data_root, "train.max_steps=100000", f"hydra.run.dir={run_dir}")]
    with (tmp_path / "launcher.log").open("w") as log:
        launcher = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        train_log = run_dir / "train.log"
        # A logged step is one that both ranks took (DDP averages their gradients in it).
        while not (train_log.exists() and "step 2 |" in train_log.read_text(encoding="utf-8")):
            assert launcher.poll() is None, (tmp_path / "launcher.log").read_text()
            assert time.monotonic() < deadline, "the ranks did not start training within 2 minutes"
            time.sleep(0.2)
        ranks = [pid for pid in processes_with(str(run_dir)) if pid != launcher.pid]
        assert len(ranks) == 2, ranks
        launcher.kill()
        launcher.wait()
        deadline = time.monotonic() + 20
        while processes_with(str(run_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = processes_with(str(run_dir))
        assert not left, f"ranks still running 20 s after their launcher was killed: {left}"
        assert "stopping on SIGTERM" in train_log.read_text(encoding="utf-8")
        assert (run_dir / "last.pt").is_file()
    finally:
        for pid in processes_with(str(run_dir)):
            os.kill(pid, signal.SIGKILL)
