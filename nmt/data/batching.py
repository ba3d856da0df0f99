"""Token-budget batches of length-similar sentence pairs, and their padded tensors.

A batch costs `size * (max_src_len + max_tgt_len)` tokens, padding included, because that is what the model
computes on. Sorting by length before cutting keeps the padding small; shuffling the order of the batches
(and which equal-length pairs share one) keeps the gradient noise of a shuffled epoch.

The sampler works on lengths arrays and the batches of an epoch are two arrays (the sorted rows and where each
batch starts in them), so a corpus of millions of pairs costs a few bytes per pair, not Python objects.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nmt.config import BOS_ID, EOS_ID, PAD_ID
from nmt.data.ids import TokenArray
from nmt.runtime import release_freed_memory

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


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """(sum(lengths),) int64: the positions starts[0] .. starts[0] + lengths[0] - 1, then those from starts[1], and
    so on, without a loop: position k of the output is its distance from where its range starts in the output, plus
    that range's start."""
    shift = np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)
    return np.arange(int(lengths.sum())) + shift


def _gather(ids: TokenArray) -> tuple[np.ndarray, np.ndarray]:
    """A `TokenArray` view's sentences -> (their ids concatenated (total,) int64, lengths (n,) int64), read from
    its memory map in one fancy indexing."""
    rows = np.arange(len(ids)) if ids.rows is None else ids.rows
    starts = np.asarray(ids.offsets[rows], dtype=np.int64)
    lengths = np.asarray(ids.offsets[rows + 1], dtype=np.int64) - starts
    return np.asarray(ids.data[_ranges(starts, lengths)], dtype=np.int64), lengths


