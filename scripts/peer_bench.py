"""Side by side with JoeyNMT 2.3.0: both toolkits trained for the same minutes on this machine, scored alike.

    .venv/bin/python scripts/peer_bench.py --minutes 20 --runs 3   # what `make peer-bench` runs
    .venv/bin/python scripts/peer_bench.py --minutes 20 --runs 3 --out <dir>   # continue an interrupted one
    .venv/bin/python scripts/peer_bench.py --minutes 1 --eval-every 20 --sentences 100 --runs 1   # a smoke run
    .venv/bin/python scripts/peer_bench.py --minutes 60 --archs rnn --reference <earlier>/report.json
                                          # JoeyNMT alone for 60 minutes, against an earlier run's nmt side

Run k trains both toolkits with seed k; the report pools the runs (mean difference, t-interval over runs). Writes
report.md, report.json and valid_bleu.png into --out (default outputs/peer/peer-<time>); JoeyNMT lives in
its own virtual environment (--venv, created on first use). The logic is scripts/peer/bench.py and scripts/peer/joey.py.
"""

from __future__ import annotations

import argparse
import shlex
import sys

from nmt.errors import user_errors

from peer.bench import ARCHS, run_peer_bench


@user_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="training minutes per toolkit (default 20)")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), choices=list(ARCHS), help="architectures")
    parser.add_argument("--runs", type=int, default=None,
                        help="independent runs, seeds 1..N, pooled (default 3; 1 with --reference)")
    parser.add_argument("--out", default=None,
                        help="output directory: new or empty, or an earlier benchmark's to continue it")
    parser.add_argument("--venv", default=".peer-venv", help="JoeyNMT's virtual environment (default .peer-venv)")
    # JoeyNMT's greedy validation of every valid sentence takes minutes on one thread early in training, so both
    # toolkits validate less often and on fewer sentences by default (docs/peer.md says why 500).
    parser.add_argument("--eval-every", type=int, default=500,
                        help="validation interval in steps for both toolkits (default 500; 0: our train config's)")
    parser.add_argument("--sentences", type=int, default=500,
                        help="validate and score on the first N sentences of valid and test (default 500; 0: all)")
    parser.add_argument("--checkpoint", choices=["last", "best"], default="last",
                        help="score the weights at the end of the budget (last; ours the moving average where it "
                        "validated higher) or those of the best valid BLEU")
    parser.add_argument("--reference", default=None, metavar="REPORT_JSON",
                        help="train JoeyNMT alone (e.g. longer) against the nmt side of an earlier report.json")
    args = parser.parse_args()
    report = run_peer_bench(args.out, args.minutes, args.archs, args.venv, args.eval_every or None, args.checkpoint,
                            command=shlex.join(["scripts/peer_bench.py", *sys.argv[1:]]),
                            sentences=args.sentences or None,
                            reference=args.reference,
                            runs=args.runs if args.runs is not None else 1 if args.reference else 3)
    print(f"report: {report['out_dir']}/report.md")


if __name__ == "__main__":
    main()
