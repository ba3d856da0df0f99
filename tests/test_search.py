"""Greedy and batched beam search on every architecture, and `translate`."""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from nmt.config import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    DecodeConfig,
    FixedContextConfig,
    RNNAttentionConfig,
    check_values,
    model_config_class,
)
from nmt.decoding.search import (
    CUDA_BATCH_FACTOR,
    beam_search,
    decode_batch_size,
    greedy_search,
    length_penalty,
    translate,
)
from nmt.errors import NMTError
from nmt.models import MODELS, build_model
from nmt.models.base import Seq2Seq
from nmt.runtime import decode_precision
from nmt.training.checkpoint import load_model

torch.set_num_threads(1)

VOCAB = 24
ARCHS = sorted(MODELS)  # every registered architecture


class EosBiased(Seq2Seq):
    """Wraps a freshly initialised model so that it behaves like a trained one: sharper logits (varied
    outputs) and an EOS logit that grows with the step, so sentences end at varied lengths. Records the rows
    of every decode step, to show that finished sentences leave the batch."""

    def __init__(self, inner: Seq2Seq, sharpen: float = 6.0, eos_slope: float = 1.0, eos_offset: float = 4.0):
        super().__init__()
        self.inner, self.sharpen, self.eos_slope, self.eos_offset = inner, sharpen, eos_slope, eos_offset
        self.step_rows: list[int] = []
        self.max_positions = getattr(inner, "max_positions", None)

    def _adjust(self, logits: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """logits (..., V), steps broadcastable to logits[..., 0]."""
        eos = F.one_hot(torch.tensor(EOS_ID), logits.size(-1)).to(logits)
        return logits * self.sharpen + (self.eos_slope * steps - self.eos_offset).unsqueeze(-1).to(logits) * eos

    def encode(self, src, src_lens):
        return self.inner.encode(src, src_lens)

    def init_state(self, enc):
        inner = self.inner.init_state(enc)
        rows = enc["src_mask"].size(0)
        return {"inner": inner, "t": torch.zeros(rows, dtype=torch.long, device=enc["src_mask"].device)}

    def decode_step(self, tokens, state, enc, need_attention=False):
        self.step_rows.append(tokens.size(0))
        logits, inner, attn = self.inner.decode_step(tokens, state["inner"], enc, need_attention)
        return self._adjust(logits, state["t"]), {"inner": inner, "t": state["t"] + 1}, attn

    def forward(self, src, src_lens, tgt_in):
        return self._adjust(self.inner(src, src_lens, tgt_in), torch.arange(tgt_in.size(1)))

    def forward_attention(self, src, src_lens, tgt_in):
        return self.inner.forward_attention(src, src_lens, tgt_in)


def make_model(arch: str, seed: int = 0, **kwargs: float) -> EosBiased:
    torch.manual_seed(seed)
    own = {"rnn_attention": dict(emb_dim=16, heads=2), "rnn_fixed": dict(emb_dim=16),
           "transformer": dict(heads=2, ff_dim=32, max_positions=64)}[arch]
    cfg = model_config_class(arch)(hidden=16, dropout=0.0, tie_embeddings=False, **own)
    inner = build_model(cfg, VOCAB, VOCAB)
    # float64 so that batch composition cannot flip a near-tie between hypotheses.
    return EosBiased(inner, **kwargs).double().eval()


def make_batch(lengths: list[int], seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random sources of the given lengths (EOS included), PAD-padded: (B, S) and (B,)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lengths), max(lengths)), PAD_ID, dtype=torch.long)
    for i, n in enumerate(lengths):
        src[i, : n - 1] = torch.randint(4, VOCAB, (n - 1,), generator=g)
        src[i, n - 1] = EOS_ID
    return src, torch.tensor(lengths)


LENGTHS = [9, 3, 12, 5, 7, 2]


def teacher_forced(model: Seq2Seq, src: torch.Tensor, src_lens: torch.Tensor, hyp: list[int]) -> Any:
    """Summed log-probability of hyp + EOS, and the attention (len + 1, S) of a teacher-forced pass."""
    tgt_in = torch.tensor([[BOS_ID] + hyp])
    tgt_out = torch.tensor(hyp + [EOS_ID])
    logits = model(src, src_lens, tgt_in)[0]
    logp = F.log_softmax(logits, -1).gather(1, tgt_out.unsqueeze(1)).sum().item()
    attention = model.forward_attention(src, src_lens, tgt_in)
    return logp, None if attention is None else attention[0]


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_of_one_equals_greedy(arch):
    model = make_model(arch)
    src, lens = make_batch(LENGTHS)
    greedy = greedy_search(model, src, lens, max_len_a=1.0, max_len_b=4)
    beam = beam_search(model, src, lens, beam=1, alpha=0.0, max_len_a=1.0, max_len_b=4)
    assert beam.tokens == greedy.tokens
    assert len({len(t[0]) for t in greedy.tokens}) > 1, "want sentences of several output lengths"
    for g, b in zip(greedy.scores, beam.scores, strict=True):
        assert b[0] == pytest.approx(g[0], abs=1e-9)  # alpha 0: no length penalty


