"""Structured configuration: every option of every entry point, with its type and default.

The dataclasses are registered in Hydra's ConfigStore, and `configs/*.yaml` are merged into them, so a
misspelled key (`data.batch_tokenz=1`) or a wrong type fails at start-up with a message naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import MissingConfigException
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, ValidationError

from nmt.errors import NMTError

# Special token ids shared by every tokenizer and model.
PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3

# Every choice field and its valid values, in one place: `check_values` validates a config against it once at
# start-up (nmt-prepare / nmt-train / the experiments, and build_model for configs built in Python), and the
# modules that implement the choices take their lists from here (a model choice is checked where its architecture
# has the option). model.arch is not here: the valid names are the registered architectures (MODEL_CONFIGS).
CHOICES: dict[str, tuple[str, ...]] = {
    "data.source": ("multi30k", "files", "hub"),
    "data.encoding_errors": ("strict", "replace"),
    "data.tokenizer.model_type": ("unigram", "bpe", "char", "word"),
    "model.rnn_type": ("gru", "lstm"),
    "model.context_mode": ("every_step", "init_only"),
    "model.scorer": ("additive", "dot", "scaled_dot", "general"),
    "model.positions": ("sinusoidal", "learned"),
    "train.optimizer": ("adamw", "adam"),
    "train.schedule": ("plateau", "inverse_sqrt", "constant"),
    "train.trackers": ("mlflow",),  # each entry of the list
    "decode.length_norm": ("gnmt", "power"),
    "decode.precision": ("fp32", "tf32", "bf16"),
}
# Numeric options with a valid range (inclusive; None: unbounded), checked with the choices by `check_values`: a
# value outside is refused at start-up, never clamped. Model sizes are checked by build_model, the training loop's
# options by nmt.training.setup.check_train_config (they also need the optimizer and schedule to judge them).
RANGES: dict[str, tuple[float | None, float | None]] = {
    "data.max_words": (1, None),
    "data.max_ratio": (1.0, None),
    "data.tokenizer.vocab_size": (1, None),
    "data.tokenizer.character_coverage": (0.0, 1.0),
    "data.concat.share": (0.0, 1.0),
    "decode.beam": (1, None),
    "decode.nbest": (1, None),
    "decode.batch_size": (1, None),
    "decode.alpha": (0.0, None),
    "decode.max_len_a": (0.0, None),
    "decode.max_len_b": (0, None),
}


def _value(cfg: Any, key: str, prefix: str) -> Any:
    """The value of dotted `key` in `cfg` (the section `prefix` of a Config when prefix is given); None when
    `cfg` has no such key (another section, another architecture)."""
    if prefix and not key.startswith(prefix + "."):
        return None
    node = cfg
    for part in (key[len(prefix) + 1:] if prefix else key).split("."):
        node = node.get(part) if isinstance(node, dict) else getattr(node, part, None)
        if node is None:
            return None
    return node


def check_values(cfg: Any, prefix: str = "") -> None:
    """NMTError naming the key for every choice field of `cfg` (a Config, an OmegaConf node or one of its sections,
    named by `prefix`, e.g. "model") that holds an unknown value (with the valid ones), and every numeric option
    outside its range (RANGES)."""
    for key, valid in CHOICES.items():
        value = _value(cfg, key, prefix)
        for item in value if isinstance(value, Sequence) and not isinstance(value, str) else [value]:
            if item is not None and item not in valid:
                raise NMTError(f"unknown {key}={item!r}; valid values: {', '.join(valid)}")
    for key, (low, high) in RANGES.items():
        value = _value(cfg, key, prefix)
        if value is None or ((low is None or value >= low) and (high is None or value <= high)):
            continue
        if high is None:
            raise NMTError(f"{key} must be at least {low}, got {value}")
        raise NMTError(f"{key} must be in [{low}, {high}], got {value}")


@dataclass
class TokenizerConfig:
    model_type: str = "unigram"  # unigram | bpe
    vocab_size: int = 8000
    character_coverage: float = 1.0
    joint: bool = True  # one model for both languages (needed for tied src/tgt embeddings)


@dataclass
class ConcatConfig:
    """Length control (nmt/data/concat.py): examples of k = 1..max_k consecutive sentence pairs. 1 = off."""

    max_k: int = 1
    # train/valid: each level k >= 2 holds this share of the split's sentences (1/(max_k - 1): as many sentences in
    # long examples as in single ones); test levels always use every sentence
    share: float = 1.0
    seed: int = 1  # offsets and kept groups of the train and valid groupings, order of the valid mixture
    # False: valid keeps its original pairs only (k = 1), so validation, best.pt and early stopping measure
    # one-sentence quality (the bottleneck experiment's matching variable)
    valid_mixture: bool = True
    min_test_examples: int = 200  # a smaller test level adds the groupings at the other offsets


@dataclass
class MixEntry:
    """One training corpus of data.train_mix: a data config group (configs/data/<name>.yaml) and its weight."""

    name: str = MISSING
    weight: float = 1.0


@dataclass
class DataConfig:
    name: str = "multi30k_de_en"  # cache key: data/prepared/<name>/
    source: str = "multi30k"  # multi30k | files | hub
    src_lang: str = "de"
    tgt_lang: str = "en"
    # multi30k: test sets to prepare besides train and val (val is stored as split "valid").
    test_sets: list[str] = field(default_factory=lambda: ["test_2016_flickr"])
    # files: split name -> [source path, target path] (plain or .gz); needs at least train and valid.
    # Relative paths are looked up under $NMT_DATA_MIRROR/<mirror_subdir>/ first, then the working directory.
    files: dict[str, list[str]] = field(default_factory=dict)
    mirror_subdir: str | None = None
    # hub: datasets.load_dataset(hub_name, hub_config, revision=hub_revision); records
    # {"translation": {src_lang: .., tgt_lang: ..}} or one column per language ({"de": .., "en": ..}).
    hub_name: str | None = None
    hub_config: str | None = None
    hub_revision: str | None = None  # pin a hub dataset version: tag, branch or commit sha
    hub_splits: dict[str, str] = field(
        default_factory=lambda: {"train": "train", "valid": "validation", "test": "test"}
    )
    encoding_errors: str = "strict"  # strict | replace (invalid UTF-8 -> U+FFFD instead of an error)
    # Train-only filtering (valid/test are never filtered): whitespace words per side, and length ratio.
    max_words: int = 100
    max_ratio: float = 3.0
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    concat: ConcatConfig = field(default_factory=ConcatConfig)
    root: str = "data"  # raw downloads in <root>/raw/, prepared corpora in <root>/prepared/
    num_proc: int = 0  # processes that encode the corpus into its id cache; 0 = one per core for a large corpus
    terms: str = ""  # the corpus's licence or terms of use, as its source states them (a model package's card)
    # Train on several corpora (nmt/data/mix.py): [{name: <data config group>, weight: <w>}, ...], each batch drawn
    # from one of them with probability weight / sum of weights, every one encoded with this corpus's tokenizer;
    # valid and test stay this corpus's. Its own train split is in the mix only when named (by data.name).
    # [] = this corpus's train split alone.
    train_mix: list[MixEntry] = field(default_factory=list)


# Model configs: one dataclass per architecture -----------------------------------------------------------------
# `ModelConfig` holds what every architecture reads; each architecture's dataclass adds only its own options, so an
# option of another architecture (model=rnn_fixed model.heads=4) is an unknown key, refused at composition. The
# dataclasses enter Hydra's ConfigStore as schema/model/<arch> (register_model_config), and each preset in
# configs/model/ selects its architecture's with `defaults: [/schema/model@_here_: <arch>, _self_]`.
# They live here, not next to their models: composition (this module, layer 0) needs them, and nmt.models (layer 2,
# with torch) may not be imported from here. `@register_model(arch, <Config>)` (nmt/models/base.py) pairs a model
# class with its dataclass (and registers a new architecture's dataclass the same way).
@dataclass
class ModelConfig:
    """What every architecture reads. Not a model of its own: an architecture's dataclass below adds its options."""

    arch: str = MISSING  # the architecture (nmt/models): rnn_attention | rnn_fixed | transformer; set by its dataclass
    hidden: int = 256  # RNN hidden size per direction; Transformer d_model
    enc_layers: int = 1
    dec_layers: int = 1
    dropout: float = 0.3
    tie_embeddings: bool = True  # share src/tgt embeddings and output projection (needs a joint vocabulary)


