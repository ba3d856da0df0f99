"""Where raw parallel text comes from, and the checks that keep it aligned.

Three sources, one result: a `RawCorpus` mapping split name -> its (source lines, target lines), in chunks.

- `multi30k`: Multi30k task 1 raw files, looked up in `$NMT_DATA_MIRROR/multi30k/`, then in
  `<data.root>/raw/multi30k/`, then downloaded from the official repository into that cache.
- `files`: a pair of local text files (plain or gzip) per split.
- `hub`: a `datasets` hub corpus, with `{"translation": {src_lang: ..., tgt_lang: ...}}` records or one column
  per language (`{src_lang: ..., tgt_lang: ...}`), optionally pinned to a revision. Before `datasets` is asked
  (it retries an unreachable hub for about 25 s), a short probe checks that the hub answers; without it, or with
  HF_HUB_OFFLINE / HF_DATASETS_OFFLINE set, only the datasets cache is read, and a miss is one line saying how to
  work offline.

Every reader fails with an `NMTError` that names the file (and line) rather than letting a misaligned or
undecodable corpus through: a silently shifted line would poison training and every BLEU score after it.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import re
import tempfile
import threading
import urllib.error
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt.config import CHOICES, check_values
from nmt.errors import NMTError

MIRROR_ENV = "NMT_DATA_MIRROR"
MULTI30K_URL = "https://github.com/multi30k/dataset/raw/master/data/task1/raw/{name}"
MULTI30K_LANGS = ("en", "de", "fr", "cs")
MULTI30K_TEST_SETS = ("test_2016_flickr", "test_2017_flickr", "test_2018_flickr", "test_2017_mscoco")
# The smallest official file (test_2017_mscoco.*.gz) is ~13 kB; anything under this is an error page or a stub.
MIN_DOWNLOAD_BYTES = 1024
GZIP_MAGIC = b"\x1f\x8b"
SPLIT_NAME = re.compile(r"^\w+$")
CHUNK_LINES = 100_000  # lines read (and cleaned, and written) at a time while a corpus is prepared

Pairs = tuple[list[str], list[str]]


@dataclass
class RawCorpus:
    """Aligned, stripped (not yet filtered) text of every split, in order: train, valid, test sets.

    Each split is read once, as it is iterated, in chunks of aligned (source lines, target lines): a file-based
    corpus is never in memory whole, and an unreadable line is found when its chunk is reached.
    """

    splits: dict[str, Iterable[Pairs]]
    test_sets: list[str]
    # split -> the files (or hub names) read, for the log and the cache manifest
    origins: dict[str, list[str]] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- reading


def iter_corpus_lines(path: Path, encoding_errors: str = "strict", log: Callable[[str], None] | None = None,
                      chunk: int | None = None) -> Iterator[list[str]]:
    """The lines of a corpus file (UTF-8, plain or gzip) in chunks of up to `chunk` (CHUNK_LINES), each stripped of
    surrounding whitespace (unlike nmt.io.read_text_lines, which keeps lines exactly as written). Only one chunk
    is in memory at a time.

    Splits on "\\n" only: `str.splitlines` would also split on U+2028, U+0085 and friends, which do occur in
    web text and would silently shift one side of a parallel corpus against the other. A file with no text is an
    error, found when it has been read to its end.
    """
    path = Path(path)
    if not path.is_file():
        raise NMTError(f"file not found: {path}")
    with open(path, "rb") as f:
        gzipped = f.read(2) == GZIP_MAGIC
    if not gzipped and path.suffix == ".gz":
        raise NMTError(f"{path} is named .gz but is not gzip-compressed")
    if encoding_errors not in CHOICES["data.encoding_errors"]:
        raise NMTError(f"data.encoding_errors must be strict or replace, got {encoding_errors!r}")
    chunk = CHUNK_LINES if chunk is None else chunk
    line_no, offset, text_seen, replaced, first_bad = 0, 0, False, 0, 0
    with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as f:
        while True:
            try:
                raw = list(itertools.islice(f, chunk))
            except (OSError, EOFError, zlib.error) as e:
                raise NMTError(f"{path} is not a valid gzip file ({e})") from None
            if not raw:
                break
            data = b"".join(raw)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as e:
                line = line_no + data.count(b"\n", 0, e.start) + 1
                if encoding_errors == "strict":
                    raise NMTError(f"{path}: invalid UTF-8 on line {line} (byte {offset + e.start}); fix the file "
                                   "or set data.encoding_errors=replace") from None
                text = data.decode("utf-8", errors="replace")
                first_bad = first_bad or line
                replaced += sum("\ufffd" in piece for piece in text.split("\n"))
            if line_no == 0 and text.startswith("\ufeff"):
                text = text[1:]
            lines = text.split("\n")
            if text.endswith("\n"):  # the final newline ends the last line; it does not start a new one
                lines.pop()
            lines = [line.strip() for line in lines]
            text_seen = text_seen or any(lines)
            line_no, offset = line_no + len(raw), offset + len(data)
            yield lines
    if not text_seen:
        raise NMTError(f"{path} is empty")
    if replaced and log is not None:
        log(f"{path}: replaced invalid UTF-8 in {replaced} line(s) (first on line {first_bad})")


def read_corpus_lines(path: Path, encoding_errors: str = "strict",
                      log: Callable[[str], None] | None = None) -> list[str]:
    """Every line of a corpus file, stripped (see `iter_corpus_lines`)."""
    return [line for lines in iter_corpus_lines(path, encoding_errors, log) for line in lines]


def iter_parallel(src_path: Path, tgt_path: Path, encoding_errors: str = "strict",
                  log: Callable[[str], None] | None = None) -> Iterator[Pairs]:
    """Both sides of a parallel corpus in aligned chunks (source lines, target lines) of equal length; when the
    files' line counts differ, both are read to their end and the error names both counts."""
    src_chunks = iter_corpus_lines(src_path, encoding_errors, log)
    tgt_chunks = iter_corpus_lines(tgt_path, encoding_errors, log)
    counts = [0, 0]
    for src, tgt in itertools.zip_longest(src_chunks, tgt_chunks, fillvalue=[]):
        counts[0] += len(src)
        counts[1] += len(tgt)
        if counts[0] != counts[1]:
            counts[0] += sum(len(lines) for lines in src_chunks)
            counts[1] += sum(len(lines) for lines in tgt_chunks)
            raise NMTError(
                f"line counts differ: {src_path} has {counts[0]} lines but {tgt_path} has {counts[1]}; "
                "a parallel corpus needs one target line per source line"
            )
        yield src, tgt


