"""Batch tensors and the token-budget sampler: budgets, coverage, determinism, distributed ranks."""

from __future__ import annotations

import gzip
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from nmt.config import BOS_ID, EOS_ID, PAD_ID, RNNAttentionConfig
from nmt.data.batching import Batch, TokenBatchSampler, batch_stream, collate
from nmt.data.ids import TokenArray
from nmt.models import build_model
from nmt.training.step import sequence_loss


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
    longer = [max(src[i], tgt[i]) for i in order]
    assert longer == sorted(longer)
    # Along each shell of one longer length L, from (L, 1) over (L, L) to (1, L) when L is even (the target
    # never shorter, the source never longer than its predecessor), backwards when L is odd; L counts the EOS.
    for a, b in zip(order[:-1], order[1:], strict=True):
        if max(src[a], tgt[a]) == max(src[b], tgt[b]):
            forward = (max(src[a], tgt[a]) + 1) % 2 == 0
            assert (tgt[b] >= tgt[a] and src[b] <= src[a]) if forward else (tgt[b] <= tgt[a] and src[b] >= src[a])


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
    assert sum(len(r.rows) for r in ranks) == len(seen), "a rank holds the rows of its own batches, no others"
    with pytest.raises(ValueError, match="rank 3"):
        TokenBatchSampler(src, tgt, 350, num_replicas=3, rank=3)


def anon_mb() -> float:
    """This process's anonymous (not file-backed) resident memory, in MB."""
    rollup = Path("/proc/self/smaps_rollup").read_text()
    return int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Anonymous:"))) / 1024


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux's /proc/<pid>/smaps_rollup")
def test_a_sampler_holds_its_epoch_order_and_nothing_of_the_sort():
    n = 2_000_000
    rng = np.random.default_rng(0)
    src = rng.integers(1, 60, n).astype(np.uint16)
    tgt = np.clip(src.astype(np.int64) + rng.integers(-5, 6, n), 1, None).astype(np.uint16)
    before = anon_mb()
    sampler = TokenBatchSampler(src, tgt, batch_tokens=4096, seed=1)
    sampler.batches(1)  # a second epoch: sorted, and the first one's list freed
    held = anon_mb() - before
    order = 8 * n / 2**20  # the epoch's rows, int64: the one array of the corpus's size a sampler keeps
    assert sampler.src_lengths is src, "the lengths are used as given, not copied"
    assert held < order + 12, f"{held:.0f} MB held for a {order:.0f} MB order: freed sort arrays stay resident"


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
    # the sampler's batches, each with its rows by descending source length (ties in the sampler's order)
    assert [b.index.tolist() for *_, b in streams[0][-n:]] == [sorted(rows, key=lambda r: -src[r])
                                                              for rows in sampler.batches(1)]


def reference_batches(src: list[int], tgt: list[int], budget: int, seed: int, epoch: int, shuffle: bool = True,
                      replicas: int = 1, rank: int = 0) -> list[list[int]]:
    """The sampler as a per-pair Python loop (as it was before it cut batches from arrays, with the order of
    today: pair by pair along the shells of the length grid), the specification the array version must
    reproduce batch for batch."""
    src_l, tgt_l = np.asarray(src, dtype=np.int64) + 1, np.asarray(tgt, dtype=np.int64) + 1
    rows = np.random.default_rng([seed, epoch]).permutation(len(src_l)) if shuffle else np.arange(len(src_l))

    def shell_position(i: int) -> tuple[int, int]:
        s, t = int(src_l[i]), int(tgt_l[i])
        longer = max(s, t)
        along = t if s >= t else 2 * longer - s  # (L, 1) ... (L, L) ... (1, L)
        return longer, along if longer % 2 == 0 else -along

    order = np.asarray(sorted(rows.tolist(), key=shell_position), dtype=np.int64)  # sorted() is stable
    batches: list[list[int]] = []
    current: list[int] = []
    max_src = max_tgt = 0
    for i, s, t in zip(order.tolist(), src_l[order].tolist(), tgt_l[order].tolist(), strict=True):
        new_src, new_tgt = max(max_src, s), max(max_tgt, t)
        if current and (len(current) + 1) * (new_src + new_tgt) > budget:
            batches.append(current)
            current, max_src, max_tgt = [i], s, t
        else:
            current.append(i)
            max_src, max_tgt = new_src, new_tgt
    if current:
        batches.append(current)
    if shuffle:
        perm = np.random.default_rng([seed, epoch, 1]).permutation(len(batches))
        batches = [batches[i] for i in perm]
    if replicas > 1 and batches:
        total = math.ceil(len(batches) / replicas) * replicas
        batches = [batches[i % len(batches)] for i in range(total)][rank::replicas]
    return batches


def real_lengths(mirror: Path) -> tuple[list[int], list[int]]:
    """Words per line of real sentence pairs: 2,000 Multi30k captions and 1,000 (longer) WMT news sentences."""
    lengths = []
    for folder, n in (("multi30k", 2000), ("wmt-newstest-de-en", 1000)):
        sides = []
        for lang in ("de", "en"):
            path = mirror / folder / f"train.{lang}.gz"
            if not path.is_file():
                pytest.skip(f"no {path}")
            with gzip.open(path, "rt", encoding="utf-8") as f:
                sides.append([len(line.split()) for _, line in zip(range(n), f, strict=False)])
        lengths.append(sides)
    return lengths[0][0] + lengths[1][0], lengths[0][1] + lengths[1][1]


