"""Collation speed of this tree against a revision's `collate`, side by side in one process, on real training
batches (Multi30k de-en train, epoch 0, seed 1): the rows a batch holds are collated by the revision's collate (ids
fetched row by row), by this one from row lists, and by this one from a `TokenArray.take` view (what the training
stream does); every result is checked equal to the revision's, tensor for tensor.

    .venv/bin/python scripts/time_collate.py b0b7032 [ROUNDS]     # ms per batch at 4k and 32k tokens
"""

from __future__ import annotations

import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from nmt.bench.benchmark import data_config
from nmt.data.batching import TokenBatchSampler, collate
from nmt.data.corpus import prepare_corpus

REPO = Path(__file__).resolve().parents[1]
FIELDS = ("src", "src_lens", "tgt_in", "tgt_out", "index")


def old_collate(rev: str):
    """`collate` of nmt/data/batching.py at `rev`, loaded as a module of its own."""
    text = subprocess.run(["git", "-C", str(REPO), "show", f"{rev}:nmt/data/batching.py"], capture_output=True,
                          text=True, check=True).stdout
    path = Path(tempfile.mkdtemp()) / "old_batching.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("old_batching", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.collate


def main(rev: str, rounds: int = 7) -> None:
    before = old_collate(rev)
    train = prepare_corpus(data_config("multi30k_de_en", "data"), log=lambda _: None).encoded("train")
    src, tgt = train.src, train.tgt
    print(f"collate of {rev} against this tree, median ms per batch over {rounds} rounds")
    for tokens in (4096, 32768):
        batches = list(TokenBatchSampler(src.lengths, tgt.lengths, tokens, seed=1).batches(0))[:40]
        ways = {
            f"{rev} (rows)": lambda r: before([src[i] for i in r], [tgt[i] for i in r], r),
            "this (rows)": lambda r: collate([src[i] for i in r], [tgt[i] for i in r], r),
            "this (take)": lambda r: collate(src.take(r), tgt.take(r), r),
        }
        seconds: dict[str, list[float]] = {name: [] for name in ways}
        for _ in range(rounds):
            for rows in batches:
                reference = None
                for name, way in ways.items():  # interleaved: machine load hits all three alike
                    start = time.perf_counter()
                    batch = way(rows)
                    seconds[name].append(time.perf_counter() - start)
                    reference = batch if reference is None else reference
                    assert all(torch.equal(getattr(batch, f), getattr(reference, f)) for f in FIELDS), name
        rows = np.mean([len(r) for r in batches])
        cells = ", ".join(f"{name} {1e3 * statistics.median(s):.2f} ms" for name, s in seconds.items())
        print(f"{tokens} tokens ({len(batches)} batches, {rows:.0f} rows each): {cells}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 7)