def file_fingerprint(path: Path) -> str:
    """sha256 of a file's bytes: the cache key of a corpus built from it."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def mirror_dir() -> Path | None:
    value = os.environ.get(MIRROR_ENV)
    return Path(value) if value else None


# ------------------------------------------------------------------------------------------------ multi30k


def http_download(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Write the body of `url` to `dest`. With `probe_hub`, the only network calls of the package besides
    `datasets` (tests replace them)."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as f:
        expected = response.headers.get("Content-Length")
        size = 0
        for chunk in iter(lambda: response.read(1 << 16), b""):
            f.write(chunk)
            size += len(chunk)
    if expected is not None and size != int(expected):
        raise OSError(f"truncated download: {size} of {expected} bytes")


def _check_download(path: Path) -> None:
    """Reject what a failed download typically leaves behind: nothing, an HTML page, a cut-off gzip."""
    data = path.read_bytes()
    if len(data) < MIN_DOWNLOAD_BYTES:
        raise OSError(f"only {len(data)} bytes received")
    if data.lstrip()[:1] == b"<":
        raise OSError("received an HTML page instead of the file")
    try:
        gzip.decompress(data)
    except (OSError, EOFError, zlib.error) as e:
        raise OSError(f"not a valid gzip file ({e})") from None


def resolve_multi30k_file(name: str, root: Path, download: bool = True, log: Callable[[str], None] = print) -> Path:
    """Path of Multi30k file `name` (e.g. `train.de.gz`): mirror, then cache, then download into the cache."""
    mirror = mirror_dir()
    if mirror is not None and (mirror / "multi30k" / name).is_file():
        return mirror / "multi30k" / name
    cache_dir = Path(root) / "raw" / "multi30k"
    cached = cache_dir / name
    if cached.is_file():
        return cached
    where = f"{mirror}/multi30k/" if mirror is not None else f"${MIRROR_ENV}/multi30k/ ({MIRROR_ENV} is unset)"
    how = f"set {MIRROR_ENV} to a folder holding multi30k/{name}, or put the file at {cached}"
    if not download:
        raise NMTError(f"Multi30k file {name} is neither in {where} nor in {cache_dir}/; {how}")
    url = MULTI30K_URL.format(name=name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    log(f"downloading {url}")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=cache_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        http_download(url, tmp)
        _check_download(tmp)
        os.replace(tmp, cached)
    except (OSError, urllib.error.URLError, ValueError) as e:
        raise NMTError(
            f"Multi30k file {name} is neither in {where} nor in {cache_dir}/, and downloading {url} failed "
            f"({getattr(e, 'reason', e)}); {how}"
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
    return cached


def multi30k_files(cfg: Any) -> dict[str, tuple[str, str]]:
    """split -> (source file name, target file name) for a Multi30k config."""
    for lang in (cfg.src_lang, cfg.tgt_lang):
        if lang not in MULTI30K_LANGS:
            raise NMTError(f"Multi30k has no language {lang!r}; choose from {', '.join(MULTI30K_LANGS)}")
    if cfg.src_lang == cfg.tgt_lang:
        raise NMTError(f"data.src_lang and data.tgt_lang are both {cfg.src_lang!r}")
    for name in cfg.test_sets:
        if name not in MULTI30K_TEST_SETS:
            raise NMTError(f"unknown Multi30k test set {name!r}; choose from {', '.join(MULTI30K_TEST_SETS)}")
    prefixes = {"train": "train", "valid": "val", **{name: name for name in cfg.test_sets}}
    return {split: (f"{p}.{cfg.src_lang}.gz", f"{p}.{cfg.tgt_lang}.gz") for split, p in prefixes.items()}


# --------------------------------------------------------------------------------------------------- files


def resolve_data_file(path: str, mirror_subdir: str | None) -> Path:
    """A `data.files` entry: absolute as given; relative under `$NMT_DATA_MIRROR/<mirror_subdir>/`, then cwd."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    mirror = mirror_dir()
    if mirror_subdir and mirror is not None and (mirror / mirror_subdir / p).is_file():
        return mirror / mirror_subdir / p
    if not p.is_file() and mirror_subdir:
        where = f"{mirror}/{mirror_subdir}/" if mirror is not None else f"${MIRROR_ENV}/{mirror_subdir}/ (unset)"
        raise NMTError(f"file not found: {p} (looked in {where} and in {Path.cwd()}); set {MIRROR_ENV}")
    return p


