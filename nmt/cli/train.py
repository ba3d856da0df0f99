"""`nmt-train`: train a model; logs, TensorBoard events, checkpoints and metrics.json go to the run directory
(Hydra's output dir, outputs/<data>/<arch>/<time>/ by default).

    nmt-train                                          # RNN attention on Multi30k de-en, 20-minute budget
    nmt-train model=rnn_fixed                          # the fixed-context baseline, everything else the same
    nmt-train model=transformer train=transformer train.max_steps=20000
    nmt-train train.max_steps=100 train.device=cpu
    nmt-train hydra.run.dir=outputs/multi30k_de_en/rnn_attention/<time>    # continue that run (its last.pt)
    nmt-train train.resume=outputs/.../step-2000.pt    # continue from a given checkpoint, in a new run dir
    torchrun --nproc_per_node=2 -m nmt.cli.train hydra.run.dir=outputs/ddp   # data parallel, see
                                                       # nmt/training/distributed.py

Ctrl-C or SIGTERM finishes the current step, writes last.pt and exits 0; a second one exits at once (130 / 143).
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nmt.cli.entry import hydra_command
from nmt.errors import user_errors
from nmt.io import check_writable, make_dir
from nmt.training.setup import lock_run_dir
from nmt.training.state import FitSummary
from nmt.training.trainer import Trainer


@user_errors
def train_command(cfg: DictConfig, run_dir: Path) -> FitSummary:
    return Trainer(cfg, run_dir).fit()


@user_errors
def check_run_dir(argv: list[str]) -> None:
    """Before Hydra creates the run directory: make a given hydra.run.dir, and refuse one another nmt-train is
    using (or check that the default's outputs/ can be made); one line on failure."""
    given = [arg.split("=", 1)[1] for arg in argv if arg.split("=", 1)[0] == "hydra.run.dir"]
    if given and "${" not in given[-1]:
        run_dir = make_dir(given[-1], "run directory").resolve()
        if os.environ.get("RANK", "0") == "0":  # refuse a busy one before anything else
            lock_run_dir(run_dir).release()  # the trainer takes the lock for the run (only rank 0 does)
    else:
        check_writable("outputs", directory=True)


@hydra_command("config", before=check_run_dir)
def _hydra_main(cfg: DictConfig) -> None:
    train_command(cfg, Path(HydraConfig.get().runtime.output_dir))


def main() -> None:
    _hydra_main()  # Ctrl-C outside training's loop is `interrupted`, exit 130 (user_errors); in it see Trainer


if __name__ == "__main__":
    main()