@dataclass
class RNNConfig(ModelConfig):
    """What the two RNN encoder-decoders share (no architecture of its own); the defaults are
    configs/model/rnn_attention.yaml, the default preset."""

    emb_dim: int = 256
    rnn_type: str = "gru"  # gru | lstm
    bidirectional: bool = True


@dataclass
class RNNAttentionConfig(RNNConfig):
    """model.arch=rnn_attention (Bahdanau et al. 2015): the decoder attends to the encoder states through the
    configurable cell of nmt/models/attention.py."""

    arch: str = "rnn_attention"
    scorer: str = "additive"  # additive | dot | scaled_dot | general
    heads: int = 1  # attention heads
    # dot/scaled_dot project queries and keys to this size (0: parameter-free q . k); additive: its hidden size
    # (0: the decoder's hidden size)
    attention_dim: int = 0
    temperature: float = 1.0  # softmax temperature of the attention scores
    hard: bool = False  # argmax attention (straight-through gradients in training)
    input_feeding: bool = False  # Luong-style: previous attentional output fed to the decoder input


@dataclass
class FixedContextConfig(RNNConfig):
    """model.arch=rnn_fixed (Cho et al. 2014): the decoder sees one fixed-size summary vector c of the source."""

    arch: str = "rnn_fixed"
    context_mode: str = "every_step"  # every_step (Cho et al. 2014) | init_only (Sutskever et al. 2014)
    # size of the summary vector c the decoder sees; 0 = the encoder summary itself (2 x hidden when
    # bidirectional), > 0 = c = tanh(W h), a projection of the encoder summary h (hidden sizes unchanged)
    summary_dim: int = 0


