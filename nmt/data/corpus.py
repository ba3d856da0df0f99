"""A prepared corpus: cleaned splits as a `datasets.DatasetDict` plus the SentencePiece tokenizer, cached on disk.

`<data.root>/prepared/<data.name>/` holds
- `dataset/<split>.arrow`: each split's cleaned text, columns "src" and "tgt", an Arrow stream file opened
  memory-mapped as one `datasets.Dataset` (`open_splits`), written and read a record batch at a time;
- `spm-<key>.model` (joint) or `spm-<key>.src.model` + `spm-<key>.tgt.model`: the key hashes the tokenizer
  settings and the train text, so the tokenizer is retrained only when one of those changes;
- `ids-<key>/`: the token ids of every split, encoded once and memory-mapped by every user (nmt.data.ids); the
  key hashes the tokenizer and the cleaned corpus, so either changing gives a new cache;
- `manifest.json`: hashes of the config fields and input files the corpus was built from, and its stats.

The manifest is deleted before a rebuild starts and written (atomically) last, so an interrupted prepare never
leaves a cache that looks valid: the next call just rebuilds. The id cache is checked at every load; a missing or
damaged one is rebuilt from the dataset (one log line saying why).

A corpus encoded with a given tokenizer (fine-tuning: the checkpoint's, `prepare_corpus(cfg, tokenizer=...)`) is
cached apart, in `<name>_tok<sha>/`, with that tokenizer's files in place of its own: nothing is trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from omegaconf import OmegaConf

from nmt.config import DataConfig, check_values
from nmt.data import concat
from nmt.data.ids import CHUNK_PAIRS, EncodedSplit, IdCache, IdCacheError, build_ids, cache_key, length_stats, open_ids
from nmt.data.sources import Pairs, file_fingerprint, input_files, load_raw
from nmt.data.split_files import read_split, split_chunks, write_split
from nmt.data.tokenizer import Tokenizer, sample_rows
from nmt.errors import NMTError
from nmt.io import acquire_lock, canonical_json, read_json, write_bytes, write_json

# Bump when cleaning or storage changes, so caches built by older code are rebuilt.
CORPUS_VERSION = 3
MANIFEST = "manifest.json"
DATASET_DIR = "dataset"
STAGE_DIR = "stage.tmp"  # the splits as they are read, before they replace the cached corpus
# Config fields that change the cleaned corpus (name and root only say where it lives).
CORPUS_FIELDS = {
    "multi30k": ("test_sets",),
    "files": ("files", "mirror_subdir"),
    "hub": ("hub_name", "hub_config", "hub_revision", "hub_splits"),
}
COMMON_FIELDS = ("source", "src_lang", "tgt_lang", "encoding_errors", "max_words", "max_ratio", "concat")
DROP_REASONS = ("empty", "too_long", "ratio")


@dataclass
class PreparedCorpus:
    """Cleaned splits (train, valid, then test sets), their tokenizer and statistics."""

    name: str
    directory: Path
    splits: datasets.DatasetDict
    test_sets: list[str]
    tokenizer: Tokenizer
    stats: dict
    corpus_sha256: str  # of the cleaned text of every split: with the tokenizer, the key of the id cache
    ids: IdCache | None = None  # set by prepare_corpus

    def split(self, name: str) -> datasets.Dataset:
        """A split by name; "test" means the first test set when no split is literally called "test"."""
        return self.splits[self._split_name(name)]

    def encoded(self, name: str) -> EncodedSplit:
        """The token ids of a split (memory-mapped), row for row with `split(name)`."""
        assert self.ids is not None, "prepare_corpus opens the id cache"
        return self.ids.splits[self._split_name(name)]

    def _split_name(self, name: str) -> str:
        if name == "test" and "test" not in self.splits:
            if not self.test_sets:
                raise NMTError(f"corpus {self.name} has no test set")
            name = self.test_sets[0]
        if name not in self.splits:
            choices = ["valid", "test", *[s for s in self.splits if s not in ("valid", "test")]]
            raise NMTError(f"corpus {self.name} has no split {name!r}; choose from {', '.join(choices)}")
        return name


# ------------------------------------------------------------------------------------------------ cleaning


def clean_train(
    src: list[str], tgt: list[str], max_words: int, max_ratio: float
) -> tuple[list[str], list[str], dict[str, int]]:
    """Drop train pairs that teach the model nothing or something wrong; returns kept pairs and drops by reason.

    Reasons (first match counts): "empty" (either side blank), "too_long" (either side over `max_words`
    whitespace words), "ratio" (one side more than `max_ratio` times as many words as the other: usually
    a misalignment).
    """
    kept_src, kept_tgt = [], []
    dropped = dict.fromkeys(DROP_REASONS, 0)
    for s, t in zip(src, tgt, strict=True):
        ns, nt = len(s.split()), len(t.split())
        if ns == 0 or nt == 0:
            dropped["empty"] += 1
        elif ns > max_words or nt > max_words:
            dropped["too_long"] += 1
        elif max(ns, nt) > max_ratio * min(ns, nt):
            dropped["ratio"] += 1
        else:
            kept_src.append(s)
            kept_tgt.append(t)
    return kept_src, kept_tgt, dropped


# ------------------------------------------------------------------------------------------------- caching


def _data_config(cfg: Any) -> DataConfig:
    """A DataConfig from a DataConfig, an OmegaConf node (Hydra's cfg.data) or a plain dict."""
    if isinstance(cfg, DataConfig):
        return cfg
    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), cfg))


