"""Corpus sources: reading and validation, train cleaning, Multi30k mirror -> cache -> download, hub records."""

from __future__ import annotations

import gzip
import random
import urllib.error
from pathlib import Path

import datasets
import pytest

from nmt.config import DataConfig, TokenizerConfig
from nmt.data import sources
from nmt.data.corpus import clean_train, prepare_corpus
from nmt.data.sources import (
    iter_corpus_lines,
    iter_parallel,
    read_corpus_lines,
    records_to_pairs,
    resolve_data_file,
    resolve_multi30k_file,
)
from nmt.errors import NMTError


def write(path: Path, lines: list[str]) -> Path:
    text = "".join(line + "\n" for line in lines).encode()
    path.write_bytes(gzip.compress(text) if path.suffix == ".gz" else text)
    return path


def files_config(tmp_path: Path, files: dict[str, list[str]], **kw) -> DataConfig:
    return DataConfig(
        name="tiny",
        source="files",
        files=files,
        root=str(tmp_path / "data"),
        tokenizer=TokenizerConfig(vocab_size=40),
        **kw,
    )


# ------------------------------------------------------------------------------------------------ reading


def test_read_lines_strips_handles_gzip_and_splits_on_newline_only(tmp_path):
    lines = ["  Ein Hund. ", "zwei\u2028Katzen\x85", "\tdrei\r"]
    plain = write(tmp_path / "a.txt", lines)
    gz = write(tmp_path / "a.txt.gz", lines)
    expected = ["Ein Hund.", "zwei\u2028Katzen", "drei"]
    assert read_corpus_lines(plain) == expected
    assert read_corpus_lines(gz) == expected


def test_lines_read_in_chunks_are_the_lines_read_whole(tmp_path):
    lines = ["\ufeffErster Satz", "  zwei\u2028drei ", "", "vier\r", "fünf", "sechs", "sieben"]
    for path in (write(tmp_path / "c.txt", lines), write(tmp_path / "c.txt.gz", lines)):
        chunks = list(iter_corpus_lines(path, chunk=2))
        assert [len(c) for c in chunks] == [2, 2, 2, 1]
        assert [line for c in chunks for line in c] == read_corpus_lines(path) == \
            ["Erster Satz", "zwei\u2028drei", "", "vier", "fünf", "sechs", "sieben"]
    bad = tmp_path / "bad.de"
    bad.write_bytes(b"eins\nzwei\ndrei\nvier\nf\xfcnf\n")  # latin-1 on line 5, the third chunk of two lines
    with pytest.raises(NMTError, match=r"line 5 \(byte 21\)"):
        list(iter_corpus_lines(bad, chunk=2))


def test_misaligned_files_are_found_across_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "CHUNK_LINES", 2)  # 4 chunks of the longer file, 2 of the shorter
    src = write(tmp_path / "long.de", [f"s{i}" for i in range(7)])
    tgt = write(tmp_path / "short.en", [f"t{i}" for i in range(4)])
    with pytest.raises(NMTError, match=r"long\.de has 7 lines but .*short\.en has 4"):
        list(iter_parallel(src, tgt))


def test_misaligned_files_name_both_files_and_counts(tmp_path):
    src = write(tmp_path / "train.de", ["a", "b", "c"])
    tgt = write(tmp_path / "train.en", ["a", "b"])
    with pytest.raises(NMTError) as e:
        list(iter_parallel(src, tgt))
    msg = str(e.value)
    assert str(src) in msg and str(tgt) in msg and "3" in msg and "2" in msg


def test_empty_and_missing_files_are_named(tmp_path):
    empty = tmp_path / "empty.de"
    empty.write_bytes(b"\n\n")
    ok = write(tmp_path / "ok.en", ["x", "y"])
    with pytest.raises(NMTError, match=r"empty\.de is empty"):
        list(iter_parallel(empty, ok))
    with pytest.raises(NMTError, match=r"file not found: .*missing\.en"):
        list(iter_parallel(ok, tmp_path / "missing.en"))


