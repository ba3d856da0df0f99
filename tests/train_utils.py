"""Tiny training set-ups shared by the training tests: real Multi30k lines, a 200-piece vocabulary, a model
with a few thousand parameters, so a step takes milliseconds on one CPU core."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from nmt.config import CONFIG_DIR

REPO = Path(__file__).resolve().parents[1]


def write_corpus(mirror: Path, directory: Path, n_train: int = 80, n_valid: int = 6) -> Path:
    """The first lines of Multi30k train/val (de-en) as plain files in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for split, name, n in (("train", "train", n_train), ("valid", "val", n_valid)):
        for lang in ("de", "en"):
            with gzip.open(mirror / "multi30k" / f"{name}.{lang}.gz", "rt", encoding="utf-8") as f:
                lines = [next(f) for _ in range(n)]
            (directory / f"{split}.{lang}").write_text("".join(lines), encoding="utf-8")
    return directory


def overrides(corpus: Path, data_root: Path, *extra: str) -> list[str]:
    """Hydra overrides for a tiny run; `extra` (later wins) adjusts them per test. Embeddings of 16 for the RNNs
    (the Transformer has no model.emb_dim: its embeddings have size hidden)."""
    transformer = any(e.startswith("model=transformer") for e in extra)
    return [
        "data=files",
        "data.name=tiny",
        f"data.root={data_root}",
        f"+data.files.train=[{corpus}/train.de,{corpus}/train.en]",
        f"+data.files.valid=[{corpus}/valid.de,{corpus}/valid.en]",
        "data.tokenizer.vocab_size=200",
        *([] if transformer else ["model.emb_dim=16"]),
        "model.hidden=16",
        "model.dropout=0.3",
        "train.device=cpu",
        "train.cpu_threads=1",
        "train.batch_tokens=300",
        "train.max_minutes=0",
        "train.max_steps=4",
        "train.eval_every=1000",
        "train.save_every=1000",
        "train.log_every=1",
        "train.attention_samples=0",
        "train.ema_decay=0",  # the 20-minute recipes' moving average: the tests that exercise it turn it on
        "train.resume=never",
        "decode.max_len_a=1.0",
        "decode.max_len_b=2",
        *extra,
    ]


def tiny_config(corpus: Path, data_root: Path, *extra: str) -> DictConfig:
    """The config `nmt-train` would build from the same overrides."""
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name="config", overrides=overrides(corpus, data_root, *extra))


def parameters(model: torch.nn.Module | dict) -> dict[str, torch.Tensor]:
    state = model if isinstance(model, dict) else model.state_dict()
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def assert_same_parameters(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"parameters differ: {different[:5]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cli_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1", HYDRA_FULL_ERROR="0")
    return env


def start_train_cli(args: list[str], **popen: object) -> subprocess.Popen:
    """`nmt-train` as a child process (same interpreter as the tests)."""
    return subprocess.Popen([sys.executable, "-m", "nmt.cli.train", *args], cwd=REPO, env=cli_env(), text=True, **popen)


def train_cli(monkeypatch: Any, args: list[str]) -> int:
    """`nmt-train ARGS` in this process; returns the exit code."""
    from hydra.core.global_hydra import GlobalHydra

    import nmt.cli.train

    monkeypatch.setattr(sys, "argv", ["nmt-train", *args])
    try:
        nmt.cli.train.main()
        return 0
    except SystemExit as e:
        return int(e.code or 0)
    finally:
        GlobalHydra.instance().clear()
