"""The three models against the contract in nmt/models/base.py, on tiny sizes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError

from nmt.config import (
    BOS_ID,
    EOS_ID,
    MODEL_CONFIGS,
    PAD_ID,
    FixedContextConfig,
    ModelConfig,
    RNNAttentionConfig,
    TransformerConfig,
    compose_config,
    model_config_class,
)
from nmt.errors import NMTError
from nmt.models import (
    MODELS,
    AttentionSeq2Seq,
    FixedContextSeq2Seq,
    Seq2Seq,
    Transformer,
    build_model,
    fit_config_to_weights,
    position_limit,
    select_batch,
)
from nmt.models.attention import SCORERS
from nmt.models.base import lengths_to_mask, register_model
from nmt.models.rnn import FixedContextDecoder, RNNEncoder
from nmt.models.rnn import tie as tie_tables
from nmt.training.step import sequence_loss

V = 20
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model"

TINY = {
    "fixed": dict(arch="rnn_fixed"),
    "fixed_untied": dict(arch="rnn_fixed", tie_embeddings=False),
    "fixed_init_only_lstm": dict(arch="rnn_fixed", context_mode="init_only", rnn_type="lstm", dec_layers=2),
    "fixed_summary": dict(arch="rnn_fixed", summary_dim=12),
    "fixed_summary_init_only_lstm": dict(arch="rnn_fixed", summary_dim=48, context_mode="init_only", rnn_type="lstm"),
    **{f"attention_{s}": dict(arch="rnn_attention", scorer=s) for s in SCORERS},
    "attention_heads_hard": dict(arch="rnn_attention", scorer="general", heads=2, hard=True),
    "attention_feeding_lstm": dict(
        arch="rnn_attention", rnn_type="lstm", input_feeding=True, dec_layers=2, enc_layers=2, heads=2, temperature=0.5
    ),
    "attention_unidirectional": dict(arch="rnn_attention", bidirectional=False, scorer="scaled_dot"),
    "attention_untied": dict(arch="rnn_attention", tie_embeddings=False),
    "transformer": dict(arch="transformer", heads=4, ff_dim=32, enc_layers=2, dec_layers=2),
    "transformer_learned_untied": dict(
        arch="transformer", heads=2, ff_dim=32, positions="learned", tie_embeddings=False
    ),
}


pytestmark = pytest.mark.usefixtures("one_thread")


def config(arch: str = "rnn_attention", **options: object) -> ModelConfig:
    """The config dataclass of model.arch=`arch` with `options`."""
    return model_config_class(arch)(**options)


def tiny_options(name: str, **kw: object) -> dict:
    """TINY[name] at tiny sizes (embeddings of 8 for the RNNs), with `kw` over it."""
    opts = {"hidden": 16, "dropout": 0.1, **TINY[name], **kw}
    return {"emb_dim": 8, **opts} if opts["arch"] != "transformer" else opts


def tiny(name: str, src_vocab: int = V, tgt_vocab: int = V, **kw: object):
    torch.manual_seed(0)
    return build_model(config(**tiny_options(name, **kw)), src_vocab, tgt_vocab)


def batch(seed: int = 0, lens: tuple[int, ...] = (7, 4, 2), tgt_len: int = 5):
    """src (B, S) with EOS and PAD like the real batches, src_lens (B,), tgt_in (B, T)."""
    g = torch.Generator().manual_seed(seed)
    src = torch.full((len(lens), max(lens)), PAD_ID)
    for i, n in enumerate(lens):
        src[i, :n] = torch.randint(4, V, (n,), generator=g)
        src[i, n - 1] = EOS_ID
    tgt_in = torch.randint(4, V, (len(lens), tgt_len), generator=g)
    tgt_in[:, 0] = BOS_ID
    return src, torch.tensor(lens), tgt_in


def run_steps(model, enc, tgt_in):
    """Feed tgt_in through decode_step: logits (B, T, V), attention (B, T, S) or None."""
    state = model.init_state(enc)
    logits, attn = [], []
    for t in range(tgt_in.size(1)):
        step_logits, state, a = model.decode_step(tgt_in[:, t], state, enc, need_attention=True)
        logits.append(step_logits)
        attn.append(a)
    return torch.stack(logits, 1), (None if attn[0] is None else torch.stack(attn, 1))


@pytest.mark.parametrize("name", TINY)
def test_shapes_and_step_loop_equals_forward(name: str) -> None:
    model = tiny(name).eval()
    src, lens, tgt_in = batch()
    with torch.no_grad():
        logits = model(src, lens, tgt_in)
        step_logits, step_attn = run_steps(model, model.encode(src, lens), tgt_in)
        attn = model.forward_attention(src, lens, tgt_in)
    assert logits.shape == (3, 5, V)
    torch.testing.assert_close(step_logits, logits, atol=1e-5, rtol=1e-5)
    if TINY[name]["arch"] == "rnn_fixed":
        assert attn is None and step_attn is None
        return
    assert attn.shape == (3, 5, 7)
    torch.testing.assert_close(step_attn, attn, atol=1e-5, rtol=1e-5)
    pad = torch.arange(7) >= lens.unsqueeze(1)
    assert torch.all(attn.masked_select(pad.unsqueeze(1)) == 0.0)
    torch.testing.assert_close(attn.sum(-1), torch.ones(3, 5))


@pytest.mark.parametrize("name", TINY)
def test_gradients_reach_every_parameter(name: str) -> None:
    model = tiny(name).train()
    src, lens, tgt_in = batch()
    model(src, lens, tgt_in).logsumexp(-1).sum().backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


@pytest.mark.parametrize("name", TINY)
def test_select_batch_reorders_encoder_output_and_state(name: str) -> None:
    model = tiny(name).eval()
    src, lens, tgt_in = batch()
    order = torch.tensor([2, 0, 0, 1])  # beam search repeats and reorders rows
    with torch.no_grad():
        enc = model.encode(src, lens)
        state = model.init_state(enc)
        _, state, _ = model.decode_step(tgt_in[:, 0], state, enc)
        full, _, _ = model.decode_step(tgt_in[:, 1], state, enc)
        enc, state = select_batch(enc, order), select_batch(state, order)
        picked, _, _ = model.decode_step(tgt_in[order, 1], state, enc)
    torch.testing.assert_close(picked, full[order])


@pytest.mark.parametrize("name", ["fixed", "fixed_init_only_lstm", "fixed_summary", "fixed_summary_init_only_lstm"])
def test_fixed_context_decoder_cannot_see_encoder_states(name: str) -> None:
    model = tiny(name).eval()
    src, lens, tgt_in = batch()
    with torch.no_grad():
        enc = model.encode(src, lens)
        logits, _ = run_steps(model, enc, tgt_in)
        # Everything but the summary replaced: noise states, shuffled states, a mask that hides all.
        for states in (torch.randn_like(enc["states"]), enc["states"].flip(1)):
            tampered = {"summary": enc["summary"], "states": states, "src_mask": torch.zeros_like(enc["src_mask"])}
            torch.testing.assert_close(run_steps(model, tampered, tgt_in)[0], logits, atol=0, rtol=0)
        # Teacher forcing too: an encoder whose per-position states are noise changes nothing.
        assert torch.allclose(with_noise_states(model, src, lens, tgt_in), model(src, lens, tgt_in))


def test_attention_model_does_read_encoder_states() -> None:
    # The contrast that shows the check above can fail.
    model = tiny("attention_additive").eval()
    src, lens, tgt_in = batch()
    with torch.no_grad():
        assert not torch.allclose(with_noise_states(model, src, lens, tgt_in), model(src, lens, tgt_in))


def with_noise_states(model, src, lens, tgt_in):
    """Teacher-forced logits with the encoder's per-position states replaced by noise, summary kept."""
    real = model.encoder.forward
    model.encoder.forward = lambda s, n: (torch.randn_like(real(s, n)[0]), real(s, n)[1])
    try:
        return model(src, lens, tgt_in)
    finally:
        del model.encoder.forward