@dataclass
class TransformerConfig(ModelConfig):
    """model.arch=transformer (pre-norm, Vaswani et al. 2017); embeddings have size model.hidden (d_model)."""

    arch: str = "transformer"
    heads: int = 1  # attention heads
    ff_dim: int = 1024
    positions: str = "sinusoidal"  # sinusoidal | learned
    max_positions: int = 512


MODEL_CONFIGS: dict[str, type[ModelConfig]] = {}  # model.arch -> its dataclass, filled by register_model_config
MODEL_SCHEMA_GROUP = "schema/model"  # the ConfigStore group of the model dataclasses (configs/model/ selects one)


def register_model_config(arch: str, config: type[ModelConfig]) -> None:
    """Make `config` (a ModelConfig subclass whose `arch` default is `arch`) the options of model.arch=`arch`:
    stored in Hydra's ConfigStore as schema/model/<arch>, which a preset selects. Registering the same pair again
    is a no-op; another dataclass for a registered arch is a ValueError."""
    if not (isinstance(config, type) and issubclass(config, ModelConfig)):
        raise ValueError(f"model.arch={arch}: its config must be a ModelConfig dataclass, got {config!r}")
    default = next((f.default for f in dataclasses.fields(config) if f.name == "arch"), None)
    if default != arch:
        raise ValueError(f"model.arch={arch}: {config.__name__}.arch must default to {arch!r}, got {default!r}")
    if MODEL_CONFIGS.get(arch, config) is not config:
        raise ValueError(f"model.arch={arch} has two configs: {MODEL_CONFIGS[arch].__name__} and {config.__name__}")
    MODEL_CONFIGS[arch] = config
    ConfigStore.instance().store(group=MODEL_SCHEMA_GROUP, name=arch, node=config)


def model_config_class(arch: Any) -> type[ModelConfig]:
    """The dataclass of model.arch=`arch`; NMTError naming the valid values for an unknown one."""
    if arch not in MODEL_CONFIGS:
        raise NMTError(f"unknown model.arch={arch!r}; valid values: {', '.join(sorted(MODEL_CONFIGS))}")
    return MODEL_CONFIGS[arch]


def check_model_config(cfg: Any) -> None:
    """`cfg` (a model dataclass or its OmegaConf node) holds the options of its own model.arch: NMTError for an
    unknown arch, or an arch set apart from its preset (model=rnn_attention model.arch=transformer)."""
    cls = model_config_class(cfg.arch)
    kind = OmegaConf.get_type(cfg) if isinstance(cfg, DictConfig) else type(cfg)
    if not (isinstance(kind, type) and issubclass(kind, cls)):
        got = kind.__name__ if isinstance(kind, type) else "no architecture's"
        raise NMTError(f"model.arch={cfg.arch} needs the options of {cls.__name__}, but model holds {got}: choose "
                       f"the architecture by its preset (model=<preset>, e.g. model={cfg.arch}), not by model.arch")
    own = [f.name for f in dataclasses.fields(cls)]
    added = [str(k) for k in (cfg.keys() if isinstance(cfg, DictConfig) else ()) if k not in own]
    if added:  # added with Hydra's +model.<key>=...
        raise NMTError(_unknown_model_key(added[0], cfg.arch, own))


def _unknown_model_key(key: str, arch: str, valid: list[str]) -> str:
    """The line for model.<key> unknown to model.arch=`arch`, whose keys are `valid`: the architectures that have
    it, if any, and the valid keys."""
    owners = [a for a, cls in sorted(MODEL_CONFIGS.items()) if key in {f.name for f in dataclasses.fields(cls)}]
    of = f" (an option of {', '.join(owners)})" if owners else ""
    return f"unknown key model.{key} for model.arch={arch}{of}; valid keys of model: {', '.join(valid)}"