def _hash(obj: Any) -> str:
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def config_key(cfg: DataConfig) -> str:
    """Hash of the config fields that change the cleaned corpus."""
    fields = dataclasses.asdict(cfg)
    relevant = {k: fields[k] for k in COMMON_FIELDS + CORPUS_FIELDS.get(cfg.source, ())}
    return _hash({"version": CORPUS_VERSION, **relevant})


def tokenizer_key(cfg: DataConfig, train: Path) -> str:
    """Hash of the tokenizer settings and the train text it learns from (the cleaned train split's file)."""
    text = hashlib.sha256()
    for side in (0, 1):
        for chunk in read_split(train):
            for line in chunk[side]:
                text.update(line.encode())
                text.update(b"\n")
        if side == 0:
            text.update(b"\0\n")
    return _hash({"tokenizer": dataclasses.asdict(cfg.tokenizer), "train": text.hexdigest()})


def _fingerprints(cfg: DataConfig, log: Callable[[str], None]) -> dict[str, list[str]] | None:
    """sha256 of every input file, without downloading; None when they cannot be found locally (or hub)."""
    if cfg.source == "hub":
        return None
    try:
        paths = input_files(cfg, download=False, log=log)
    except NMTError:
        return None
    if not all(p.is_file() for pair in paths.values() for p in pair):
        return None
    return {split: [file_fingerprint(s), file_fingerprint(t)] for split, (s, t) in paths.items()}


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Serialize prepares of one corpus (e.g. several training ranks starting at once): wait for
    <directory>/.lock, an OS lock that a killed process frees."""
    lock = acquire_lock(directory / ".lock")
    try:
        yield
    finally:
        lock.release()


def _spm_names(key: str, joint: bool) -> list[str]:
    return [f"spm-{key[:16]}.model"] if joint else [f"spm-{key[:16]}.src.model", f"spm-{key[:16]}.tgt.model"]


def _load_tokenizer(directory: Path, names: list[str], settings: dict) -> Tokenizer | None:
    """The cached tokenizer, or None when a file is missing or unreadable (then it is retrained)."""
    paths = [directory / n for n in names]
    if not all(p.is_file() for p in paths):
        return None
    try:
        models = [p.read_bytes() for p in paths]
        return Tokenizer(models[0], models[1] if len(models) == 2 else None, settings)
    except (OSError, RuntimeError, NMTError):
        return None


def _load_cached(
    directory: Path, key: str, inputs: dict | None, cfg: DataConfig, log: Callable[[str], None],
    given: Tokenizer | None = None,
) -> PreparedCorpus | None:
    try:
        manifest = read_json(directory / MANIFEST)
    except NMTError:
        return None
    settings = dict(given.settings) if given is not None else dataclasses.asdict(cfg.tokenizer)
    if manifest.get("config_key") != key or manifest.get("tokenizer_settings") != settings:
        return None
    if given is not None and manifest.get("tokenizer_sha256") != given.sha256:
        return None
    if inputs is not None and manifest.get("inputs") != inputs:
        log(f"input files of {cfg.name} changed since it was prepared: rebuilding")
        return None
    try:
        tokenizer = _load_tokenizer(directory, manifest["tokenizer_files"], manifest["tokenizer_settings"])
        if tokenizer is None or tokenizer.sha256 != manifest["tokenizer_sha256"]:
            return None
        splits = open_splits(directory / DATASET_DIR, manifest["splits"])
        test_sets, stats = manifest["test_sets"], dict(manifest["stats"], cache="hit")
        corpus_sha256 = manifest["corpus_sha256"]
    except (KeyError, OSError, ValueError):  # a manifest from other code, or files removed by hand
        return None
    if inputs is None and cfg.source != "hub":
        log(f"input files of {cfg.name} not found locally; using the prepared copy in {directory}")
    if given is not None:
        tokenizer, stats["tokenizer"] = given, "given"
    return PreparedCorpus(cfg.name, directory, splits, test_sets, tokenizer, stats, corpus_sha256)


# -------------------------------------------------------------------------------------------------- build


def open_splits(directory: Path, names: list[str]) -> datasets.DatasetDict:
    """The split files `<directory>/<name>.arrow`, memory-mapped, as a DatasetDict in the order of `names`."""
    return datasets.DatasetDict({n: datasets.Dataset.from_file(str(directory / f"{n}.arrow")) for n in names})


def _take(path: Path, rows: list[int]) -> Pairs:
    """The pairs at `rows` (ascending) of a split file."""
    wanted, src, tgt, start = np.asarray(rows, dtype=np.int64), [], [], 0
    for s, t in read_split(path):
        lo, hi = np.searchsorted(wanted, [start, start + len(s)])
        src += [s[r - start] for r in wanted[lo:hi]]
        tgt += [t[r - start] for r in wanted[lo:hi]]
        start += len(s)
    return src, tgt


def _read_whole(path: Path) -> Pairs:
    src: list[str] = []
    tgt: list[str] = []
    for s, t in read_split(path):
        src += s
        tgt += t
    return src, tgt


def _word_stats(files: dict[str, Path]) -> dict[str, dict[str, float]]:
    """split -> pairs and the words per sentence of each side (mean, max); the pieces come from the id cache."""
    out = {}
    for name, path in files.items():
        words: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        for chunk in read_split(path):
            for side, lines in enumerate(chunk):
                words[side].append(np.fromiter((len(x.split()) for x in lines), dtype=np.int64, count=len(lines)))
        out[name] = {"pairs": int(sum(len(w) for w in words[0]))}
        for side, counts in zip(("src", "tgt"), words, strict=True):
            out[name].update(length_stats(np.concatenate(counts or [np.zeros(0, np.int64)]), f"{side}_words"))
    return out


def _piece_stats(stats: dict[str, dict[str, float]], ids: IdCache) -> None:
    """Add the pieces per sentence of each split and side to `stats` (from `_word_stats`), from the id arrays."""
    for name, encoded in ids.splits.items():
        for side in ("src", "tgt"):
            stats[name].update(length_stats(getattr(encoded, side).lengths, f"{side}_pieces"))


def _corpus_sha256(files: dict[str, Path]) -> str:
    digest = hashlib.sha256()
    for name, path in files.items():
        for side in (0, 1):
            digest.update(f"\0{name}\0".encode())
            for chunk in read_split(path):
                for line in chunk[side]:
                    digest.update(line.encode() + b"\n")
    return digest.hexdigest()


class _TrainCleaning:
    """The train split's chunks, cleaned as they pass (`clean_train`), counting the pairs read, kept and dropped."""

    def __init__(self, chunks: Iterable[Pairs], cfg: DataConfig) -> None:
        self.chunks, self.cfg = chunks, cfg
        self.read, self.kept, self.dropped = 0, 0, dict.fromkeys(DROP_REASONS, 0)

    def __iter__(self) -> Iterator[Pairs]:
        for src, tgt in self.chunks:
            kept_src, kept_tgt, dropped = clean_train(src, tgt, self.cfg.max_words, self.cfg.max_ratio)
            self.read, self.kept = self.read + len(src), self.kept + len(kept_src)
            for reason, count in dropped.items():
                self.dropped[reason] += count
            yield kept_src, kept_tgt


