"""The token id cache: encoded once row for row, opened without encoding, rebuilt when the tokenizer or the corpus
changes, built atomically, and a damaged cache refused in one line and rebuilt."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from nmt.config import DataConfig, TokenizerConfig
from nmt.data import corpus as corpus_module
from nmt.data import ids as ids_module
from nmt.data.batching import TokenBatchSampler, batch_stream
from nmt.data.corpus import prepare_corpus
from nmt.data.ids import IdCacheError, TokenArray, open_ids


def write(path: Path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture
def files(tmp_path) -> dict[str, list[str]]:
    words = ["ein Hund", "zwei Katzen spielen", "der Mann liest ein Buch", "eine Frau", "Kinder laufen schnell"]
    english = ["a dog", "two cats play", "the man reads a book", "a woman", "children run fast"]
    src, tgt = [words[i % 5] + f" {i}" for i in range(60)], [english[i % 5] + f" {i}" for i in range(60)]
    out = {}
    for split, rows in (("train", range(50)), ("valid", range(50, 55)), ("test", range(55, 60))):
        out[split] = [write(tmp_path / f"{split}.de", [src[i] for i in rows]),
                      write(tmp_path / f"{split}.en", [tgt[i] for i in rows])]
    return out


def config(tmp_path: Path, files: dict, vocab: int = 60, num_proc: int = 1) -> DataConfig:
    return DataConfig(name="ids", source="files", src_lang="de", tgt_lang="en", files=files,
                      root=str(tmp_path / "data"), tokenizer=TokenizerConfig(vocab_size=vocab), num_proc=num_proc)


def id_dirs(corpus) -> list[str]:
    return sorted(p.name for p in corpus.directory.glob("ids-*"))


def quiet(_: str) -> None:
    pass


def test_every_split_is_encoded_row_for_row_with_the_tokenizer(tmp_path, files):
    corpus = prepare_corpus(config(tmp_path, files), log=quiet)
    for name in ("train", "valid", "test"):
        text, encoded = corpus.split(name), corpus.encoded(name)
        assert len(encoded) == len(text)
        assert [s.tolist() for s in encoded.src] == corpus.tokenizer.encode_src(text["src"])
        assert [t.tolist() for t in encoded.tgt] == corpus.tokenizer.encode_tgt(text["tgt"])
    train = corpus.encoded("train")
    assert train.src.data.dtype == np.uint16 and isinstance(train.src.data, np.memmap)
    assert train.src.lengths.dtype == np.uint16 and isinstance(train.src.lengths, np.memmap)  # mapped, not copied
    assert train.src.lengths.tolist() == [len(s) for s in corpus.tokenizer.encode_src(corpus.split("train")["src"])]
    assert corpus.stats["splits"]["train"]["src_pieces_max"] == int(train.src.lengths.max())


def test_a_second_prepare_opens_the_cache_without_encoding(tmp_path, files, monkeypatch):
    first = prepare_corpus(config(tmp_path, files), log=quiet)

    def fail(*args, **kwargs):
        raise AssertionError("encoded again")

    monkeypatch.setattr("nmt.data.corpus.build_ids", fail)
    monkeypatch.setattr("nmt.data.tokenizer.Tokenizer.encode_src", fail)
    second = prepare_corpus(config(tmp_path, files), log=quiet)
    assert second.ids.key == first.ids.key
    assert np.array_equal(second.encoded("train").src.data, first.encoded("train").src.data)


def test_a_tokenizer_or_corpus_change_gives_a_new_cache_and_removes_the_old(tmp_path, files):
    first = prepare_corpus(config(tmp_path, files), log=quiet)
    retokenized = prepare_corpus(config(tmp_path, files, vocab=70), log=quiet)
    assert retokenized.ids.key != first.ids.key and id_dirs(retokenized) == [f"ids-{retokenized.ids.key}"]
    assert [s.tolist() for s in retokenized.encoded("train").src] == retokenized.tokenizer.encode_src(
        retokenized.split("train")["src"])
    train_de = Path(files["train"][0])
    train_de.write_text(train_de.read_text().replace("Hund", "Hunde"), encoding="utf-8")
    changed = prepare_corpus(config(tmp_path, files, vocab=70), log=quiet)
    assert changed.ids.key != retokenized.ids.key and id_dirs(changed) == [f"ids-{changed.ids.key}"]
    assert "Hunde" in changed.tokenizer.decode_src([changed.encoded("train").src[0].tolist()])[0]


def test_a_truncated_cache_is_refused_in_one_line_and_rebuilt(tmp_path, files):
    first = prepare_corpus(config(tmp_path, files), log=quiet)
    expected = np.array(first.encoded("train").tgt.data)
    directory = first.ids.directory
    binary = directory / "train.tgt.bin"
    binary.write_bytes(binary.read_bytes()[:-6])
    with pytest.raises(IdCacheError) as refused:
        open_ids(directory, first.ids.key)
    assert "\n" not in str(refused.value) and "train.tgt.bin" in str(refused.value) and "damaged" in str(refused.value)
    logged: list[str] = []
    again = prepare_corpus(config(tmp_path, files), log=logged.append)
    assert [line for line in logged if "damaged" in line] == [f"{refused.value}: rebuilding it"]
    assert np.array_equal(again.encoded("train").tgt.data, expected)
    lengths = (directory / "train.src.len").read_bytes()
    (directory / "train.src.len").write_bytes(lengths[2:] + lengths[:2])  # the right size, the wrong lengths
    with pytest.raises(IdCacheError, match="train.src.idx and train.src.len are not the offsets and lengths"):
        open_ids(directory, first.ids.key)
    (directory / "train.src.len").write_bytes(lengths)
    offsets = np.fromfile(directory / "valid.src.idx", dtype=np.int64)
    offsets[1:3] = offsets[2], offsets[1]
    offsets.tofile(directory / "valid.src.idx")
    with pytest.raises(IdCacheError, match="valid.src.idx and valid.src.len are not the offsets and lengths"):
        open_ids(directory, first.ids.key)


def test_an_interrupted_build_leaves_no_cache_that_looks_valid(tmp_path, files, monkeypatch):
    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ids_module, "write_json", killed)  # dies just before meta.json, all ids written
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(config(tmp_path, files), log=quiet)
    directory = tmp_path / "data" / "prepared" / "ids"
    assert [p.name for p in directory.glob("ids-*") if not p.name.endswith(".tmp")] == []
    monkeypatch.undo()
    logged: list[str] = []
    corpus = prepare_corpus(config(tmp_path, files), log=logged.append)
    assert id_dirs(corpus) == [f"ids-{corpus.ids.key}"] and any("encoding" in line for line in logged)


def test_chunks_encoded_by_several_processes_equal_one_process(tmp_path, files, monkeypatch):
    monkeypatch.setattr(corpus_module, "CHUNK_PAIRS", 7)  # 8 chunks of train, one of valid and test each
    one = prepare_corpus(config(tmp_path / "one", files, num_proc=1), log=quiet)
    logged: list[str] = []
    two = prepare_corpus(config(tmp_path / "two", files, num_proc=2), log=logged.append)
    assert any("2 processes" in line for line in logged)
    for name in ("train", "valid", "test"):
        for side in ("src", "tgt"):
            a, b = getattr(one.encoded(name), side), getattr(two.encoded(name), side)
            assert np.array_equal(a.data, b.data) and np.array_equal(a.offsets, b.offsets)


def test_a_token_array_pickles_as_its_paths_and_views_rows(tmp_path, files):
    src = prepare_corpus(config(tmp_path, files), log=quiet).encoded("train").src
    view = src.take(np.array([4, 0, 2]))
    assert [s.tolist() for s in view] == [src[4].tolist(), src[0].tolist(), src[2].tolist()]
    assert view.lengths.tolist() == src.lengths[[4, 0, 2]].tolist()
    sent = pickle.dumps(view)
    assert len(sent) < 1000 and [s.tolist() for s in pickle.loads(sent)] == [s.tolist() for s in view]
    in_memory = TokenArray.from_lists([[5, 6], [], [7]])
    assert [s.tolist() for s in in_memory] == [[5, 6], [], [7]] and in_memory.lengths.tolist() == [2, 0, 1]


def test_dataloader_workers_build_the_same_batches_from_the_mapped_ids(tmp_path, files):
    train = prepare_corpus(config(tmp_path, files), log=quiet).encoded("train")
    sampler = TokenBatchSampler(train.src.lengths, train.tgt.lengths, batch_tokens=60, seed=2)
    streams = [[(e, i, b.src.tolist(), b.tgt_out.tolist()) for e, i, _, b in
                batch_stream(sampler, train.src, train.tgt, 0, 1, max_epochs=2, num_workers=workers)]
               for workers in (0, 1)]
    assert streams[0] == streams[1] and len(streams[0]) == 2 * len(sampler) - 1
