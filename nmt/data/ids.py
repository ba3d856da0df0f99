"""Token ids of a prepared corpus, encoded once into flat binary files that every process memory-maps.

`<prepared dir>/ids-<key>/`, where the key hashes the tokenizer and the cleaned corpus, holds per split
- `{split}.src.bin`, `{split}.tgt.bin`: the ids of every sentence end to end (no BOS/EOS), uint16 when both
  vocabularies fit in it, else uint32;
- `{split}.src.idx`, `{split}.tgt.idx`: int64 offsets, one more than sentences: sentence i is bin[idx[i]:idx[i+1]];
- `{split}.src.len`, `{split}.tgt.len`: the sentences' lengths (`np.diff(idx)`, checked against it at every
  opening), uint16 when every sentence fits, else uint32: the batch sampler reads them from the map, so ranks
  share them instead of each holding a copy;
- `meta.json`: the key, the dtypes and every file's size, written last.

The cache is built in `ids-<key>.tmp/` and renamed into place whole, so an interrupted build leaves nothing that
looks valid. Opening checks every file against meta.json (a truncated or damaged cache is an `IdCacheError`, one
line) and maps the files read-only: start-up reads no text and encodes nothing, and the pages are shared through
the OS cache by every DataLoader worker and training rank instead of each holding a copy.
"""

from __future__ import annotations

import collections
import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nmt.data.sources import Pairs
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NMTError
from nmt.io import write_json

FORMAT = "nmt-token-ids/2"  # the version is part of every cache key: a new one rebuilds older caches
META = "meta.json"
SIDES = ("src", "tgt")
# Pairs encoded per task (nmt.data.corpus cuts the chunks): large enough that a task's overhead is noise, small
# enough that a chunk's Python lists of ints (the only per-sentence objects of a build) stay a few tens of MB.
CHUNK_PAIRS = 20_000
PARALLEL_MIN_PAIRS = 5 * CHUNK_PAIRS  # data.num_proc=0 encodes a smaller corpus in one process


class IdCacheError(NMTError):
    """A token id cache that is missing, truncated or inconsistent (it is rebuilt)."""


def cache_key(tokenizer_sha256: str, corpus_sha256: str) -> str:
    """The name of a cache: equal keys mean the same corpus encoded by the same tokenizer."""
    return hashlib.sha256(f"{FORMAT}\0{tokenizer_sha256}\0{corpus_sha256}".encode()).hexdigest()[:16]


