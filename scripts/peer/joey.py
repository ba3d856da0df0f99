"""JoeyNMT 2.3.0 as the peer of `make peer-bench` (scripts/peer/bench.py): its own virtual environment, our prepared
data and SentencePiece pieces in its plain-text layout, our config translated to its YAML, its training clock, and
its train / test commands.

    install_peer(venv)                    # a separate venv: torch 2.13.0 first (the local CPU build), then joeynmt
    export_corpus(corpus, directory)      # the prepared splits as plain text, our SentencePiece model, its pieces
    joey_config(cfg, paths)               # our composed config -> (JoeyNMT YAML dict, unmatched options)

JoeyNMT has no time budget, so `JoeyClock` reads its train.log as it grows: training time starts at its first
"EPOCH" line and leaves out every validation (from "Predicting" to the "Checkpoint saved" line that ends it; every
validation saves one, keep_best_ckpts -1). When that time reaches the budget the driver sends SIGINT: JoeyNMT
saves its current weights (latest.ckpt) and exits.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sentencepiece as spm
import torch
import yaml
from omegaconf import DictConfig, OmegaConf

from nmt.config import CONFIG_DIR
from nmt.data.corpus import PreparedCorpus
from nmt.errors import NMTError
from nmt.io import write_bytes, write_lines, write_text

JOEY_REQUIREMENT = "joeynmt==2.3.0"
TORCH_REQUIREMENT = "torch==2.13.0"  # installed first: a bare torch requirement would fetch GBs of CUDA wheels
# joeynmt 2.3.0 imports importlib_metadata (joeynmt/helpers.py) without declaring it, and calls
# SentencePieceProcessor.SetVocabulary, which sentencepiece releases after 0.2.0 no longer have.
UNDECLARED_REQUIREMENTS = ["importlib-metadata", "sentencepiece==0.2.0"]
# Beam search at each toolkit's documented setting: ours are the presets configs/decode/greedy.yaml and beam5.yaml;
# JoeyNMT's example configs (configs/*.yaml of v2.3) document beam_size 5 with beam_alpha 1.0 (its code default, -1,
# turns the penalty off).
JOEY_BEAM_ALPHA = 1.0
DECODES = {name: dict(OmegaConf.load(Path(CONFIG_DIR, "decode", f"{name}.yaml"))) for name in ("greedy", "beam5")}
NO_TIME_LIMIT_EPOCHS = 100_000  # JoeyNMT stops on epochs; the driver stops it on minutes first
JOEY_LAUNCHER = Path(__file__).with_name("joeynmt_launch.py")  # `python -m joeynmt`, runnable on torch 2.13
GRACE_SECONDS = 300  # after SIGINT, JoeyNMT saves and exits; kill it if it has not after this long


# ------------------------------------------------------------------------------------ its virtual environment

def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def peer_versions(python: Path) -> dict[str, str] | None:
    """{"joeynmt", "torch"} versions importable by `python`, or None when either (or what JoeyNMT's trainer
    imports) is missing."""
    probe = ("import importlib.metadata as m, json, importlib_metadata, joeynmt.training, sentencepiece as s; "
             "s.SentencePieceProcessor.SetVocabulary; "
             "print(json.dumps({p: m.version(p) for p in ('joeynmt', 'torch')}))")
    if not python.is_file():
        return None
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return json.loads(done.stdout) if done.returncode == 0 else None


def _pip(python: Path, *args: str, log: Any) -> None:
    log(f"pip install {' '.join(args)}")
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", *args], capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise NMTError(f"pip install {' '.join(args)} into {python.parent.parent} failed: {tail}")


def install_peer(venv: Path, log: Any = print) -> tuple[Path, dict[str, str]]:
    """A venv at `venv` holding joeynmt 2.3.0 on torch 2.13.0 (reused when it already does); its python and
    versions. torch goes in first, so joeynmt's `torch>=1.12.0` is already satisfied and pulls nothing."""
    python = _venv_python(venv)
    versions = peer_versions(python)
    if versions and versions["joeynmt"] == JOEY_REQUIREMENT.split("==")[1]:
        return python, versions
    if not python.is_file():
        log(f"creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    _pip(python, TORCH_REQUIREMENT, log=log)
    _pip(python, JOEY_REQUIREMENT, *UNDECLARED_REQUIREMENTS, log=log)
    versions = peer_versions(python)
    if not versions or versions["torch"].split("+")[0] != TORCH_REQUIREMENT.split("==")[1]:
        raise NMTError(f"{venv}: expected {JOEY_REQUIREMENT} on {TORCH_REQUIREMENT}, found {versions}")
    return python, versions


# --------------------------------------------------------------------------------------------------- the data

@dataclass
class JoeyPaths:
    """Where JoeyNMT finds the exported corpus (plain text `<data_dir>/<split>.<lang>`) and writes its run."""

    data_dir: Path
    spm_model: Path
    vocab: Path
    model_dir: Path
    test_set: str = "test_2016_flickr"


def spm_pieces(model: bytes) -> list[str]:
    """Every piece of a serialized SentencePiece model, in id order."""
    sp = spm.SentencePieceProcessor(model_proto=model)
    return [sp.id_to_piece(i) for i in range(sp.get_piece_size())]


def export_corpus(corpus: PreparedCorpus, directory: Path, model_dir: Path, sentences: int | None = None
                  ) -> JoeyPaths:
    """Write train, valid and the first test set as `<split>.<src|tgt lang>` plain text (valid and test cut to their
    first `sentences` lines when given), our SentencePiece model and its pieces (JoeyNMT's voc_file: it puts its
    four specials first and skips them where they recur)."""
    tok = corpus.tokenizer
    if not tok.joint:
        raise NMTError(f"corpus {corpus.name} has separate tokenizers; the peer benchmark needs a joint one")
    src_lang, tgt_lang = corpus.stats["src_lang"], corpus.stats["tgt_lang"]
    test_set = corpus.test_sets[0] if corpus.test_sets else "test"
    for split in ("train", "valid", test_set):
        data = corpus.split(split)
        for column, lang in (("src", src_lang), ("tgt", tgt_lang)):
            lines = list(data[column]) if split == "train" else list(data[column][:sentences])
            # JoeyNMT's plain-text reader drops empty lines, which would misalign the pairs.
            if split != "train" and not all(line.strip() for line in lines):
                raise NMTError(f"{corpus.name} {split}.{lang} has an empty line; JoeyNMT would drop it")
            write_lines(directory / f"{split}.{lang}", lines)
    spm_path = write_bytes(directory / "spm.model", tok.src_model)
    vocab = write_lines(directory / "vocab.txt", spm_pieces(tok.src_model))
    return JoeyPaths(directory, spm_path, vocab, model_dir, test_set)


# ----------------------------------------------------------------------------------------- config translation

def _joey_data(cfg: DictConfig, paths: JoeyPaths) -> dict[str, Any]:
    def side(lang: str) -> dict[str, Any]:
        return {"lang": lang, "level": "bpe", "tokenizer_type": "sentencepiece", "voc_file": str(paths.vocab),
                "tokenizer_cfg": {"model_file": str(paths.spm_model)}, "lowercase": False, "normalize": False,
                "max_length": -1, "min_length": -1}  # the train split is already filtered by data.max_words

    return {"train": str(paths.data_dir / "train"), "dev": str(paths.data_dir / "valid"),
            "test": str(paths.data_dir / paths.test_set), "dataset_type": "plain",
            "src": side(cfg.data.src_lang), "trg": side(cfg.data.tgt_lang),
            "special_symbols": {"unk_token": "<unk>", "pad_token": "<pad>", "bos_token": "<s>", "eos_token": "</s>",
                                "unk_id": 0, "pad_id": 1, "bos_id": 2, "eos_id": 3}}


def _joey_transformer(m: DictConfig, unmatched: list[str]) -> dict[str, Any]:
    if m.positions != "sinusoidal":
        unmatched.append(f"model.positions: ours {m.positions} vs JoeyNMT sinusoidal, the only positions it has")

    def stack(layers: int) -> dict[str, Any]:
        return {"type": "transformer", "num_layers": layers, "num_heads": m.heads, "hidden_size": m.hidden,
                "ff_size": m.ff_dim, "dropout": m.dropout, "layer_norm": "pre", "activation": "relu",
                "embeddings": {"embedding_dim": m.hidden, "scale": True, "dropout": m.dropout}}

    # Our init: xavier_uniform weights, zero biases, embeddings N(0, D^-1/2) (nmt/models/transformer.py).
    return {"initializer": "xavier_uniform", "bias_initializer": "zeros", "embed_initializer": "normal",
            "embed_init_weight": m.hidden ** -0.5, "tied_embeddings": bool(m.tie_embeddings),
            "tied_softmax": bool(m.tie_embeddings), "encoder": stack(m.enc_layers), "decoder": stack(m.dec_layers)}


def _joey_rnn(m: DictConfig, unmatched: list[str]) -> dict[str, Any]:
    attention = {"additive": "bahdanau", "general": "luong"}.get(m.scorer)
    if attention is None:
        attention = "bahdanau"
        unmatched.append(f"model.scorer: ours {m.scorer} vs JoeyNMT bahdanau; it has only bahdanau (additive) "
                         "and luong (general)")
    if m.heads != 1 or m.temperature != 1.0 or m.hard or m.attention_dim:
        unmatched.append(f"model.heads/temperature/hard/attention_dim: ours {m.heads}/{m.temperature}/{m.hard}/"
                         f"{m.attention_dim} vs JoeyNMT 1/1.0/False/hidden; it has none of these options")
    unmatched.append(f"model.input_feeding: ours {m.input_feeding}, Bahdanau order (s_t-1 attends, the context "
                     "enters the GRU input) vs JoeyNMT True, Luong order (s_t attends after the GRU step); its GRU "
                     "sees the source context only through input feeding, so it is switched on")
    unmatched.append(f"readout: ours tanh(W [s_t; c_t; emb(y_t-1)]) of size emb_dim {m.emb_dim} vs JoeyNMT "
                     f"tanh(W [s_t; c_t]) of size hidden {m.hidden}; it has no embedding term")
    unmatched.append(f"model.dropout: ours {m.dropout} on the source and target embeddings and the readout output vs "
                     f"JoeyNMT {m.dropout} on the encoder embeddings and the decoder GRU input (emb_dropout) and the "
                     "readout input (hidden_dropout); it has no dropout after the readout")
    unmatched.append(f"weight init: ours PyTorch defaults, uniform +-1/sqrt(fan_in) per layer vs JoeyNMT uniform "
                     f"+-1/sqrt(hidden) = {m.hidden ** -0.5:.4f} for every weight and bias (the same for the GRUs, "
                     "close for the linear layers)")
    tied = bool(m.tie_embeddings) and m.emb_dim == m.hidden
    if m.tie_embeddings and not tied:
        unmatched.append(f"model.tie_embeddings: ours true vs JoeyNMT tied_softmax false; it ties the output layer "
                         f"only when emb_dim == hidden ({m.emb_dim} != {m.hidden})")

    def side(decoder: bool) -> dict[str, Any]:
        out = {"type": "recurrent", "rnn_type": m.rnn_type, "hidden_size": m.hidden, "dropout": m.dropout,
               "num_layers": m.dec_layers if decoder else m.enc_layers,
               "embeddings": {"embedding_dim": m.emb_dim, "scale": bool(m.tie_embeddings), "dropout": m.dropout}}
        if decoder:
            return out | {"hidden_dropout": m.dropout, "input_feeding": True, "init_hidden": "bridge",
                          "attention": attention, "activation": "tanh"}
        return out | {"bidirectional": bool(m.bidirectional)}

    scale = m.hidden ** -0.5
    return {"initializer": "uniform", "init_weight": scale, "bias_initializer": "uniform", "bias_init_weight": scale,
            "embed_initializer": "normal", "embed_init_weight": m.emb_dim ** -0.5 if m.tie_embeddings else 1.0,
            "tied_embeddings": bool(m.tie_embeddings), "tied_softmax": tied,
            "encoder": side(decoder=False), "decoder": side(decoder=True)}


def _joey_schedule(t: DictConfig, unmatched: list[str]) -> dict[str, Any]:
    if t.cooldown > 0:
        unmatched.append(f"train.cooldown: ours {t.cooldown}, the rate falls linearly to min_lr over that last share "
                         "of the budget vs JoeyNMT none (it knows no time budget)")
    if t.schedule == "inverse_sqrt":
        unmatched.append(f"train.schedule: ours inverse_sqrt (lr {t.lr}, warmup {t.warmup_steps}) vs JoeyNMT "
                         "warmupinversesquareroot, the same rates from update 2 on; its first update runs at the "
                         "peak rate, before its scheduler first sets the rate")
        return {"scheduling": "warmupinversesquareroot", "learning_rate_warmup": max(int(t.warmup_steps), 1),
                "learning_rate_min": 1e-8}  # never reached: JoeyNMT would stop training below it
    if t.warmup_steps > 0:
        unmatched.append(f"train.warmup_steps: ours {t.warmup_steps} vs JoeyNMT 0; its {t.schedule} schedule has "
                         "no warmup")
    if t.schedule == "constant":
        return {"learning_rate_min": 1e-8}
    unmatched.append(f"train.min_lr: ours {t.min_lr}, a floor that training continues at vs JoeyNMT "
                     f"learning_rate_min {t.min_lr}, below which it stops training")
    unmatched.append("plateau threshold: ours a new best must beat the old by 0.01 BLEU vs JoeyNMT 1e-4 "
                     "(ReduceLROnPlateau's default; not configurable)")
    return {"scheduling": "plateau", "decrease_factor": t.plateau_factor, "patience": t.plateau_patience,
            "learning_rate_min": t.min_lr}


def _joey_training(cfg: DictConfig, paths: JoeyPaths, unmatched: list[str]) -> dict[str, Any]:
    t = cfg.train
    if t.eval_every <= 0:
        raise NMTError("train.eval_every must be positive for the peer benchmark (JoeyNMT validates every N steps)")
    if t.optimizer not in ("adam", "adamw"):
        raise NMTError(f"train.optimizer={t.optimizer} has no JoeyNMT counterpart here")
    unmatched.append(f"train.batch_tokens: ours {t.batch_tokens} source + target tokens, padding included, batches "
                     f"of similar lengths vs JoeyNMT batch_size {t.batch_tokens // 2} tokens counted as sentences x "
                     "(longest side + 1), unbucketed random batches: the same padded budget on average, not batch by "
                     "batch; ours pads less, so it carries more real tokens per update")
    unmatched.append(f"train.label_smoothing: ours {t.label_smoothing} as eps/V on every class (PyTorch) vs JoeyNMT "
                     f"{t.label_smoothing} as eps/(V-2) on every class but the reference and padding")
    if t.ema_decay > 0:
        unmatched.append(f"train.ema_decay: ours {t.ema_decay}, a moving average of the weights saved as ema.pt vs "
                         "JoeyNMT none")
    unmatched.append("train.max_minutes: ours the trainer's own budget of training time vs JoeyNMT none; the driver "
                     "sends SIGINT after the same training minutes read from its log, and it saves its weights")
    training = {
        "model_dir": str(paths.model_dir), "overwrite": False, "optimizer": t.optimizer,
        "adam_betas": [float(b) for b in t.betas], "weight_decay": t.weight_decay, "learning_rate": t.lr,
        "clip_grad_norm": t.clip_norm if t.clip_norm > 0 else None, "loss": "crossentropy",
        "label_smoothing": t.label_smoothing, "normalization": "tokens",  # ours: mean over target tokens
        "batch_type": "token", "batch_size": t.batch_tokens // 2, "batch_multiplier": t.accum_steps,
        "epochs": t.max_epochs or NO_TIME_LIMIT_EPOCHS, "validation_freq": t.eval_every,
        "logging_freq": math.gcd(t.eval_every, 50), "early_stopping_metric": "bleu", "keep_best_ckpts": -1,
        "print_valid_sents": [], "shuffle": True, "num_workers": t.num_workers,
    }
    if t.max_steps > 0:
        training["updates"] = t.max_steps
    return training | _joey_schedule(t, unmatched)


# Our architectures that JoeyNMT has, and the translation of their model options.
JOEY_MODELS = {"transformer": _joey_transformer, "rnn_attention": _joey_rnn}


def joey_config(cfg: DictConfig, paths: JoeyPaths) -> tuple[dict[str, Any], list[str]]:
    """Our composed config (model, train, data, decode) as a JoeyNMT 2.3 YAML dict, and every option that it
    cannot match, one "option: ours vs theirs, why" line each."""
    m = cfg.model
    unmatched: list[str] = []
    joey_model = JOEY_MODELS.get(m.arch)
    if joey_model is None:
        raise NMTError(f"model.arch={m.arch} has no JoeyNMT counterpart; the peer benchmark compares "
                       f"{' and '.join(JOEY_MODELS)}")
    model = joey_model(m, unmatched)
    training = _joey_training(cfg, paths, unmatched)
    unmatched.append(f"decode.max_len: ours {cfg.decode.max_len_a} x source length + {cfg.decode.max_len_b} vs "
                     "JoeyNMT 1.5 x the longest source in the batch (max_output_length -1, its default)")
    testing = {"eval_metrics": ["bleu"], "sacrebleu_cfg": {"tokenize": "13a"}, "batch_size": cfg.decode.batch_size,
               "batch_type": "sentence", "beam_size": 1, "max_output_length": -1, "min_output_length": 1}
    joey = {"name": f"peer_{m.arch}", "joeynmt_version": JOEY_REQUIREMENT.split("==")[1],
            "model_dir": str(paths.model_dir), "use_cuda": False, "fp16": False, "random_seed": int(cfg.train.seed),
            "data": _joey_data(cfg, paths), "testing": testing, "training": training, "model": model}
    return joey, unmatched


def joey_decode_config(joey: dict[str, Any], checkpoint: Path, beam: int) -> dict[str, Any]:
    """The training config set up to decode dev and test with `checkpoint`: greedy, or beam search with the
    length penalty of JoeyNMT's documented configs."""
    testing = dict(joey["testing"], load_model=str(checkpoint), beam_size=beam)
    if beam > 1:
        testing["beam_alpha"] = JOEY_BEAM_ALPHA
    return dict(joey, testing=testing)


# -------------------------------------------------------------------------------------------------- its clock

def log_time(line: str) -> float | None:
    """Unix time of a JoeyNMT log line ("2024-05-01 12:00:00,123 - INFO - ..."), None for other lines."""
    try:
        return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    except ValueError:
        return None


@dataclass
class JoeyClock:
    """Training seconds of a JoeyNMT run from its train.log: from the first "EPOCH" line, less every validation
    (from its "Predicting" line to the "Checkpoint saved" line that ends it)."""

    start: float | None = None
    validating_since: float | None = None
    valid_seconds: float = 0.0
    validations: int = 0
    last_step: int = 0
    total_params: int | None = None
    last_time: float | None = None
    final_seconds: float | None = None  # training seconds when the run was stopped (or stopped itself)

    def feed(self, line: str) -> None:
        ts = log_time(line)
        if ts is None:
            return
        self.last_time = ts
        if " - EPOCH " in line and self.start is None:
            self.start = ts
        elif "Predicting " in line and self.start is not None:
            self.validating_since = ts
        elif "Checkpoint saved in" in line:
            saved = re.search(r"(\d+)\.ckpt", line)
            self.last_step = int(saved.group(1)) if saved else self.last_step
            if self.validating_since is not None:
                self.valid_seconds += ts - self.validating_since
                self.validating_since, self.validations = None, self.validations + 1
        elif "Step:" in line:
            step = re.search(r"Step:\s*(\d+)", line)
            self.last_step = int(step.group(1)) if step else self.last_step
        elif "Total params:" in line:
            self.total_params = int(line.rsplit(":", 1)[1].strip())

    def train_seconds(self, now: float) -> float:
        """Training seconds so far at Unix time `now` (a validation in progress does not count)."""
        if self.start is None:
            return 0.0
        end = self.validating_since if self.validating_since is not None else now
        return max(0.0, end - self.start - self.valid_seconds)


class LogTail:
    """The complete lines appended to a file since the last call."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.rest = path, 0, b""

    def lines(self) -> list[str]:
        if not self.path.is_file():
            return []
        with self.path.open("rb") as f:
            f.seek(self.offset)
            data = self.rest + f.read()
            self.offset = f.tell()
        *complete, self.rest = data.split(b"\n")
        return [line.decode("utf-8", "replace") for line in complete]


# ------------------------------------------------------------------------------------------------- running it

def one_thread_env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _default_sigint() -> None:
    """In the child before exec: SIGINT back to its default, so Python turns it into KeyboardInterrupt. A command
    started in the background of a non-interactive shell inherits SIGINT ignored, and JoeyNMT would train on."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_interruptible(cmd: list[str], out: Any, env: dict[str, str]) -> subprocess.Popen:
    """Start `cmd` writing to `out` so that SIGINT stops it whatever this process's own SIGINT disposition is."""
    return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, preexec_fn=_default_sigint)


