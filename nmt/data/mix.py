"""Several training corpora in one run, each batch drawn from one of them by weight (data.train_mix).

    corpora = prepare_mix(cfg.data, corpus, log)    # [MixCorpus(name, weight, src, tgt)], encoded by corpus's tokenizer
    sampler = MixedBatchSampler([c.src.lengths ...], [c.tgt.lengths ...], weights, batch_tokens, seed)
    src_ids = TokenArrayChain([c.src for c in corpora])   # a row of the mix = its corpus's offset + its own row

The run's corpus (`data`) trains the tokenizer and gives valid and test. Each corpus of the mix is a data config
group (configs/data/<name>.yaml, composed as `data=<name>` would be), prepared and cached on its own and encoded with
that tokenizer (nmt.data.corpus: `<name>_tok<sha>/`), under the run's data.root. The run's corpus is in the mix
only when named, by its data.name; it is then the corpus already prepared, not a second one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from nmt.config import compose_config, data_config_names
from nmt.data.batching import BatchList, TokenBatchSampler
from nmt.data.corpus import PreparedCorpus, prepare_corpus
from nmt.data.ids import TokenArray
from nmt.errors import NMTError


@dataclass
class MixCorpus:
    """One corpus of the mix: its name (a data config group), weight and train pairs' ids, row for row."""

    name: str
    weight: float
    src: TokenArray
    tgt: TokenArray


def check_train_mix(data_cfg: Any) -> None:
    """NMTError (one line) for a data.train_mix entry without a name, with an unknown corpus name (the choices:
    the data config groups and the run's own data.name), a weight that is not a positive number, or a name given
    twice. (A value that is no list of {name, weight} is refused when the config is composed.)"""
    mix = data_cfg.train_mix
    entries = OmegaConf.to_container(mix) if OmegaConf.is_config(mix) else [
        dataclasses.asdict(e) if dataclasses.is_dataclass(e) else e for e in mix]
    choices = sorted({*data_config_names(), str(data_cfg.name)})
    seen = set()
    for i, entry in enumerate(entries):
        name, weight = entry.get("name", "???"), entry.get("weight", 1.0)
        if name in (None, "???"):
            raise NMTError(f"data.train_mix[{i}] has no name: give {{name: <corpus>, weight: <number>}}; corpora: "
                           f"{', '.join(choices)}")
        if name not in choices:
            raise NMTError(f"unknown corpus data.train_mix[{i}].name={name!r}; valid choices: {', '.join(choices)}")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not (0 < weight < math.inf):
            raise NMTError(f"data.train_mix[{i}].weight must be a positive number, got {weight!r}")
        if name in seen:
            raise NMTError(f"data.train_mix names {name} twice: give each corpus once, with its whole weight")
        seen.add(name)


def mix_data_config(name: str, data_cfg: Any) -> DictConfig:
    """The data config of corpus `name` of the mix: configs/data/<name>.yaml, cached under the run's data.root and
    encoded with its num_proc; its tokenizer settings are the run's (its ids come from the run's tokenizer)."""
    node = compose_config("config", [f"data={name}"]).data
    node.root, node.num_proc, node.train_mix = data_cfg.root, data_cfg.num_proc, []
    node.tokenizer = OmegaConf.structured(data_cfg.tokenizer) if dataclasses.is_dataclass(data_cfg.tokenizer) \
        else data_cfg.tokenizer
    return node


def prepare_mix(data_cfg: Any, corpus: PreparedCorpus, log: Callable[[str], None]) -> list[MixCorpus]:
    """The corpora of data.train_mix ([] when it is empty), each prepared (or read from its cache) and encoded with
    `corpus`'s tokenizer; `corpus` (the run's, prepared from `data_cfg`) stands for its own name."""
    check_train_mix(data_cfg)
    mixed = []
    for entry in data_cfg.train_mix:
        prepared = corpus if entry.name == data_cfg.name else prepare_corpus(
            mix_data_config(entry.name, data_cfg), log=log, tokenizer=corpus.tokenizer)
        train = prepared.encoded("train")
        if not len(train):
            raise NMTError(f"corpus {entry.name} of data.train_mix has no train pairs")
        mixed.append(MixCorpus(entry.name, float(entry.weight), train.src, train.tgt))
    return mixed


def corpus_seed(seed: int, corpus: int) -> int:
    """The seed of the batch sampler of corpus number `corpus` of a mix, derived from the run's seed."""
    return int(np.random.SeedSequence([seed, corpus]).generate_state(1)[0])


@dataclass
class _Epoch:
    """Every rank's batches of one epoch of the mix (M of them): `batches` (rows of the mix) and `corpus` (M,),
    the corpus each one comes from."""

    batches: BatchList
    corpus: np.ndarray


