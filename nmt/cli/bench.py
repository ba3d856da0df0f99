"""`nmt-bench`: training and decoding speed of the model presets on this device (nmt/experiments/benchmark.py).

    nmt-bench --threads 1 --compare-threads 1 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nmt.errors import user_errors
from nmt.experiments import benchmark


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=benchmark.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=benchmark.DEFAULT_MODELS, help="presets from configs/model/")
    p.add_argument("--small", action="store_true", help="use the <model>_small presets")
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu) | cpu | cuda | cuda:1 | mps")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--steps", type=int, default=5, help="timed training steps after warm-up")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    p.add_argument("--batch-tokens", type=int, default=4096, help="token budget per batch (train.batch_tokens)")
    p.add_argument("--decode-sentences", type=int, default=30,
                   help="decode the first N sentences of the test split (0: skip decoding)")
    p.add_argument("--decode-batch-size", type=int, default=benchmark.DecodeConfig.batch_size)
    p.add_argument("--test-split", default="test", help="split to decode (test = the first test set)")
    p.add_argument("--data", default="multi30k_de_en", help="preset from configs/data/")
    p.add_argument("--data-root", default="data", help="corpus cache (data.root)")
    p.add_argument("--compare-threads", type=int, nargs="*", default=[],
                   help="also time training of the Transformer (else the first model) per thread count")
    p.add_argument("--compare", nargs="*", default=[], choices=sorted(benchmark.COMPARISONS),
                   help="also time training of the Transformer (else the first model) side by side: AdamW "
                   "foreach vs fused, eager vs torch.compile")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds per compared setting")
    p.add_argument("--checkpoints", nargs="*", type=Path, default=[],
                   help="also time decoding with these trained checkpoints (greedy, beam 5, beam 5 one by one)")
    p.add_argument("--peak-tflops", type=float, default=None, help="device bf16 peak for the MFU")
    p.add_argument("--out", default=None, help="JSON path (default outputs/bench/<timestamp>.json)")
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.decode_sentences < 0 or args.rounds < 1:
        p.error("--steps and --rounds must be at least 1, --warmup and --decode-sentences at least 0")
    return args


@user_errors
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    report = benchmark.run(args, benchmark.data_config(args.data, args.data_root))
    print(benchmark.markdown(report))
    print(f"\nwritten: {report['path']}")


if __name__ == "__main__":
    main()