@pytest.mark.parametrize("name, size", [("fixed_summary", 12), ("fixed_summary_init_only_lstm", 48)])
def test_a_projected_summary_is_all_the_decoder_gets(name: str, size: int) -> None:
    """summary_dim = D: the decoder's one view of the source is c = tanh(W h) (B, D), h the encoder summary."""
    model = tiny(name).eval()
    src, lens, tgt_in = batch()
    seen = []
    real = model.decoder.init_state
    model.decoder.init_state = lambda c: seen.append(c) or real(c)
    with torch.no_grad():
        logits = model(src, lens, tgt_in)
        enc = model.encode(src, lens)
        h = model.encoder(src, lens)[1]
    (c,) = seen
    assert h.shape == (3, 32) and c.shape == enc["summary"].shape == (3, size)
    torch.testing.assert_close(c, torch.tanh(model.summary_proj(h)), atol=0, rtol=0)
    torch.testing.assert_close(enc["summary"], c, atol=0, rtol=0)
    assert logits.shape == (3, 5, V)
    assert model.decoder.bridge.proj.in_features == size


@pytest.mark.parametrize("base, size", [("fixed", 12), ("fixed", 64), ("fixed_init_only_lstm", 48)])
def test_a_projected_summary_adds_only_the_projection_and_the_decoder_inputs(base: str, size: int) -> None:
    """Against the same model without projection (c = h, C = 32): W (D, C) and its bias are new, and the layers
    that read c (the bridge; with every_step also the RNN input and the readout) change only their input width
    from C to D. Encoder, decoder hidden sizes and everything else keep their shapes."""
    plain, projected = tiny(base), tiny(base, summary_dim=size)
    c = plain.encoder.out_dim
    before = {k: p.shape for k, p in plain.named_parameters()}
    after = {k: p.shape for k, p in projected.named_parameters()}
    assert after.keys() - before.keys() == {"summary_proj.weight", "summary_proj.bias"}
    assert before.keys() <= after.keys()
    assert after["summary_proj.weight"] == (size, c)
    reads_c = {"decoder.bridge.proj.weight"}
    if TINY[base].get("context_mode", "every_step") == "every_step":
        reads_c |= {"decoder.rnn.weight_ih_l0", "decoder.readout.weight"}
    changed = {k for k in before if after[k] != before[k]}
    assert changed == reads_c
    for k in changed:
        assert after[k][0] == before[k][0] and after[k][1] - before[k][1] == size - c, k
    grown = size * c + size + sum(before[k][0] * (size - c) for k in changed)
    assert projected.num_parameters() == plain.num_parameters() + grown
    assert sum(p.numel() for p in projected.encoder.parameters()) == sum(p.numel() for p in plain.encoder.parameters())


