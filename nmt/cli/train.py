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

Ctrl-C or SIGTERM finishes the current step, writes last.pt and exits 0; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nmt.config import CONFIG_DIR
from nmt.errors import user_errors
from nmt.training.trainer import Trainer

# The trainer writes its own <run dir>/train.log; Hydra's job log would be a second writer of the same file.
QUIET_HYDRA = ("hydra/job_logging=none", "hydra/hydra_logging=none")


@user_errors
def run(cfg: DictConfig, run_dir: Path) -> dict[str, Any]:
    return Trainer(cfg, run_dir).fit()


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    run(cfg, Path(HydraConfig.get().runtime.output_dir))


def main() -> None:
    given = {arg.split("=", 1)[0].lstrip("+~") for arg in sys.argv[1:]}
    sys.argv += [o for o in QUIET_HYDRA if o.split("=", 1)[0] not in given]
    try:
        _hydra_main()
    except KeyboardInterrupt:  # only a second Ctrl-C gets here: the first one stops training cleanly
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
