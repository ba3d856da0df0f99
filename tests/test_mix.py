"""Weighted training corpora (data.train_mix): the mixed sampler's proportions, coverage, determinism and ranks;
exact resume of a run on a mix of two real corpora; the misuse lines; no mix = the batches of one corpus."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from omegaconf import OmegaConf
from train_utils import assert_same_parameters, overrides, parameters, tiny_config, train_cli, write_corpus

from nmt.config import compose_config
from nmt.data.batching import TokenArrayChain, TokenBatchSampler, batch_stream
from nmt.data.ids import TokenArray
from nmt.data.mix import MixedBatchSampler, check_train_mix
from nmt.errors import NMTError
from nmt.training.checkpoint import load_checkpoint
from nmt.training.distributed import DistInfo
from nmt.training.run_log import RunLogger
from nmt.training.setup import prepare_data
from nmt.training.trainer import Trainer

torch.set_num_threads(1)

USER_MIX = "data.train_mix=[{name: multi30k_de_en, weight: 1}, {name: wmt_news_de_en, weight: 3}]"


def _word_lengths(folder: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """(src, tgt) whitespace words per line of <folder>/<stem>.{de,en}.gz, (n,) int64 each."""
    sides = []
    for lang in ("de", "en"):
        with gzip.open(folder / f"{stem}.{lang}.gz", "rt", encoding="utf-8") as f:
            sides.append(np.array([len(line.split()) for line in f], dtype=np.int64))
    return sides[0], sides[1]


@pytest.fixture(scope="module")
def real_lengths(real_mirror: Path) -> list[tuple[np.ndarray, np.ndarray]]:
    """The train lengths of Multi30k (29k pairs) and of WMT news (37k longer pairs), in words."""
    return [_word_lengths(real_mirror / "multi30k", "train"),
            _word_lengths(real_mirror / "wmt-newstest-de-en", "train")]


def _mix(lengths, weights=(1, 3), batch_tokens=4096, seed=1, num_replicas=1, rank=0) -> MixedBatchSampler:
    return MixedBatchSampler([s for s, _ in lengths], [t for _, t in lengths], list(weights), batch_tokens, seed,
                             num_replicas, rank, names=["multi30k", "news"])


def _corpus_of(sampler: MixedBatchSampler, batches) -> np.ndarray:
    """The corpus of each batch (every row of a batch is of one corpus)."""
    parts = [np.unique(np.searchsorted(sampler.offsets, b, side="right") - 1) for b in batches]
    assert all(len(p) == 1 for p in parts), "a batch mixes corpora"
    return np.array([p[0] for p in parts])


def test_a_mix_draws_batches_in_proportion_to_the_weights(real_lengths):
    """Weights 1:3 over Multi30k and WMT news: a quarter of the batches are Multi30k's. An epoch holds each corpus's
    quota (within one batch of weight / sum of weights); any stretch of k batches holds Multi30k's within 4 binomial
    standard deviations, 4 * sqrt(k p (1 - p)) with p = 1/4 (drawn without replacement from the epoch, the spread is
    smaller still). Deterministic for (seed, epoch); epochs and seeds differ."""
    sampler = _mix(real_lengths)
    p = 0.25
    for epoch in range(3):
        corpus = _corpus_of(sampler, sampler.batches(epoch))
        assert abs(np.mean(corpus == 0) - p) <= 1.5 / len(corpus)
        for k in (100, 400):
            for start in range(0, len(corpus) - k + 1, k):
                share = np.sum(corpus[start : start + k] == 0)
                assert abs(share - k * p) <= 4 * math.sqrt(k * p * (1 - p)), (epoch, start, k, share)
    again = _mix(real_lengths)
    assert again.batches(2) == sampler.batches(2) and again.batches(0) == sampler.batches(0)
    assert sampler.batches(0) != sampler.batches(1)
    assert _mix(real_lengths, seed=2).batches(0) != sampler.batches(0)
    skewed = _corpus_of(sampler, _mix(real_lengths, weights=(1, 9)).batches(0))
    assert abs(np.mean(skewed == 0) - 0.1) <= 1.5 / len(skewed)


def test_every_row_of_each_corpus_is_visited_as_its_own_epochs_advance(real_lengths):
    """Over four epochs of the mix Multi30k passes about 3.7 of its own epochs and WMT news about 4.1: every row of
    each corpus is seen k or k + 1 times, none lost, none favoured; the batch lists are those of its own sampler."""
    sampler = _mix(real_lengths)
    visits = np.zeros(int(sampler.offsets[-1]), dtype=np.int64)
    for epoch in range(4):
        for batch in sampler.batches(epoch):
            np.add.at(visits, batch, 1)
    for c in range(2):
        mine = visits[sampler.offsets[c] : sampler.offsets[c + 1]]
        own = 4 * sampler.quotas[c] / len(sampler.samplers[c])
        assert mine.min() >= math.floor(own) - 1 >= 2 and mine.max() - mine.min() <= 1, (c, mine.min(), mine.max())
    # Multi30k's first batches of the mix are its own sampler's epoch 0, in order
    own = TokenBatchSampler(*real_lengths[0], 4096, seed=sampler.samplers[0].seed).batches(0)
    corpus = _corpus_of(sampler, sampler.batches(0))
    first = [b for b, c in zip(sampler.batches(0), corpus, strict=True) if c == 0][:50]
    assert first == own[:50]


@pytest.mark.parametrize("replicas", [2, 3])
def test_ranks_split_a_mix_and_the_counts_cover_every_rank(real_lengths, replicas):
    single = _mix(real_lengths)
    ranks = [_mix(real_lengths, num_replicas=replicas, rank=r) for r in range(replicas)]
    full = single.batches(1)
    per_rank = [r.batches(1) for r in ranks]
    assert {len(b) for b in per_rank} == {math.ceil(len(full) / replicas)}
    for i in range(len(per_rank[0])):
        batches = [per_rank[r][i] for r in range(replicas)]
        assert batches == [full[(i * replicas + r) % len(full)] for r in range(replicas)]
        expected = np.zeros(2, dtype=np.int64)
        for batch, c in zip(batches, _corpus_of(single, batches), strict=True):
            expected[c] += len(batch)
        assert all(np.array_equal(r.pairs(1, i), expected) for r in ranks)  # every rank counts all ranks' pairs


def test_a_chain_of_token_arrays_reads_rows_of_its_parts_without_copying():
    a = TokenArray.from_lists([[5, 6], [7], [8, 9, 10]])
    b = TokenArray.from_lists([[11], [12, 13]])
    chain = TokenArrayChain([a, b])
    assert len(chain) == 5 and chain.lengths.tolist() == [2, 1, 3, 1, 2]
    assert chain[3].tolist() == [11] and chain[4].tolist() == [12, 13]
    view = chain.take(np.array([4, 3]))
    assert view.data is b.data and [r.tolist() for r in view] == [[12, 13], [11]]
    assert [r.tolist() for r in chain.take(np.array([2, 4]))] == [[8, 9, 10], [12, 13]]  # across parts: a copy


# Misuse ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, line", [
    ("[{name: nope, weight: 1}]", "unknown corpus data.train_mix[0].name='nope'; valid choices: files, hub, "
                                  "multi30k_de_en, multi30k_de_en_v4k, multi30k_hub, tiny, wmt_news_de_en"),
    ("[{name: wmt_news_de_en, weight: 0}]", "data.train_mix[0].weight must be a positive number, got 0.0"),
    ("[{name: tiny, weight: 1}, {name: wmt_news_de_en, weight: -2}]",
     "data.train_mix[1].weight must be a positive number, got -2.0"),
    ("[{name: wmt_news_de_en, weight: nan}]", "data.train_mix[0].weight must be a positive number, got nan"),
    ("[{name: wmt_news_de_en, weight: abc}]", "bad value for weight: Value 'abc' of type 'str' could not be "
                                              "converted to Float (in an entry of data.train_mix)"),
    ("wmt_news_de_en", "bad value for data.train_mix: Invalid value assigned: str is not a ListConfig, list or "
                       "tuple. (got 'wmt_news_de_en')"),
    ("[{name: tiny}, {name: tiny, weight: 2}]", "data.train_mix names tiny twice: give each corpus once, with its "
                                                "whole weight"),
    ("[{weight: 2}]", "data.train_mix[0] has no name: give {name: <corpus>, weight: <number>}; corpora: files, hub, "
                      "multi30k_de_en, multi30k_de_en_v4k, multi30k_hub, tiny, wmt_news_de_en"),
    ("[{name: tiny, wieght: 2}]", "unknown key wieght; did you mean weight? (in an entry of data.train_mix)"),
], ids=["unknown name", "zero weight", "negative weight", "nan weight", "weight not a number", "not a list",
        "a name twice", "no name", "unknown key"])  # fmt: skip
def test_a_wrong_train_mix_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, value, line):
    args = overrides(tmp_path / "corpus", tmp_path / "data", f"data.train_mix={value}", f"hydra.run.dir={tmp_path}")
    assert train_cli(monkeypatch, args) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {line}"]
    assert not (tmp_path / "data").exists()  # refused before any corpus is read


def test_the_documented_command_line_parses_into_the_mix():
    cfg = compose_config("config", [USER_MIX])
    assert OmegaConf.to_container(cfg.data.train_mix) == [{"name": "multi30k_de_en", "weight": 1.0},
                                                         {"name": "wmt_news_de_en", "weight": 3.0}]
    check_train_mix(cfg.data)
    with pytest.raises(NMTError, match="names wmt_news_de_en twice"):
        check_train_mix(compose_config("config", [USER_MIX.replace("multi30k_de_en", "wmt_news_de_en")]).data)


# Training on a mix -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def setup(real_mirror, tmp_path_factory):
    """(corpus dir, prepared-data root): 80 Multi30k pairs as the run's corpus ("tiny", which trains the 200-piece
    tokenizer), shared by the module. The first run on the mix also prepares WMT news (37k pairs) with that
    tokenizer, about 1.5 s."""
    base = tmp_path_factory.getbasetemp() / "nmt-mix"
    return write_corpus(real_mirror, base / "corpus"), base / "data"


MIX = "data.train_mix=[{name: tiny, weight: 1}, {name: wmt_news_de_en, weight: 3}]"


@pytest.mark.slow
def test_a_run_on_a_mix_resumed_equals_the_uninterrupted_run(setup, tmp_path, monkeypatch, capsys):
    """Tiny Multi30k (the run's corpus, named by its data.name) and WMT news at 1:3: the uninterrupted run (the
    command line, through Hydra) and one resumed from its step 3 reach the same weights and the same pairs per
    corpus; the log, TensorBoard, metrics.json and the run's record show the mix."""
    extra = (MIX, "train.max_steps=6", "train.accum_steps=2", "train.save_every=3", "train.keep_last=5",
             "train.log_every=3")
    straight = tmp_path / "straight"
    assert train_cli(monkeypatch, overrides(*setup, *extra, f"hydra.run.dir={straight}")) == 0
    log = (straight / "train.log").read_text()
    (mix_line,) = [line for line in log.splitlines() if "train mix:" in line]
    assert "tiny 80 pairs, weight 1, 25.0% of the batches" in mix_line and "wmt_news_de_en 36,826 pairs, weight 3" \
        in mix_line
    final = load_checkpoint(straight / "last.pt")["train_state"]["mix_pairs"]
    assert set(final) == {"tiny", "wmt_news_de_en"} and min(final.values()) > 0
    assert json.loads((straight / "metrics.json").read_text())["mix_pairs"] == final
    assert f"| pairs tiny {final['tiny']}, wmt_news_de_en {final['wmt_news_de_en']}" in log  # the step-6 line
    record = yaml.safe_load((straight / ".hydra" / "config.yaml").read_text())
    assert record["data"]["train_mix"] == [{"name": "tiny", "weight": 1.0}, {"name": "wmt_news_de_en", "weight": 3.0}]
    capsys.readouterr()

    step3 = load_checkpoint(straight / "step-3.pt")
    assert 0 < sum(step3["train_state"]["mix_pairs"].values()) < sum(final.values())
    resumed = Trainer(tiny_config(*setup, *extra, f"train.resume={straight / 'step-3.pt'}"), tmp_path / "resumed")
    resumed.fit()
    assert resumed.state.step == 6 and resumed.state.mix_pairs == final
    assert_same_parameters(parameters(resumed.model), parameters(load_checkpoint(straight / "last.pt")["model"]))
    # the counts are those of the batches the run took: the stream from the start, 2 batches per step
    sampler = resumed.data.sampler
    counted: dict[str, int] = {}
    taken = 0
    for epoch, index, _, batch in batch_stream(sampler, resumed.data.src_ids, resumed.data.tgt_ids, 0, 0):
        sampler.add_pairs(counted, epoch, index)
        rows = batch.index.numpy()
        assert np.array_equal(batch.src_lens.numpy() - 1, resumed.data.src_ids.lengths[rows])  # the mix's rows
        taken += 1
        if taken == 12:
            break
    assert counted == final
    assert scalar_tags(tmp_path / "resumed") >= {"data/pairs_tiny", "data/pairs_wmt_news_de_en"}


def scalar_tags(run_dir: Path) -> set[str]:
    """The scalar tags of the TensorBoard events in `run_dir`."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # heavy: only here

    events = EventAccumulator(str(run_dir))
    events.Reload()
    return set(events.Tags()["scalars"])


def test_without_a_mix_the_batches_are_those_of_the_corpus_alone(setup):
    cfg = tiny_config(*setup)
    assert list(cfg.data.train_mix) == []
    data = prepare_data(cfg, None, DistInfo(), RunLogger(None, enabled=False))
    assert isinstance(data.sampler, TokenBatchSampler) and isinstance(data.src_ids, TokenArray)
    own = TokenBatchSampler(data.src_ids.lengths, data.tgt_ids.lengths, cfg.train.batch_tokens, seed=cfg.train.seed)
    assert all(data.sampler.batches(e) == own.batches(e) for e in range(3))
