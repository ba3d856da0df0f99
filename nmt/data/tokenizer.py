"""SentencePiece subword tokenizer: one joint model for both languages, or one model per language.

Ids follow nmt.config: pad=0, unk=1, bos=2, eos=3 (written into the SentencePiece model itself), so a model's
embedding rows, the batching code and the decoder all agree without a lookup table.
Encoding returns bare ids (no BOS/EOS); nmt.data.batching adds them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import sentencepiece as spm
from omegaconf import DictConfig, OmegaConf

from nmt.config import BOS_ID, CHOICES, EOS_ID, PAD_ID, UNK_ID, DataConfig
from nmt.errors import NMTError

if TYPE_CHECKING:  # nmt.runtime imports torch, which preparing a corpus does not need
    from nmt.runtime import StateDict

MODEL_TYPES = CHOICES["data.tokenizer.model_type"]
# The trainer splits its work across threads and the result depends on the split, so the count is fixed
# (not os.cpu_count()) to get the same model on every machine.
TRAIN_THREADS = 4
TRAIN_SEED = 1
# Enough sentences for a good vocabulary; bounds the time on large corpora (sampled with the seed above).
INPUT_SENTENCE_SIZE = 1_000_000
# Train pairs a tokenizer learns from at most: a seeded sample of a larger corpus, so that the trainer's memory
# (it indexes every character it is given) does not grow with the corpus. A corpus this small or smaller is
# used whole and in order, so its tokenizer is the one it always had.
SAMPLE_PAIRS = 100_000
STATE_FORMAT = "nmt-tokenizer"


# What the corpus's own tokenizer is trained from besides its settings: the fields that choose and clean the train
# text (not the test sets, the concatenation, or where the files go) and, for a hub corpus, the dataset. Paths of
# data.source=files are left out (the same file may be named relative or absolute): a changed file is refused by
# its tokenizer once the corpus is prepared.
TRAIN_TEXT_FIELDS = ("source", "src_lang", "tgt_lang", "encoding_errors", "max_words", "max_ratio")


def tokenizer_inputs(cfg: DataConfig | DictConfig) -> dict[str, Any]:
    """The config fields (dotted under data.) the corpus's own tokenizer follows from, given the input files: two
    configs that agree on them train the same tokenizer, so a resume can be refused from the config alone."""
    data = dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else OmegaConf.to_container(cfg, resolve=True)
    inputs = {f"tokenizer.{k}": v for k, v in data["tokenizer"].items()}
    inputs.update({k: data[k] for k in TRAIN_TEXT_FIELDS})
    if data["source"] == "hub":
        inputs.update({k: data[k] for k in ("hub_name", "hub_config", "hub_revision")})
        inputs["hub_splits.train"] = data["hub_splits"].get("train")
    return inputs


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def train_sentencepiece(texts: Iterable[str], model_type: str, vocab_size: int, character_coverage: float) -> bytes:
    """Train one SentencePiece model on `texts` in memory; returns the serialized model.

    `hard_vocab_limit=False` lets a tiny corpus yield fewer pieces than asked instead of failing; a vocabulary
    too small to hold every character still fails, with a message saying what to change.
    """
    if model_type not in MODEL_TYPES:
        raise NMTError(f"data.tokenizer.model_type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    if vocab_size <= 4:
        raise NMTError(f"data.tokenizer.vocab_size must be above 4 (the special pieces), got {vocab_size}")
    sentences = [t for t in texts if t]
    if not sentences:
        raise NMTError("cannot train a tokenizer: the training text is empty")
    writer = io.BytesIO()
    spm.set_random_generator_seed(TRAIN_SEED)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(sentences),
            model_writer=writer,
            model_type=model_type,
            vocab_size=vocab_size,
            character_coverage=character_coverage,
            hard_vocab_limit=False,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            num_threads=TRAIN_THREADS,
            input_sentence_size=INPUT_SENTENCE_SIZE,
            shuffle_input_sentence=True,
            minloglevel=2,
        )
    except RuntimeError as e:
        msg = str(e)
        small = re.search(r"smaller than required_chars\. (\d+) vs (\d+)", msg)
        if small:
            raise NMTError(
                f"data.tokenizer.vocab_size={vocab_size} cannot hold the {small.group(2)} characters and special "
                "pieces of the training text; raise data.tokenizer.vocab_size or lower "
                "data.tokenizer.character_coverage"
            ) from None
        raise NMTError(f"SentencePiece training failed: {msg.splitlines()[-1] if msg else e}") from None
    return writer.getvalue()


def sample_rows(n: int, limit: int = SAMPLE_PAIRS, seed: int = TRAIN_SEED) -> list[int]:
    """Which of `n` train pairs SentencePiece learns from: at most `limit` rows, drawn without replacement with
    `seed`, in corpus order; all of them when there are no more than `limit`."""
    if n <= limit:
        return list(range(n))
    return sorted(random.Random(seed).sample(range(n), limit))


def _processor(model: bytes) -> spm.SentencePieceProcessor:
    sp = spm.SentencePieceProcessor()
    sp.LoadFromSerializedProto(model)
    ids = (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id())
    if ids != (PAD_ID, UNK_ID, BOS_ID, EOS_ID):
        raise NMTError(f"SentencePiece model has special ids pad/unk/bos/eos={ids}, expected 0/1/2/3")
    return sp


class Tokenizer:
    """Source and target SentencePiece models (the same object when joint)."""

    def __init__(self, src_model: bytes, tgt_model: bytes | None = None, settings: StateDict | None = None):
        self.src_model = src_model
        self.tgt_model = src_model if tgt_model is None else tgt_model
        self.joint = tgt_model is None or tgt_model == src_model
        self.settings = dict(settings or {})
        self.src_sp = _processor(self.src_model)
        self.tgt_sp = self.src_sp if self.joint else _processor(self.tgt_model)

    # ---------------------------------------------------------------------------------------------- build

    @classmethod
    def train(
        cls,
        src_texts: list[str],
        tgt_texts: list[str],
        model_type: str = "unigram",
        vocab_size: int = 8000,
        character_coverage: float = 1.0,
        joint: bool = True,
    ) -> Tokenizer:
        """Train on the given (train split) text: one model on src+tgt when `joint`, else one per side."""
        settings = {
            "model_type": model_type,
            "vocab_size": vocab_size,
            "character_coverage": character_coverage,
            "joint": joint,
        }
        if joint:
            model = train_sentencepiece(list(src_texts) + list(tgt_texts), model_type, vocab_size, character_coverage)
            return cls(model, None, settings)
        src = train_sentencepiece(src_texts, model_type, vocab_size, character_coverage)
        tgt = train_sentencepiece(tgt_texts, model_type, vocab_size, character_coverage)
        return cls(src, tgt, settings)

    def state_dict(self) -> StateDict:
        """Plain types only (bytes, str, dicts), so a checkpoint loads with `torch.load(weights_only=True)`."""
        return {
            "format": STATE_FORMAT,
            "version": 1,
            "joint": self.joint,
            "src_model": self.src_model,
            "tgt_model": None if self.joint else self.tgt_model,
            "src_sha256": _sha256(self.src_model),
            "tgt_sha256": _sha256(self.tgt_model),
            "settings": dict(self.settings),
        }

    @classmethod
    def from_state_dict(cls, state: StateDict) -> Tokenizer:
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
            raise NMTError("not a tokenizer state (expected format 'nmt-tokenizer')")
        src, tgt = state["src_model"], state.get("tgt_model")
        if _sha256(src) != state["src_sha256"] or (tgt is not None and _sha256(tgt) != state["tgt_sha256"]):
            raise NMTError("tokenizer state is corrupted (sha256 mismatch)")
        return cls(src, tgt, state.get("settings"))

    @property
    def sha256(self) -> str:
        """One hash of the model(s): equal hashes mean identical ids for identical text."""
        return _sha256(self.src_model) if self.joint else _sha256(self.src_model + self.tgt_model)

    # ----------------------------------------------------------------------------------------- vocabulary

    @property
    def src_vocab_size(self) -> int:
        return self.src_sp.get_piece_size()

    @property
    def tgt_vocab_size(self) -> int:
        return self.tgt_sp.get_piece_size()

    # ------------------------------------------------------------------------------------ encode / decode

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        """Source sentences -> piece ids, without BOS/EOS."""
        return self.src_sp.encode(list(texts), out_type=int)

    def encode_tgt(self, texts: list[str]) -> list[list[int]]:
        """Target sentences -> piece ids, without BOS/EOS."""
        return self.tgt_sp.encode(list(texts), out_type=int)

    def decode_src(self, ids: list[list[int]]) -> list[str]:
        return _decode(self.src_sp, ids)

    def decode_tgt(self, ids: list[list[int]]) -> list[str]:
        """Piece ids (e.g. model output) -> detokenized text; stops at the first EOS, drops PAD and BOS."""
        return _decode(self.tgt_sp, ids)

    def src_pieces(self, text: str) -> list[str]:
        """The pieces of one source sentence (plot labels), e.g. ['▁Ein', '▁Hund']."""
        return self.src_sp.encode(text, out_type=str)

    def tgt_pieces(self, text: str) -> list[str]:
        return self.tgt_sp.encode(text, out_type=str)

    def __repr__(self) -> str:
        kind = "joint" if self.joint else "separate"
        return (
            f"Tokenizer({kind} {self.settings.get('model_type', '?')}, src_vocab={self.src_vocab_size}, "
            f"tgt_vocab={self.tgt_vocab_size})"
        )


def _decode(sp: spm.SentencePieceProcessor, ids: list[list[int]]) -> list[str]:
    if len(ids) == 0:  # sp.decode([]) would return one string, not an empty list
        return []
    cleaned = []
    for seq in ids:
        seq = [int(i) for i in seq]
        if EOS_ID in seq:
            seq = seq[: seq.index(EOS_ID)]
        cleaned.append([i for i in seq if i != PAD_ID and i != BOS_ID])
    return sp.decode(cleaned)