def test_invalid_gzip_is_reported(tmp_path):
    bad = tmp_path / "cut.de.gz"
    bad.write_bytes(gzip.compress(b"a line\n" * 100)[:30])
    with pytest.raises(NMTError, match="cut.de.gz is not a valid gzip file"):
        read_corpus_lines(bad)
    fake = tmp_path / "fake.de.gz"
    fake.write_bytes(b"plain text\n")
    with pytest.raises(NMTError, match="not gzip-compressed"):
        read_corpus_lines(fake)


def test_invalid_utf8_names_file_and_line_and_replace_mode_keeps_lines(tmp_path):
    path = tmp_path / "bad.de"
    path.write_bytes(b"eins\nzwei\ndr\xffei\nvier\n")
    with pytest.raises(NMTError) as e:
        read_corpus_lines(path)
    assert str(path) in str(e.value) and "line 3" in str(e.value)
    logged = []
    lines = read_corpus_lines(path, "replace", log=logged.append)
    assert lines == ["eins", "zwei", "dr\ufffdei", "vier"]
    assert "1 line(s)" in logged[0]


def test_invalid_utf8_in_a_corpus_fails_through_prepare(tmp_path):
    src = tmp_path / "train.de"
    src.write_bytes(b"ok\n\xc3\x28\n")
    tgt = write(tmp_path / "train.en", ["ok", "ok"])
    valid = [str(write(tmp_path / "v.de", ["a"])), str(write(tmp_path / "v.en", ["a"]))]
    cfg = files_config(tmp_path, {"train": [str(src), str(tgt)], "valid": valid})
    with pytest.raises(NMTError, match=r"train\.de: invalid UTF-8 on line 2"):
        prepare_corpus(cfg, log=lambda _: None)


# ----------------------------------------------------------------------------------------------- cleaning


def test_clean_train_counts_each_reason():
    src = ["ein Hund", "", "a " * 8, "eins", "zwei Katzen", "   "]
    tgt = ["a dog", "empty source", "too long", "one two three four", "two cats", "x"]
    kept_src, kept_tgt, dropped = clean_train(src, tgt, max_words=5, max_ratio=3.0)
    assert kept_src == ["ein Hund", "zwei Katzen"] and kept_tgt == ["a dog", "two cats"]
    assert dropped == {"empty": 2, "too_long": 1, "ratio": 1}


def test_prepare_filters_train_only_and_keeps_empty_valid_lines(tmp_path):
    train_src = ["ein Hund läuft", "", "eins", "zwei Katzen schlafen"] * 3
    train_tgt = ["a dog runs", "nothing", "one two three four five", "two cats sleep"] * 3
    valid_src, valid_tgt = ["ein Hund", "", "eins"], ["a dog", "", "one two three four five"]
    files = {
        "train": [str(write(tmp_path / "t.de", train_src)), str(write(tmp_path / "t.en", train_tgt))],
        "valid": [str(write(tmp_path / "v.de", valid_src)), str(write(tmp_path / "v.en", valid_tgt))],
        "test": [str(write(tmp_path / "x.de", valid_src)), str(write(tmp_path / "x.en", valid_tgt))],
    }
    logged = []
    corpus = prepare_corpus(files_config(tmp_path, files), log=logged.append)
    assert corpus.stats["dropped"] == {"empty": 3, "too_long": 0, "ratio": 3}
    assert len(corpus.split("train")) == 6
    assert corpus.split("valid")["src"] == valid_src and corpus.split("valid")["tgt"] == valid_tgt
    assert corpus.split("test")["tgt"] == valid_tgt
    assert any("dropped empty 3, too_long 0, ratio 3" in m for m in logged)


def test_split_names_and_test_alias(tmp_path):
    pair = [str(write(tmp_path / "a.de", ["ein Hund", "zwei"])), str(write(tmp_path / "a.en", ["a dog", "two"]))]
    other = [str(write(tmp_path / "b.de", ["drei"])), str(write(tmp_path / "b.en", ["three"]))]
    corpus = prepare_corpus(
        files_config(tmp_path, {"train": pair, "valid": pair, "news2014": other, "news2015": pair}),
        log=lambda _: None,
    )
    assert corpus.test_sets == ["news2014", "news2015"]
    assert corpus.split("test")["tgt"] == ["three"]
    assert list(corpus.splits) == ["train", "valid", "news2014", "news2015"]
    with pytest.raises(NMTError, match="no split 'dev'; choose from valid, test, train, news2014, news2015"):
        corpus.split("dev")