def _files_table(cfg: Any) -> dict[str, tuple[str, str]]:
    files = dict(cfg.files or {})
    missing = [s for s in ("train", "valid") if s not in files]
    if missing:
        raise NMTError(
            f"data.files needs at least train and valid (missing: {', '.join(missing)}); e.g. "
            "data.files.train='[train.de,train.en]'"
        )
    table = {}
    for split, pair in files.items():
        if pair is None or len(pair) != 2:
            raise NMTError(f"data.files.{split} must be [source path, target path], got {pair}")
        table[split] = (str(pair[0]), str(pair[1]))
    return table


# ----------------------------------------------------------------------------------------------------- hub


def hub_layout(columns: list[str], src_lang: str, tgt_lang: str, where: str) -> str:
    """Which record layout a hub split has, from its column names:

    - "translation": one `translation` column of {src_lang: ..., tgt_lang: ...} (wmt14, iwslt2017, opus_books);
    - "flat": one column per language, {src_lang: ..., tgt_lang: ...} (bentrevett/multi30k).
    """
    if "translation" in columns:
        return "translation"
    missing = [lang for lang in (src_lang, tgt_lang) if lang not in columns]
    if missing:
        raise NMTError(
            f"{where} has no column {missing[0]!r} (columns: {', '.join(columns)}); a hub corpus needs a "
            f"'translation' column or one column per language ({src_lang}, {tgt_lang})"
        )
    return "flat"