def _install_dataset(directory: Path, files: dict[str, Path]) -> None:
    """Move the split files into `<directory>/dataset/`, replacing the one there (a directory renamed whole)."""
    tmp, final, old = directory / f"{DATASET_DIR}.tmp", directory / DATASET_DIR, directory / f"{DATASET_DIR}.old"
    for stale in (tmp, old):
        shutil.rmtree(stale, ignore_errors=True)
    tmp.mkdir()
    for name, path in files.items():
        path.rename(tmp / f"{name}.arrow")
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def _staging(directory: Path) -> Iterator[Path]:
    """`<directory>/stage.tmp/`, empty, removed when the build ends whichever way."""
    stage = directory / STAGE_DIR
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _build(
    directory: Path, key: str, inputs: dict | None, cfg: DataConfig, log: Callable[[str], None],
    given: Tokenizer | None = None,
) -> PreparedCorpus:
    """Read, clean and write the corpus chunk by chunk into the stage (one Arrow file per split), then, with every
    input read, replace the cached corpus with it. Memory stays flat in the corpus size: the text is never in
    memory whole (but for concatenation, a transformation of small corpora), and the passes that hash and count it
    read the files instead of mapping them."""
    start = time.perf_counter()
    seconds: dict[str, float] = {}  # each stage's wall time, in the order they run

    def lap(stage: str) -> None:
        seconds[stage] = round(time.perf_counter() - start - sum(seconds.values()), 2)

    raw = load_raw(cfg, log)
    with _staging(directory) as stage:
        train = _TrainCleaning(raw.splits["train"], cfg)
        files = {name: stage / f"{name}.arrow" for name in raw.splits}
        for name, chunks in raw.splits.items():
            write_split(files[name], train if name == "train" else chunks)
        if inputs is None:  # just downloaded: fingerprint the files now, so the next prepare finds the cache valid
            inputs = _fingerprints(cfg, log)
        # Only now, with the input known to be readable, invalidate the old cache.
        (directory / MANIFEST).unlink(missing_ok=True)
        if not train.kept:
            raise NMTError(f"no train pairs left after cleaning {raw.origins.get('train')} "
                           f"(dropped: {train.dropped})")
        reasons = ", ".join(f"{k} {v}" for k, v in train.dropped.items())
        log(f"train: kept {train.kept} of {train.read} pairs; dropped {reasons}")
        final, test_sets, levels = files, list(raw.test_sets), None
        if cfg.concat.max_k > 1:
            joined, test_sets, levels = _concatenate({n: _read_whole(p) for n, p in files.items()}, raw.test_sets,
                                                     cfg.concat)
            (stage / "joined").mkdir()
            final = {name: stage / "joined" / f"{name}.arrow" for name in joined}
            for name, pairs in joined.items():
                write_split(final[name], [pairs])
            log(f"concatenation: levels k = 1..{cfg.concat.max_k}; train {len(joined['train'][0])} examples, "
                f"valid {len(joined['valid'][0])}; test levels "
                + ", ".join(f"{n} {v['examples']}" for n, v in levels.items()))
        lap("read and clean")
        corpus_sha256 = _corpus_sha256(final)
        split_stats = _word_stats(final)
        lap("hash and count")
        if given is None:
            tokenizer, tok_key, names, status = _train_or_reuse_tokenizer(directory, cfg, files["train"],
                                                                          train.kept, log)
        else:  # written beside the corpus like its own would be, so the directory is complete on its own
            tokenizer, tok_key, status = given, given.sha256, "given"
            names = _spm_names(tok_key, given.joint)
            _write_tokenizer(directory, names, given)
        for stale in directory.glob("spm-*.model"):
            if stale.name not in names:
                stale.unlink()
        _install_dataset(directory, final)
        lap("tokenizer")

    splits = open_splits(directory / DATASET_DIR, list(split_stats))
    corpus = PreparedCorpus(cfg.name, directory, splits, test_sets, tokenizer, {}, corpus_sha256)
    corpus.ids = _open_or_build_ids(corpus, cfg.num_proc, log)
    _piece_stats(split_stats, corpus.ids)
    lap("encode")
    log(f"built in {sum(seconds.values()):.1f} s: " + ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items()))
    stats = {
        "src_lang": cfg.src_lang,
        "tgt_lang": cfg.tgt_lang,
        "splits": split_stats,
        "train_raw_pairs": train.read,
        "dropped": train.dropped,
        "concat_levels": levels,
        "vocab": {"src": tokenizer.src_vocab_size, "tgt": tokenizer.tgt_vocab_size, "joint": tokenizer.joint},
        "origins": raw.origins,
        "dataset_dir": str(directory / DATASET_DIR),
        "tokenizer_files": [str(directory / n) for n in names],
        "build_seconds": round(time.perf_counter() - start, 2),
        "stage_seconds": seconds,
    }
    manifest = {
        "format": "nmt-prepared-corpus",
        "version": CORPUS_VERSION,
        "name": cfg.name,
        "config_key": key,
        "config": dataclasses.asdict(cfg),
        "inputs": inputs,
        "splits": list(split_stats),
        "test_sets": test_sets,
        "tokenizer_key": tok_key,
        "tokenizer_files": names,
        "tokenizer_settings": dict(tokenizer.settings),
        "tokenizer_sha256": tokenizer.sha256,
        "corpus_sha256": corpus_sha256,
        "stats": stats,
    }
    write_json(directory / MANIFEST, manifest, indent=1)
    corpus.stats = dict(stats, cache="rebuilt", tokenizer=status)
    return corpus