@pytest.mark.parametrize("arch", ARCHS)
def test_batched_beam_equals_beam_one_sentence_at_a_time(arch):
    model = make_model(arch)
    src, lens = make_batch(LENGTHS)
    batched = beam_search(model, src, lens, beam=4, alpha=0.6, nbest=3, with_attention=True)
    for i, n in enumerate(LENGTHS):
        single = beam_search(
            model, src[i : i + 1, :n], lens[i : i + 1], beam=4, alpha=0.6, nbest=3, with_attention=True
        )
        assert single.tokens[0] == batched.tokens[i]
        assert single.scores[0] == pytest.approx(batched.scores[i], abs=1e-9)
        if batched.attention is not None:
            torch.testing.assert_close(single.attention[0], batched.attention[i])


@pytest.mark.parametrize("arch", ARCHS)
def test_beam_scores_and_attention_follow_the_backpointers(arch):
    """The best hypothesis's score and attention equal a teacher-forced pass over that hypothesis."""
    model = make_model(arch, eos_slope=0.7)
    src, lens = make_batch(LENGTHS, seed=2)
    result = beam_search(model, src, lens, beam=5, alpha=0.8, nbest=5, with_attention=True)
    with torch.no_grad():
        for i, n in enumerate(LENGTHS):
            best = result.tokens[i][0]
            logp, attention = teacher_forced(model, src[i : i + 1, :n], lens[i : i + 1], best)
            assert result.scores[i][0] == pytest.approx(logp / length_penalty(len(best) + 1, 0.8), abs=1e-9)
            assert result.scores[i] == sorted(result.scores[i], reverse=True)
            assert len({tuple(h) for h in result.tokens[i]}) == len(result.tokens[i])  # distinct n-best
            if arch == "rnn_fixed":
                assert result.attention is None
            else:
                assert result.attention[i].shape == (len(best) + 1, n)
                torch.testing.assert_close(result.attention[i], attention.float())


def test_greedy_attention_matches_teacher_forcing():
    model = make_model("rnn_attention")
    src, lens = make_batch(LENGTHS)
    result = greedy_search(model, src, lens, with_attention=True)
    with torch.no_grad():
        for i, n in enumerate(LENGTHS):
            logp, attention = teacher_forced(model, src[i : i + 1, :n], lens[i : i + 1], result.tokens[i][0])
            assert result.scores[i][0] == pytest.approx(logp, abs=1e-9)
            torch.testing.assert_close(result.attention[i], attention.float())
            torch.testing.assert_close(result.attention[i].sum(-1), torch.ones(attention.size(0)))


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_length_limit_and_finished_sentences_leave_the_batch(search):
    model = make_model("rnn_attention", eos_slope=0.0, eos_offset=50.0)  # never ends on its own
    src, lens = make_batch(LENGTHS)
    if search == "greedy":
        result = greedy_search(model, src, lens, max_len_a=0.5, max_len_b=1)
        k = 1
    else:
        result = beam_search(model, src, lens, beam=3, max_len_a=0.5, max_len_b=1)
        k = 3
    for hyps, n in zip(result.tokens, LENGTHS, strict=True):
        assert all(len(h) <= int(0.5 * n + 1) for h in hyps)
        assert all(EOS_ID not in h and BOS_ID not in h for h in hyps)
    rows = model.step_rows
    assert rows[0] == len(LENGTHS) * k
    assert rows == sorted(rows, reverse=True) and rows[-1] < rows[0]
    assert len(rows) == int(0.5 * max(LENGTHS) + 1) + 1  # the longest limit, plus its EOS step


