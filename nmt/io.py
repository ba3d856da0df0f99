"""Files: strict UTF-8 line reading, atomic writes, fresh output directories and JSON (records written with
`write_json` and read back with `from_json`), one implementation each."""

from __future__ import annotations

import gzip
import json
import os
import re
import shutil
import tempfile
import time
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import MISSING, fields, is_dataclass
from pathlib import Path
from typing import IO, Any, Self

from filelock import BaseFileLock, FileLock, Timeout

from nmt.errors import NMTError


def decode_lines(raw_lines: Iterable[bytes], where: str) -> list[str]:
    """Decode raw lines strictly as UTF-8 without their line ends; NMTError naming `where` and the line."""
    lines = []
    for n, raw in enumerate(raw_lines, start=1):
        try:
            lines.append(raw.decode("utf-8").rstrip("\r\n"))
        except UnicodeDecodeError:
            raise NMTError(f"{where}: line {n} is not valid UTF-8") from None
    return lines


def read_text_lines(path: str | Path, what: str) -> list[str]:
    """Lines of a UTF-8 text file (plain or .gz) exactly as written, without their line ends (whitespace
    inside a line is kept); NMTError naming `what`, the file and the line."""
    path = Path(path)
    if path.is_dir():
        raise NMTError(f"{what} {path} is a directory, not a file")
    if not path.is_file():
        raise NMTError(f"{what} not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            return decode_lines(f, f"{what} {path}")
    except OSError as e:
        raise NMTError(f"cannot read {what} {path}: {e.strerror or e}") from None


def read_parallel_lines(src_path: str | Path, ref_path: str | Path, src_what: str = "source file",
                        ref_what: str = "reference file") -> tuple[list[str], list[str]]:
    """Two line-parallel text files (`read_text_lines` each); NMTError naming both files and their line counts
    when the counts differ."""
    sources, refs = read_text_lines(src_path, src_what), read_text_lines(ref_path, ref_what)
    if len(sources) != len(refs):
        raise NMTError(f"{src_what} {src_path} has {len(sources)} lines but {ref_what} {ref_path} has {len(refs)}: "
                       f"they must be line-parallel")
    return sources, refs


_WRITING: set[str] = set()  # temp files of the atomic writes in progress in this process


def remove_partial_writes() -> None:
    """Delete the temp files of the atomic writes still in progress, before an immediate exit (`os._exit` runs no
    cleanup): each target is left as it was before its write began."""
    for tmp in list(_WRITING):
        Path(tmp).unlink(missing_ok=True)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None], mode: int = 0o644) -> Path:
    """Create or replace `path` whole or not at all: `write(f)` fills a temp file in the same directory,
    which is fsynced and renamed over `path` (and the rename made durable).

    A crash at any moment leaves the old file or the new one, never a torn one. On any failure (a full disk,
    an unwritable directory) the temp file is removed, `path` is untouched, and the error is an NMTError
    naming the file.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise NMTError(f"cannot write {path}: {e.strerror or e}") from None
    _WRITING.add(tmp)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # mkstemp creates 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise NMTError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        _WRITING.discard(tmp)
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some file systems cannot fsync a directory; the file itself is complete
        pass
    return path


def check_writable(path: str | Path, directory: bool = False) -> Path:
    """Fail early, before any work, when `path` cannot be written: a file to create or replace (a directory
    when `directory`) whose nearest existing ancestor is not a writable directory. Creates nothing."""
    path = Path(path)
    if path.is_dir() and not directory:
        raise NMTError(f"cannot write {path}: it is a directory")
    ancestor = path if directory else path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NMTError(f"cannot write {path}: {ancestor} is not a directory")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise NMTError(f"cannot write {path}: directory {ancestor} is not writable")
    return path


@contextmanager
def undo_on_failure(path: str | Path, existed: bool | None = None) -> Iterator[Path]:
    """Remove what the block adds under `path` when it fails (any exception, Ctrl-C included): every file and
    directory below `path` that was not there when the block started, and `path` itself when it did not exist
    (`existed` overrides that: False for a directory the caller has just made). What was there before is kept;
    a command that fails on a full disk leaves no partial output, and its rerun starts clean."""
    path = Path(path)
    before = set(path.rglob("*")) if path.is_dir() else set()
    if existed is None:
        existed = path.exists()
    try:
        yield path
    except BaseException:
        if not existed:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
        elif path.is_dir():
            for new in sorted(set(path.rglob("*")) - before, key=lambda p: len(p.parts), reverse=True):
                shutil.rmtree(new, ignore_errors=True) if new.is_dir() and not new.is_symlink() \
                    else new.unlink(missing_ok=True)
        raise


def make_dir(path: str | Path, what: str = "directory") -> Path:
    """`path` as a writable directory, made with its parents when missing; NMTError naming `what` and `path`."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NMTError(f"cannot create {what} {path}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise NMTError(f"{what} {path} is not writable")
    return path