def records_to_pairs(records: Iterable[Mapping[str, Any]], src_lang: str, tgt_lang: str, where: str) -> Pairs:
    """`{"translation": {src_lang: ..., tgt_lang: ...}}` records -> stripped source and target lines."""
    src, tgt = [], []
    for i, record in enumerate(records):
        pair = record.get("translation") if isinstance(record, Mapping) else None
        if not isinstance(pair, Mapping) or src_lang not in pair or tgt_lang not in pair:
            keys = sorted(pair) if isinstance(pair, Mapping) else sorted(record)
            raise NMTError(f"{where} record {i} has no translation.{src_lang} / translation.{tgt_lang} (found {keys})")
        src.append(str(pair[src_lang] or "").strip())
        tgt.append(str(pair[tgt_lang] or "").strip())
    return src, tgt


def split_to_pairs(split: Any, src_lang: str, tgt_lang: str, where: str) -> Pairs:
    """A `datasets.Dataset` in either hub layout (see `hub_layout`) -> stripped source and target lines."""
    if hub_layout(list(split.column_names), src_lang, tgt_lang, where) == "translation":
        return records_to_pairs(split, src_lang, tgt_lang, where)
    return [str(x or "").strip() for x in split[src_lang]], [str(x or "").strip() for x in split[tgt_lang]]


def hub_origin(cfg: Any, hub_split: str) -> str:
    """`name/config/split`, with `@revision` when one is pinned: what the cache manifest records."""
    revision = cfg.hub_revision
    return f"{cfg.hub_name}/{cfg.hub_config}/{hub_split}" + (f"@{revision}" if revision else "")


HUB_PROBE_TIMEOUT = 3.0  # seconds the hub has to answer the probe (name lookup included)
OFFLINE_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
CONFIG_ERROR = re.compile(r"Config name is missing|BuilderConfig .* not found")
MAX_LISTED_CONFIGS = 12


def hub_endpoint() -> str:
    """The hub's address, as huggingface_hub reads it (HF_ENDPOINT, else huggingface.co)."""
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def offline_requested() -> str | None:
    """The variable that asks for offline mode (HF_HUB_OFFLINE or HF_DATASETS_OFFLINE set to 1/true/yes/on), read
    now rather than when `datasets` was imported; None when neither does."""
    return next((v for v in OFFLINE_VARIABLES if os.environ.get(v, "").upper() in ("1", "TRUE", "YES", "ON")), None)


def probe_hub(url: str, timeout: float = HUB_PROBE_TIMEOUT) -> str | None:
    """None when `url` answers at all (any HTTP status) within `timeout` seconds, else why not. In a thread, so
    that a hanging name lookup, which urlopen's own timeout does not cover, is bounded too."""
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout):
                outcome.append(None)
        except urllib.error.HTTPError:  # the server answered
            outcome.append(None)
        except (urllib.error.URLError, OSError, ValueError) as e:
            outcome.append(str(getattr(e, "reason", e)))

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


@contextmanager
def datasets_offline() -> Iterator[None]:
    """`datasets` and `huggingface_hub` in offline mode (read the cache, never the network) for the duration: the
    switches they read at each call, as HF_HUB_OFFLINE=1 at start-up would have set them."""
    import datasets  # heavy (seconds to import): loaded only for hub corpora, here and below
    import huggingface_hub.constants as hub_constants

    saved = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE = saved


