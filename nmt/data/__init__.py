"""Data pipeline: raw parallel text -> cleaned DatasetDict + SentencePiece tokenizer -> token-budget batches.

- `nmt.data.sources`: Multi30k / local files / datasets hub, validated line by line.
- `nmt.data.corpus`: `prepare_corpus(cfg.data) -> PreparedCorpus`, cleaned and cached under data/prepared/.
- `nmt.data.tokenizer`: `Tokenizer` (SentencePiece, pad/unk/bos/eos = 0/1/2/3).
- `nmt.data.ids`: the token ids of every split, encoded once into a memory-mapped cache.
- `nmt.data.batching`: `TokenBatchSampler`, `collate`, `Batch`.
- `nmt.data.mix`: several training corpora sampled by weight (data.train_mix), `MixedBatchSampler`.

The names below are imported lazily, so `import nmt.data.batching` does not pay for importing `datasets`.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PreparedCorpus": "nmt.data.corpus",
    "prepare_corpus": "nmt.data.corpus",
    "Tokenizer": "nmt.data.tokenizer",
    "Batch": "nmt.data.batching",
    "TokenBatchSampler": "nmt.data.batching",
    "collate": "nmt.data.batching",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'nmt.data' has no attribute {name!r}")