def _flatten(rows: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ids -> (all ids concatenated (total,) int64, lengths (len(rows),) int64), without a loop per id.

    A `TokenArray` (the id cache) is gathered from its memory map in one indexing; arrays are concatenated;
    lists (tokenizer output) are read through one iterator."""
    if isinstance(rows, TokenArray):
        return _gather(rows)
    lengths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    if len(rows) and isinstance(rows[0], np.ndarray):
        return np.concatenate(rows).astype(np.int64, copy=False), lengths
    return np.fromiter(chain.from_iterable(rows), dtype=np.int64, count=int(lengths.sum())), lengths


def _pad(flat: np.ndarray, lengths: np.ndarray, before: int | None = None, after: int | None = None) -> np.ndarray:
    """Ids concatenated (total,) and their row lengths (B,) -> (B, longest + specials) int64, PAD-padded, with
    `before` / `after` added to each row: one boolean-mask scatter, no loop over rows."""
    lead = int(before is not None)
    width = int(lengths.max(initial=0)) + lead + int(after is not None)
    out = np.full((len(lengths), width), PAD_ID, dtype=np.int64)
    columns = np.arange(width)
    out[(columns >= lead) & (columns < lengths[:, None] + lead)] = flat  # row-major: row by row, in order
    if before is not None:
        out[:, 0] = before
    if after is not None:
        out[np.arange(len(lengths)), lengths + lead] = after
    return out


def collate(src_ids: Sequence[Sequence[int]], tgt_ids: Sequence[Sequence[int]], index: Sequence[int]) -> Batch:
    """Bare ids -> a padded `Batch` with EOS / BOS, rows in the order given.

    `src_ids` / `tgt_ids`: one entry per row, lists (from `Tokenizer.encode_*`) or arrays, or a `TokenArray` view
    of the batch's rows (`TokenArray.take(rows)`: its ids are gathered from the memory map at once).
    An empty source line becomes just [EOS], so no sequence has length 0 (packing and attention need >= 1).
    """
    if not (len(src_ids) == len(tgt_ids) == len(index)) or not len(src_ids):
        raise ValueError(
            f"collate needs equally many (>0) sources, targets and indices, got "
            f"{len(src_ids)}, {len(tgt_ids)}, {len(index)}"
        )
    src, src_lens = _flatten(src_ids)
    tgt, tgt_lens = _flatten(tgt_ids)
    return Batch(
        src=torch.from_numpy(_pad(src, src_lens, after=EOS_ID)),
        src_lens=torch.from_numpy(src_lens + 1),
        tgt_in=torch.from_numpy(_pad(tgt, tgt_lens, before=BOS_ID)),
        tgt_out=torch.from_numpy(_pad(tgt, tgt_lens, after=EOS_ID)),
        index=torch.as_tensor(np.asarray(index, dtype=np.int64)),
    )


class BatchList(Sequence[list[int]]):
    """An epoch's batches as arrays: batch i is `rows[starts[b]:starts[b + 1]]` with b = `which[i]`.

    Reads like a list of lists of row indices (indexing, slicing, iterating, == with a list), but holds one
    int64 per pair and per batch instead of a Python object each.
    """

    def __init__(self, rows: np.ndarray, starts: np.ndarray, which: np.ndarray) -> None:
        self.rows, self.starts, self.which = rows, starts, which

    def __len__(self) -> int:
        return len(self.which)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        b = self.which[i]
        return self.rows[self.starts[b] : self.starts[b + 1]].tolist()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence) or len(self) != len(other):
            return False
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable-sequence semantics, like list


def cut_points(src_lengths: np.ndarray, tgt_lengths: np.ndarray, batch_tokens: int) -> np.ndarray:
    """Greedy token-budget cuts of pairs in sorted order: (batches + 1,) start positions, the last = n.

    The pairs come sorted by the longer of their two sides, ascending (`TokenBatchSampler`). A batch from
    position p takes the next pair while `count * (max src + max tgt)` stays within the budget (always at least
    one pair). That cost never falls as a batch grows, so the batch's size is one `searchsorted` on the running
    maxima of a window after p; the window only needs to reach `batch_tokens // (longer[p] + 1) + 1` pairs:
    every later pair has a side at least longer[p] long and the other at least 1, and more pairs than that
    exceed the budget.
    """
    n = len(src_lengths)
    starts = [0]
    p = 0
    while p < n:
        end = min(n, p + batch_tokens // (int(max(src_lengths[p], tgt_lengths[p])) + 1) + 1)
        longest = np.maximum.accumulate(src_lengths[p:end]) + np.maximum.accumulate(tgt_lengths[p:end])
        cost = np.arange(1, end - p + 1) * longest
        p += max(1, int(np.searchsorted(cost, batch_tokens, side="right")))
        starts.append(p)
    return np.asarray(starts, dtype=np.int64)


class TokenBatchSampler:
    """Length-bucketed batches of row indices under a token budget; deterministic for (seed, epoch).

    `src_lengths` / `tgt_lengths` are the lengths of the bare ids (as in the id cache); the sampler adds
    the EOS / BOS that `collate` adds, so every multi-pair batch satisfies
    `src.numel() + tgt_out.numel() <= batch_tokens`. A pair over the budget on its own gets its own batch.
    Arrays are kept as given, not copied: the id cache's lengths stay memory maps that every rank shares.

    Per epoch: pairs are sorted by the longer side's length and then along its shell of the length grid (`_order`)
    with ties in a seeded random order, cut greedily into batches, and the batch order is shuffled. Sorting on
    exact lengths makes the cut points, and so the number of batches, the same in every epoch (`__len__` is exact).
    With `num_replicas` > 1 the batch list is padded by wrapping around to a multiple of `num_replicas`
    (a few batches are seen twice), and rank r takes batches r, r + num_replicas, ..., keeping only their rows.
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
        self.src_lengths, self.tgt_lengths = _as_array(src_lengths), _as_array(tgt_lengths)
        self.batch_tokens = batch_tokens
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        order, starts = self._cut(0)
        self._num_batches = len(starts) - 1
        self._cached = (0, self._batch_list(0, order, starts))  # the last epoch's batches: (epoch, batches)
        del order, starts
        release_freed_memory()  # the sort's arrays, each of the corpus's size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _padded_lengths(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(len(rows),) int64 twice: the lengths of rows `rows` with EOS (source) and BOS / EOS (target) added."""
        return (np.asarray(self.src_lengths[rows], dtype=np.int64) + 1,
                np.asarray(self.tgt_lengths[rows], dtype=np.int64) + 1)

    def _order(self, epoch: int) -> np.ndarray:
        n = len(self.src_lengths)
        if self.shuffle:
            rows = np.random.default_rng([self.seed, epoch]).permutation(n)
        else:
            rows = np.arange(n)
        # The pairs whose longer side is L form an L-shaped shell of the (source, target) length grid. Sorted by
        # L, then by the position along the shell, from (L, 1) over (L, L) to (1, L), every other shell walked
        # backwards so that one shell ends next to where the next begins: neighbours in the order are close in
        # both lengths, and so are the pairs of a batch cut from it. lexsort is stable and sorts by its last key
        # first; the shuffled position breaks the remaining ties at random. Multi30k's padding at 32k / 4k
        # tokens: 7.8% / 2.1%, against 8.4% / 4.3% sorted by the longer side then the target length, and 21%
        # sorted by source length (tests/test_batching.py).
        src, tgt = self._padded_lengths(rows)
        longer = np.maximum(src, tgt)
        along = np.where(src >= tgt, tgt, 2 * longer - src)
        return rows[np.lexsort((np.where(longer % 2 == 0, along, -along), longer))]

    def _cut(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Every rank's batches of `epoch`, in length order: (the rows sorted (n,), where each batch starts in
        them (batches + 1,))."""
        order = self._order(epoch)
        return order, cut_points(*self._padded_lengths(order), self.batch_tokens)

    def _batch_list(self, epoch: int, order: np.ndarray, starts: np.ndarray) -> BatchList:
        """This rank's batches of `epoch` cut as `_cut` gives them, in iteration order."""
        count = len(starts) - 1
        which = np.arange(count)
        if self.shuffle:
            which = np.random.default_rng([self.seed, epoch, 1]).permutation(count)
        if self.num_replicas == 1 or not count:
            return BatchList(order, starts, which)
        total = math.ceil(count / self.num_replicas) * self.num_replicas
        which = which[np.arange(total) % count][self.rank :: self.num_replicas]
        # Only this rank's rows are kept (a copy of 1 / num_replicas of the order), not every rank's.
        sizes = starts[which + 1] - starts[which]
        return BatchList(order[_ranges(starts[which], sizes)], np.concatenate([[0], np.cumsum(sizes)]),
                         np.arange(len(which)))

    def batches(self, epoch: int | None = None) -> BatchList:
        """This rank's batches for `epoch` (default: the one set by `set_epoch`), in iteration order; the last
        epoch's list is kept, so asking again for it computes nothing."""
        epoch = self.epoch if epoch is None else epoch
        if self._cached[0] != epoch:
            self._cached = (epoch, self._batch_list(epoch, *self._cut(epoch)))
            release_freed_memory()  # the sort's arrays and the previous epoch's list
        return self._cached[1]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch))

    def __len__(self) -> int:
        return math.ceil(self._num_batches / self.num_replicas)