@pytest.mark.parametrize("arch", ARCHS)
def test_power_length_norm_divides_by_length_with_eos_to_the_alpha(arch):
    """length_norm=power: score = log-probability / (tokens + EOS) ** alpha, CTranslate2's and fairseq's form."""
    model = make_model(arch, eos_slope=0.7)
    src, lens = make_batch(LENGTHS, seed=2)
    result = beam_search(model, src, lens, beam=4, alpha=0.8, nbest=4, length_norm="power")
    with torch.no_grad():
        for i, n in enumerate(LENGTHS):
            for hyp, score in zip(result.tokens[i], result.scores[i], strict=True):
                logp, _ = teacher_forced(model, src[i : i + 1, :n], lens[i : i + 1], hyp)
                assert score == pytest.approx(logp / (len(hyp) + 1) ** 0.8, abs=1e-9)
            assert result.scores[i] == sorted(result.scores[i], reverse=True)
    assert length_penalty(4, 1.0, "power") == 4.0 and length_penalty(4, 1.0, "gnmt") == 1.5
    assert length_penalty(7, 0.0, "power") == length_penalty(7, 0.0, "gnmt") == 1.0
    gnmt = beam_search(model, src, lens, beam=4, alpha=0.0)  # no normalisation: the two forms agree
    assert gnmt.tokens == beam_search(model, src, lens, beam=4, alpha=0.0, length_norm="power").tokens


def test_unknown_length_norm_is_one_line_naming_the_choices():
    model = make_model("rnn_fixed")
    src, lens = make_batch([3])
    with pytest.raises(NMTError, match="length_norm must be one of gnmt, power, got 'ganmt'"):
        beam_search(model, src, lens, beam=2, length_norm="ganmt")
    with pytest.raises(NMTError, match=r"unknown decode.length_norm='pow'; valid values: gnmt, power"):
        check_values({"decode": {"length_norm": "pow"}})
    assert DecodeConfig().length_norm == "gnmt"  # the default until it is chosen on valid


def test_bad_beam_settings_are_user_errors():
    model = make_model("rnn_fixed")
    src, lens = make_batch([3])
    with pytest.raises(NMTError, match="nbest"):
        beam_search(model, src, lens, beam=2, nbest=3)
    with pytest.raises(NMTError, match="beam"):
        beam_search(model, src, lens, beam=0)


class CharTokenizer:
    """A stand-in tokenizer: one id per lowercase letter (ids 4..29), words joined by spaces."""

    src_vocab_size = tgt_vocab_size = 30

    def encode_src(self, texts):
        return [[4 + ord(c) - ord("a") for c in t.replace(" ", "")] for t in texts]

    def decode_tgt(self, ids):
        return [" ".join(chr(ord("a") + i - 4) for i in seq if i >= 4) for seq in ids]


@pytest.mark.parametrize("beam", [1, 3])
def test_translate_restores_order_keeps_empty_lines_and_model_mode(beam):
    torch.manual_seed(0)
    cfg = RNNAttentionConfig(emb_dim=16, hidden=16, dropout=0.1)
    model = EosBiased(build_model(cfg, 30, 30))
    model.train()
    sentences = ["abc", "", "hello world", "  ", "x", "the quick brown fox", "ab"]
    small = translate(
        model, CharTokenizer(), sentences, DecodeConfig(beam=beam, nbest=beam, batch_size=2), "cpu", with_attention=True
    )
    assert model.training  # restored after decoding
    one_batch = translate(model, CharTokenizer(), sentences, DecodeConfig(beam=beam, batch_size=64), "cpu")
    assert small.hypotheses == one_batch.hypotheses  # batching and sorting do not change the output
    assert small.hypotheses[1] == "" and small.hypotheses[3] == ""
    assert len(small.hypotheses) == len(sentences) and all(len(n) == beam for n in small.nbest[:1])
    assert small.num_tokens == sum(len(x) for x in small.ids) > 0
    assert small.seconds > 0
    # Each output belongs to its own input: decoding a sentence alone gives the same text.
    alone = translate(model, CharTokenizer(), [sentences[5]], DecodeConfig(beam=beam), "cpu")
    assert alone.hypotheses[0] == small.hypotheses[5]
    src_len = len(sentences[5].replace(" ", "")) + 1
    assert small.attention[5].shape == (len(small.ids[5]) + 1, src_len)


