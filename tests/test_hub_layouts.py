"""`source=hub` corpora in both record layouts, named configs and splits, a pinned revision, and the errors.

The corpora are local folders of Parquet files, loaded by the real `datasets.load_dataset` (a folder path works
like a hub name); only the download itself is not exercised.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from nmt.config import DataConfig, TokenizerConfig
from nmt.data.corpus import prepare_corpus
from nmt.errors import NMTError
from nmt.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
DE = ["ein Hund läuft im Park", "zwei Katzen schlafen", "ein Mann fährt Rad", "eine Frau liest ein Buch"]
EN = ["a dog runs in the park", "two cats sleep", "a man rides a bike", "a woman reads a book"]
SPLITS = {"train": (DE * 5, EN * 5), "validation": (DE[:3], EN[:3]), "test": (DE[1:], EN[1:])}


@pytest.fixture(autouse=True)
def local_datasets_cache(tmp_path, monkeypatch):
    """Keep the datasets cache (Arrow files of loaded corpora) inside the test's tmp dir."""
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def write_flat(root: Path, columns: tuple[str, ...] = ("id", "en", "de")) -> Path:
    """bentrevett/multi30k's layout: train/validation/test files with one column per language."""
    root.mkdir(parents=True)
    for split, (de, en) in SPLITS.items():
        values = {"id": list(range(len(de))), "en": en, "de": de}
        pq.write_table(pa.table({c: values[c] for c in columns}), root / f"{split}.parquet")
    return root


def write_translation(root: Path) -> Path:
    """An iwslt2017-like layout: config "de-en", splits train / dev2010 / tst2010, {"translation": {...}}."""
    names = {"train": "train", "validation": "dev2010", "test": "tst2010"}
    (root / "de-en").mkdir(parents=True)
    for split, (de, en) in SPLITS.items():
        records = [{"de": d, "en": e} for d, e in zip(de, en, strict=True)]
        pq.write_table(pa.table({"translation": records}), root / "de-en" / f"{names[split]}.parquet")
    files = "".join(f"  - split: {n}\n    path: de-en/{n}.parquet\n" for n in names.values())
    (root / "README.md").write_text(f"---\nconfigs:\n- config_name: de-en\n  data_files:\n{files}---\n")
    return root


def hub_config(tmp_path: Path, hub_name: Path, name: str = "hubtiny", **kw) -> DataConfig:
    return DataConfig(name=name, source="hub", hub_name=str(hub_name), root=str(tmp_path / "data"),
                      tokenizer=TokenizerConfig(vocab_size=40), **kw)


def test_flat_layout_with_default_splits(tmp_path):
    corpus = prepare_corpus(hub_config(tmp_path, write_flat(tmp_path / "m30k"), hub_config=None), log=lambda _: None)
    assert corpus.split("valid")["src"] == DE[:3] and corpus.split("valid")["tgt"] == EN[:3]
    assert corpus.test_sets == ["test"] and corpus.split("test")["tgt"] == EN[1:]
    assert len(corpus.split("train")) == 20


def test_translation_layout_with_named_config_and_split_mapping(tmp_path):
    splits = {"train": "train", "valid": "dev2010", "tst2010": "tst2010"}
    cfg = hub_config(tmp_path, write_translation(tmp_path / "iwslt"), hub_config="de-en", hub_splits=splits)
    corpus = prepare_corpus(cfg, log=lambda _: None)
    assert corpus.test_sets == ["tst2010"] and corpus.split("test")["src"] == DE[1:]
    assert corpus.split("valid")["tgt"] == EN[:3]
    # The other direction reads the same records the other way round.
    reverse = hub_config(tmp_path, tmp_path / "iwslt", name="hubrev", hub_config="de-en", hub_splits=splits,
                         src_lang="en", tgt_lang="de")
    assert prepare_corpus(reverse, log=lambda _: None).split("valid")["src"] == EN[:3]


def test_revision_is_passed_to_load_dataset_only_when_pinned(tmp_path, monkeypatch):
    real, calls = datasets.load_dataset, []

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", recording)
    root = write_flat(tmp_path / "m30k")
    prepare_corpus(hub_config(tmp_path, root, hub_config=None), log=lambda _: None)
    cfg = hub_config(tmp_path, root, name="pinned", hub_config=None)
    cfg.hub_revision = "0123abc"
    corpus = prepare_corpus(cfg, log=lambda _: None)
    assert calls == [{}, {"revision": "0123abc"}]
    assert corpus.stats["origins"]["train"] == [f"{root}/None/train@0123abc"]


def test_flat_layout_without_the_source_column_is_one_clear_error(tmp_path):
    root = write_flat(tmp_path / "m30k", columns=("id", "en"))
    with pytest.raises(NMTError) as e:
        prepare_corpus(hub_config(tmp_path, root, hub_config=None), log=lambda _: None)
    message = str(e.value)
    assert "\n" not in message
    assert f"{root}/train has no column 'de' (columns: id, en)" in message


def test_missing_split_names_the_splits_there_are(tmp_path):
    cfg = hub_config(tmp_path, write_translation(tmp_path / "iwslt"), hub_config="de-en")
    with pytest.raises(NMTError, match=r"no split 'validation' .*it has train, dev2010, tst2010: set "
                                       r"data.hub_splits.valid=<one of them>$"):
        prepare_corpus(cfg, log=lambda _: None)


def cli(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.mark.slow
def test_cli_prepares_and_trains_on_a_flat_hub_corpus(tmp_path):
    data = ["data=hub", "data.name=m30k_flat", f"data.hub_name={write_flat(tmp_path / 'm30k')}",
            "data.hub_config=null", f"data.root={tmp_path / 'data'}", "data.tokenizer.vocab_size=40"]
    prepared = cli("nmt.cli.prepare", *data, cwd=tmp_path)
    assert prepared.returncode == 0, prepared.stderr
    rows = {line.split()[0]: line.split() for line in prepared.stdout.splitlines() if line.split()}
    assert rows["train"][1] == "20" and rows["valid"][1] == "3" and rows["test"][1] == "3"

    run_dir = tmp_path / "run"
    train = ["model.emb_dim=16", "model.hidden=16", "train.device=cpu", "train.cpu_threads=1",
             "train.batch_tokens=200", "train.max_minutes=0", "train.max_steps=3", "train.eval_every=1000",
             "train.save_every=1000", "train.log_every=1", "train.attention_samples=0", "train.resume=never",
             "decode.max_len_a=1.0", "decode.max_len_b=2", f"hydra.run.dir={run_dir}"]
    trained = cli("nmt.cli.train", *data, *train, cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    payload = load_checkpoint(run_dir / "last.pt")
    assert payload["step"] == 3 and payload["config"]["data"]["hub_name"] == str(tmp_path / "m30k")