@pytest.mark.parametrize("name", ["fixed", "fixed_init_only_lstm"])
def test_summary_dim_zero_builds_the_model_as_before(name: str) -> None:
    """summary_dim = 0 (the default): a seeded model draws exactly the parameters the encoder and decoder drew
    before the option existed, and its outputs are those of the decoder fed the encoder summary itself."""
    model = tiny(name, summary_dim=0).eval()
    cfg = config(**tiny_options(name))
    torch.manual_seed(0)
    encoder = RNNEncoder(V, 8, 16, cfg.enc_layers, 0.1, cfg.rnn_type, cfg.bidirectional)
    decoder = FixedContextDecoder(V, 8, 16, cfg.dec_layers, 0.1, cfg.rnn_type, encoder.out_dim,
                                  every_step=cfg.context_mode == "every_step")
    tie_tables(encoder, decoder, share_src=True)
    old = {f"encoder.{k}": v for k, v in encoder.state_dict().items()}
    old |= {f"decoder.{k}": v for k, v in decoder.state_dict().items()}
    new = model.state_dict()
    assert model.summary_proj is None and list(new) == list(old)
    for k, v in old.items():
        assert torch.equal(new[k], v), k
    src, lens, tgt_in = batch()
    with torch.no_grad():
        expected = decoder.eval()(tgt_in, decoder.init_state(encoder.eval()(src, lens)[1]))
        torch.testing.assert_close(model(src, lens, tgt_in), expected, atol=0, rtol=0)
        torch.testing.assert_close(model.encode(src, lens)["summary"], encoder(src, lens)[1], atol=0, rtol=0)


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_encoder_packing_never_leaks_padding(rnn_type: str) -> None:
    torch.manual_seed(0)
    encoder = RNNEncoder(V, 8, 16, layers=2, rnn_type=rnn_type).eval()
    src, lens, _ = batch(lens=(7, 4, 2))
    with torch.no_grad():
        states, summary = encoder(src, lens)
        # Unpadded input: packing changes nothing against a plain run of the same RNN.
        full = src[:1]
        out, final = encoder.rnn(encoder.embed(full))
        h = final[0] if rnn_type == "lstm" else final
        torch.testing.assert_close(encoder(full, lens[:1])[0], out)
        torch.testing.assert_close(summary[:1], torch.cat([h[-2], h[-1]], dim=-1))
        # Padded rows equal their sentence encoded alone, and padding positions hold exact zeros.
        for i, n in enumerate(lens.tolist()):
            alone_states, alone_summary = encoder(src[i : i + 1, :n], lens[i : i + 1])
            torch.testing.assert_close(states[i : i + 1, :n], alone_states)
            torch.testing.assert_close(summary[i : i + 1], alone_summary)
            assert torch.all(states[i, n:] == 0)
    assert states.shape == (3, 7, 32) and summary.shape == (3, 32)