def _open_or_build_ids(corpus: PreparedCorpus, num_proc: int, log: Callable[[str], None]) -> IdCache:
    """The corpus's id cache for its tokenizer: opened when it is complete, else (re)built from the dataset, with
    one log line when one was there but damaged. Caches of other tokenizers or corpora are removed."""
    key = cache_key(corpus.tokenizer.sha256, corpus.corpus_sha256)
    path = corpus.directory / f"ids-{key}"
    try:
        return open_ids(path, key)
    except IdCacheError as e:
        if path.exists():
            log(f"{e}: rebuilding it")
    sizes = {name: len(split) for name, split in corpus.splits.items()}
    files = {name: corpus.directory / DATASET_DIR / f"{name}.arrow" for name in sizes}
    readers = {name: split_chunks(path, CHUNK_PAIRS) for name, path in files.items()}
    ids = build_ids(path, key, readers, sizes, corpus.tokenizer, num_proc, log)
    for stale in corpus.directory.glob("ids-*"):
        if stale != path:
            shutil.rmtree(stale, ignore_errors=True)
    return ids


def _write_tokenizer(directory: Path, names: list[str], tokenizer: Tokenizer) -> None:
    models = [tokenizer.src_model] if tokenizer.joint else [tokenizer.src_model, tokenizer.tgt_model]
    for name, model in zip(names, models, strict=True):
        write_bytes(directory / name, model)


