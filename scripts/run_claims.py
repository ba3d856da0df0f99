"""Side claims about attention, each with a table and a verdict computed from the numbers: scaled vs unscaled
dot-product attention by d_k, softmax temperature and hard attention at inference, scorers and heads.

    .venv/bin/python scripts/run_claims.py preset=quick                        # small models, Multi30k, ~30 min CPU
    .venv/bin/python scripts/run_claims.py preset=full                         # default sizes, for a GPU
    .venv/bin/python scripts/run_claims.py preset=quick 'claims=[temperature,hard]' temperatures='[0.25,1,4]'

Options are the fields of `ClaimsConfig` (nmt/evaluation/experiment.py), presets are
configs/experiment/claims_<name>.yaml; dotted data./model./train./decode. keys go to every training run.
The report goes to outputs/claims/<time>/report.md.
"""

from __future__ import annotations

import sys

from nmt.errors import user_errors
from nmt.evaluation.claims import run_claims
from nmt.evaluation.experiment import load_script_config


@user_errors
def main(argv: list[str]) -> None:
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    cfg, preset = load_script_config("claims", argv)
    run_claims(cfg, preset)


if __name__ == "__main__":
    main(sys.argv[1:])