def test_files_needs_train_and_valid(tmp_path):
    pair = [str(write(tmp_path / "a.de", ["x"])), str(write(tmp_path / "a.en", ["x"]))]
    with pytest.raises(NMTError, match="missing: valid"):
        prepare_corpus(files_config(tmp_path, {"train": pair}), log=lambda _: None)


def test_relative_files_resolve_under_the_mirror_subdir_first(tmp_path, monkeypatch, real_mirror):
    monkeypatch.chdir(tmp_path)
    assert resolve_data_file("train.de.gz", "wmt-newstest-de-en") == real_mirror / "wmt-newstest-de-en" / "train.de.gz"
    write(tmp_path / "local.de", ["x"])
    assert resolve_data_file("local.de", "wmt-newstest-de-en") == Path("local.de")
    monkeypatch.delenv("NMT_DATA_MIRROR")
    with pytest.raises(NMTError, match="NMT_DATA_MIRROR"):
        resolve_data_file("train.de.gz", "wmt-newstest-de-en")


# ------------------------------------------------------------------------------- multi30k: where files come from


def caption_file(lines: int = 400) -> bytes:
    """A gzip payload the size of a small real Multi30k file (varied text, so it does not compress to nothing)."""
    rng = random.Random(0)
    words = "Ein Hund Mann Frau Kind rennt sitzt auf dem der die einem roten großen Wiese Straße".split()
    text = "".join(" ".join(rng.choices(words, k=10)) + ".\n" for _ in range(lines))
    return gzip.compress(text.encode())


@pytest.fixture
def fake_http(monkeypatch):
    """Replaces the one network call; `payload` is what the server 'sends' (bytes or an exception)."""
    calls = []
    state = {"payload": caption_file()}

    def download(url, dest, timeout=60.0):
        calls.append(url)
        if isinstance(state["payload"], Exception):
            raise state["payload"]
        Path(dest).write_bytes(state["payload"])

    monkeypatch.setattr(sources, "http_download", download)
    state["calls"] = calls
    return state


def test_multi30k_prefers_the_mirror(tmp_path, fake_http, mirror):
    path = resolve_multi30k_file("val.de.gz", tmp_path / "data", log=lambda _: None)
    assert path == mirror / "multi30k" / "val.de.gz"
    assert fake_http["calls"] == []


def test_multi30k_uses_the_cache_then_downloads(tmp_path, fake_http, monkeypatch):
    monkeypatch.setenv("NMT_DATA_MIRROR", str(tmp_path / "empty-mirror"))
    root = tmp_path / "data"
    cached = root / "raw" / "multi30k" / "val.de.gz"
    write_cached = write(tmp_path / "seed.gz", ["Ein Hund."])
    cached.parent.mkdir(parents=True)
    cached.write_bytes(write_cached.read_bytes())
    assert resolve_multi30k_file("val.de.gz", root, log=lambda _: None) == cached
    assert fake_http["calls"] == []

    got = resolve_multi30k_file("test_2017_flickr.de.gz", root, log=lambda _: None)
    assert got == root / "raw" / "multi30k" / "test_2017_flickr.de.gz"
    assert fake_http["calls"] == [sources.MULTI30K_URL.format(name="test_2017_flickr.de.gz")]
    assert got.read_bytes() == caption_file() and len(read_corpus_lines(got)) == 400
    # now cached: no second download
    resolve_multi30k_file("test_2017_flickr.de.gz", root, log=lambda _: None)
    assert len(fake_http["calls"]) == 1


