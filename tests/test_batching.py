"""Batch tensors and the token-budget sampler: budgets, coverage, determinism, distributed ranks."""

from __future__ import annotations

import random

import pytest
import torch

from nmt.config import BOS_ID, EOS_ID, PAD_ID
from nmt.data.batching import Batch, TokenBatchSampler, batch_stream, collate, encode_split


def random_lengths(n: int = 600, seed: int = 0) -> tuple[list[int], list[int]]:
    rng = random.Random(seed)
    src = [rng.randint(0, 40) for _ in range(n)]
    tgt = [max(0, s + rng.randint(-5, 5)) for s in src]
    return src, tgt


def fake_ids(lengths: list[int], offset: int = 10) -> list[list[int]]:
    return [[offset + (i + j) % 50 for j in range(n)] for i, n in enumerate(lengths)]


def test_collate_adds_eos_bos_and_pads():
    batch = collate([[5, 6, 7], []], [[8], [9, 10, 11, 12]], [4, 9])
    assert batch.src.tolist() == [[5, 6, 7, EOS_ID], [EOS_ID, PAD_ID, PAD_ID, PAD_ID]]
    assert batch.src_lens.tolist() == [4, 1]
    assert batch.tgt_in.tolist() == [[BOS_ID, 8, PAD_ID, PAD_ID, PAD_ID], [BOS_ID, 9, 10, 11, 12]]
    assert batch.tgt_out.tolist() == [[8, EOS_ID, PAD_ID, PAD_ID, PAD_ID], [9, 10, 11, 12, EOS_ID]]
    assert batch.index.tolist() == [4, 9]
    assert all(t.dtype == torch.long for t in (batch.src, batch.src_lens, batch.tgt_in, batch.tgt_out, batch.index))
    assert len(batch) == 2
    assert batch.num_tokens == 5 + 7 and batch.num_tgt_tokens == 7
    assert batch.padding_fraction == pytest.approx(1 - 12 / (8 + 10))


def test_batch_to_moves_every_tensor_but_the_source_lengths():
    batch = collate([[5]], [[6]], [0]).to("meta")
    assert isinstance(batch, Batch)
    assert all(t.device.type == "meta" for t in (batch.src, batch.tgt_in, batch.tgt_out, batch.index))
    assert batch.src_lens.device.type == "cpu"  # the RNN encoder packs with them there: no copy back per forward


def check_epoch(sampler: TokenBatchSampler, src: list[int], tgt: list[int], epoch: int) -> list[list[int]]:
    batches = sampler.batches(epoch)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(src))), "every example exactly once per epoch"
    for b in batches:
        tensors = collate(fake_ids([src[i] for i in b]), fake_ids([tgt[i] for i in b]), b)
        cost = tensors.src.numel() + tensors.tgt_out.numel()
        assert len(b) == 1 or cost <= sampler.batch_tokens, f"batch of {len(b)} costs {cost}"
    assert len(batches) == len(sampler)
    return batches


def test_budget_coverage_and_determinism():
    src, tgt = random_lengths()
    sampler = TokenBatchSampler(src, tgt, batch_tokens=400, seed=3)
    epoch0 = check_epoch(sampler, src, tgt, 0)
    epoch1 = check_epoch(sampler, src, tgt, 1)
    assert epoch0 != epoch1
    assert TokenBatchSampler(src, tgt, batch_tokens=400, seed=3).batches(0) == epoch0
    assert TokenBatchSampler(src, tgt, batch_tokens=400, seed=4).batches(0) != epoch0
    sampler.set_epoch(1)
    assert list(sampler) == epoch1
    # length bucketing keeps padding low: much less than a random grouping of the same sizes would give
    pad = sum(max(src[i] for i in b) * len(b) - sum(src[i] for i in b) for b in epoch0)
    assert pad < 0.1 * sum(src)


def test_over_long_example_gets_its_own_batch():
    src, tgt = [3, 3, 3, 200, 3], [3, 3, 3, 180, 3]
    batches = TokenBatchSampler(src, tgt, batch_tokens=50, seed=1).batches(0)
    assert [3] in batches
    assert sorted(i for b in batches for i in b) == [0, 1, 2, 3, 4]
    assert all(len(b) * 8 <= 50 for b in batches if 3 not in b)