def upgrade_model_config(model: dict[str, Any], source: str = "the checkpoint") -> dict[str, Any]:
    """A model config saved by checkpoint version 1 (one flat dict with every architecture's options) in today's
    shape: the options foreign to its architecture dropped. Each dropped option was either never read by that
    architecture or refused by it unless at its default, so the model is the one it was; a dropped option at
    another value (a config the old code could not build) is an NMTError naming `source`. A config without a
    registered arch is returned as it is, for the typed merge to judge."""
    if model.get("arch") not in MODEL_CONFIGS:
        return model
    arch = model["arch"]
    own = {f.name for f in dataclasses.fields(MODEL_CONFIGS[arch])}
    ignored = _V1_IGNORED.get(arch, frozenset())
    for key, value in model.items():
        if key not in own and key in _V1_DEFAULTS and key not in ignored and value != _V1_DEFAULTS[key]:
            raise NMTError(f"{source}: model.{key}={value!r} does not apply to model.arch={arch}")
    return {k: v for k, v in model.items() if k in own or k not in _V1_DEFAULTS}


# Checkpoint version 1's flat model config: every option's default, and per architecture the options it never read
# (any value was ignored); the others it refused unless at their default.
_V1_DEFAULTS: dict[str, Any] = {
    "arch": "rnn_attention", "emb_dim": 256, "hidden": 256, "enc_layers": 1, "dec_layers": 1, "dropout": 0.3,
    "rnn_type": "gru", "bidirectional": True, "context_mode": "every_step", "summary_dim": 0, "scorer": "additive",
    "heads": 1, "attention_dim": 0, "temperature": 1.0, "hard": False, "input_feeding": False, "ff_dim": 1024,
    "positions": "sinusoidal", "tie_embeddings": True, "max_positions": 512,
}
_V1_IGNORED: dict[str, frozenset[str]] = {
    "rnn_attention": frozenset({"context_mode", "ff_dim", "positions", "max_positions"}),
    "rnn_fixed": frozenset({"scorer", "ff_dim", "positions", "max_positions"}),
    "transformer": frozenset({"emb_dim", "rnn_type", "bidirectional", "context_mode", "scorer"}),
}


@dataclass
class TrainConfig:
    device: str = "auto"  # auto (cuda, mps, cpu) | cpu | cuda | cuda:1 | mps
    seed: int = 1
    batch_tokens: int = 4096  # source + target tokens per batch, padding included
    accum_steps: int = 1
    max_steps: int = 0  # 0 = no limit; the first of the three budgets reached stops training
    max_epochs: int = 0
    max_minutes: float = 0.0
    optimizer: str = "adamw"
    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    label_smoothing: float = 0.1
    schedule: str = "plateau"  # plateau | inverse_sqrt | constant
    warmup_steps: int = 0
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    min_lr: float = 1e-5
    # The last fraction of the budget (the first of max_steps / max_epochs / max_minutes to end, minutes counted in
    # training time) over which the rate falls linearly to min_lr, whatever the schedule: 0 = no cool-down.
    cooldown: float = 0.0
    # Exponential moving average of the weights (nmt/training/ema.py), e.g. 0.999: updated after every update,
    # validated at the end and saved as ema.pt beside best.pt. 0 = off.
    ema_decay: float = 0.0
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    compile: bool = False
    eval_every: int = 500  # steps between validations (also at each epoch end when 0)
    # Minutes of training time between validations (as train.max_minutes counts them); > 0 replaces eval_every.
    eval_every_minutes: float = 0.0
    eval_beam: int = 1  # 1 = greedy during validation
    eval_max_sentences: int = 0  # 0 = the whole valid split
    patience: int = 0  # early stopping: validations without a new best valid BLEU (0 = off)
    save_every: int = 500
    save_every_minutes: float = 0.0  # minutes of training time between checkpoints; > 0 replaces save_every
    keep_last: int = 3
    # step-<N>.pt without optimizer, schedule and moving-average state (a third of the size for Adam); last.pt
    # always keeps them, to resume from
    save_weights_only: bool = False
    resume: str = "auto"  # auto (continue the run dir's last.pt when present) | never | <checkpoint path>
    # Fine-tuning: a checkpoint or run dir (its best.pt) whose weights, model config and tokenizer start a NEW run
    # with a fresh optimizer, schedule and counters; the data config's corpus is encoded with that tokenizer.
    # Not together with a train.resume path (resume continues a run; auto still continues this run's last.pt).
    init_from: str | None = None
    log_every: int = 50
    max_bad_steps: int = 10  # consecutive non-finite losses before stopping
    attention_samples: int = 3  # valid sentences plotted to TensorBoard at each validation
    num_workers: int = 0
    # torch CPU threads (0 = torch's default, one per core). On the idle 2-core development machine 2 threads
    # trained at 1.49x (rnn_attention) and 1.63x (Transformer) the tokens/s of 1 (nmt-bench --compare-threads 1 2,
    # README Benchmarks), so a lone run uses every core; give 1 to each of several runs sharing the cores.
    cpu_threads: int = 0
    # DDP: minutes a training collective may wait for the other ranks before the run fails (a crashed rank's
    # peers stop after this long on NCCL; the waits for rank 0's validation have their own, longer limit).
    dist_timeout_minutes: float = 10.0
    # Deterministic algorithms (torch.use_deterministic_algorithms, CUBLAS_WORKSPACE_CONFIG): exact resume and
    # repeatable runs on CUDA, at some speed; CPU training is deterministic either way.
    deterministic: bool = False
    # Experiment trackers besides TensorBoard, getting the same scalars (nmt/training/trackers.py): [] | [mlflow]
    # (pip install 'nmt-bottleneck[mlflow]'); rank 0 only.
    trackers: list[str] = field(default_factory=list)
    mlflow_experiment: str = ""  # the MLflow experiment of the run; "" = data.name