def _train_or_reuse_tokenizer(
    directory: Path, cfg: DataConfig, train: Path, pairs: int, log: Callable[[str], None]
) -> tuple[Tokenizer, str, list[str], str]:
    """The corpus's own tokenizer: the cached one when its settings and the cleaned train text (the split file
    `train`, `pairs` pairs) are unchanged, else a newly trained one (written to the directory). Returns it, its key,
    its file names and "reused" or "trained"."""
    tok_key = tokenizer_key(cfg, train)
    names = _spm_names(tok_key, cfg.tokenizer.joint)
    settings = dataclasses.asdict(cfg.tokenizer)
    tokenizer = _load_tokenizer(directory, names, settings)
    if tokenizer is not None:
        return tokenizer, tok_key, names, "reused"
    rows = sample_rows(pairs)
    sample_src, sample_tgt = _take(train, rows)
    sampled = f"a seeded random sample of {len(rows)} of the " if len(rows) < pairs else ""
    log(
        f"training SentencePiece ({cfg.tokenizer.model_type}, vocab {cfg.tokenizer.vocab_size}, "
        f"{'joint' if cfg.tokenizer.joint else 'separate'}) on {sampled}{pairs} train pairs"
    )
    tokenizer = Tokenizer.train(sample_src, sample_tgt, **settings)
    if max(tokenizer.src_vocab_size, tokenizer.tgt_vocab_size) < cfg.tokenizer.vocab_size:
        log(
            f"the train text yields only {tokenizer.src_vocab_size} (src) / {tokenizer.tgt_vocab_size} (tgt) "
            f"pieces of the {cfg.tokenizer.vocab_size} asked for"
        )
    _write_tokenizer(directory, names, tokenizer)
    return tokenizer, tok_key, names, "trained"