def test_unshuffled_batches_are_length_sorted_and_fixed():
    src, tgt = random_lengths(200)
    sampler = TokenBatchSampler(src, tgt, batch_tokens=300, shuffle=False)
    batches = sampler.batches(0)
    assert batches == sampler.batches(5)
    order = [i for b in batches for i in b]
    assert [(src[i], tgt[i]) for i in order] == sorted(zip(src, tgt, strict=True))


@pytest.mark.parametrize("replicas", [2, 3])
def test_ranks_partition_the_batches(replicas):
    src, tgt = random_lengths(500)
    full = TokenBatchSampler(src, tgt, batch_tokens=350, seed=7).batches(2)
    ranks = [
        TokenBatchSampler(src, tgt, batch_tokens=350, seed=7, num_replicas=replicas, rank=r).batches(2)
        for r in range(replicas)
    ]
    assert len({len(r) for r in ranks}) == 1, "same number of batches on every rank"
    assert all(len(r) == TokenBatchSampler(src, tgt, 350, num_replicas=replicas).__len__() for r in ranks)
    for r, batches in enumerate(ranks):
        assert batches[: len(full[r::replicas])] == full[r::replicas]
    seen = [i for batches in ranks for b in batches for i in b]
    assert set(seen) == set(range(len(src)))
    assert len(seen) - len(src) <= max(len(b) for b in full) * (replicas - 1), "only wrap-around padding repeats"
    with pytest.raises(ValueError, match="rank 3"):
        TokenBatchSampler(src, tgt, 350, num_replicas=3, rank=3)


def test_works_as_a_dataloader_batch_sampler():
    src, tgt = random_lengths(100)
    src_ids, tgt_ids = fake_ids(src), fake_ids(tgt, offset=20)
    sampler = TokenBatchSampler(src, tgt, batch_tokens=256, seed=1)
    loader = torch.utils.data.DataLoader(
        list(range(len(src))),
        batch_sampler=sampler,
        collate_fn=lambda rows: collate([src_ids[i] for i in rows], [tgt_ids[i] for i in rows], rows),
    )
    batches = list(loader)
    assert len(batches) == len(sampler)
    assert sorted(i for b in batches for i in b.index.tolist()) == list(range(100))
    for b in batches:
        i = b.index[0].item()
        assert b.tgt_out[0, : tgt[i]].tolist() == tgt_ids[i]


def test_batch_stream_with_a_worker_yields_the_same_batches():
    """Two epochs from the middle of the first: a worker process (started once for the whole stream) builds the
    same batches, in the same order, as the main process does."""
    src, tgt = random_lengths(200)
    src_ids, tgt_ids = fake_ids(src), fake_ids(tgt, offset=20)
    sampler = TokenBatchSampler(src, tgt, batch_tokens=256, seed=1)
    streams = [list(batch_stream(sampler, src_ids, tgt_ids, 0, 3, max_epochs=2, num_workers=workers))
               for workers in (0, 1)]
    n = len(sampler)
    assert [key[:3] for key in streams[0]] == [(0, i, n) for i in range(3, n)] + [(1, i, n) for i in range(n)]
    for (*key0, b0), (*key1, b1) in zip(*streams, strict=True):
        assert key0 == key1
        assert all(torch.equal(x, y) for x, y in zip(b0._tensors(), b1._tensors(), strict=True))
    assert [b.index.tolist() for *_, b in streams[0][-n:]] == sampler.batches(1)


def test_encode_split_uses_the_tokenizer_row_for_row():
    class CharTokenizer:
        def encode_src(self, texts):
            return [[ord(c) for c in t] for t in texts]

        def encode_tgt(self, texts):
            return [[len(w) for w in t.split()] for t in texts]

    src_ids, tgt_ids = encode_split({"src": ["ab", "c"], "tgt": ["a bb", ""]}, CharTokenizer())
    assert src_ids == [[97, 98], [99]] and tgt_ids == [[1, 2], []]