@dataclass
class DecodeConfig:
    beam: int = 5
    alpha: float = 1.4  # length penalty exponent, as configs/decode/beam5.yaml; 0 = none
    # How beam search normalises a finished hypothesis' log-probability (length counts EOS): gnmt divides by
    # ((5+len)/6)^alpha; power by len^alpha, as CTranslate2 and fairseq do (so their beam outputs can equal ours).
    length_norm: str = "gnmt"
    max_len_a: float = 1.5  # max output length = a * source length + b
    max_len_b: int = 10
    nbest: int = 1
    batch_size: int = 64  # sentences per decoding batch; this default is raised 4x on CUDA (search.decode_batch_size)
    # On CUDA: fp32 (the process's own matmul settings), tf32 (TF32 matmuls) or bf16 (bf16 autocast) for the search;
    # on other devices decoding runs in fp32 and tf32/bf16 are ignored with one warning (nmt.runtime.decode_precision).
    precision: str = "fp32"


@dataclass
class Config:
    """`nmt-prepare` / `nmt-train`: configs/config.yaml."""

    data: DataConfig = field(default_factory=DataConfig)
    # The architecture's own dataclass (a ModelConfig subclass): in Python the default preset's unless given; in
    # configs/config.yaml the model preset selects it (base_config leaves it open); typed_config types a plain dict
    # (a checkpoint's config) by its arch.
    model: ModelConfig = field(default_factory=RNNAttentionConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)


@dataclass
class EvaluateConfig:
    """`nmt-evaluate`: configs/evaluate.yaml."""

    checkpoints: list[str] = field(default_factory=list)  # checkpoint files or run dirs (their best.pt)
    split: str = "test"  # valid | test (the corpus's first test set) | a named test set
    src_file: str | None = None  # score a pair of files instead of a split
    ref_file: Any = None  # a file, or a list of files: several references a sentence (str | list[str])
    # a standard test set by its sacreBLEU name instead (wmt08 ... wmt22, wmt14/full: nmt/data/testsets.py), in
    # `langpair` (default: the checkpoint's src_lang-tgt_lang)
    testset: str | None = None
    langpair: str | None = None
    baseline: str | None = None  # checkpoint, run dir or hypotheses file to compare against
    average_last: int = 0  # average the run's last k checkpoints instead of using best.pt
    length_edges: list[int] = field(default_factory=lambda: [0, 10, 20, 30, 40, 50])
    bootstrap_samples: int = 1000
    # COMET segment scores too: a COMET checkpoint (<dir> or <dir>/checkpoints/model.ckpt) or a hub name such as
    # Unbabel/wmt22-comet-da; needs the comet extra (nmt/metrics/comet.py)
    comet_model: str | None = None
    attention_sentences: list[int] = field(default_factory=lambda: [0, 1, 2])
    out_dir: str | None = None  # default: <run dir>/eval/<split>-<timestamp>
    tensorboard_dir: str | None = None
    device: str = "auto"
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    # Added for evaluation: inference-time model settings over the checkpoint's, e.g. ['model.temperature=0.5'].
    model_overrides: list[str] = field(default_factory=list)