def test_models_take_source_lengths_on_the_cpu_beside_a_source_elsewhere() -> None:
    """The lengths a Batch keeps on the CPU: the masks come out on the source's device (meta stands in for a GPU;
    the RNNs cannot run on meta, autocast does not know it), and the logits equal those with lengths counted from
    the source's padding."""
    src, src_lens, tgt_in = batch()
    mask = lengths_to_mask(src_lens, src.size(1), torch.device("meta"))
    assert mask.device.type == "meta" and mask.shape == src.shape
    model = tiny("transformer").to("meta")
    assert model(src.to("meta"), src_lens, tgt_in.to("meta")).shape == (3, 5, V)
    for name in ("fixed", "attention_additive", "transformer"):
        model = tiny(name).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(src, src_lens, tgt_in), model(src, (src != PAD_ID).sum(1), tgt_in))


@pytest.mark.parametrize("name", ["fixed", "attention_feeding_lstm", "transformer"])
def test_padding_does_not_change_a_sentence(name: str) -> None:
    model = tiny(name).eval()
    src, lens, tgt_in = batch()
    with torch.no_grad():
        logits = model(src, lens, tgt_in)
        alone = model(src[2:, :2], lens[2:], tgt_in[2:])
    torch.testing.assert_close(logits[2:], alone, atol=1e-5, rtol=1e-5)


def test_transformer_cross_attention_and_tying() -> None:
    model = tiny("transformer").eval()
    src, lens, tgt_in = batch()
    with torch.no_grad():
        per_head = model.cross_attention(src, lens, tgt_in)
        plot = model.forward_attention(src, lens, tgt_in)
    assert per_head.shape == (3, 2, 4, 5, 7)
    torch.testing.assert_close(plot, per_head[:, -1].mean(1))
    assert torch.all(per_head[2, ..., 2:] == 0)
    torch.testing.assert_close(per_head.sum(-1), torch.ones(3, 2, 4, 5))
    assert not torch.allclose(per_head[:, :, 0], per_head[:, :, 1])  # heads are not copies
    # Joint vocabulary: one table for source, target and output.
    assert model.src_embed.weight is model.tgt_embed.weight is model.proj.weight
    separate = tiny("transformer", src_vocab=V + 5)
    assert separate.tgt_embed.weight is separate.proj.weight
    assert separate.src_embed.weight.shape == (V + 5, 16)
    two_tokenizers = build_model(config(**{"hidden": 16, **TINY["transformer"]}), V, V, joint_vocab=False)
    assert two_tokenizers.tgt_embed.weight is two_tokenizers.proj.weight
    assert two_tokenizers.src_embed.weight is not two_tokenizers.tgt_embed.weight
    untied = tiny("transformer_learned_untied")
    assert untied.proj.weight is not untied.tgt_embed.weight
    assert untied.src_embed.weight is not untied.tgt_embed.weight
    assert tiny("transformer").num_parameters() < untied.num_parameters() - V * 16