@pytest.mark.parametrize(
    "payload, reason",
    [
        (b"", "only 0 bytes"),
        (b"<!DOCTYPE html><html>" + b"x" * 4000, "HTML page"),
        (caption_file()[:2000], "not a valid gzip"),
        (urllib.error.URLError("Name or service not known"), "Name or service not known"),
    ],
    ids=["empty", "html", "truncated-gzip", "no-network"],  # the same ids in every xdist worker (gzip stamps a time)
)
def test_bad_or_failed_downloads_are_rejected_and_not_cached(tmp_path, fake_http, monkeypatch, payload, reason):
    monkeypatch.delenv("NMT_DATA_MIRROR", raising=False)
    fake_http["payload"] = payload
    root = tmp_path / "data"
    with pytest.raises(NMTError) as e:
        resolve_multi30k_file("train.de.gz", root, log=lambda _: None)
    msg = str(e.value)
    assert reason in msg and "train.de.gz" in msg
    assert "set NMT_DATA_MIRROR" in msg and str(root / "raw" / "multi30k" / "train.de.gz") in msg
    assert list((root / "raw" / "multi30k").iterdir()) == []  # neither the file nor a partial download


def test_offline_prepare_gives_one_clear_error(tmp_path, fake_http, monkeypatch):
    monkeypatch.delenv("NMT_DATA_MIRROR", raising=False)
    fake_http["payload"] = urllib.error.URLError("offline")
    cfg = DataConfig(root=str(tmp_path / "data"))
    with pytest.raises(NMTError, match=r"Multi30k file train\.de\.gz is neither in .* \(NMT_DATA_MIRROR is unset\)"):
        prepare_corpus(cfg, log=lambda _: None)
    assert len(fake_http["calls"]) == 1


def test_multi30k_config_is_checked(tmp_path):
    with pytest.raises(NMTError, match="no language 'xx'"):
        prepare_corpus(DataConfig(root=str(tmp_path), tgt_lang="xx"), log=lambda _: None)
    with pytest.raises(NMTError, match="unknown Multi30k test set 'test_2020'"):
        prepare_corpus(DataConfig(root=str(tmp_path), test_sets=["test_2020"]), log=lambda _: None)


# ----------------------------------------------------------------------------------------------------- hub


def test_hub_records_convert_to_stripped_pairs():
    ds = datasets.Dataset.from_list(
        [
            {"translation": {"de": " Ein Hund. ", "en": "A dog."}},
            {"translation": {"de": "Zwei Katzen.", "en": " Two cats.\n"}},
        ]
    )
    assert records_to_pairs(ds, "de", "en", "wmt/train") == (["Ein Hund.", "Zwei Katzen."], ["A dog.", "Two cats."])
    assert records_to_pairs(ds, "en", "de", "wmt/train")[0] == ["A dog.", "Two cats."]
    with pytest.raises(NMTError, match=r"wmt/train record 0 has no translation\.fr"):
        records_to_pairs(ds, "fr", "en", "wmt/train")


def test_hub_source_prepares_and_caches_without_reloading(tmp_path, monkeypatch):
    def records(pairs):
        return datasets.Dataset.from_list([{"translation": {"de": d, "en": e}} for d, e in pairs])

    train = [("ein Hund läuft", "a dog runs"), ("zwei Katzen", "two cats"), ("", "empty source")] * 4
    hub = datasets.DatasetDict(
        {"train": records(train), "validation": records([("ein Hund", "a dog")]), "test": records([("", "")])}
    )
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config: calls.append((name, config)) or hub)
    cfg = DataConfig(
        name="hubtiny", source="hub", hub_name="wmt14", hub_config="de-en", root=str(tmp_path / "data"),
        tokenizer=TokenizerConfig(vocab_size=40),
    )  # fmt: skip
    corpus = prepare_corpus(cfg, log=lambda _: None)
    assert calls == [("wmt14", "de-en")]
    assert corpus.test_sets == ["test"] and corpus.split("test")["src"] == [""]
    assert corpus.split("valid")["tgt"] == ["a dog"] and corpus.stats["dropped"]["empty"] == 4
    assert prepare_corpus(cfg, log=lambda _: None).stats["cache"] == "hit" and len(calls) == 1

    cfg.hub_splits = {"train": "train", "valid": "dev"}
    with pytest.raises(NMTError, match="wmt14 has no split 'dev'.*it has train, validation, test"):
        prepare_corpus(cfg, log=lambda _: None)
