"""`nmt-gpu-check` (make gpu-check): prove the CUDA path in a few minutes; one line and exit 0 on a machine without
an NVIDIA driver (with a driver that torch cannot use: exit 1, naming both CUDA versions).

    nmt-gpu-check                       # on a CUDA machine
    nmt-gpu-check --device cpu --steps 20   # the same checks on the CPU (recipe-sized models: slow)
"""

from __future__ import annotations

import argparse
import sys

from nmt.bench.gpu_check import run_gpu_check
from nmt.cli.entry import ArgumentParser
from nmt.errors import NMTError, user_errors


@user_errors
def main(argv: list[str] | None = None) -> None:
    p = ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:<i>, or cpu to run the checks on the CPU")
    p.add_argument("--steps", type=int, default=40, help="training steps per GPU recipe")
    p.add_argument("--out", default="outputs/gpu_check", help="where the runs and gpu_check.json go")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.steps < 4:
        raise NMTError(f"--steps must be at least 4, got {args.steps}")
    report = run_gpu_check(args.device, args.steps, args.out)
    if report is not None and not report.ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