def _concatenate(splits: dict[str, tuple[list[str], list[str]]], test_sets: list[str], concat_cfg: Any
                 ) -> tuple[dict[str, tuple[list[str], list[str]]], list[str], dict[str, dict[str, Any]]]:
    """data.concat: train (and valid, unless data.concat.valid_mixture=false) become mixtures of k = 1..max_k, each
    test set gains its levels k >= 2."""
    if concat_cfg.max_k < 1 or concat_cfg.min_test_examples < 1:
        raise NMTError(f"data.concat.max_k and data.concat.min_test_examples must be at least 1, got "
                       f"{concat_cfg.max_k} and {concat_cfg.min_test_examples}")
    if not 0.0 < concat_cfg.share <= 1.0:
        raise NMTError(f"data.concat.share must be in (0, 1], got {concat_cfg.share}")
    out = dict(splits)
    out["train"] = concat.mixture(*splits["train"], concat_cfg.max_k, concat_cfg.seed, concat_cfg.share)
    if concat_cfg.valid_mixture:
        out["valid"] = concat.mixture(*splits["valid"], concat_cfg.max_k, concat_cfg.seed, concat_cfg.share,
                                      shuffle=True)
    all_tests, levels = [], {}
    for name in test_sets:
        extra, info = concat.test_levels(name, *splits[name], concat_cfg.max_k, concat_cfg.min_test_examples)
        out.update(extra)
        levels.update(info)
        all_tests += list(info)
    return out, all_tests, levels


def prepared_dir(cfg: DataConfig, tokenizer: Tokenizer | None = None) -> Path:
    """<root>/prepared/<name>, or <name>_concat<K> for a length-controlled corpus (both can be cached), with
    _tok<sha> when encoded with a given tokenizer. A "/" in the name (a hub name like org/corpus) becomes "--"."""
    suffix = f"_concat{cfg.concat.max_k}" if cfg.concat.max_k > 1 else ""
    suffix += f"_tok{tokenizer.sha256[:12]}" if tokenizer is not None else ""
    return Path(cfg.root) / "prepared" / f"{cfg.name.replace('/', '--')}{suffix}"