def joey_validations(model_dir: Path) -> list[dict[str, float]]:
    """[{"step", "bleu"}] from JoeyNMT's validations.txt ("Steps: 200<TAB>loss: ..<TAB>bleu: 12.3 ...")."""
    path = model_dir / "validations.txt"
    rows = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        step, bleu = re.search(r"Steps:\s*(\d+)", line), re.search(r"bleu:\s*([-\d.]+)", line)
        if step and bleu:
            rows.append({"step": int(step.group(1)), "bleu": float(bleu.group(1))})
    return rows


def joey_checkpoint_stats(checkpoint: Path) -> dict[str, int]:
    """{"steps", "total_tokens"} (target tokens) from a JoeyNMT checkpoint's training statistics."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)["stats_state"]
        return {"steps": int(state["steps"]), "total_tokens": int(state["total_tokens"])}
    except (OSError, KeyError, RuntimeError, TypeError) as e:
        raise NMTError(f"cannot read the training statistics of {checkpoint}: {e}") from None


def decode_joey(python: Path, joey: dict[str, Any], checkpoint: Path, out_dir: Path, logs_dir: Path
                ) -> subprocess.Popen:
    """Start `joeynmt test` for greedy, then beam 5 (one thread): writes <out_dir>/joeynmt-<decode>.dev and
    .test, its detokenized outputs of valid and the test set."""
    steps = []
    for name, settings in DECODES.items():
        cfg_path = out_dir / f"joeynmt-{name}.yaml"
        write_text(cfg_path, yaml.safe_dump(joey_decode_config(joey, checkpoint, settings["beam"]), sort_keys=False))
        steps.append(f"'{python}' '{JOEY_LAUNCHER}' test '{cfg_path}' -o '{out_dir / f'joeynmt-{name}'}'")
    with (logs_dir / "joeynmt-test.log").open("w") as out:
        return subprocess.Popen(["bash", "-c", " && ".join(steps)], stdout=out, stderr=subprocess.STDOUT,
                                env=one_thread_env())
