"""`nmt-claims`: side claims about attention, each with a table and a verdict computed from the numbers: scaled
vs unscaled dot-product attention by d_k, softmax temperature and hard attention, scorers and heads
(nmt/experiments/claims.py).

    nmt-claims                                       # preset=default (make claims)
    nmt-claims preset=full                           # the GPU preset
    nmt-claims 'claims=[temperature,hard]' temperatures='[0.25,1,4]'

Options are the fields of `ClaimsConfig` (nmt/config.py), presets are configs/experiment/claims_<name>.yaml;
dotted data./model./train./decode. keys go to every training run. The report goes to outputs/claims/<time>/.
"""

from __future__ import annotations

import sys

from nmt.errors import user_errors
from nmt.experiments.claims import run_claims
from nmt.experiments.runner import load_script_config


@user_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    cfg, preset = load_script_config("claims", argv, default_preset="default")
    run_claims(cfg, preset)


if __name__ == "__main__":
    main()
