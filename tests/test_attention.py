"""Attention scorers and the attention module: formulas, masking, temperature, hard attention, heads."""

from __future__ import annotations

import math

import pytest
import torch

from nmt.models.attention import (
    SCORERS,
    AdditiveScorer,
    Attention,
    DotScorer,
    GeneralScorer,
    ScaledDotScorer,
    make_scorer,
)

B, S, DQ, DK = 3, 6, 8, 16  # keys of a bidirectional encoder: DK = 2 DQ
LENS = torch.tensor([6, 4, 1])


pytestmark = pytest.mark.usefixtures("one_thread")


def inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    query = torch.randn(B, DQ, generator=g)
    keys = torch.randn(B, S, DK, generator=g)
    mask = torch.arange(S).unsqueeze(0) < LENS.unsqueeze(1)
    return query, keys, mask


def attention(scorer: str, heads: int = 1, **kw: object) -> Attention:
    torch.manual_seed(0)
    return Attention(make_scorer(scorer, DQ, DK, heads), heads, **kw)


@pytest.mark.parametrize("heads", [1, 2])
@pytest.mark.parametrize("scorer", SCORERS)
def test_shapes_masking_and_normalisation(scorer: str, heads: int) -> None:
    query, keys, mask = inputs()
    att = attention(scorer, heads)
    context, weights = att(query, att.prepare(keys, mask))
    assert context.shape == (B, DK)
    assert weights.shape == (B, heads, S)
    assert torch.all(weights.masked_select(~mask.unsqueeze(1)) == 0.0)  # exactly zero, not just small
    torch.testing.assert_close(weights.sum(-1), torch.ones(B, heads))
    # A padded key can hold anything: the context must not change.
    garbage = keys.masked_fill(~mask.unsqueeze(-1), 1e4)
    torch.testing.assert_close(att(query, att.prepare(garbage, mask))[0], context)


def test_single_head_context_is_convex_combination_of_encoder_states() -> None:
    query, keys, mask = inputs()
    att = attention("additive")
    context, weights = att(query, att.prepare(keys, mask))
    torch.testing.assert_close(context, torch.einsum("bs,bsk->bk", weights[:, 0], keys))


