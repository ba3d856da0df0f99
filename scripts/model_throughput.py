"""Training throughput and parameter counts of the model presets.

Throughput: source + target non-pad tokens per second of forward + backward + AdamW step (label-smoothed
cross-entropy, dropout on, as in training), on token-budget batches of real Multi30k de-en (via nmt.data,
prepared under --data-root), timed after warm-up steps. With --synthetic, random batches with Multi30k-like
lengths (about 13 tokens per side) are used instead.

Two rates are printed: per wall-clock second, and per second of this process's CPU time. On a machine
shared with other work the wall-clock rate drops with the load; the CPU-time rate (with --threads 1 it is
the rate of one dedicated core) does much less.

    NMT_DATA_MIRROR=../shared/data .venv/bin/python scripts/model_throughput.py
    .venv/bin/python scripts/model_throughput.py --models rnn_fixed_small rnn_attention_small --steps 20
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from nmt.config import PAD_ID, DataConfig, ModelConfig
from nmt.data.batching import Batch, TokenBatchSampler, collate
from nmt.models import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"


def model_config(name: str) -> ModelConfig:
    return OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(CONFIGS / f"{name}.yaml"))


def real_batches(batch_tokens: int, count: int, root: str) -> tuple[list[Batch], int, int]:
    from nmt.data.batching import encode_split
    from nmt.data.corpus import prepare_corpus

    corpus = prepare_corpus(DataConfig(root=root), log=lambda msg: print(f"  data: {msg}"))
    src, tgt = encode_split(corpus.split("train"), corpus.tokenizer)
    sampler = TokenBatchSampler([len(s) for s in src], [len(t) for t in tgt], batch_tokens, seed=1)
    rows = sampler.batches(0)[:count]
    batches = [collate([src[i] for i in r], [tgt[i] for i in r], r) for r in rows]
    return batches, corpus.tokenizer.src_vocab_size, corpus.tokenizer.tgt_vocab_size


def synthetic_batches(batch_tokens: int, count: int, vocab: int) -> list[Batch]:
    g = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(count):
        length = int(torch.randint(9, 18, (1,), generator=g))  # one length bucket per batch, ~13 on average
        n = batch_tokens // (2 * (length + 1))
        lens = torch.randint(max(length - 1, 1), length + 1, (n, 2), generator=g)
        src = [torch.randint(4, vocab, (int(a),), generator=g).tolist() for a in lens[:, 0]]
        tgt = [torch.randint(4, vocab, (int(b),), generator=g).tolist() for b in lens[:, 1]]
        batches.append(collate(src, tgt, list(range(n))))
    return batches


def throughput(name: str, batches: list[Batch], src_vocab: int, tgt_vocab: int, warmup: int,
               device: torch.device) -> tuple[float, float, float]:
    """-> (tokens per wall-clock second, tokens per CPU second, wall seconds per step) over batches[warmup:]."""
    torch.manual_seed(1)
    model = build_model(model_config(name), src_vocab, tgt_vocab).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98))
    tokens, start, cpu_start = 0, 0.0, 0.0
    for i, batch in enumerate(batches):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
        b = batch.to(device)
        logits = model(b.src, b.src_lens, b.tgt_in)
        loss = F.cross_entropy(logits.flatten(0, 1), b.tgt_out.flatten(), ignore_index=PAD_ID, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if i >= warmup:
            tokens += batch.num_tokens
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return tokens / seconds, tokens / cpu_seconds, seconds / (len(batches) - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["rnn_fixed", "rnn_attention", "transformer"])
    parser.add_argument("--batch-tokens", type=int, default=4096)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="timed steps after warm-up")
    parser.add_argument("--vocab", type=int, default=8000, help="joint vocabulary for the parameter counts")
    parser.add_argument("--synthetic", action="store_true", help="random batches instead of Multi30k")
    parser.add_argument("--data-root", default="data")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(f"parameters with a joint vocabulary of {args.vocab}:")
    for path in sorted(CONFIGS.glob("*.yaml")):
        print(f"  {path.stem:22s} {build_model(model_config(path.stem), args.vocab, args.vocab).num_parameters():>12,}")

    count = args.warmup + args.steps
    if args.synthetic:
        batches, src_vocab, tgt_vocab = synthetic_batches(args.batch_tokens, count, args.vocab), args.vocab, args.vocab
        source = "synthetic batches, Multi30k-like lengths"
    else:
        batches, src_vocab, tgt_vocab = real_batches(args.batch_tokens, count, args.data_root)
        source = "Multi30k de-en train batches"
    real = sum(b.num_tokens for b in batches[args.warmup:]) / args.steps
    padding = sum(b.padding_fraction for b in batches[args.warmup:]) / args.steps
    print(f"throughput on {device} ({torch.get_num_threads()} threads), {source}, {args.batch_tokens}-token "
          f"budget: {real:.0f} real tokens/batch, {padding:.1%} padding, {args.steps} steps after {args.warmup} "
          f"warm-up; vocab {src_vocab}/{tgt_vocab}")
    for name in args.models:
        rate, cpu_rate, step = throughput(name, batches, src_vocab, tgt_vocab, args.warmup, device)
        print(f"  {name:22s} {rate:>9,.0f} tokens/s  {step * 1000:8.0f} ms/step  {cpu_rate:>9,.0f} tokens/CPU-s")


if __name__ == "__main__":
    main()