@pytest.mark.parametrize("arch", ["rnn_fixed", "rnn_attention"])
def test_rnn_tying(arch: str) -> None:
    cfg = dict(arch=arch, emb_dim=8, hidden=16, tie_embeddings=True)
    joint = build_model(config(**cfg), V, V)
    # Joint vocabulary: one (V, E) table embeds source and target and projects the readout to the vocabulary.
    assert joint.encoder.embed.weight is joint.decoder.embed.weight is joint.decoder.proj.weight
    assert torch.all(joint.decoder.embed.weight[PAD_ID] == 0)
    separate = build_model(config(**cfg), V + 5, V)
    assert separate.decoder.embed.weight is separate.decoder.proj.weight
    assert separate.encoder.embed.weight.shape == (V + 5, 8)
    # Two tokenizers of equal size: the same id names different pieces, so the source keeps its own table.
    two_tokenizers = build_model(config(**cfg), V, V, joint_vocab=False)
    assert two_tokenizers.encoder.embed.weight is not two_tokenizers.decoder.embed.weight
    untied = build_model(config(**{**cfg, "tie_embeddings": False}), V, V)
    assert untied.num_parameters() == joint.num_parameters() + 2 * V * 8
    src, lens, tgt_in = batch()
    joint(src, lens, tgt_in).sum().backward()
    assert joint.decoder.embed.weight.grad is not None


def test_transformer_positions_limit() -> None:
    model = tiny("transformer", max_positions=6).eval()
    src, lens, tgt_in = batch()
    with pytest.raises(NMTError, match="max_positions=6"):
        model(src, lens, tgt_in)


@pytest.mark.parametrize(
    "arch, option, value",
    [
        ("lstm_seq2seq", None, None),
        ("rnn_attention", "scorer", "bilinear"),
        ("rnn_attention", "rnn_type", "rnn"),
        ("rnn_fixed", "context_mode", "every"),
        ("transformer", "positions", "rotary"),
    ],
)
def test_unknown_options_name_the_key_and_the_valid_values(arch: str, option: str | None, value: str | None) -> None:
    key, bad = (option, value) if option else ("arch", arch)
    with pytest.raises(NMTError, match=rf"model\.{key}='{bad}'; valid values: \w+"):
        build_model(config(arch, **({option: value} if option else {})), V, V)


@pytest.mark.parametrize(
    "kw, message",
    [
        (dict(arch="rnn_fixed", summary_dim=-1), "summary_dim must not be negative"),
        (dict(heads=3), "must divide"),
        (dict(arch="transformer", heads=3), "must divide"),
        (dict(temperature=0.0), "temperature must be > 0"),
        (dict(attention_dim=-1), "attention_dim must not be negative"),
        (dict(dropout=1.0), "dropout"),
        (dict(arch="transformer", ff_dim=0), "ff_dim must be at least 1"),
    ],
)
def test_inconsistent_options_are_refused(kw: dict, message: str) -> None:
    with pytest.raises(NMTError, match=message):
        build_model(config(**kw), V, V)


def test_each_architecture_has_only_its_own_options() -> None:
    """An option of another architecture is not in an architecture's config at all (ModelConfig: what every
    architecture reads), so nothing passes silently; a config of another architecture is refused by build_model."""
    shared = {"arch", "hidden", "enc_layers", "dec_layers", "dropout", "tie_embeddings"}
    rnn = shared | {"emb_dim", "rnn_type", "bidirectional"}
    fields = {arch: {f.name for f in dataclasses.fields(cls)} for arch, cls in MODEL_CONFIGS.items()}
    assert {f.name for f in dataclasses.fields(ModelConfig)} == shared
    assert fields == {
        "rnn_attention": rnn | {"scorer", "heads", "attention_dim", "temperature", "hard", "input_feeding"},
        "rnn_fixed": rnn | {"context_mode", "summary_dim"},
        "transformer": shared | {"heads", "ff_dim", "positions", "max_positions"},
    }
    for cls, foreign in ((TransformerConfig, "emb_dim"), (FixedContextConfig, "heads"), (RNNAttentionConfig,
                                                                                          "summary_dim")):
        with pytest.raises(TypeError, match=foreign):
            cls(**{foreign: 1})
        with pytest.raises(ConfigKeyError, match=foreign):
            OmegaConf.merge(OmegaConf.structured(cls), {foreign: 1})
    with pytest.raises(NMTError, match="model.arch=transformer needs the options of TransformerConfig, but model "
                                       "holds RNNAttentionConfig"):
        build_model(RNNAttentionConfig(arch="transformer"), V, V)