def offline_hint(cfg: Any) -> str:
    """How to go on without the hub, in one clause."""
    return (
        f"to work offline, prepare the corpus once with the hub reachable (nmt-prepare with the same data settings "
        f"and data.root={cfg.root}: the prepared copy is used from then on), or set HF_HUB_OFFLINE=1 when the "
        f"datasets cache holds it, or copy it to local files and use data=files "
        f"'+data.files.train=[train.{cfg.src_lang},train.{cfg.tgt_lang}]' "
        f"'+data.files.valid=[valid.{cfg.src_lang},valid.{cfg.tgt_lang}]'"
    )


def config_listing(names: list[str], src_lang: str, tgt_lang: str) -> str:
    """The configs to choose from; of a long list, those naming both languages first and a count."""
    if len(names) <= MAX_LISTED_CONFIGS:
        return ", ".join(names)
    pair = [n for n in names if src_lang in n and tgt_lang in n]
    rest = [n for n in names if n not in pair][: max(0, MAX_LISTED_CONFIGS - len(pair))]
    return ", ".join(pair + rest) + f", ... ({len(names)} in all)"


def hub_config_error(cfg: Any, message: str) -> str | None:
    """One line listing the configs when `message` (from load_dataset) says data.hub_config is missing or
    unknown; None for any other error."""
    if not CONFIG_ERROR.search(message):
        return None
    listed = re.search(r"\[([^\]]*)\]", message)
    names = re.findall(r"'([^']*)'", listed.group(1)) if listed else []
    if not names:
        import datasets

        try:
            names = list(datasets.get_dataset_config_names(cfg.hub_name))
        except Exception:  # the list is a courtesy: the error itself is what matters
            names = []
    what = f"has no config {cfg.hub_config!r}" if cfg.hub_config else "needs a config (data.hub_config)"
    choices = f": {config_listing(names, cfg.src_lang, cfg.tgt_lang)}" if names else ""
    return f"{cfg.hub_name} {what}; set data.hub_config=<one of its configs>{choices}"


def load_hub_dataset(cfg: Any, log: Callable[[str], None]) -> Any:
    """`datasets.load_dataset(hub_name, hub_config, revision=hub_revision)`, from the cache alone when offline
    mode is asked for or the hub does not answer the probe; every failure is one NMTError line."""
    import datasets

    revision = cfg.hub_revision
    pinned = {"revision": revision} if revision else {}
    at = f" at revision {revision}" if revision else ""
    local = Path(cfg.hub_name).expanduser().is_dir()  # a folder of data files needs no network
    offline, unreachable = (None, None) if local else (offline_requested(), None)
    if not local and offline is None:
        unreachable = probe_hub(hub_endpoint())
    name = f"{cfg.hub_name}" + (f" ({cfg.hub_config})" if cfg.hub_config else "") + at
    source = "its folder" if local else "the datasets cache" if offline or unreachable else "the datasets hub"
    why = f"the datasets hub at {hub_endpoint()} does not answer ({unreachable}): " if unreachable else ""
    log(f"{why}loading {name} from {source}")
    try:
        with datasets_offline() if offline or unreachable else nullcontext():
            return datasets.load_dataset(cfg.hub_name, cfg.hub_config, **pinned)
    except Exception as e:  # the hub raises many unrelated types for "not there" and "offline"
        message = str(e).strip()
        listing = hub_config_error(cfg, message)
        if listing is not None:
            raise NMTError(listing) from None
        reason = (message.splitlines() or [type(e).__name__])[0]
        cache = f"the datasets cache ({datasets.config.HF_DATASETS_CACHE})"
        if offline:
            raise NMTError(f"{offline}=1 is set and {name} is not in {cache}: {reason}; unset {offline} to "
                           f"download it, or {offline_hint(cfg).removeprefix('to work offline, ')}") from None
        if unreachable:
            raise NMTError(f"cannot reach the datasets hub at {hub_endpoint()} ({unreachable}) and {name} is not "
                           f"in {cache}; {offline_hint(cfg)}") from None
        raise NMTError(f"could not load {name} from {source}: {reason}") from None


