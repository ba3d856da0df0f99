"""Length control by concatenation: alignment, counts, determinism, caching, and every corpus source."""

from __future__ import annotations

from pathlib import Path

import pytest

from nmt.config import ConcatConfig, DataConfig, TokenizerConfig
from nmt.data import concat
from nmt.data.corpus import prepare_corpus
from nmt.errors import NMTError

SRC = [f"quelle {i} ." for i in range(23)]
TGT = [f"source {i} ." for i in range(23)]


def test_levels_keep_alignment_and_counts():
    splits, info = concat.test_levels("t", SRC, TGT, max_k=4, min_examples=1)
    assert list(info) == ["t", "t_k2", "t_k3", "t_k4"]
    assert [info[n]["examples"] for n in info] == [23, 11, 7, 5]
    src4, tgt4 = splits["t_k4"]
    groups = concat.level_groups(len(SRC), 4, info["t_k4"]["offsets"])
    assert groups[1] == [4, 5, 6, 7]
    for s, t, g in zip(src4, tgt4, groups, strict=True):
        assert s == " ".join(SRC[i] for i in g) and t == " ".join(TGT[i] for i in g)  # pair i stays with pair i
        assert len(s.split()) == sum(len(SRC[i].split()) for i in g)


def test_small_levels_add_the_other_offsets():
    _, info = concat.test_levels("t", SRC, TGT, max_k=3, min_examples=10)
    assert info["t_k2"]["offsets"] == [0] and info["t_k2"]["examples"] == 11
    assert info["t_k3"]["offsets"] == [0, 1, 2] and info["t_k3"]["examples"] == 7 + 7 + 7


def test_mixture_is_deterministic_and_covers_each_sentence_once_per_level():
    src, tgt = concat.mixture(SRC, TGT, max_k=3, seed=5)
    assert (src, tgt) == concat.mixture(SRC, TGT, max_k=3, seed=5)
    assert src[:23] == SRC and tgt[:23] == TGT  # the original pairs come first and unchanged
    assert len(src) == 23 + 23 // 2 + len(concat.level_groups(23, 3, [0]))  # one grouping per level
    for s, t in zip(src, tgt, strict=True):
        assert [w for w in s.split() if w.isdigit()] == [w for w in t.split() if w.isdigit()]
    shuffled = concat.mixture(SRC, TGT, max_k=3, seed=5, shuffle=True)
    assert sorted(shuffled[0]) == sorted(src) and shuffled[0] != src


def _files_config(tmp_path: Path, files: dict[str, list[str]], max_k: int) -> DataConfig:
    return DataConfig(name="tiny_concat", source="files", files=files, root=str(tmp_path / "data"),
                      tokenizer=TokenizerConfig(vocab_size=250), concat=ConcatConfig(max_k=max_k))


def test_prepared_corpus_with_concat_is_cached_beside_the_plain_one(tmp_path, tiny_corpus_files):
    plain = prepare_corpus(_files_config(tmp_path, tiny_corpus_files, 1), log=lambda _: None)
    joined = prepare_corpus(_files_config(tmp_path, tiny_corpus_files, 3), log=lambda _: None)
    assert plain.directory != joined.directory and joined.directory.name == "tiny_concat_concat3"
    assert joined.test_sets == ["test", "test_k2", "test_k3"] and plain.test_sets == ["test"]
    n_train, n_valid = len(plain.split("train")), len(plain.split("valid"))
    for n, split in ((n_train, "train"), (n_valid, "valid")):  # a seeded offset < k may drop one group per level
        assert n + n // 2 + n // 3 - 2 <= len(joined.split(split)) <= n + n // 2 + n // 3
    assert list(joined.split("test")["src"]) == list(plain.split("test")["src"])  # level 1 is the test set
    assert joined.stats["concat_levels"]["test_k3"]["examples"] == len(joined.split("test_k3"))
    # The tokenizer learns from the original train pairs only: the same one with and without concatenation.
    assert joined.tokenizer.sha256 == plain.tokenizer.sha256
    again = prepare_corpus(_files_config(tmp_path, tiny_corpus_files, 3), log=lambda _: None)
    assert again.stats["cache"] == "hit" and list(again.split("train")["src"]) == list(joined.split("train")["src"])
    assert prepare_corpus(_files_config(tmp_path, tiny_corpus_files, 1), log=lambda _: None).stats["cache"] == "hit"


def test_bad_concat_settings_are_one_line(tmp_path, tiny_corpus_files):
    cfg = _files_config(tmp_path, tiny_corpus_files, 2)
    cfg.concat.min_test_examples = 0
    with pytest.raises(NMTError, match="data.concat"):
        prepare_corpus(cfg, log=lambda _: None)


def test_share_keeps_a_seeded_part_of_each_long_level():
    src, _ = concat.mixture(SRC, TGT, max_k=3, seed=5, share=0.5)
    assert len(src) == 23 + round(0.5 * 11) + round(0.5 * 7)
    assert src == concat.mixture(SRC, TGT, max_k=3, seed=5, share=0.5)[0]