class TokenArray:
    """One side of a split: n sentences of ids, sentence i = `data[offsets[i]:offsets[i + 1]]`, of length
    `sizes[i]`.

    `data` (total ids,), `offsets` (n + 1,) and `sizes` (n,) are memory maps of the cache files (or in-memory
    arrays, from `from_lists`); `rows` (optional, (m,)) selects and orders sentences without copying any ids.
    Pickling (DataLoader workers under spawn) sends the file paths, not the ids.
    """

    def __init__(self, data: np.ndarray, offsets: np.ndarray, sizes: np.ndarray, rows: np.ndarray | None = None,
                 paths: tuple[Path, Path, Path] | None = None) -> None:
        self.data, self.offsets, self.sizes, self.rows, self.paths = data, offsets, sizes, rows, paths

    @classmethod
    def open(cls, paths: tuple[Path, Path, Path], dtype: str, length_dtype: str) -> TokenArray:
        """The files (ids, offsets, lengths) mapped read-only."""
        bin_path, idx_path, len_path = paths
        maps = [np.memmap(path, dtype=kind, mode="r") if path.stat().st_size else np.zeros(0, kind)
                for path, kind in ((bin_path, dtype), (len_path, length_dtype))]
        return cls(maps[0], np.memmap(idx_path, dtype=np.int64, mode="r"), maps[1], paths=paths)

    @classmethod
    def from_lists(cls, ids: Sequence[Sequence[int]]) -> TokenArray:
        """In-memory ids (e.g. a truncated valid set) in the same shape."""
        lengths = np.fromiter((len(s) for s in ids), dtype=np.int64, count=len(ids))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        data = np.fromiter((i for s in ids for i in s), dtype=np.int64, count=int(offsets[-1]))
        return cls(data, offsets, lengths)

    def __len__(self) -> int:
        return len(self.sizes) if self.rows is None else len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        """Sentence i's ids, (length,) int64."""
        r = int(i if self.rows is None else self.rows[i])
        return np.asarray(self.data[self.offsets[r]:self.offsets[r + 1]], dtype=np.int64)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self[i] for i in range(len(self)))

    @property
    def lengths(self) -> np.ndarray:
        """(n,) pieces per sentence, unsigned (uint16 or uint32: cast before negating or subtracting): the map of
        the lengths file itself when no rows are selected, so nothing is copied."""
        return self.sizes if self.rows is None else self.sizes[self.rows]

    def take(self, rows: np.ndarray) -> TokenArray:
        """The sentences `rows` (indices into this array), as a view."""
        rows = np.asarray(rows, dtype=np.int64)
        return TokenArray(self.data, self.offsets, self.sizes, rows if self.rows is None else self.rows[rows],
                          self.paths)

    def __getstate__(self) -> dict[str, Any]:
        if self.paths is None:
            return {"data": self.data, "offsets": self.offsets, "sizes": self.sizes, "rows": self.rows}
        return {"paths": self.paths, "dtype": self.data.dtype.str, "length_dtype": self.sizes.dtype.str,
                "rows": self.rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "paths" in state:
            opened = TokenArray.open(state["paths"], state["dtype"], state["length_dtype"])
            self.data, self.offsets, self.sizes, self.paths = opened.data, opened.offsets, opened.sizes, opened.paths
        else:
            self.data, self.offsets, self.sizes, self.paths = state["data"], state["offsets"], state["sizes"], None
        self.rows = state["rows"]


@dataclass
class EncodedSplit:
    """The ids of one split, row for row with its text."""

    src: TokenArray
    tgt: TokenArray

    def __len__(self) -> int:
        return len(self.src)


@dataclass
class IdCache:
    """The opened cache of a prepared corpus: split name -> its ids."""

    directory: Path
    key: str
    splits: dict[str, EncodedSplit]


def _files(directory: Path, split: str, side: str) -> tuple[Path, Path, Path]:
    """The ids, offsets and lengths files of one side of a split."""
    stem = f"{split}.{side}"
    return directory / f"{stem}.bin", directory / f"{stem}.idx", directory / f"{stem}.len"


def _consistent(array: TokenArray, total: int) -> bool:
    """Whether the offsets start at 0, end at `total` and differ by the stored lengths (checked a million rows at a
    time, so the check holds no copy of the whole index)."""
    if array.offsets[0] != 0 or array.offsets[-1] != total:
        return False
    step = 1 << 20
    return all(np.array_equal(np.diff(array.offsets[i:i + step + 1]), array.sizes[i:i + step])
               for i in range(0, len(array.sizes), step))


def open_ids(directory: Path, key: str) -> IdCache:
    """The cache in `directory`, every file checked against its meta.json; IdCacheError when it is missing,
    built for another key, truncated or inconsistent."""
    try:
        meta = json.loads((directory / META).read_text())
    except FileNotFoundError:
        raise IdCacheError(f"token id cache {directory} is incomplete (no {META})") from None
    except (OSError, ValueError) as e:
        raise IdCacheError(f"token id cache {directory}: unreadable {META} ({e})") from None
    if meta.get("format") != FORMAT or meta.get("key") != key:
        raise IdCacheError(f"token id cache {directory} was built for another corpus or tokenizer")
    dtype, length_dtype = np.dtype(meta["dtype"]), np.dtype(meta["length_dtype"])
    splits = {}
    for split, counts in meta["splits"].items():
        sides = []
        for side in SIDES:
            paths = _files(directory, split, side)
            n, total = counts[side]["sentences"], counts[side]["ids"]
            for path, size in zip(paths, (total * dtype.itemsize, (n + 1) * 8, n * length_dtype.itemsize),
                                  strict=True):
                actual = path.stat().st_size if path.is_file() else None
                if actual != size:
                    raise IdCacheError(f"token id cache {directory} is damaged: {path.name} has "
                                       f"{'no file' if actual is None else f'{actual} bytes'}, expected {size}")
            array = TokenArray.open(paths, dtype.str, length_dtype.str)
            if not _consistent(array, total):
                raise IdCacheError(f"token id cache {directory} is damaged: {paths[1].name} and {paths[2].name} "
                                   f"are not the offsets and lengths of {paths[0].name}")
            sides.append(array)
        splits[split] = EncodedSplit(*sides)
    return IdCache(directory, key, splits)


# --------------------------------------------------------------------------------------------------- build

_WORKER: dict[str, Any] = {}  # the tokenizer of an encoding process, loaded once per process


def _init_worker(models: tuple[bytes, bytes | None]) -> None:
    _WORKER["tokenizer"] = Tokenizer(*models)


def _encode_chunk(task: tuple[str, Callable[[], Pairs], str]) -> tuple[str, tuple[np.ndarray, ...]]:
    """(split, a reader of one chunk of it, dtype) -> (split, (src ids, src lengths, tgt ids, tgt lengths)), flat
    arrays. The chunk's text is read here, in the encoding process: the parent sends the reader, not the lines."""
    split, read, dtype = task
    src, tgt = read()
    tokenizer = _WORKER["tokenizer"]
    out = []
    for ids in (tokenizer.encode_src(src), tokenizer.encode_tgt(tgt)):
        lengths = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
        out += [np.fromiter(itertools.chain.from_iterable(ids), dtype=dtype, count=int(lengths.sum())), lengths]
    return split, tuple(out)


def _in_order(pool: Any, tasks: Iterable[Any], ahead: int) -> Iterator[Any]:
    """`pool.imap(_encode_chunk, tasks)` with at most `ahead` tasks in flight: imap would queue every task, and
    the encoded ids of the whole corpus would wait in the parent."""
    pending: collections.deque = collections.deque()
    for task in tasks:
        pending.append(pool.apply_async(_encode_chunk, (task,)))
        if len(pending) >= ahead:
            yield pending.popleft().get()
    while pending:
        yield pending.popleft().get()


def build_ids(directory: Path, key: str, splits: dict[str, Sequence[Callable[[], Pairs]]], sizes: dict[str, int],
              tokenizer: Tokenizer, num_proc: int, log: Callable[[str], None]) -> IdCache:
    """Encode every split (`splits`: name -> readers of its chunks in order, each a picklable call that returns
    one chunk's (source lines, target lines); `sizes`: name -> pairs) into `directory` (= .../ids-<key>), a chunk
    per task over `num_proc` processes (0: one per CPU core from PARALLEL_MIN_PAIRS pairs on), and open the
    result. Each process reads the text of its own chunks, so the text never passes through this one, and none
    holds more than a few chunks of it.

    Written into `<directory>.tmp` and renamed into place once meta.json is in it, so a build that is
    interrupted leaves no cache that looks valid; a stale temp directory is removed first."""
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    dtype = np.dtype(np.uint16 if max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size) <= 1 << 16 else np.uint32)
    tasks = [(split, read, dtype.str) for split, readers in splits.items() for read in readers]
    # num_proc 0 (automatic): one process per core, for a corpus big enough to repay starting them (each imports
    # the tokenizer); a smaller one is encoded here.
    automatic = (os.cpu_count() or 1) if sum(sizes.values()) >= PARALLEL_MIN_PAIRS else 1
    procs = min(num_proc if num_proc > 0 else automatic, max(1, len(tasks)))
    models = (tokenizer.src_model, None if tokenizer.joint else tokenizer.tgt_model)
    log(f"encoding {sum(sizes.values())} pairs of {len(sizes)} splits into {directory.name} "
        f"({dtype.name}, {procs} process{'es' if procs > 1 else ''})")
    lengths: dict[tuple[str, str], list[np.ndarray]] = {}
    handles: dict[tuple[str, str], Any] = {}
    pool = None
    try:
        if procs > 1:
            # spawn, not fork: a forked child shares locks of the parent (e.g. tqdm's process-wide write lock), and
            # one stopped while holding it would hang the parent.
            pool = multiprocessing.get_context("spawn").Pool(procs, _init_worker, (models,))
            results = _in_order(pool, tasks, ahead=2 * procs)
        else:
            _init_worker(models)
            results = map(_encode_chunk, tasks)
        for split, encoded in results:
            for side, ids, lens in ((SIDES[0], *encoded[:2]), (SIDES[1], *encoded[2:])):
                if (split, side) not in handles:
                    handles[split, side] = open(_files(tmp, split, side)[0], "wb")
                handles[split, side].write(ids.tobytes())
                lengths.setdefault((split, side), []).append(lens)
        if pool is not None:
            pool.close()  # every chunk is in: let the workers exit on their own (terminate below is for failures)
    finally:
        _WORKER.clear()
        for handle in handles.values():
            handle.close()
        if pool is not None:
            pool.terminate()
            pool.join()
    joined = {part: np.concatenate(lens) for part, lens in lengths.items()}
    longest = max((int(lens.max(initial=0)) for lens in joined.values()), default=0)
    length_dtype = np.dtype(np.uint16 if longest < 1 << 16 else np.uint32)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for split in sizes:
        counts[split] = {}
        for side in SIDES:
            lens = joined.get((split, side), np.zeros(0, np.int64))
            offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            bin_path, idx_path, len_path = _files(tmp, split, side)
            bin_path.touch()  # an empty split still has its (empty) file
            offsets.tofile(idx_path)
            lens.astype(length_dtype).tofile(len_path)
            counts[split][side] = {"sentences": len(lens), "ids": int(offsets[-1])}
    meta = {"format": FORMAT, "key": key, "dtype": dtype.str, "length_dtype": length_dtype.str, "splits": counts}
    write_json(tmp / META, meta, indent=1)
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return open_ids(directory, key)


def length_stats(lengths: np.ndarray, prefix: str) -> dict[str, float]:
    """Mean and max of a lengths array (pieces or words per sentence), as `<prefix>_mean` / `<prefix>_max`."""
    return {f"{prefix}_mean": float(lengths.mean()) if len(lengths) else 0.0,
            f"{prefix}_max": int(lengths.max(initial=0))}
