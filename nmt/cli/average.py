"""`nmt-average`: average the weights of a run's last k checkpoints (or of given checkpoint files) into one file.

    nmt-average outputs/multi30k_de_en/transformer/<time>                 # last 5 -> <run>/averaged-last5.pt
    nmt-average outputs/.../<time> --last 3 --output avg3.pt
    nmt-average a/step-4000.pt a/step-4500.pt a/step-5000.pt --output avg.pt

The result is an ordinary checkpoint for evaluation and translation (`nmt-evaluate checkpoints=[avg.pt]`); it
carries no optimizer or RNG state, so it cannot be resumed. Written atomically; never a step-<n>.pt name, so
the averaged file is not itself picked up by a later average of the same run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nmt.cli.entry import ArgumentParser
from nmt.errors import user_errors
from nmt.training.average import average_into


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(
        prog="nmt-average",
        description="Average the weights of a run's last k checkpoints (or of the given checkpoint files).",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="one run directory, or two or more checkpoint files")
    parser.add_argument("--last", "-k", type=int, default=5, help="checkpoints to average from a run dir (5)")
    parser.add_argument("--output", "-o", type=Path, default=None, help="default: <run dir>/averaged-last<k>.pt")
    return parser.parse_args(argv)


@user_errors
def average_command(args: argparse.Namespace) -> Path:
    output, paths = average_into(list(args.paths), args.last, args.output)
    print(f"averaged {len(paths)} checkpoints ({', '.join(p.name for p in paths)}) -> {output}")
    return output


@user_errors
def main(argv: list[str] | None = None) -> None:
    average_command(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