def acquire_lock(path: str | Path, busy: str | None = None) -> BaseFileLock:
    """Take the exclusive OS lock on `path` (created if needed; filelock.FileLock, flock on Unix) and return it;
    it is held until `.release()` or until the process ends, so a killed process never leaves a stale lock.

    busy=None waits for another holder to let go; otherwise NMTError(busy) at once when the lock is taken.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path))
        lock.acquire(timeout=-1 if busy is None else 0)
    except Timeout:
        raise NMTError(busy) from None
    except OSError as e:
        raise NMTError(f"cannot lock {path}: {e.strerror or e}") from None
    return lock


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_lines(path: str | Path, lines: Iterable[str]) -> Path:
    """One line per item, each ending with a newline."""
    return write_text(path, "".join(line + "\n" for line in lines))


# JSON: the one place that turns records into JSON text and back ----------------------------------------------
class Record:
    """A dataclass of numbers that is written as JSON: `to_dict()` is what the file holds (its fields in order,
    nested records through their own `to_dict`), `from_dict()` reads that back (`from_json`). A record whose file
    format is not its fields one to one overrides both, in the class that knows the format."""

    def to_dict(self) -> dict[str, Any]:
        return {f.name: to_json_data(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        return fields_from_json(cls, data)


def to_json_data(data: Any) -> Any:
    """`data` as plain JSON values: a `Record` through its `to_dict`, any other dataclass field by field (as
    `dataclasses.asdict`), lists, tuples and dicts element by element."""
    if isinstance(data, Record):
        return data.to_dict()
    if is_dataclass(data) and not isinstance(data, type):
        return {f.name: to_json_data(getattr(data, f.name)) for f in fields(data)}
    if isinstance(data, (list, tuple)):
        return [to_json_data(x) for x in data]
    if isinstance(data, dict):
        return {k: to_json_data(v) for k, v in data.items()}
    return data


def json_text(data: Any, indent: int | None = 2) -> str:
    """`data` (records, dataclasses, plain values) as JSON text, as every JSON file of nmt is written: NaN is
    refused (a strict JSON parser could not read the file back), so a NaN fails loudly here."""
    return json.dumps(to_json_data(data), indent=indent, allow_nan=False)


def canonical_json(data: Any) -> str:
    """A stable one-line text of plain data, for keys and hashes: sorted keys, anything not JSON as its str."""
    return json.dumps(data, sort_keys=True, default=str)


def write_json(path: str | Path, data: Any, indent: int = 2) -> Path:
    """`data` as indented JSON (`json_text`), written atomically."""
    return write_text(path, json_text(data, indent) + "\n")


def read_json(path: str | Path) -> Any:
    """The JSON document in `path`; a missing, unreadable or malformed file is one NMTError naming it."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NMTError(f"no such file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise NMTError(f"{path} is not a readable JSON file ({e})") from None


def from_json(kind: Any, data: Any) -> Any:
    """`data` as read by json.loads, rebuilt as `kind`: a `Record` (its `from_dict`), another dataclass (its
    fields' annotations say how to rebuild each value), `list[...]`, `dict[str, ...]`, `X | None`, or anything
    else (taken as it is). The inverse of `to_json_data`; a key the dataclass lacks is ignored and a field missing
    from `data` takes its default, so a report written by an earlier release still reads; a required field
    missing is an NMTError naming it."""
    if data is None:
        return None
    if isinstance(kind, type) and issubclass(kind, Record):
        return kind.from_dict(data)
    if is_dataclass(kind):
        return fields_from_json(kind, data)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        arms = [a for a in args if a is not type(None)]
        return from_json(arms[0], data) if len(arms) == 1 else data
    if origin is list:
        return [from_json(args[0], x) for x in data]
    if origin is dict:
        return {k: from_json(args[1], v) for k, v in data.items()}
    return data


def fields_from_json(kind: Any, data: Any) -> Any:
    """The dataclass `kind` from a JSON object holding its fields (what `from_json` does for a dataclass)."""
    if not isinstance(data, dict):
        raise NMTError(f"{kind.__name__}: expected a JSON object, got {type(data).__name__}")
    required = [f.name for f in fields(kind) if f.default is MISSING and f.default_factory is MISSING]
    missing = [name for name in required if name not in data]
    if missing:
        raise NMTError(f"{kind.__name__}: missing {', '.join(missing)}")
    hints = typing.get_type_hints(kind)
    return kind(**{f.name: from_json(hints[f.name], data[f.name]) for f in fields(kind) if f.name in data})


def safe_name(name: str) -> str:
    """`name` reduced to characters that are safe in a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "system"


def make_out_dir(given: str | Path | None, parent: str | Path, label: str = "") -> Path:
    """A new output directory: `given` when it does not exist or is empty (else an error: results are never
    overwritten), by default `<parent>/[<label>-]<time>` with a -2, -3 ... suffix when that exists already."""
    try:
        if given:
            out = Path(given)
            if out.exists() and (not out.is_dir() or any(out.iterdir())):
                raise NMTError(f"output directory {out} already exists and is not empty; results are never "
                               f"overwritten")
            out.mkdir(parents=True, exist_ok=True)
        else:
            stamp = time.strftime("%Y%m%d-%H%M%S")
            base = Path(parent) / (f"{safe_name(label)}-{stamp}" if label else stamp)
            out, n = base, 1
            while out.exists():
                n += 1
                out = base.with_name(f"{base.name}-{n}")
            out.mkdir(parents=True)
    except OSError as e:
        raise NMTError(f"cannot create output directory {e.filename or given or parent}: "
                       f"{e.strerror or e}") from None
    if not os.access(out, os.W_OK):
        raise NMTError(f"output directory {out} is not writable")
    return out


def read_stream(stream: IO[str], where: str) -> list[str]:
    """All lines of a text stream (split at newlines, like a file), decoded strictly as UTF-8."""
    data = stream.buffer.read() if hasattr(stream, "buffer") else stream.read().encode("utf-8")
    raw_lines = data.split(b"\n")
    if raw_lines and raw_lines[-1] == b"":
        raw_lines.pop()  # the newline that ends the last line does not start another
    return decode_lines(raw_lines, where)
