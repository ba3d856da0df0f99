"""Two CPU processes (gloo backend) train one model with DDP: they must end with identical parameters."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from train_utils import assert_same_parameters, free_port, parameters, tiny_config, write_corpus

import nmt.data.corpus  # noqa: F401  (imported before forking the ranks, see below)
import nmt.decoding.search  # noqa: F401
import nmt.metrics  # noqa: F401
import nmt.models  # noqa: F401
from nmt.training.checkpoint import load_checkpoint
from nmt.training.trainer import Trainer

WORLD_SIZE = 2


def _worker(rank: int, port: int, corpus: str, data_root: str, run_dir: str, out_dir: str) -> None:
    """One rank, set up the way torchrun would set it up."""
    torch.set_num_threads(1)
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(WORLD_SIZE),
    )
    # Each rank passes its own run dir (as Hydra's timestamps might); rank 0's wins.
    cfg = tiny_config(Path(corpus), Path(data_root), "train.max_steps=3", "train.accum_steps=2",
                      "train.eval_every=2", "train.save_every=2")  # fmt: skip
    trainer = Trainer(cfg, run_dir if rank == 0 else f"{run_dir}-rank{rank}")
    summary = trainer.fit()
    torch.save(
        {
            "params": parameters(trainer.model),
            "summary": dataclasses.asdict(summary),
            "run_dir": str(trainer.run_dir),
            "first_batches": trainer.data.sampler.batches(0)[:4],
        },
        Path(out_dir) / f"rank{rank}.pt",
    )


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_parameters(mirror, tmp_path_factory, tmp_path):
    base = tmp_path_factory.getbasetemp() / "nmt-train"
    corpus, data_root = write_corpus(mirror, base / "corpus"), base / "data"
    tiny_config(corpus, data_root)  # fail here, not in a child, on a broken config
    run_dir = tmp_path / "run"
    # fork: the ranks inherit what this process has imported (see the top of the file; the optimizer imports
    # its compiler stack lazily on first use), which freshly spawned interpreters would import again.
    torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))])
    mp.start_processes(
        _worker,
        args=(free_port(), str(corpus), str(data_root), str(run_dir), str(tmp_path)),
        nprocs=WORLD_SIZE,
        join=True,
        start_method="fork",
    )
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD_SIZE)]
    assert_same_parameters(ranks[0]["params"], ranks[1]["params"])
    for key in ("step", "stop_reason", "best_bleu", "best_step"):  # validation results reach every rank
        assert ranks[0]["summary"][key] == ranks[1]["summary"][key], key
    assert ranks[0]["summary"]["step"] == 3
    # Each rank trained on its own share of the data ...
    assert ranks[0]["first_batches"] != ranks[1]["first_batches"]
    # ... and only rank 0 wrote, into its own run dir, which the other rank adopted.
    assert ranks[1]["run_dir"] == str(run_dir)
    assert not Path(f"{run_dir}-rank1").exists()
    log = (run_dir / "train.log").read_text()  # rank 0 says when every rank has its data and model
    assert log.index("model:") < log.index("all 2 ranks set up") < log.index("valid step")
    last = load_checkpoint(run_dir / "last.pt")
    assert last["step"] == 3 and last["train_state"]["world_size"] == 2  # resumable on 2 ranks only
    assert_same_parameters(parameters(last["model"]), ranks[0]["params"])
    # The checkpoint's initial weights were changed by training (the test would pass vacuously otherwise).
    first = load_checkpoint(run_dir / "step-2.pt")
    assert any(not torch.equal(first["model"][k], v) for k, v in ranks[0]["params"].items())
