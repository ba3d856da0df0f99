"""Does attention remove the fixed-length context bottleneck? Train `rnn_fixed` and `rnn_attention` the same
way, score both overall and by source length, and write a report with a verdict computed from the numbers.

    .venv/bin/python scripts/run_bottleneck.py preset=quick                  # small models, both corpora, ~30 min CPU
    .venv/bin/python scripts/run_bottleneck.py preset=full seeds='[1,2,3]'   # default sizes, for a GPU
    .venv/bin/python scripts/run_bottleneck.py preset=quick data='[wmt_news_de_en]' train.max_steps=50 train.device=cpu

Options are the fields of `BottleneckConfig` (nmt/evaluation/experiment.py), presets are
configs/experiment/bottleneck_<name>.yaml; dotted data./model./train./decode. keys go to every training run.
The report goes to outputs/bottleneck/<time>/report.md.
"""

from __future__ import annotations

import sys

from nmt.errors import user_errors
from nmt.evaluation.bottleneck import run_bottleneck
from nmt.evaluation.experiment import load_script_config


@user_errors
def main(argv: list[str]) -> None:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    cfg, preset = load_script_config("bottleneck", argv)
    run_bottleneck(cfg, preset)


if __name__ == "__main__":
    main(sys.argv[1:])
