"""The cleaned splits on disk: one Arrow stream file per split, columns "src" and "tgt", a record batch per chunk.

Written and read a chunk at a time, so no pass over a corpus holds all of its text. Only pyarrow is imported here:
the processes that encode a corpus's chunks (nmt.data.ids) unpickle `read_slice` calls without loading `datasets`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pyarrow as pa

from nmt.data.sources import Pairs


def write_split(path: Path, chunks: Iterable[Pairs]) -> int:
    """Chunks of (source lines, target lines) -> one Arrow stream file with columns src and tgt, a record batch
    per chunk, written as they come; returns the pairs written."""
    schema = pa.schema([("src", pa.string()), ("tgt", pa.string())])
    pairs = 0
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, schema) as writer:
        for src, tgt in chunks:
            writer.write_batch(pa.record_batch([pa.array(src, pa.string()), pa.array(tgt, pa.string())], schema))
            pairs += len(src)
    return pairs


def read_split(path: Path) -> Iterator[Pairs]:
    """A split file's (source lines, target lines), record batch by record batch. Read, not memory-mapped: a pass
    over the whole corpus leaves none of its pages in this process."""
    with pa.OSFile(str(path)) as source, pa.ipc.open_stream(source) as reader:
        for batch in reader:
            yield batch.column(0).to_pylist(), batch.column(1).to_pylist()


def split_chunks(path: Path, size: int) -> list[Callable[[], Pairs]]:
    """Readers of a split file's pairs, `size` at a time, in order: each a picklable call that reads its own slice
    (`read_slice`), so the processes that encode the chunks read their text themselves."""
    with pa.memory_map(str(path)) as source, pa.ipc.open_stream(source) as reader:
        rows = [batch.num_rows for batch in reader]
    return [functools.partial(read_slice, path, i, start, min(start + size, n))
            for i, n in enumerate(rows) for start in range(0, n, size)]


def read_slice(path: Path, batch: int, start: int, stop: int) -> Pairs:
    """Pairs [start, stop) of record batch `batch` of a split file. The file is memory-mapped, so the batches
    before it are skipped without being read."""
    with pa.memory_map(str(path)) as source, pa.ipc.open_stream(source) as reader:
        for _ in range(batch):
            reader.read_next_batch()
        part = reader.read_next_batch().slice(start, stop - start)
        return part.column(0).to_pylist(), part.column(1).to_pylist()