@pytest.mark.parametrize("budget", [40, 300, 4096])
def test_batches_are_those_of_the_per_pair_loop_on_a_real_corpus(mirror, budget):
    src, tgt = real_lengths(mirror)
    for seed, epoch in ((1, 0), (1, 3), (7, 1)):
        assert TokenBatchSampler(src, tgt, budget, seed=seed).batches(epoch) == reference_batches(
            src, tgt, budget, seed, epoch)
    for rank in range(3):
        sampler = TokenBatchSampler(src, tgt, budget, seed=2, num_replicas=3, rank=rank)
        assert sampler.batches(5) == reference_batches(src, tgt, budget, 2, 5, replicas=3, rank=rank)
    in_order = TokenBatchSampler(src, tgt, budget, shuffle=False)
    assert list(in_order) == reference_batches(src, tgt, budget, 1, 0, shuffle=False)
    assert len(in_order) == len(reference_batches(src, tgt, budget, 1, 0, shuffle=False))


def test_batches_are_those_of_the_per_pair_loop_on_random_lengths():
    src, tgt = random_lengths(2000, seed=5)
    for budget in (2, 25, 333):
        assert TokenBatchSampler(src, tgt, budget, seed=3).batches(2) == reference_batches(src, tgt, budget, 3, 2)


def _reference_pad(rows, before=None, after=None):
    """The row-at-a-time padding collate used before it was vectorised, kept as the reference."""
    arrays = [np.asarray(r, dtype=np.int64) for r in rows]
    lead, extra = int(before is not None), int(before is not None) + int(after is not None)
    out = np.full((len(arrays), max(len(a) for a in arrays) + extra), PAD_ID, dtype=np.int64)
    for i, a in enumerate(arrays):
        if before is not None:
            out[i, 0] = before
        out[i, lead : lead + len(a)] = a
        if after is not None:
            out[i, lead + len(a)] = after
    return out


def _reference_collate(src_ids, tgt_ids, index):
    return Batch(
        src=torch.from_numpy(_reference_pad(src_ids, after=EOS_ID)),
        src_lens=torch.tensor([len(s) + 1 for s in src_ids], dtype=torch.long),
        tgt_in=torch.from_numpy(_reference_pad(tgt_ids, before=BOS_ID)),
        tgt_out=torch.from_numpy(_reference_pad(tgt_ids, after=EOS_ID)),
        index=torch.as_tensor(np.asarray(index, dtype=np.int64)),
    )


def test_vectorised_collate_equals_the_row_at_a_time_one_and_trains_the_same():
    """Lists, arrays and a TokenArray view (empty sentences included) give the reference's tensors bit for bit,
    with the same dtypes, and so the same loss and gradients in a training step."""
    rng = np.random.default_rng(0)
    lengths = [0, *rng.integers(0, 30, 299).tolist()]
    src_lists = [rng.integers(4, 50, n).tolist() for n in lengths]
    tgt_lists = [rng.integers(4, 50, n).tolist() for n in rng.permutation(lengths)]
    src_arr, tgt_arr = TokenArray.from_lists(src_lists), TokenArray.from_lists(tgt_lists)
    sampler = TokenBatchSampler([len(s) for s in src_lists], [len(t) for t in tgt_lists], 1024, seed=3)
    torch.manual_seed(0)
    model = build_model(RNNAttentionConfig(emb_dim=8, hidden=16), 50, 50)
    for rows in sampler.batches(0)[:4]:
        expected = _reference_collate([src_lists[r] for r in rows], [tgt_lists[r] for r in rows], rows)
        for got in (collate([src_lists[r] for r in rows], [tgt_lists[r] for r in rows], rows),
                    collate([src_arr[r] for r in rows], [tgt_arr[r] for r in rows], rows),
                    collate(src_arr.take(rows), tgt_arr.take(rows), rows)):
            for x, y in zip(expected._tensors(), got._tensors(), strict=True):
                assert x.dtype == y.dtype and torch.equal(x, y)
            grads = []
            for b in (expected, got):
                model.zero_grad()
                torch.manual_seed(1)  # the same dropout masks
                loss = sequence_loss(model(b.src, b.src_lens, b.tgt_in), b.tgt_out, 0.1)
                loss.backward()
                grads.append([loss.detach(), *(p.grad.clone() for p in model.parameters())])
            assert all(torch.equal(a, b) for a, b in zip(*grads, strict=True))


def test_padding_stays_low_in_large_batches_of_real_lengths(mirror):
    """Multi30k's train lengths in 32k-token batches (about a thousand pairs each): sorted by the longer side and
    along its shell, 7.8% of the tokens are padding (2.1% in 4k-token batches), against 21% when sorted by source
    length (the targets of one source length then spread over the whole batch)."""
    from nmt.config import compose_config
    from nmt.data.corpus import prepare_corpus

    if not (mirror / "multi30k").is_dir():
        pytest.skip("no Multi30k mirror (NMT_DATA_MIRROR)")
    cfg = compose_config("config", [])
    train = prepare_corpus(cfg.data, log=lambda _: None).ids.splits["train"]
    src, tgt = np.asarray(train.src.lengths), np.asarray(train.tgt.lengths)

    def padding(batches: list[list[int]]) -> float:
        real = sum(int(src[b].sum() + tgt[b].sum()) + 2 * len(b) for b in map(np.asarray, batches))
        padded = sum(len(b) * (int(src[b].max() + tgt[b].max()) + 2) for b in map(np.asarray, batches))
        return 1 - real / padded

    assert padding(TokenBatchSampler(src, tgt, batch_tokens=32768).batches(0)) <= 0.08
    assert padding(TokenBatchSampler(src, tgt, batch_tokens=4096).batches(0)) <= 0.025