def report_tokenizer_settings(cfg: DataConfig, tokenizer: Tokenizer, log: Callable[[str], None]) -> None:
    """One log line when data.tokenizer asks for other settings than the given tokenizer was trained with."""
    asked = dataclasses.asdict(cfg.tokenizer)
    differ = [f"{k}={asked[k]} (tokenizer: {tokenizer.settings[k]})" for k in asked
              if k in tokenizer.settings and tokenizer.settings[k] != asked[k]]
    if differ:
        log(f"data.tokenizer settings differ from the given tokenizer's and are not used: {', '.join(differ)}; "
            f"the corpus is encoded with the given tokenizer ({tokenizer})")


def prepare_corpus(cfg: Any, log: Callable[[str], None] = print, tokenizer: Tokenizer | None = None
                   ) -> PreparedCorpus:
    """Read, validate, clean and tokenize the corpus of `cfg` (a DataConfig or Hydra's cfg.data), or load it
    from `prepared_dir(cfg)` when it was prepared from the same config and input files.

    With `tokenizer` (a fine-tuning run's, from its checkpoint) the corpus is encoded with it: no SentencePiece
    model is trained, data.tokenizer is ignored (one log line when it differs), and the corpus is cached apart."""
    cfg = _data_config(cfg)
    check_values(cfg, "data")
    if tokenizer is not None:
        report_tokenizer_settings(cfg, tokenizer, log)
    directory = prepared_dir(cfg, tokenizer)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NMTError(f"cannot create {directory}: {e.strerror}") from None
    with _locked(directory):
        key = config_key(cfg)
        inputs = _fingerprints(cfg, log)
        cached = _load_cached(directory, key, inputs, cfg, log, tokenizer)
        if cached is None:
            return _build(directory, key, inputs, cfg, log, tokenizer)
        cached.ids = _open_or_build_ids(cached, cfg.num_proc, log)
        return cached


def describe(corpus: PreparedCorpus) -> str:
    """A human-readable summary: pairs and lengths per split, dropped pairs, vocabulary, files."""
    st = corpus.stats
    lines = [
        f"corpus {corpus.name} ({st['src_lang']} -> {st['tgt_lang']}) in {corpus.directory} "
        f"[cache: {st.get('cache', '?')}" + (f", tokenizer: {st['tokenizer']}]" if "tokenizer" in st else "]"),
        f"{'split':<18} {'pairs':>7}   {'src words':>12} {'tgt words':>12} {'src pieces':>12} {'tgt pieces':>12}",
    ]
    for name, s in st["splits"].items():
        cols = [
            f"{s[f'{side}_{unit}_mean']:5.1f} /{s[f'{side}_{unit}_max']:>4}"
            for unit in ("words", "pieces")
            for side in ("src", "tgt")
        ]
        lines.append(f"{name:<18} {s['pairs']:>7}   " + " ".join(f"{c:>12}" for c in cols))
    lines.append("(lengths: mean / max per sentence)")
    dropped = st["dropped"]
    lines.append(
        f"train: dropped {sum(dropped.values())} of {st['train_raw_pairs']} pairs ("
        + ", ".join(f"{k} {v}" for k, v in dropped.items())
        + "); valid and test sets are never filtered"
    )
    vocab = st["vocab"]
    kind = "joint" if vocab["joint"] else "separate"
    lines.append(f"vocabulary: {kind}, src {vocab['src']} pieces, tgt {vocab['tgt']} pieces")
    lines.append(f"dataset: {st['dataset_dir']}")
    lines.append("tokenizer: " + ", ".join(st["tokenizer_files"]))
    return "\n".join(lines)
