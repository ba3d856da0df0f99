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

from nmt.errors import NMTError, user_errors


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="nmt-average",
        description="Average the weights of a run's last k checkpoints (or of the given checkpoint files).",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="one run directory, or two or more checkpoint files")
    parser.add_argument("--last", "-k", type=int, default=5, help="checkpoints to average from a run dir (5)")
    parser.add_argument("--output", "-o", type=Path, default=None, help="default: <run dir>/averaged-last<k>.pt")
    return parser.parse_args(argv)


@user_errors
def run(args: argparse.Namespace) -> Path:
    from nmt.training.average import average_checkpoints, last_checkpoints
    from nmt.training.checkpoint import save_checkpoint

    if len(args.paths) == 1 and args.paths[0].is_dir():
        run_dir = args.paths[0]
        paths = last_checkpoints(run_dir, args.last)
        output = args.output or run_dir / f"averaged-last{len(paths)}.pt"
    else:
        paths = list(args.paths)
        if len(paths) < 2:
            raise NMTError(f"give a run directory or at least two checkpoint files, got {paths[0]}")
        if args.output is None:
            raise NMTError("--output is needed when averaging checkpoint files")
        output = args.output
    run_names = output.name in ("last.pt", "best.pt") or output.name.startswith("step-")
    if run_names or output.resolve() in {p.resolve() for p in paths}:
        raise NMTError(f"refusing to write the average to {output}: pick a name that is not a run checkpoint")
    payload = average_checkpoints(paths)
    save_checkpoint(output, payload)
    steps = ", ".join(str(p.name) for p in paths)
    print(f"averaged {len(paths)} checkpoints ({steps}) -> {output}")
    return output


def main(argv: list[str] | None = None) -> None:
    run(parse_args(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