def _as_array(lengths: Sequence[int]) -> np.ndarray:
    """An array of lengths as it is (a memory map stays one); anything else as int64."""
    return lengths if isinstance(lengths, np.ndarray) else np.asarray(lengths, dtype=np.int64)


class StreamBatches(Dataset):
    """Batch `(epoch, i, n)` of the sampler's batch lists, collated, as `(epoch, i, n, Batch)` (map-style, so
    DataLoader workers can build batches). Each process (every worker has its own copy of the sampler) computes
    an epoch's deterministic batch list once: the sampler keeps the last epoch's."""

    def __init__(self, sampler: Any, src_ids: Sequence[Any], tgt_ids: Sequence[Any]) -> None:
        self.sampler, self.src_ids, self.tgt_ids = sampler, src_ids, tgt_ids

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[int, int, int, Batch]:
        epoch, i, n = key
        rows = np.asarray(self.sampler.batches(epoch)[i], dtype=np.int64)
        # Rows by descending source length (stable), so the RNN encoder packs them as they are (enforce_sorted).
        rows = rows[np.argsort(-_lengths(self.src_ids, rows), kind="stable")]
        return epoch, i, n, collate(_select(self.src_ids, rows), _select(self.tgt_ids, rows), rows)


class TokenArrayChain:
    """Several `TokenArray`s end to end, as one (no ids copied): row `offsets[k] + r` is row r of part k.

    The train pairs of a mix of corpora (nmt/data/mix.py); `take(rows)` of rows of one part (every batch of a
    mix comes from one corpus) is a view of that part, so collate gathers its ids from the memory map at once."""

    def __init__(self, parts: Sequence[TokenArray]) -> None:
        self.parts = list(parts)
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in self.parts])]).astype(np.int64)  # (k + 1,)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def part_of(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows),) int64: the part each row is in."""
        return np.searchsorted(self.offsets, rows, side="right") - 1

    def __getitem__(self, i: int) -> np.ndarray:
        """Row i's ids, (length,) int64."""
        k = int(self.part_of(np.int64(i)))
        return self.parts[k][int(i - self.offsets[k])]

    def take(self, rows: np.ndarray) -> TokenArray:
        """The rows `rows`: a view of their part when they share one, else a copy of their ids."""
        rows = np.asarray(rows, dtype=np.int64)
        parts = self.part_of(rows)
        if len(rows) and np.all(parts == parts[0]):
            return self.parts[parts[0]].take(rows - self.offsets[parts[0]])
        return TokenArray.from_lists([self[r] for r in rows])

    @property
    def lengths(self) -> np.ndarray:
        """(len(self),) int64: pieces per sentence."""
        return np.concatenate([p.lengths for p in self.parts]) if self.parts else np.zeros(0, np.int64)