class MixedBatchSampler:
    """Token-budget batches of several corpora, each batch from one of them by weight; deterministic for
    (seed, epoch), so the data position (epoch, index) resumes exactly.

    Corpus c (lengths `src_lengths[c]`, `tgt_lengths[c]`; rows `offsets[c]` on in the mix's rows) has its own
    `TokenBatchSampler` (seed `corpus_seed(seed, c)`) whose epochs, one after the other, are an endless stream of
    batches. With N the batches of one epoch of every corpus together and W the sum of the weights, corpus c has the
    quota q_c = max(1, round(N * weight_c / W)) and L_c batches per own epoch: epoch e of the mix takes the stretch
    [e * q_c / L_c, (e + 1) * q_c / L_c) of its stream, counted in its own epochs (so q_c batches, one more or less
    where ties in length changed an own epoch's count), and a corpus that runs out goes on with its next own epoch:
    as its epochs advance every row is visited, none twice before the others. The epoch's batches, about
    M = sum of q_c, are interleaved in an order drawn by a generator keyed on (seed, epoch): each comes from corpus
    c with probability q_c / M (about weight_c / W), and an epoch holds (about) q_c of corpus c.
    With `num_replicas` > 1 the epoch's batches are padded by wrapping around to a multiple of `num_replicas`, and
    rank r takes batches r, r + num_replicas, ... (as TokenBatchSampler does).
    """

    def __init__(self, src_lengths: Sequence[np.ndarray], tgt_lengths: Sequence[np.ndarray],
                 weights: Sequence[float], batch_tokens: int, seed: int = 1, num_replicas: int = 1,
                 rank: int = 0, names: Sequence[str] | None = None) -> None:
        if not (len(src_lengths) == len(tgt_lengths) == len(weights)) or not len(weights):
            raise ValueError(f"a mix needs lengths and a weight for each of its (>0) corpora, got "
                             f"{len(src_lengths)}, {len(tgt_lengths)}, {len(weights)}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
        self.samplers = [TokenBatchSampler(s, t, batch_tokens, shuffle=True, seed=corpus_seed(seed, c))
                         for c, (s, t) in enumerate(zip(src_lengths, tgt_lengths, strict=True))]
        self.offsets = np.concatenate([[0], np.cumsum([len(s) for s in src_lengths])]).astype(np.int64)
        self.names = list(names) if names is not None else [str(c) for c in range(len(weights))]
        self.seed, self.num_replicas, self.rank = seed, num_replicas, rank
        self.epoch = 0
        total, weight = sum(len(s) for s in self.samplers), float(sum(weights))
        self.quotas = np.array([max(1, round(total * w / weight)) for w in weights], dtype=np.int64)  # (C,)
        self._cached: dict[int, _Epoch] = {}  # the last two epochs: the loader may run ahead of the counts

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """This rank's batches per epoch (an epoch's own count may differ by a few: see the class doc)."""
        return math.ceil(int(self.quotas.sum()) / self.num_replicas)

    @property
    def shares(self) -> np.ndarray:
        """(C,) float: each corpus's share of an epoch's batches."""
        return self.quotas / self.quotas.sum()

    def own_epochs(self) -> np.ndarray:
        """(C,) float: each corpus's own epochs per epoch of the mix."""
        return self.quotas / np.array([len(s) for s in self.samplers])

    def _epoch(self, epoch: int) -> _Epoch:
        """Every rank's batches of `epoch`, in a seeded order: corpus c's share of its stream (see the class doc)."""
        if epoch in self._cached:
            return self._cached[epoch]
        rows, starts, picked, base, count = [], [], [], 0, 0
        for sampler, offset, quota in zip(self.samplers, self.offsets[:-1], self.quotas.tolist(), strict=True):
            # its stream in units of 1/L of an own epoch (L: the batches of its epoch 0): this epoch of the mix
            # takes units [epoch * quota, (epoch + 1) * quota), of own epoch k (n batches) batches unit * n // L
            units, first = len(sampler), epoch * quota
            mine = []
            for own in range(first // units, (first + quota - 1) // units + 1):
                batches = sampler.batches(own)
                n = len(batches)  # usually L: ties in length can move a cut point, and the count, by one
                lo = max(first - own * units, 0) * n // units
                hi = min(first + quota - own * units, units) * n // units
                rows.append(batches.rows + offset)
                starts.append(batches.starts[:-1] + base)
                mine.append(batches.which[lo:hi] + count)
                base, count = base + len(batches.rows), count + n
            picked.append(np.concatenate(mine))
        corpus = np.random.default_rng([self.seed, epoch, 2]).permutation(
            np.repeat(np.arange(len(picked)), [len(p) for p in picked]))
        which = np.empty(len(corpus), dtype=np.int64)
        for c, ids in enumerate(picked):
            which[corpus == c] = ids  # corpus c's batches in its stream's order
        result = _Epoch(BatchList(np.concatenate(rows), np.concatenate([*starts, [base]]), which), corpus)
        self._cached = {e: v for e, v in self._cached.items() if e == epoch - 1} | {epoch: result}
        return result

    def batches(self, epoch: int | None = None) -> BatchList:
        """This rank's batches for `epoch` (default: the one set by `set_epoch`), in iteration order."""
        full = self._epoch(self.epoch if epoch is None else epoch).batches
        if self.num_replicas == 1:
            return full
        total = len(full.which)
        positions = np.arange(math.ceil(total / self.num_replicas) * self.num_replicas) % total  # wrapped around
        return BatchList(full.rows, full.starts, full.which[positions[self.rank :: self.num_replicas]])

    def pairs(self, epoch: int, index: int) -> np.ndarray:
        """(C,) int64: the pairs of each corpus in batch `index` of `epoch` of every rank together."""
        full = self._epoch(epoch)
        positions = (index * self.num_replicas + np.arange(self.num_replicas)) % len(full.corpus)  # rank r's: r
        which = full.batches.which[positions]
        sizes = full.batches.starts[which + 1] - full.batches.starts[which]
        return np.bincount(full.corpus[positions], weights=sizes, minlength=len(self.samplers)).astype(np.int64)

    def add_pairs(self, counts: dict[str, int], epoch: int, index: int) -> None:
        """Add the pairs of batch `index` of `epoch` (every rank's) to `counts`, by corpus name."""
        for name, n in zip(self.names, self.pairs(epoch, index), strict=True):
            counts[name] = counts.get(name, 0) + int(n)

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches(self.epoch))