def test_decode_precision_defaults_to_fp32_and_changes_nothing_off_cuda(capsys):
    assert DecodeConfig().precision == "fp32"
    cpu = torch.device("cpu")
    assert isinstance(decode_precision("fp32", cpu), contextlib.nullcontext)
    context = decode_precision("bf16", cpu)
    assert capsys.readouterr().err == "warning: decode.precision=bf16 applies on CUDA only; decoding on cpu in fp32\n"
    with context:
        assert not torch.is_autocast_enabled("cpu") and not torch.backends.cuda.matmul.allow_tf32
    with pytest.raises(NMTError, match=r"unknown decode.precision='fp16'; valid values: fp32, tf32, bf16"):
        decode_precision("fp16", cpu)
    with pytest.raises(NMTError, match=r"unknown decode.precision='fp16'; valid values: fp32, tf32, bf16"):
        check_values({"decode": {"precision": "fp16"}})
    torch.manual_seed(0)
    model = build_model(RNNAttentionConfig(emb_dim=16, hidden=16), 30, 30)
    sentences = ["abc", "hello"]
    tf32 = translate(model, CharTokenizer(), sentences, DecodeConfig(beam=2, precision="tf32"), "cpu")
    assert capsys.readouterr().err.startswith("warning: decode.precision=tf32 applies on CUDA only")
    assert tf32.hypotheses == translate(model, CharTokenizer(), sentences, DecodeConfig(beam=2), "cpu").hypotheses


def test_translate_truncates_over_long_inputs():
    torch.manual_seed(0)
    model = build_model(FixedContextConfig(emb_dim=8, hidden=8, dropout=0.0), 30, 30)
    out = translate(model, CharTokenizer(), ["abcdefghij", "abc"], DecodeConfig(beam=2), "cpu", max_input_tokens=5)
    assert out.truncated == [0]
    assert len(out.hypotheses) == 2
    assert out.attention is None


@pytest.mark.parametrize("precision, allowed", [("fp32", False), ("tf32", True)])
def test_fp32_and_tf32_decoding_set_tf32_on_cuda_and_restore_it(precision, allowed):
    """Training turns TF32 on for the whole process; decode.precision=fp32 must turn it off while decoding (and
    tf32 on), and leave the flags as they were. The flags exist without a GPU, so this runs on the CPU too."""
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    for start in (True, False):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = start
        with decode_precision(precision, torch.device("cuda")):
            assert torch.backends.cuda.matmul.allow_tf32 is allowed and torch.backends.cudnn.allow_tf32 is allowed
        assert torch.backends.cuda.matmul.allow_tf32 is start and torch.backends.cudnn.allow_tf32 is start
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@contextlib.contextmanager
def count_host_syncs() -> Iterator[collections.Counter]:
    """Count, by kind, the calls that make the host wait for the device on CUDA: a copy of a tensor's values to
    the host (.item, .tolist, .cpu, .numpy, bool/int/float/index of a tensor) or an op whose output shape depends
    on the values (nonzero, masked_select, indexing with or assigning through a boolean mask). On the CPU they
    wait for nothing, but the count is the one a GPU would see. (`.to("cpu")` is not counted: on the CPU it cannot
    be told apart from a copy to the device.)"""
    counts: collections.Counter = collections.Counter()

    def has_mask(index: Any) -> bool:
        return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool
                   for i in (index if isinstance(index, tuple) else (index,)))

    def counting(name: str, original: Any, when: Any = None) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if when is None or when(*args):
                counts[name] += 1
            return original(*args, **kwargs)

        return call

    tensor = torch.Tensor
    names = ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero",
             "masked_select")
    patches = {(tensor, name): counting(name, getattr(tensor, name)) for name in names}
    patches[(tensor, "__getitem__")] = counting("mask index", tensor.__getitem__, lambda t, index: has_mask(index))
    patches[(tensor, "__setitem__")] = counting("mask assign", tensor.__setitem__,
                                                lambda t, index, value: has_mask(index))
    patches |= {(torch, name): counting(name, getattr(torch, name)) for name in ("nonzero", "masked_select")}
    saved = {key: getattr(*key) for key in patches}
    try:
        for (owner, name), patch in patches.items():
            setattr(owner, name, patch)
        yield counts
    finally:
        for (owner, name), original in saved.items():
            setattr(owner, name, original)


def test_the_sync_counter_sees_every_kind_of_host_copy():
    x = torch.arange(6.0)
    with count_host_syncs() as counts:
        x.sum().item(), x.tolist(), x.cpu(), x.numpy(), bool(x[0]), int(x[1]), float(x[2]), list(range(10))[x[3].long()]
        x.nonzero(), torch.nonzero(x), x.masked_select(x > 1), torch.masked_select(x, x > 1)
        x[x > 2]
        x[x > 4] = 0.0
        x[1:3], x[torch.tensor([0, 2])]  # slices and integer-tensor indices need no sync
    assert sum(counts.values()) == 14, counts
    assert x.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 0.0]  # everything patched is restored
    assert torch.Tensor.tolist is not None and "call" not in repr(torch.Tensor.tolist)