@dataclass
class TranslateConfig:
    """`nmt-translate`: configs/translate.yaml."""

    checkpoint: str = ""  # checkpoint file or run dir (engine=torch)
    engine: str = "torch"  # torch | ctranslate2 (a Transformer exported with nmt-export)
    export_dir: str = ""  # engine=ctranslate2: the model directory written by nmt-export
    threads: int = 1  # engine=ctranslate2: the engine's CPU threads
    input: str = "-"  # file or - for stdin
    output: str = "-"  # file or - for stdout
    max_input_tokens: int = 250  # longer lines are truncated with a warning
    device: str = "auto"
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    # Added for translation: inference-time model settings over the checkpoint's, e.g. ['model.hard=true'].
    model_overrides: list[str] = field(default_factory=list)


@dataclass
class BottleneckConfig:
    """`nmt-bottleneck`: fixed-context vs attention on length-controlled test levels and by natural length.

    The fields without a default (MISSING) differ between the presets, and each preset sets them
    (configs/experiment/bottleneck/preset/); the others are the same for every preset and set only here.
    """

    data: list[str] = MISSING  # data config group names
    concat_k: int = 4  # length control: levels k = 1..concat_k (data.concat.max_k); 1 = natural lengths only
    natural_only: list[str] = field(default_factory=list)  # corpora of `data` trained and tested without concat
    seeds: list[int] = MISSING
    model_fixed: str = MISSING  # model config group names; sizes must agree
    model_attention: str = MISSING
    # Capacity sweep: one fixed-context run per size with model.summary_dim=<size> (c = tanh(W h), a projection of
    # the encoder summary; hidden sizes unchanged, the main model's own size projected too), at the first seed and
    # the same budget in updates (train.max_minutes must be 0); every pair of sizes is tested. [] = no sweep,
    # else at least two sizes.
    capacity_summary: list[int] = MISSING
    train: str = "rnn"  # train config group
    decode: str = MISSING  # decode config group (validation decodes greedy or train.eval_beam)
    overrides: list[str] = MISSING  # nmt-train overrides for every run: the budget
    # nmt-train overrides for one model's runs, applied before `overrides` (so the command line wins): its own
    # budget, e.g. the fixed-context model trained to its plateau (train.patience); the sweep takes overrides_fixed
    overrides_fixed: list[str] = field(default_factory=list)
    overrides_attention: list[str] = field(default_factory=list)
    splits: list[str] = field(default_factory=lambda: ["test"])  # "test" = the corpus's first test set
    length_edges: list[int] = field(default_factory=lambda: [0, 10, 20, 30, 40, 50])  # natural-length buckets
    min_bleu: float = 5.0  # below this BLEU at k = 1 the systems are too weak for a verdict
    # Matched quality (question (c)): every kept checkpoint (train.save_every, train.keep_last) is followed; an
    # attention checkpoint enters the comparison when its segment-alignment score on `align_groups` valid
    # examples of K sentences reaches min_alignment (chance: 1/K)
    min_alignment: float = 0.5
    align_groups: int = 200
    follow_groups: int = 150  # the first disjoint level-K groups (and their sentences) decoded at every checkpoint
    bootstrap_samples: int = 1000
    workers: int = MISSING  # training processes side by side
    threads: int = MISSING  # torch threads per process (0: torch's default)
    out_dir: str | None = None  # default outputs/bottleneck/<time>


@dataclass
class ClaimsConfig:
    """`nmt-claims`: attention variants on one corpus.

    The fields without a default (MISSING) differ between the presets, and each preset sets them
    (configs/experiment/claims/preset/); the others are the same for every preset and set only here.
    """

    data: str = "multi30k_de_en"
    seeds: list[int] = MISSING  # every variant trains once per seed
    model: str = MISSING  # the base model (its scorer/heads are the reference)
    train: str = "rnn"
    decode: str = MISSING
    overrides: list[str] = MISSING  # nmt-train overrides for every run: the budget
    split: str = "test"
    claims: list[str] = field(default_factory=lambda: ["scaling", "temperature", "hard", "scorers"])
    # key size per head for the scaling claim: queries and keys projected to d_k (model.attention_dim) at every
    # size, so the axis changes one thing
    d_k: list[int] = MISSING
    temperatures: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    scorers: list[str] = field(default_factory=lambda: ["dot", "scaled_dot", "general", "additive"])
    heads: list[int] = field(default_factory=lambda: [1, 4])
    probe_sentences: int = MISSING  # valid sentences for attention entropy / gradient statistics
    min_bleu: float = 20.0  # BLEU comparisons where no system reaches this are inconclusive
    bootstrap_samples: int = 1000
    workers: int = MISSING
    threads: int = MISSING
    out_dir: str | None = None  # default outputs/claims/<time>


