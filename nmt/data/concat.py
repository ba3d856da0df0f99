"""Length control by concatenation: k consecutive sentence pairs joined into one example.

Natural long sentences are rare in Multi30k, so the bottleneck experiment makes long inputs by joining
k consecutive pairs (sources with a space, targets likewise; Varis & Bojar 2021, Kondo et al. 2021 do the same):
level k of a split holds examples of k sentences, about k times as long, from the same domain.

- train and valid (`mixture`): the original pairs, plus for each k = 2..max_k a seeded share of one grouping
  of the split into non-overlapping runs of k consecutive pairs (starting at a seeded offset < k). With
  share s every level k >= 2 carries s times as many sentences as the original pairs: the model sees every
  length it is tested on, and s sets how much of the training goes to long inputs (s = 1/(max_k - 1): as many
  sentences in long examples as in single ones). The valid mixture is shuffled (seeded), so a truncated
  validation (train.eval_max_sentences) still sees every level. With data.concat.valid_mixture=false valid
  keeps its original pairs only, and validation measures one-sentence quality.
- test (`test_levels`): one split per k = 2..max_k, `<name>_k<k>`, of non-overlapping groups from offset 0;
  level 1 is the test set itself. Group g of level k holds sentences g*k .. g*k+k-1 (`level_groups`), so every
  level is built from the same sentences and a bootstrap can resample groups across levels. A level with fewer
  than `min_test_examples` groups adds the groupings at offsets 1..k-1 too (and says so in its stats).
"""

from __future__ import annotations

import random
from typing import Any

Pairs = tuple[list[str], list[str]]


def level_groups(n: int, k: int, offsets: list[int]) -> list[list[int]]:
    """Sentence indices of each example of a level: for each offset, the runs [o, o+k), [o+k, o+2k), ... that
    fit in n sentences."""
    return [list(range(start, start + k)) for o in offsets for start in range(o, n - k + 1, k)]


def join(src: list[str], tgt: list[str], groups: list[list[int]]) -> Pairs:
    """One example per group: its sources joined with a space, its targets likewise."""
    return ([" ".join(src[i].strip() for i in g) for g in groups],
            [" ".join(tgt[i].strip() for i in g) for g in groups])


def mixture(src: list[str], tgt: list[str], max_k: int, seed: int, share: float = 1.0, shuffle: bool = False
            ) -> Pairs:
    """The original pairs plus `share` of one grouping per k = 2..max_k (offsets and kept groups drawn from
    `seed`, kept in corpus order); see the module doc."""
    rng = random.Random(seed)
    out_src, out_tgt = list(src), list(tgt)
    for k in range(2, max_k + 1):
        groups = level_groups(len(src), k, [rng.randrange(k)])
        keep = sorted(rng.sample(range(len(groups)), round(share * len(groups))))
        s, t = join(src, tgt, [groups[i] for i in keep])
        out_src += s
        out_tgt += t
    if shuffle:
        order = list(range(len(out_src)))
        random.Random(seed).shuffle(order)
        out_src, out_tgt = [out_src[i] for i in order], [out_tgt[i] for i in order]
    return out_src, out_tgt


def test_levels(name: str, src: list[str], tgt: list[str], max_k: int, min_examples: int
                ) -> tuple[dict[str, Pairs], dict[str, dict[str, Any]]]:
    """Splits `<name>_k<k>` for k = 2..max_k and, per level (k = 1 included), {"k", "source", "examples",
    "offsets"} so that `level_groups(len(src), k, offsets)` gives each example's sentences."""
    splits: dict[str, Pairs] = {}
    info = {name: {"k": 1, "source": name, "examples": len(src), "offsets": [0]}}
    for k in range(2, max_k + 1):
        offsets = [0]
        if len(level_groups(len(src), k, offsets)) < min_examples:
            offsets = list(range(k))
        groups = level_groups(len(src), k, offsets)
        level = f"{name}_k{k}"
        splits[level] = join(src, tgt, groups)
        info[level] = {"k": k, "source": name, "examples": len(groups), "offsets": offsets}
    return splits, info
