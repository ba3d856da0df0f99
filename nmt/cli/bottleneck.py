"""`nmt-bottleneck`: does attention remove the fixed-length context bottleneck? (nmt/experiments/bottleneck.py)

    nmt-bottleneck                                   # preset=default: <= 120 min on 2 CPU cores (make bottleneck)
    nmt-bottleneck preset=quick                      # a first look, <= 30 min
    nmt-bottleneck preset=news                       # natural long sentences: WMT newstest, <= 60 min
    nmt-bottleneck preset=gpu                        # for one GPU: five seeds, Multi30k levels + WMT news
    nmt-bottleneck seeds='[1,2,3]' train.max_minutes=20

Options are the fields of `BottleneckConfig` (nmt/config.py), presets are configs/experiment/bottleneck/preset/;
dotted data./model./train./decode. keys go to every training run. The report goes to outputs/bottleneck/<time>/;
started again with the same out_dir=, an interrupted experiment continues there (finished runs are reused).
"""

from __future__ import annotations

from nmt.errors import user_errors
from nmt.experiments.bottleneck import run_bottleneck
from nmt.experiments.runner import script_main


@user_errors
def main(argv: list[str] | None = None) -> None:
    script_main("bottleneck", run_bottleneck, __doc__, argv)


if __name__ == "__main__":
    main()
