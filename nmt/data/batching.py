"""Token-budget batches of length-similar sentence pairs, and their padded tensors.

A batch costs `size * (max_src_len + max_tgt_len)` tokens, padding included, because that is what the model
computes on. Sorting by length before cutting keeps the padding small; shuffling the order of the batches
(and which equal-length pairs share one) keeps the gradient noise of a shuffled epoch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nmt.config import BOS_ID, EOS_ID, PAD_ID

Tensor = torch.Tensor


@dataclass
class Batch:
    """Padded tensors of one batch; B = batch size, S = source length, T = target length.

    src: (B, S) source ids + EOS, PAD-padded.     src_lens: (B,) lengths including EOS.
    tgt_in: (B, T) BOS + target ids (decoder input).  tgt_out: (B, T) target ids + EOS (labels).
    index: (B,) row of each pair in its split, to put outputs back in corpus order.
    `to(device)` leaves src_lens on the CPU: the RNN encoder packs its input with lengths on the CPU, and lengths
    copied back from a GPU would wait for it at every forward pass (models take src_lens on either device).
    """

    src: Tensor
    src_lens: Tensor
    tgt_in: Tensor
    tgt_out: Tensor
    index: Tensor

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """The batch on `device`, but for src_lens, which stays on the CPU."""
        src, _, tgt_in, tgt_out, index = (t.to(device, non_blocking=non_blocking) for t in self._tensors())
        return Batch(src, self.src_lens, tgt_in, tgt_out, index)

    def pin_memory(self) -> Batch:
        """Page-locked copy, so `to(cuda, non_blocking=True)` overlaps the copy with compute."""
        return Batch(*(t.pin_memory() for t in self._tensors()))

    def _tensors(self) -> tuple[Tensor, ...]:
        return self.src, self.src_lens, self.tgt_in, self.tgt_out, self.index

    def __len__(self) -> int:
        return self.src.size(0)

    @property
    def num_tokens(self) -> int:
        """Real (non-pad) tokens of src and tgt_out."""
        return int((self.src != PAD_ID).sum().item() + (self.tgt_out != PAD_ID).sum().item())

    @property
    def num_tgt_tokens(self) -> int:
        """Real tokens of tgt_out: the number of predictions the loss is averaged over."""
        return int((self.tgt_out != PAD_ID).sum().item())

    @property
    def padding_fraction(self) -> float:
        """Share of src + tgt_out positions that are padding."""
        total = self.src.numel() + self.tgt_out.numel()
        return 1.0 - self.num_tokens / total if total else 0.0


def _pad(rows: list[list[int]]) -> Tensor:
    out = torch.full((len(rows), max(len(r) for r in rows)), PAD_ID, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def collate(src_ids: list[list[int]], tgt_ids: list[list[int]], index: list[int]) -> Batch:
    """Bare ids (as from `Tokenizer.encode_*`) -> a padded `Batch` with EOS / BOS added.

    An empty source line becomes just [EOS], so no sequence has length 0 (packing and attention need >= 1).
    """
    if not (len(src_ids) == len(tgt_ids) == len(index)) or not src_ids:
        raise ValueError(
            f"collate needs equally many (>0) sources, targets and indices, got "
            f"{len(src_ids)}, {len(tgt_ids)}, {len(index)}"
        )
    src = [list(s) + [EOS_ID] for s in src_ids]
    return Batch(
        src=_pad(src),
        src_lens=torch.tensor([len(s) for s in src], dtype=torch.long),
        tgt_in=_pad([[BOS_ID] + list(t) for t in tgt_ids]),
        tgt_out=_pad([list(t) + [EOS_ID] for t in tgt_ids]),
        index=torch.tensor(list(index), dtype=torch.long),
    )


def encode_split(dataset: Any, tokenizer: Any) -> tuple[list[list[int]], list[list[int]]]:
    """A split with "src"/"tgt" text columns -> (source ids, target ids), row for row."""
    return tokenizer.encode_src(list(dataset["src"])), tokenizer.encode_tgt(list(dataset["tgt"]))


class TokenBatchSampler:
    """Length-bucketed batches of row indices under a token budget; deterministic for (seed, epoch).

    `src_lengths` / `tgt_lengths` are the lengths of the bare ids (as from `encode_split`); the sampler adds
    the EOS / BOS that `collate` adds, so every multi-pair batch satisfies
    `src.numel() + tgt_out.numel() <= batch_tokens`. A pair over the budget on its own gets its own batch.

    Per epoch: pairs are sorted by (source length, target length) with ties in a seeded random order, cut
    greedily into batches, and the batch order is shuffled. Sorting on exact lengths makes the cut points,
    and so the number of batches, the same in every epoch (`__len__` is exact).
    With `num_replicas` > 1 the batch list is padded by wrapping around to a multiple of `num_replicas`
    (a few batches are seen twice), and rank r takes batches r, r + num_replicas, ...
    """

    def __init__(
        self,
        src_lengths: Sequence[int],
        tgt_lengths: Sequence[int],
        batch_tokens: int,
        shuffle: bool = True,
        seed: int = 1,
        num_replicas: int = 1,
        rank: int = 0,
    ):
        if len(src_lengths) != len(tgt_lengths):
            raise ValueError(f"{len(src_lengths)} source lengths but {len(tgt_lengths)} target lengths")
        if batch_tokens <= 0:
            raise ValueError(f"batch_tokens must be positive, got {batch_tokens}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        # +1: EOS on the source, BOS (tgt_in) / EOS (tgt_out) on the target
        self.src_lengths = np.asarray(src_lengths, dtype=np.int64) + 1
        self.tgt_lengths = np.asarray(tgt_lengths, dtype=np.int64) + 1
        self.batch_tokens = batch_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._cached: tuple[int, list[list[int]]] | None = None  # the last epoch's batches: (epoch, batches)
        self._num_batches = len(self._cut(self._order(0)))

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.src_lengths)
        if self.shuffle:
            rows = np.random.default_rng([self.seed, epoch]).permutation(n)
        else:
            rows = np.arange(n)
        # lexsort is stable and sorts by its last key first: source length, then target length, then the
        # (shuffled) position, which is what breaks ties at random.
        keys = np.lexsort((self.tgt_lengths[rows], self.src_lengths[rows]))
        return rows[keys]

    def _cut(self, order: np.ndarray) -> list[list[int]]:
        batches: list[list[int]] = []
        current: list[int] = []
        max_src = max_tgt = 0
        lengths = zip(order.tolist(), self.src_lengths[order].tolist(), self.tgt_lengths[order].tolist(), strict=True)
        for i, s, t in lengths:
            new_src, new_tgt = max(max_src, s), max(max_tgt, t)
            if current and (len(current) + 1) * (new_src + new_tgt) > self.batch_tokens:
                batches.append(current)
                current, max_src, max_tgt = [i], s, t
            else:
                current.append(i)
                max_src, max_tgt = new_src, new_tgt
        if current:
            batches.append(current)
        return batches

    def batches(self, epoch: int | None = None) -> list[list[int]]:
        """This rank's batches for `epoch` (default: the one set by `set_epoch`), in iteration order; the last
        epoch's list is kept, so asking again for it computes nothing."""
        epoch = self.epoch if epoch is None else epoch
        if self._cached is not None and self._cached[0] == epoch:
            return self._cached[1]
        batches = self._cut(self._order(epoch))
        if self.shuffle:
            perm = np.random.default_rng([self.seed, epoch, 1]).permutation(len(batches))
            batches = [batches[i] for i in perm]
        if self.num_replicas > 1 and batches:
            total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
            batches = [batches[i % len(batches)] for i in range(total)]
            batches = batches[self.rank :: self.num_replicas]
        self._cached = (epoch, batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch))

    def __len__(self) -> int:
        return math.ceil(self._num_batches / self.num_replicas)