@pytest.mark.parametrize("search", ["beam", "greedy"])
@pytest.mark.parametrize("arch", ["rnn_attention", "transformer"])
def test_search_waits_for_the_device_at_most_twice_a_step(arch, search):
    """On CUDA each copy to the host stalls the GPU queue: beam 5 (and greedy) may copy at most twice per decoder
    step on average, counted over the whole search (encoder and result copies included)."""
    model = make_model(arch, eos_slope=0.3).float()
    src, lens = make_batch(LENGTHS)
    with torch.inference_mode(), count_host_syncs() as counts:
        if search == "beam":
            beam_search(model, src, lens, beam=5)
        else:
            greedy_search(model, src, lens)
    steps = len(model.step_rows)
    assert steps >= 10 and model.step_rows[-1] < model.step_rows[0]  # sentences left the batch on the way
    assert sum(counts.values()) <= 2 * steps, (steps, counts)


def test_attention_weights_are_computed_only_when_asked(monkeypatch):
    for arch in ("rnn_attention", "transformer"):
        model = make_model(arch)
        asked = []
        inner_step = model.inner.decode_step

        def step(tokens, state, enc, need_attention=False, inner_step=inner_step, asked=asked):
            asked.append(need_attention)
            return inner_step(tokens, state, enc, need_attention)

        monkeypatch.setattr(model.inner, "decode_step", step)
        src, lens = make_batch(LENGTHS)
        plain = beam_search(model, src, lens, beam=3, nbest=3)
        assert plain.attention is None and not any(asked)
        asked.clear()
        weighted = beam_search(model, src, lens, beam=3, nbest=3, with_attention=True)
        assert weighted.attention is not None and all(asked)
        assert weighted.tokens == plain.tokens
        for got, want in zip(weighted.scores, plain.scores, strict=True):
            assert got == pytest.approx(want, abs=1e-9)
        enc = model.inner.encode(src, lens)
        tokens = torch.full((len(LENGTHS),), BOS_ID)
        logits, _, none = inner_step(tokens, model.inner.init_state(enc), enc)
        weighted_logits, _, attn = inner_step(tokens, model.inner.init_state(enc), enc, need_attention=True)
        assert none is None and attn.shape == (len(LENGTHS), max(LENGTHS))
        torch.testing.assert_close(logits, weighted_logits)


STORED = json.loads((Path(__file__).parent / "fixtures" / "search_outputs.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", STORED["cases"], ids=lambda c: f"{c['arch']}-{c['seed']}-{c['search']}")
def test_search_outputs_equal_the_stored_ones(case):
    """Tokens and scores of tiny float64 models as the search wrote them before its host syncs were cut (the
    Transformer's scores to rounding: it now runs the fused attention kernel where no weights are asked for)."""
    model = make_model(case["arch"], seed=case["seed"], eos_slope=case["eos_slope"])
    src, lens = make_batch(STORED["lengths"], seed=case["seed"] + 1)
    if case["search"] == "beam":
        result = beam_search(model, src, lens, beam=5, alpha=1.0, nbest=5)
    elif case["search"] == "greedy":
        result = greedy_search(model, src, lens)
    else:
        result = beam_search(model, src, lens, beam=4, alpha=1.0, max_len_a=0.5, max_len_b=1)
    assert result.tokens == case["tokens"]
    for got, want in zip(result.scores, case["scores"], strict=True):
        assert got == pytest.approx(want, abs=1e-9)


def test_translations_of_a_trained_checkpoint_equal_the_stored_ones():
    loaded = load_model(Path(__file__).parent / "fixtures" / "golden_rnn_attention.pt", "cpu")
    for stored in STORED["golden"]:
        cfg = DecodeConfig(beam=stored["beam"], alpha=1.0, nbest=stored["beam"])  # the stored outputs' alpha
        out = translate(loaded.model, loaded.tokenizer, STORED["golden_sentences"], cfg, "cpu")
        assert out.nbest == stored["nbest"]
        for got, want in zip(out.scores, stored["scores"], strict=True):
            assert got == pytest.approx(want, abs=1e-4)


def test_the_default_decode_batch_is_raised_on_cuda_only():
    default = DecodeConfig().batch_size
    assert decode_batch_size(default, torch.device("cuda")) == default * CUDA_BATCH_FACTOR == 256
    assert decode_batch_size(default, "cuda:1") == default * CUDA_BATCH_FACTOR
    for device in ("cpu", "mps"):
        assert decode_batch_size(default, device) == default
    assert decode_batch_size(32, "cuda") == 32 and decode_batch_size(1000, "cuda") == 1000  # set by hand: kept