def test_model_configs_build_and_the_comparison_is_fair() -> None:
    cfgs = {
        p.stem: compose_config("config", [f"model={p.stem}"]).model for p in sorted(CONFIGS.glob("*.yaml"))
    }
    assert {"rnn_attention", "rnn_fixed", "transformer"} <= cfgs.keys()
    for suffix in ("", "_small"):
        fixed, attention = cfgs[f"rnn_fixed{suffix}"], cfgs[f"rnn_attention{suffix}"]
        for key in ("emb_dim", "hidden", "enc_layers", "dec_layers", "dropout", "rnn_type", "bidirectional",
                    "tie_embeddings"):
            assert fixed[key] == attention[key], (suffix, key)
    for name, cfg in cfgs.items():
        model = build_model(cfg, 50, 50)
        assert type(model) is MODELS[cfg.arch] and model.arch == cfg.arch, name


@pytest.mark.parametrize("overrides, message", [
    (["model=rnn_fixed", "model.heads=4"], "unknown key model.heads for model.arch=rnn_fixed (an option of "
     "rnn_attention, transformer); valid keys of model: arch, hidden, enc_layers, dec_layers, dropout, "
     "tie_embeddings, emb_dim, rnn_type, bidirectional, context_mode, summary_dim"),
    (["model=transformer", "+model.emb_dim=16"], "unknown key model.emb_dim for model.arch=transformer (an option "
     "of rnn_attention, rnn_fixed); valid keys of model: arch, hidden, enc_layers, dec_layers, dropout, "
     "tie_embeddings, heads, ff_dim, positions, max_positions"),
    (["model.summary_dim=64"], "unknown key model.summary_dim for model.arch=rnn_attention (an option of rnn_fixed)"),
    (["model=transformer", "model.hedas=2"], "unknown key model.hedas; did you mean model.heads?"),
    (["model.arch=transformer"], "model.arch=transformer needs the options of TransformerConfig, but model holds "
     "RNNAttentionConfig: choose the architecture by its preset (model=<preset>, e.g. model=transformer), not by "
     "model.arch"),
])  # fmt: skip
def test_an_option_of_another_architecture_is_refused_at_composition(overrides: list[str], message: str) -> None:
    with pytest.raises(NMTError) as e:
        compose_config("config", overrides)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_architectures_register_themselves() -> None:
    assert MODELS == {"rnn_attention": AttentionSeq2Seq, "rnn_fixed": FixedContextSeq2Seq, "transformer": Transformer}
    assert {arch: cls.config_class for arch, cls in MODELS.items()} == MODEL_CONFIGS
    with pytest.raises(NMTError, match="unknown model.arch='rnn_fancy'; valid values: rnn_attention, rnn_fixed, "
                                       "transformer"):
        build_model(RNNAttentionConfig(arch="rnn_fancy"), V, V)

    @dataclasses.dataclass
    class EchoConfig(ModelConfig):
        arch: str = "echo"
        loudness: int = 3

    @register_model("echo", EchoConfig)
    class Echo(Seq2Seq):
        """A new architecture: its class and its config, its registration, nothing else."""

        @classmethod
        def from_config(cls, cfg, src_vocab, tgt_vocab, share_src):
            return cls()

    try:
        assert type(build_model(EchoConfig(), V, V)) is Echo
        assert position_limit(EchoConfig()) is None
        # Its options are a schema a preset can select (defaults: [/schema/model@_here_: echo, _self_]).
        assert ConfigStore.instance().load("schema/model/echo.yaml").node.loudness == 3
        with pytest.raises(ValueError, match="registered twice"):
            register_model("echo", EchoConfig)(Echo)
        with pytest.raises(ValueError, match="must default to 'other'"):
            register_model("other", EchoConfig)(Echo)
    finally:
        del MODELS["echo"], MODEL_CONFIGS["echo"]