def load_hub(cfg: Any, log: Callable[[str], None] = print) -> dict[str, Pairs]:
    """Every split of `data.hub_splits` (our split name -> the hub's) from
    `datasets.load_dataset(hub_name, hub_config, revision=hub_revision)`; needs the hub unless cached (or
    hub_name is a local folder of data files). See `load_hub_dataset` for the offline cases."""
    if not cfg.hub_name:
        raise NMTError("data.source=hub needs data.hub_name (e.g. data.hub_name=Helsinki-NLP/opus-100 "
                       "data.hub_config=de-en)")
    loaded = load_hub_dataset(cfg, log)
    out = {}
    for split, hub_split in dict(cfg.hub_splits).items():
        if hub_split not in loaded:
            drop = "" if split in ("train", "valid") else f", or drop it with ~data.hub_splits.{split}"
            raise NMTError(
                f"{cfg.hub_name} has no split {hub_split!r} (asked for by data.hub_splits.{split}); "
                f"it has {', '.join(loaded)}: set data.hub_splits.{split}=<one of them>{drop}"
            )
        where = f"{cfg.hub_name}/{hub_split}"
        out[split] = split_to_pairs(loaded[hub_split], cfg.src_lang, cfg.tgt_lang, where)
    return out


# ------------------------------------------------------------------------------------------------- dispatch


def input_files(cfg: Any, download: bool = True, log: Callable[[str], None] = print) -> dict[str, tuple[Path, Path]]:
    """split -> (source path, target path) for the file-based sources (multi30k, files)."""
    if cfg.source == "multi30k":
        root = Path(cfg.root)
        return {
            split: (
                resolve_multi30k_file(s, root, download, log),
                resolve_multi30k_file(t, root, download, log),
            )
            for split, (s, t) in multi30k_files(cfg).items()
        }
    if cfg.source == "files":
        return {
            split: (resolve_data_file(s, cfg.mirror_subdir), resolve_data_file(t, cfg.mirror_subdir))
            for split, (s, t) in _files_table(cfg).items()
        }
    raise NMTError(f"data.source={cfg.source!r} has no input files")


def load_raw(cfg: Any, log: Callable[[str], None] = print) -> RawCorpus:
    """Open every split of `cfg` (a DataConfig) for reading; no filtering yet. Files are found (or downloaded)
    now and read when the splits are iterated; a hub corpus is loaded now."""
    check_values(cfg, "data")
    if cfg.source == "hub":
        splits: dict[str, Iterable[Pairs]] = {split: [pairs] for split, pairs in load_hub(cfg, log).items()}
        origins = {s: [hub_origin(cfg, h)] for s, h in dict(cfg.hub_splits).items()}
    else:
        paths = input_files(cfg, log=log)
        splits = {split: iter_parallel(s, t, cfg.encoding_errors, log) for split, (s, t) in paths.items()}
        origins = {split: [str(s), str(t)] for split, (s, t) in paths.items()}
    for required in ("train", "valid"):
        if required not in splits:
            raise NMTError(f"the corpus needs a {required} split; it has {', '.join(splits)}")
    for split in splits:
        if not SPLIT_NAME.match(split):
            raise NMTError(f"split name {split!r} must be letters, digits and underscores (e.g. test_2014)")
    ordered = {"train": splits["train"], "valid": splits["valid"]}
    ordered.update({k: v for k, v in splits.items() if k not in ordered})
    test_sets = [k for k in ordered if k not in ("train", "valid")]
    return RawCorpus(splits=ordered, test_sets=test_sets, origins=origins)