def test_scorer_formulas() -> None:
    query, keys, _ = inputs()
    torch.manual_seed(0)
    dot = DotScorer(DK, DK)
    q = query.repeat(1, 2)[:, :DK]  # a query already in the key space
    assert not list(dot.parameters())  # same sizes: the classic parameter-free dot product
    torch.testing.assert_close(dot(q, dot.prepare_keys(keys))[:, 0], torch.einsum("bk,bsk->bs", q, keys))

    scaled = ScaledDotScorer(DK, DK, heads=2)
    expected = torch.einsum("bhd,bhsd->bhs", q.view(B, 2, -1), keys.view(B, S, 2, -1).transpose(1, 2))
    torch.testing.assert_close(scaled(q, scaled.prepare_keys(keys)), expected / math.sqrt(DK // 2))

    projected = DotScorer(DQ, DK, attention_dim=4)  # attention_dim: queries and keys projected to d_k = 4
    wq, wk = projected.query_proj.weight, projected.key_proj.weight
    torch.testing.assert_close(
        projected(query, projected.prepare_keys(keys))[:, 0], torch.einsum("bd,bsd->bs", query @ wq.T, keys @ wk.T)
    )

    general = GeneralScorer(DQ, DK)
    w = general.key_proj.weight  # (DQ, DK)
    torch.testing.assert_close(
        general(query, general.prepare_keys(keys))[:, 0], torch.einsum("bq,qk,bsk->bs", query, w, keys)
    )

    additive = AdditiveScorer(DQ, DK, attn_dim=10)
    hidden = torch.tanh((query @ additive.query_proj.weight.T).unsqueeze(1) + additive.key_proj(keys))
    torch.testing.assert_close(additive(query, additive.prepare_keys(keys))[:, 0], hidden @ additive.v[0, :, 0])


def test_keys_are_projected_once_per_batch() -> None:
    query, keys, mask = inputs()
    att = attention("additive")
    calls = []
    att.scorer.key_proj.register_forward_hook(lambda *_: calls.append(1))
    memory = att.prepare(keys, mask)
    for _ in range(5):
        att(query, memory)
    assert len(calls) == 1


@pytest.mark.parametrize("scorer", SCORERS)
def test_low_temperature_approaches_hard_argmax(scorer: str) -> None:
    query, keys, mask = inputs()
    soft, hard, cold = attention(scorer), attention(scorer, hard=True), attention(scorer, temperature=1e-3)
    hard.eval()
    memory = soft.prepare(keys, mask)
    w_soft, w_hard, w_cold = (m(query, memory)[1] for m in (soft, hard, cold))
    assert torch.all((w_hard == 0) | (w_hard == 1)) and torch.all(w_hard.sum(-1) == 1)
    assert torch.equal(w_hard.argmax(-1), w_soft.argmax(-1))
    torch.testing.assert_close(w_cold, w_hard, atol=1e-3, rtol=0)
    assert (w_soft - w_hard).abs().max() > 0.05  # at tau=1 the weights really are soft
    # Temperature above 1 flattens: higher entropy than tau=1.
    warm = attention(scorer, temperature=5.0)(query, memory)[1]

    def entropy(w: torch.Tensor) -> torch.Tensor:
        return -(w * w.clamp_min(1e-12).log()).sum(-1)

    assert torch.all(entropy(warm)[:2] > entropy(w_soft)[:2])  # row 2 has one real token: entropy 0


@pytest.mark.parametrize("scorer", SCORERS)
def test_hard_attention_straight_through_in_training(scorer: str) -> None:
    query, keys, mask = inputs()
    att = attention(scorer, hard=True, heads=2).train()
    keys.requires_grad_(True)
    context, weights = att(query, att.prepare(keys, mask))
    assert torch.all((weights == 0) | (weights == 1))  # forward: exactly one-hot
    # the context is exactly one (value-projected) encoder state per head
    values = att.prepare(keys, mask)["attn_values"]
    picked = torch.gather(values, 2, weights.argmax(-1)[..., None, None].expand(-1, -1, 1, values.size(-1)))
    torch.testing.assert_close(context, picked.reshape(B, -1))
    context.pow(2).sum().backward()
    # backward: the soft weights carry gradient to the scorer, which a plain argmax would not.
    for name, p in att.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("heads", [1, 3])
@pytest.mark.parametrize("scorer", SCORERS)
def test_gradients_reach_every_parameter(scorer: str, heads: int) -> None:
    query, keys, mask = inputs()
    torch.manual_seed(0)
    att = Attention(make_scorer(scorer, 6, 12, heads), heads, temperature=0.7)
    query, keys = query[:, :6], keys[..., :12]
    params = dict(att.named_parameters())
    if not params:
        assert scorer in ("dot", "scaled_dot")  # parameter-free: nothing to reach
        return
    context, _ = att(query, att.prepare(keys, mask))
    context.sum().backward()
    for name, p in params.items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_multi_head_heads_differ_and_average_for_plots() -> None:
    query, keys, mask = inputs()
    att = attention("general", heads=2)
    _, weights = att(query, att.prepare(keys, mask))
    assert not torch.allclose(weights[:, 0], weights[:, 1])
    torch.testing.assert_close(weights.mean(1).sum(-1), torch.ones(B))


def test_unknown_scorer() -> None:
    with pytest.raises(ValueError, match="valid: additive, dot, scaled_dot, general"):
        make_scorer("bilinear", DQ, DK)


def test_dot_scorers_are_parameter_free_and_heads_add_no_parameters() -> None:
    """Four different scorers: dot and scaled_dot have no parameters (the bidirectional keys' two halves are
    summed to the query size), general and additive do; 1 and 4 heads have the same parameter count."""
    def count(scorer: str, heads: int = 1, attention_dim: int = 0) -> int:
        return sum(p.numel() for p in Attention(make_scorer(scorer, DQ, DK, heads, attention_dim), heads).parameters())

    assert count("dot") == count("scaled_dot") == 0
    assert count("general") == DQ * DK and count("additive") > count("general")
    for scorer in SCORERS:
        assert count(scorer, heads=4) == count(scorer, heads=1), scorer
    query, keys, mask = inputs()
    att = attention("dot")
    scores = att.scorer(query, att.prepare(keys, mask)["attn_keys"])
    summed = keys[..., :DQ] + keys[..., DQ:]
    torch.testing.assert_close(scores[:, 0], torch.einsum("bsd,bd->bs", summed, query))
    with pytest.raises(ValueError, match="attention_dim"):
        make_scorer("dot", DQ, DK + 1)


def test_attention_dim_projects_queries_and_keys_to_d_k() -> None:
    att = Attention(make_scorer("scaled_dot", DQ, DK, 1, attention_dim=32), 1)
    assert att.scorer.query_proj.weight.shape == (32, DQ) and att.scorer.key_proj.weight.shape == (32, DK)
    assert att.scorer.scale.factor == pytest.approx(32 ** -0.5)
    query, keys, mask = inputs()
    context, weights = att(query, att.prepare(keys, mask))
    assert context.shape == (B, DK) and weights.shape == (B, 1, S)
    assert Attention(make_scorer("scaled_dot", DQ, DK, 4, attention_dim=32), 4).scorer.d_k == 8