def test_models_state_their_input_limit_and_old_checkpoint_options() -> None:
    assert position_limit(TransformerConfig(max_positions=64)) == 63  # one position for EOS or BOS
    assert position_limit(RNNAttentionConfig()) is None
    rnn = tiny("attention_additive", tie_embeddings=True)
    assert rnn.max_positions is None and tiny("transformer", max_positions=64).max_positions == 64
    tied, old = rnn.state_dict(), {k: v.clone() for k, v in rnn.state_dict().items()}
    old["decoder.proj.weight"] += 1.0  # separate tables, as RNN checkpoints had before tie_embeddings worked
    for state, tie in ((tied, True), (old, False)):
        cfg = OmegaConf.structured(RNNAttentionConfig(tie_embeddings=True))
        fit_config_to_weights(cfg, state)
        assert cfg.tie_embeddings is tie
    cfg = OmegaConf.structured(TransformerConfig())
    fit_config_to_weights(cfg, old)
    assert cfg.tie_embeddings is True


@pytest.mark.parametrize(
    "name", ["fixed", "attention_additive", pytest.param("attention_dot", marks=pytest.mark.slow), "transformer"]
)
def test_overfits_sequence_reversal(name: str) -> None:
    """32 random sentences (len 4-8, 16 word types) and their reversals, learnt to >= 95% token accuracy."""
    g = torch.Generator().manual_seed(1)
    words = [torch.randint(4, V, (int(torch.randint(4, 9, (1,), generator=g)),), generator=g) for _ in range(32)]
    src = torch.nn.utils.rnn.pad_sequence([torch.cat([w, torch.tensor([EOS_ID])]) for w in words], True)
    tgt_in = torch.nn.utils.rnn.pad_sequence([torch.cat([torch.tensor([BOS_ID]), w.flip(0)]) for w in words], True)
    tgt_out = torch.nn.utils.rnn.pad_sequence([torch.cat([w.flip(0), torch.tensor([EOS_ID])]) for w in words], True)
    lens = torch.tensor([len(w) + 1 for w in words])
    size = dict(hidden=64, heads=4, ff_dim=128) if name == "transformer" else dict(emb_dim=32, hidden=64)
    model = tiny(name, dropout=0.0, **size)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3 if name == "transformer" else 1e-2, weight_decay=0.0)
    for _ in range(100):
        loss = sequence_loss(model(src, lens, tgt_in), tgt_out) / (tgt_out != PAD_ID).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        teacher_forced = model(src, lens, tgt_in).argmax(-1)
        # Greedy decoding through decode_step, the path search uses.
        enc = model.encode(src, lens)
        state, tokens, greedy = model.init_state(enc), torch.full((32,), BOS_ID), []
        for _ in range(tgt_out.size(1)):
            logits, state, _ = model.decode_step(tokens, state, enc)
            tokens = logits.argmax(-1)
            greedy.append(tokens)
    real = tgt_out != PAD_ID
    for pred in (teacher_forced, torch.stack(greedy, 1)):
        accuracy = ((pred == tgt_out) & real).sum() / real.sum()
        assert accuracy >= 0.95, (name, accuracy.item())


@pytest.mark.parametrize("rnn_type", ["gru", "lstm"])
def test_encoder_gives_the_same_outputs_for_sorted_and_unsorted_rows(rnn_type: str) -> None:
    """Rows by descending length pack as they are (enforce_sorted), any other order is sorted by the packing:
    the same sentences give the same states and summaries, bit for bit, in either order."""
    torch.manual_seed(0)
    encoder = RNNEncoder(V, 8, 16, layers=2, rnn_type=rnn_type).eval()
    src, lens, _ = batch(lens=(7, 5, 5, 2, 1))
    shuffled = torch.tensor([3, 0, 4, 2, 1])
    with torch.no_grad():
        states, summary = encoder(src, lens)
        states_u, summary_u = encoder(src[shuffled], lens[shuffled])
    torch.testing.assert_close(states_u, states[shuffled], atol=0, rtol=0)
    torch.testing.assert_close(summary_u, summary[shuffled], atol=0, rtol=0)
