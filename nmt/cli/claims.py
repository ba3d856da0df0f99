"""`nmt-claims`: side claims about attention, each with a table and a verdict computed from the numbers: scaled
vs unscaled dot-product attention by d_k, softmax temperature and hard attention, scorers and heads
(nmt/experiments/claims.py).

    nmt-claims                                       # preset=default (make claims)
    nmt-claims preset=full                           # the GPU preset
    nmt-claims 'claims=[temperature,hard]' temperatures='[0.25,1,4]'

Options are the fields of `ClaimsConfig` (nmt/config.py), presets are configs/experiment/claims/preset/;
dotted data./model./train./decode. keys go to every training run. The report goes to outputs/claims/<time>/.
"""

from __future__ import annotations

from nmt.errors import user_errors
from nmt.experiments.claims import run_claims
from nmt.experiments.runner import script_main


@user_errors
def main(argv: list[str] | None = None) -> None:
    script_main("claims", run_claims, __doc__, argv)


if __name__ == "__main__":
    main()
