"""`nmt-bench`: training and decoding speed of the model presets on this device (nmt/bench/benchmark.py).

    nmt-bench --threads 1 --compare-threads 1 2
    nmt-bench --ctranslate2 outputs/.../transformer/<time>/best.pt --decode-sentences 1000 --engine-threads 1 2 \
        --rounds 3                                                          # engines side by side (engines.py)
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nmt.bench import benchmark, engines
from nmt.cli.entry import ArgumentParser
from nmt.config import CHOICES, DecodeConfig
from nmt.errors import user_errors
from nmt.inference.export import BATCH_TYPES


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """nmt-bench's options; their defaults are the fields of nmt.bench.benchmark.BenchOptions."""
    p = ArgumentParser(description=benchmark.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", help="presets from configs/model/")
    p.add_argument("--small", action="store_true", help="use the <model>_small presets")
    p.add_argument("--device", help="auto (cuda, mps, cpu) | cpu | cuda | cuda:1 | mps")
    p.add_argument("--threads", type=int, help="torch CPU threads (0: torch's default)")
    p.add_argument("--steps", type=int, help="timed training steps after warm-up")
    p.add_argument("--warmup", type=int, help="untimed training steps first")
    p.add_argument("--batch-tokens", type=int, help="token budget per batch (train.batch_tokens)")
    p.add_argument("--decode-sentences", type=int, help="decode the first N sentences of the test split (0: skip)")
    p.add_argument("--decode-batch-size", type=int)
    p.add_argument("--test-split", help="split to decode (test = the first test set)")
    p.add_argument("--data", help="preset from configs/data/")
    p.add_argument("--data-root", help="corpus cache (data.root)")
    p.add_argument("--compare-threads", type=int, nargs="*",
                   help="also time training of the last model (default: the Transformer) per thread count")
    p.add_argument("--compare", nargs="*", choices=sorted(benchmark.COMPARISONS),
                   help="also time training of the last model (default: the Transformer) side by side: AdamW "
                   "foreach vs fused, eager vs torch.compile")
    p.add_argument("--rounds", type=int, help="interleaved rounds per compared setting")
    p.add_argument("--checkpoints", nargs="*", type=Path,
                   help="also time decoding with these trained checkpoints (greedy, beam 5, beam 5 one by one)")
    p.add_argument("--peak-tflops", type=float, help="device bf16 peak for the MFU")
    p.add_argument("--out", help="JSON path (default outputs/bench/<timestamp>.json)")
    p.add_argument("--ctranslate2", metavar="CHECKPOINT", type=Path,
                   help="instead: decode --decode-sentences sentences of --test-split with this Transformer "
                   "checkpoint by our beam search (float32 and dynamic int8) and by its CTranslate2 float32 and "
                   "int8 exports (nmt.bench.engines), per --engine-threads thread count, in --rounds interleaved "
                   "rounds (at least 3)")
    p.add_argument("--engine-threads", type=int, nargs="+", help="thread counts of --ctranslate2 (default 1 2)")
    p.add_argument("--engine-beam", type=int, help="beam size of --ctranslate2 (default 5; 1 = greedy)")
    p.add_argument("--engine-alpha", type=float, default=DecodeConfig.alpha,
                   help="length penalty exponent of --ctranslate2 (default %(default)s)")
    p.add_argument("--engine-length-norm", choices=CHOICES["decode.length_norm"], default="power",
                   help="our beam search's length normalisation with --ctranslate2 (default power: CTranslate2's)")
    p.add_argument("--engine-batch-type", choices=BATCH_TYPES, default="examples",
                   help="--ctranslate2 batches of --decode-batch-size sentences (examples, default 64) or of "
                   "--engine-batch-tokens padded source tokens (tokens)")
    p.add_argument("--engine-batch-tokens", type=int, default=1024, help="token budget of --engine-batch-type tokens")
    p.set_defaults(**vars(benchmark.BenchOptions()))
    args = p.parse_args(argv)
    if args.steps < 1 or args.warmup < 0 or args.decode_sentences < 0 or args.rounds < 1:
        p.error("--steps and --rounds must be at least 1, --warmup and --decode-sentences at least 0")
    if args.ctranslate2 and min(args.decode_sentences, args.engine_beam, args.engine_batch_tokens,
                                args.decode_batch_size, *args.engine_threads) < 1:
        p.error("with --ctranslate2, --decode-sentences, --decode-batch-size, --engine-threads, --engine-beam and "
                "--engine-batch-tokens must be at least 1")
    return args


@user_errors
def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.ctranslate2:
        decode = DecodeConfig(beam=args.engine_beam, alpha=args.engine_alpha, length_norm=args.engine_length_norm,
                              batch_size=args.decode_batch_size)
        report, path = engines.compare_engines(args.ctranslate2, args.test_split, args.decode_sentences,
                                               args.engine_threads, decode, out=args.out, rounds=max(args.rounds, 3),
                                               batch_type=args.engine_batch_type,
                                               batch_tokens=args.engine_batch_tokens)
        print(engines.markdown(report) + f"\n\nwritten: {path}")
        return
    run = benchmark.run_benchmark(args, benchmark.data_config(args.data, args.data_root))
    print(benchmark.markdown(run.report))
    print(f"\nwritten: {run.path}")


if __name__ == "__main__":
    main()