@dataclass
class ExportConfig:
    """`nmt-export`: configs/export.yaml."""

    checkpoint: str = ""  # checkpoint file, or a run dir (its best.pt, else last.pt)
    format: str = "ctranslate2"
    out: str = ""  # model directory to create
    quantization: str = "int8"  # int8 | int8_float32 | int16 | float16 | bfloat16 | float32 ...
    # format=package: nmt-evaluate metrics.json files whose scores go into the model card; a CTranslate2 conversion
    # in ct2/ beside the weights (Transformers); push the package to this hub repository (org/name) when given
    evaluations: list[str] = field(default_factory=list)
    ct2: bool = False
    push_to: str | None = None


@dataclass
class ScoreConfig:
    """`nmt-score`: configs/score.yaml."""

    checkpoint: str = ""  # checkpoint file or run dir (its best.pt)
    src_file: str = ""
    # One file. Typed Any so that a list (as nmt-evaluate takes) reaches nmt.evaluation.scoring.score, which says why
    # it scores one reference a sentence.
    ref_file: Any = ""
    out: str | None = None  # per-sentence TSV (index, tokens, log_prob, mean_log_prob)
    batch_tokens: int = 4096
    length_edges: list[int] = field(default_factory=lambda: [0, 10, 20, 30, 40, 50])
    device: str = "auto"


def _config_dir() -> str:
    """configs/ shipped inside the package (a regular install), else the source tree's top-level configs/."""
    packaged = Path(__file__).resolve().parent / "configs"
    return str(packaged if packaged.is_dir() else Path(__file__).resolve().parents[1] / "configs")


CONFIG_DIR = _config_dir()  # the Hydra config groups data/ model/ train/ decode/; experiment/<script>/ apart


def register_configs() -> None:
    """Register every structured config in Hydra's ConfigStore (done once, when this module is imported)."""
    cs = ConfigStore.instance()
    base = OmegaConf.structured(Config)
    base.model = OmegaConf.structured(ModelConfig)  # open: the model preset merges its architecture's dataclass in
    cs.store(name="base_config", node=base)
    cs.store(name="base_evaluate", node=EvaluateConfig)
    cs.store(name="base_translate", node=TranslateConfig)
    cs.store(name="base_export", node=ExportConfig)
    cs.store(name="base_score", node=ScoreConfig)
    cs.store(name="base_bottleneck", node=BottleneckConfig)
    cs.store(name="base_claims", node=ClaimsConfig)
    for config in (RNNAttentionConfig, FixedContextConfig, TransformerConfig):
        register_model_config(config.arch, config)


register_configs()


# Composing a configuration ---------------------------------------------------------------------------------
def compose_config(config_name: str, overrides: list[str], config_dir: str = CONFIG_DIR) -> DictConfig:
    """<config_dir>/<config_name>.yaml with Hydra overrides, as the command would compose it; NMTError with one
    line naming the key (and a group's valid choices) for any mistake in the overrides."""
    try:
        cfg = _compose(config_name, overrides, config_dir)
    except Exception as e:  # Hydra and OmegaConf raise many types; each becomes one line
        raise NMTError(describe_config_error(e, config_name, config_dir)) from e
    if OmegaConf.is_dict(cfg.get("model")) and not OmegaConf.is_missing(cfg.model, "arch"):
        check_model_config(cfg.model)  # model.arch set apart from the preset's dataclass
    return cfg


def typed_config(config: Any) -> DictConfig:
    """A run config (a Config, its OmegaConf node, or a plain dict such as a checkpoint's) as a typed Config node
    whose model section is the dataclass of its model.arch, so every key and type is checked (OmegaConf errors);
    NMTError for a missing or unknown arch, or an arch set apart from its dataclass."""
    node = config if isinstance(config, DictConfig) else OmegaConf.structured(config)
    model = node.get("model")
    if model is None or OmegaConf.is_missing(model, "arch") or model.get("arch") is None:
        raise NMTError("model.arch is not set: give the model config of an architecture, e.g. model=rnn_attention "
                       "(in Python: Config(model=RNNAttentionConfig(...)))")
    cls = model_config_class(model.arch)
    if OmegaConf.get_type(model) is not dict:  # a dataclass already: it must be the arch's own
        check_model_config(model)
    base = OmegaConf.structured(Config)
    base.model = OmegaConf.structured(cls)
    return OmegaConf.merge(base, node)


def _compose(config_name: str, overrides: list[str], config_dir: str = CONFIG_DIR) -> DictConfig:
    """Hydra's compose API on config_dir (errors as Hydra raises them); inside a running Hydra app too (nmt-train
    composing the corpora of data.train_mix), whose global state is set aside meanwhile and then restored."""
    outer = GlobalHydra.instance().hydra if GlobalHydra.instance().is_initialized() else None
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=config_dir, version_base="1.3"):
            return compose(config_name=config_name, overrides=overrides)
    finally:
        if outer is not None:
            GlobalHydra.instance().initialize(outer)