def _select(ids: Sequence[Any], rows: np.ndarray) -> Sequence[Any]:
    """Rows `rows` of `ids`: a view of a `TokenArray` or `TokenArrayChain` (collate gathers its ids at once), else
    a list."""
    return ids.take(rows) if isinstance(ids, TokenArray | TokenArrayChain) else [ids[r] for r in rows]


def _lengths(ids: Sequence[Any], rows: np.ndarray) -> np.ndarray:
    """(len(rows),) int64: the lengths of rows `rows` of `ids`."""
    if isinstance(ids, TokenArray | TokenArrayChain):
        return ids.take(rows).lengths.astype(np.int64)
    return np.fromiter((len(ids[r]) for r in rows), dtype=np.int64, count=len(rows))


def _stream_keys(sampler: Any, epoch: int, start: int, max_epochs: int) -> Iterator[tuple[int, int, int]]:
    """(epoch, index, batches in that epoch) from position (epoch, start) on, until `max_epochs` (0: forever)."""
    while max_epochs <= 0 or epoch < max_epochs:
        n = len(sampler.batches(epoch))
        yield from ((epoch, i, n) for i in range(start, n))
        epoch, start = epoch + 1, 0


def batch_stream(
    sampler: Any,
    src_ids: Sequence[Any],
    tgt_ids: Sequence[Any],
    epoch: int,
    start: int,
    max_epochs: int = 0,
    num_workers: int = 0,
    seed: int = 1,
    pin_memory: bool = False,
) -> Iterator[tuple[int, int, int, Any]]:
    """(epoch, index, batches in that epoch, Batch) from position (epoch, start) on, until `max_epochs`
    epochs are done (forever when 0). `sampler.batches(e)` is this rank's deterministic batch list of epoch e;
    `src_ids[r]` / `tgt_ids[r]` are the ids of row r (lists, or the id cache's `TokenArray`s).

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
