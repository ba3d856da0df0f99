"""SentencePiece tokenizer: special ids, round trips on real Multi30k text, decoding model output, state dicts."""

from __future__ import annotations

import io
import unicodedata

import pytest
import torch

from nmt.config import BOS_ID, EOS_ID, PAD_ID, UNK_ID
from nmt.data.sources import read_corpus_lines
from nmt.data.tokenizer import Tokenizer, sample_rows
from nmt.errors import NMTError

TINY_SRC = ["ein Hund läuft im Park", "zwei Katzen schlafen", "ein Mann fährt Rad", "eine Frau liest"] * 5
TINY_TGT = ["a dog runs in the park", "two cats sleep", "a man rides a bike", "a woman reads"] * 5


@pytest.fixture(scope="module")
def multi30k_lines(real_mirror):
    de = read_corpus_lines(real_mirror / "multi30k" / "train.de.gz")[:3000]
    en = read_corpus_lines(real_mirror / "multi30k" / "train.en.gz")[:3000]
    return de, en


@pytest.fixture(scope="module")
def multi30k_tokenizer(multi30k_lines):
    return Tokenizer.train(*multi30k_lines, vocab_size=1000)


def is_normal(line: str) -> bool:
    """SentencePiece normalizes (NFKC, whitespace runs to one space); lines already in that form round-trip."""
    return line == " ".join(line.split()) and unicodedata.normalize("NFKC", line) == line


def test_round_trip_on_real_multi30k_lines(multi30k_lines, multi30k_tokenizer):
    tok = multi30k_tokenizer
    de, en = multi30k_lines
    assert tok.src_vocab_size == tok.tgt_vocab_size == 1000
    for lines, encode, decode in ((de, tok.encode_src, tok.decode_src), (en, tok.encode_tgt, tok.decode_tgt)):
        normal = [line for line in lines if is_normal(line)]
        assert len(normal) > 0.98 * len(lines)
        ids = encode(normal)
        assert all(UNK_ID not in seq for seq in ids)
        assert decode(ids) == normal


def test_ids_have_no_specials_and_pieces_match(multi30k_tokenizer):
    tok = multi30k_tokenizer
    ids = tok.encode_src(["Ein Hund rennt über die Wiese."])[0]
    assert ids and not {PAD_ID, BOS_ID, EOS_ID} & set(ids)
    pieces = tok.src_pieces("Ein Hund rennt über die Wiese.")
    assert (
        len(pieces) == len(ids) and "".join(pieces).replace("\u2581", " ").strip() == "Ein Hund rennt über die Wiese."
    )
    assert tok.tgt_pieces("A dog.")[0].startswith("\u2581")


def test_decode_tgt_strips_specials_and_stops_at_eos(multi30k_tokenizer):
    tok = multi30k_tokenizer
    ids = tok.encode_tgt(["A dog runs.", "Two men."])
    model_output = [
        [BOS_ID, *ids[0], EOS_ID, *ids[1], PAD_ID],  # anything after EOS is dropped
        [*ids[1], PAD_ID, PAD_ID],
        [EOS_ID, *ids[0]],
    ]
    assert tok.decode_tgt(model_output) == ["A dog runs.", "Two men.", ""]
    assert tok.decode_tgt(torch.tensor([[*ids[1], EOS_ID]])) == ["Two men."]
    assert tok.decode_tgt([]) == []


def test_special_pieces_have_the_shared_ids():
    tok = Tokenizer.train(TINY_SRC, TINY_TGT, vocab_size=60)
    sp = tok.src_sp
    assert [sp.id_to_piece(i) for i in (PAD_ID, UNK_ID, BOS_ID, EOS_ID)] == ["<pad>", "<unk>", "<s>", "</s>"]
    assert tok.encode_src(["ein Hund ☃"])[0][-1] == UNK_ID


def test_training_is_reproducible_and_settings_matter():
    a = Tokenizer.train(TINY_SRC, TINY_TGT, vocab_size=60)
    b = Tokenizer.train(TINY_SRC, TINY_TGT, vocab_size=60)
    c = Tokenizer.train(TINY_SRC, TINY_TGT, vocab_size=60, model_type="bpe")
    assert a.src_model == b.src_model
    assert a.sha256 != c.sha256


def test_separate_models_have_their_own_vocabularies():
    tok = Tokenizer.train(TINY_SRC, TINY_TGT, vocab_size=50, joint=False)
    assert not tok.joint and tok.src_model != tok.tgt_model
    # "H" and "ä" occur only in the German text, so only the source model knows them
    assert UNK_ID not in tok.encode_src(["Hund läuft"])[0] and UNK_ID in tok.encode_tgt(["Hund läuft"])[0]
    assert tok.decode_tgt(tok.encode_tgt(TINY_TGT[:4])) == TINY_TGT[:4]


def test_vocab_size_too_large_is_soft_and_too_small_is_a_clear_error():
    big = Tokenizer.train(TINY_SRC, TINY_TGT, vocab_size=8000)
    assert 4 < big.src_vocab_size < 8000
    with pytest.raises(NMTError, match="vocab_size=20 cannot hold the .* characters"):
        Tokenizer.train(TINY_SRC, TINY_TGT, vocab_size=20)
    with pytest.raises(NMTError, match="model_type must be one of"):
        Tokenizer.train(TINY_SRC, TINY_TGT, model_type="wordpiece")


@pytest.mark.parametrize("joint", [True, False])
def test_state_dict_survives_a_weights_only_checkpoint(joint):
    tok = Tokenizer.train(TINY_SRC, TINY_TGT, vocab_size=50, joint=joint)
    buf = io.BytesIO()
    torch.save({"tokenizer": tok.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["tokenizer"]
    again = Tokenizer.from_state_dict(state)
    assert again.joint == joint and again.sha256 == tok.sha256
    assert again.encode_tgt(TINY_TGT) == tok.encode_tgt(TINY_TGT)
    assert again.settings["vocab_size"] == 50

    state["src_model"] = state["src_model"][:-10] + b"0123456789"
    with pytest.raises(NMTError, match="sha256 mismatch"):
        Tokenizer.from_state_dict(state)
    with pytest.raises(NMTError, match="not a tokenizer state"):
        Tokenizer.from_state_dict({"format": "something-else"})


def test_a_large_corpus_trains_on_a_seeded_sample_and_a_small_one_on_all_of_it():
    assert sample_rows(50, limit=50) == list(range(50))
    a, b = sample_rows(50, limit=20), sample_rows(50, limit=20)
    assert a == b and len(a) == 20 and len(set(a)) == 20
    assert a == sorted(a) and 0 <= a[0] and a[-1] < 50  # corpus order
    assert sample_rows(50, limit=20, seed=2) != a