class StreamBatches(Dataset):
    """Batch `(epoch, i, n)` of the sampler's batch lists, collated, as `(epoch, i, n, Batch)` (map-style, so
    DataLoader workers can build batches). Each process (every worker has its own copy of the sampler) computes
    an epoch's deterministic batch list once: the sampler keeps the last epoch's."""

    def __init__(self, sampler: Any, src_ids: list[list[int]], tgt_ids: list[list[int]]) -> None:
        self.sampler, self.src_ids, self.tgt_ids = sampler, src_ids, tgt_ids

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[int, int, int, Batch]:
        epoch, i, n = key
        rows = list(self.sampler.batches(epoch)[i])
        return epoch, i, n, collate([self.src_ids[r] for r in rows], [self.tgt_ids[r] for r in rows], rows)


def _stream_keys(sampler: Any, epoch: int, start: int, max_epochs: int) -> Iterator[tuple[int, int, int]]:
    """(epoch, index, batches in that epoch) from position (epoch, start) on, until `max_epochs` (0: forever)."""
    while max_epochs <= 0 or epoch < max_epochs:
        n = len(sampler.batches(epoch))
        yield from ((epoch, i, n) for i in range(start, n))
        epoch, start = epoch + 1, 0


def batch_stream(
    sampler: Any,
    src_ids: list[list[int]],
    tgt_ids: list[list[int]],
    epoch: int,
    start: int,
    max_epochs: int = 0,
    num_workers: int = 0,
    seed: int = 1,
    pin_memory: bool = False,
) -> Iterator[tuple[int, int, int, Any]]:
    """(epoch, index, batches in that epoch, Batch) from position (epoch, start) on, until `max_epochs`
    epochs are done (forever when 0). `sampler.batches(e)` is this rank's deterministic batch list of epoch e.

    One DataLoader over every epoch: its `num_workers` worker processes start once and build the batches of all
    epochs (a loader per epoch would start them again at every epoch boundary); each keeps 2 batches prefetched."""
    loader = DataLoader(
        StreamBatches(sampler, src_ids, tgt_ids),
        batch_size=None,
        sampler=_stream_keys(sampler, epoch, start, max_epochs),
        num_workers=num_workers,
        pin_memory=pin_memory,  # Batch.pin_memory: page-locked, so GPU copies can be non_blocking
        # Its own generator: creating an iterator must not draw from the global RNG (dropout masks), or a run
        # resumed mid-epoch would diverge from an uninterrupted one.
        generator=torch.Generator().manual_seed(seed + epoch),
    )
    for epoch, index, n, batch in loader:
        yield epoch, index, n, batch