def data_config_names(config_dir: str = CONFIG_DIR) -> list[str]:
    """The data config groups: the names `data=<name>` (and data.train_mix) accept."""
    return sorted(p.stem for p in (Path(config_dir) / "data").glob("*.yaml"))


def describe_config_error(e: BaseException, config_name: str, config_dir: str = CONFIG_DIR) -> str:
    """One line for a Hydra composition error: the key and its close matches or valid keys (unknown key), the
    key and the problem (wrong type), the group and its choices (unknown group option)."""
    chain = _chain(e)
    missing = next((x for x in chain if isinstance(x, MissingConfigException)), None)
    if missing is not None and missing.missing_cfg_file and "/" in missing.missing_cfg_file:
        group, option = missing.missing_cfg_file.rsplit("/", 1)
        choices = missing.options or []
        return f"unknown {group}={option}; valid choices: {', '.join(choices) or '(none)'}"
    # The key an override set, when the failing key is inside one of its list's entries (data.train_mix=[{..}]):
    # OmegaConf names only the entry's own key then.
    overridden = next((m.group(1) for x in chain if (m := re.match(r"(?:Error merging override |Could not override "
                                                                   r"')([\w.]+)", str(x)))), None)
    unknown = next((x for x in chain if isinstance(x, ConfigAttributeError | ConfigKeyError)), None)
    invalid = next((x for x in chain if isinstance(x, ValidationError)), None)
    failing = unknown if unknown is not None else invalid
    entry = (f" (in an entry of {overridden})" if failing is not None and failing.full_key and overridden
             and not str(failing.full_key).startswith(overridden) else "")
    if unknown is not None and unknown.full_key:
        return _unknown_key(str(unknown.full_key), config_name, config_dir, unknown.parent_node) + entry
    if invalid is not None and invalid.full_key:
        problem = _first_line(invalid.msg)
        if invalid.value is not None and str(invalid.value) not in problem:
            problem += f" (got {invalid.value!r})"
        return f"bad value for {invalid.full_key}: {problem}{entry}"
    no_match = re.match(r"Could not override '([^']+)'\. No match in the defaults list", str(e))
    if no_match:
        return _unknown_key(no_match.group(1), config_name, config_dir)
    return _first_line(e)


def _unknown_key(key: str, config_name: str, config_dir: str, where: Any = None) -> str:
    """`unknown key a.b`, with its close matches (among a's keys, else anywhere in the config), else a's keys; an
    option of another architecture (model.heads for rnn_fixed) with the architectures that have it and a's keys.

    `where`: the node the key was missing from (OmegaConf's error says), so a's keys are those of the command's
    own choices (model=rnn_fixed); without it the config is composed without the overrides."""
    # The config as composed before the overrides failed (Hydra applies them last), group choices included.
    config = where._get_root() if OmegaConf.is_config(where) else _compose(config_name, [], config_dir)
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(config, parent) if parent else config
    if not OmegaConf.is_dict(node):
        return f"unknown key {key}"
    prefix = f"{parent}." if parent else ""
    keys = [str(k) for k in node.keys()]
    if parent == "model" and node.get("arch") in MODEL_CONFIGS and any(
            leaf in {f.name for f in dataclasses.fields(cls)} for cls in MODEL_CONFIGS.values()):
        return _unknown_model_key(leaf, node.arch, keys)
    close = [prefix + k for k in difflib.get_close_matches(leaf, keys, n=3)]
    if not close:  # the right key in another section: data.batch_tokenz -> train.batch_tokens
        everywhere = _dotted_keys(config)
        close = [k for k in everywhere if k.rpartition(".")[2] in difflib.get_close_matches(leaf, [
            k.rpartition(".")[2] for k in everywhere], n=3, cutoff=0.85)]
    if close:
        return f"unknown key {key}; did you mean {' or '.join(close)}?"
    return f"unknown key {key}; valid keys{' of ' + parent if parent else ''}: {', '.join(keys)}"


def _dotted_keys(node: Any, prefix: str = "") -> list[str]:
    """Every key of a DictConfig, nested ones as a.b.c (Hydra's own settings aside)."""
    keys = []
    for k, v in node.items_ex(resolve=False):
        if not prefix and k == "hydra":
            continue
        keys.append(prefix + str(k))
        if OmegaConf.is_dict(v):
            keys += _dotted_keys(v, f"{prefix}{k}.")
    return keys


def _chain(e: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    return chain


def _first_line(e: BaseException | str) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[0] if lines else type(e).__name__
