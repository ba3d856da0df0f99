"""Fine-tuning (train.init_from): a new run from a checkpoint's weights, model config and tokenizer, with a fresh
optimizer, schedule and step count; the new corpus is encoded with the checkpoint's tokenizer, never a new one."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from pathlib import Path

import pytest
import torch
from console import one_error_line, run_script
from omegaconf import OmegaConf

from nmt.config import Config, DataConfig, RNNAttentionConfig, TokenizerConfig, TrainConfig, TransformerConfig
from nmt.data.corpus import prepare_corpus, prepared_dir
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NMTError
from nmt.training.checkpoint import Checkpoint, finetune_model_config, load_checkpoint, load_model
from nmt.training.setup import given_model_keys
from nmt.training.state import FitSummary
from nmt.training.trainer import Trainer
from nmt.training.validate import ValidSet, valid_loss

NEWS_TRAIN_PAIRS = 3000
NEWS_MAX_WORDS = 20  # short news sentences keep the fine-tuning steps cheap
NEWS_VALID_PAIRS = 100
DE = ["ein Hund läuft im Park", "zwei Katzen schlafen", "ein Mann fährt Rad", "eine Frau liest ein Buch"]
EN = ["a dog runs in the park", "two cats sleep", "a man rides a bike", "a woman reads a book"]


# Without a corpus ----------------------------------------------------------------------------------------------
def tiny_checkpoint(**model: object) -> Checkpoint:
    cfg = Config(model=RNNAttentionConfig(emb_dim=16, hidden=32, dropout=0.0, **model))
    return Checkpoint(config=OmegaConf.to_container(OmegaConf.structured(cfg)), model={}, tokenizer={})


def test_model_config_comes_from_the_checkpoint_when_not_set() -> None:
    model = finetune_model_config(tiny_checkpoint(), Path("c.pt"), OmegaConf.structured(RNNAttentionConfig), set())
    assert (model.emb_dim, model.hidden, model.dropout) == (16, 32, 0.0)


def test_set_architecture_or_size_keys_that_differ_are_refused_naming_them() -> None:
    given = OmegaConf.structured(TransformerConfig(hidden=64))
    with pytest.raises(NMTError) as e:
        finetune_model_config(tiny_checkpoint(), Path("c.pt"), given, {"arch", "enc_layers", "hidden"})
    message = str(e.value)
    assert "\n" not in message
    assert "model.arch='transformer' (checkpoint: 'rnn_attention'), model.hidden=64 (checkpoint: 32)" in message
    assert "enc_layers" not in message.split("differ")[0]  # set, but equal to the checkpoint's


def test_dropout_temperature_and_hard_may_change() -> None:
    given = OmegaConf.structured(RNNAttentionConfig(dropout=0.2, temperature=0.5, hard=True))
    model = finetune_model_config(tiny_checkpoint(), Path("c.pt"), given, {"dropout", "temperature", "hard"})
    assert (model.dropout, model.temperature, model.hard, model.hidden) == (0.2, 0.5, True, 32)
    # The checkpoint's architecture decides which options there are: a Transformer has no attention temperature.
    transformer = Checkpoint(config=OmegaConf.to_container(OmegaConf.structured(Config(model=TransformerConfig()))),
                             model={}, tokenizer={})
    with pytest.raises(NMTError, match="model.temperature is not an option of the checkpoint's "
                                       "model.arch=transformer"):
        finetune_model_config(transformer, Path("c.pt"), given, {"dropout", "temperature"})


def test_outside_a_hydra_app_the_set_model_keys_are_those_off_their_defaults() -> None:
    assert given_model_keys(OmegaConf.structured(RNNAttentionConfig(hidden=64, dropout=0.1))) == {"hidden", "dropout"}
    assert given_model_keys(OmegaConf.structured(TransformerConfig(heads=4))) == {"heads"}
    assert given_model_keys(OmegaConf.structured(RNNAttentionConfig())) == set()


def test_init_from_with_a_resume_path_is_refused_in_one_line(tmp_path: Path) -> None:
    cfg = Config(train=TrainConfig(init_from="a.pt", resume=str(tmp_path / "last.pt"), max_steps=1))
    with pytest.raises(NMTError, match=r"^train.init_from starts a new run .* train.resume=.*give only one of them$"):
        Trainer(cfg, tmp_path / "run")


@pytest.mark.parametrize("content", [None, b"", os.urandom(3000), b"PK\x03\x04" + os.urandom(200)],
                         ids=["missing", "empty", "random-bytes", "zip-header"])  # the same ids in every xdist worker
def test_missing_empty_or_garbage_init_from_is_one_line(tmp_path: Path, content: bytes | None) -> None:
    init = tmp_path / "init.pt"
    if content is not None:
        init.write_bytes(content)
    cfg = Config(train=TrainConfig(init_from=str(init), resume="never", device="cpu", max_steps=1))
    with pytest.raises(NMTError) as e:
        Trainer(cfg, tmp_path / "run").fit()
    assert str(e.value).startswith("train.init_from: ") and "\n" not in str(e.value)
    assert ("checkpoint not found" if content is None else "is not a") in str(e.value)


def test_a_given_tokenizer_encodes_the_corpus_and_nothing_is_trained(tmp_path: Path) -> None:
    files = {}
    for split, n in (("train", 5), ("valid", 1)):
        for lang, lines in (("de", DE), ("en", EN)):
            (tmp_path / f"{split}.{lang}").write_text("\n".join(lines * n) + "\n", encoding="utf-8")
        files[split] = [str(tmp_path / f"{split}.de"), str(tmp_path / f"{split}.en")]
    cfg = DataConfig(name="small", source="files", files=files, root=str(tmp_path / "data"),
                     tokenizer=TokenizerConfig(vocab_size=45))
    other = Tokenizer.train([s.upper() for s in DE] * 3, [s.upper() for s in EN] * 3, vocab_size=50)
    logs: list[str] = []
    corpus = prepare_corpus(cfg, log=logs.append, tokenizer=other)
    assert corpus.tokenizer.sha256 == other.sha256 and corpus.stats["tokenizer"] == "given"
    assert not any("training SentencePiece" in line for line in logs)
    (differ,) = [line for line in logs if "data.tokenizer" in line]
    assert "vocab_size=45 (tokenizer: 50)" in differ and "not used" in differ
    assert corpus.split("valid")["src"] == DE
    # Cached apart from the corpus's own: both stay valid side by side.
    assert corpus.directory == prepared_dir(cfg, other) != prepared_dir(cfg)
    own = prepare_corpus(cfg, log=lambda _: None)
    assert own.stats["tokenizer"] == "trained" and own.tokenizer.sha256 != other.sha256
    again = prepare_corpus(cfg, log=lambda _: None, tokenizer=other)
    assert again.stats["cache"] == "hit" and again.tokenizer.sha256 == other.sha256


# On real corpora -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def news_files(real_mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """Another domain than Multi30k's image captions: 3,000 short WMT news train pairs and 100 valid pairs
    (newstest2013), in plain files."""
    root = tmp_path_factory.mktemp("news")
    news = real_mirror / "wmt-newstest-de-en"
    with gzip.open(news / "train.de.gz", "rt", encoding="utf-8") as de, \
            gzip.open(news / "train.en.gz", "rt", encoding="utf-8") as en:
        keep = [(d, e) for d, e in zip(de, en, strict=True)
                if max(len(d.split()), len(e.split())) <= NEWS_MAX_WORDS][:NEWS_TRAIN_PAIRS]
    files = {}
    for split, pairs in (("train", keep), ("valid", None)):
        if pairs is None:
            with gzip.open(news / "valid.de.gz", "rt", encoding="utf-8") as de, \
                    gzip.open(news / "valid.en.gz", "rt", encoding="utf-8") as en:
                pairs = [p for p, _ in zip(zip(de, en, strict=True), range(NEWS_VALID_PAIRS), strict=False)]
        for i, lang in enumerate(("de", "en")):
            (root / f"{split}.{lang}").write_text("".join(p[i] for p in pairs), encoding="utf-8")
        files[split] = [str(root / f"{split}.de"), str(root / f"{split}.en")]
    return files


def news_valid_loss(checkpoint: Path, files: dict[str, list[str]]) -> float:
    """Teacher-forced valid loss of `checkpoint` on the news valid pairs, computed as the trainer's validation does."""
    loaded = load_model(checkpoint)
    sources, references = (Path(f).read_text(encoding="utf-8").splitlines() for f in files["valid"])
    valid = ValidSet.build(sources, references, loaded.tokenizer, 2000)
    return valid_loss(loaded.model, valid, torch.device("cpu"), contextlib.nullcontext())


def news_overrides(files: dict[str, list[str]], data_root: Path) -> list[str]:
    return ["data=files", "data.name=news", "data.src_lang=de", "data.tgt_lang=en", f"data.root={data_root}",
            *(f"+data.files.{split}=[{src},{tgt}]" for split, (src, tgt) in files.items())]


FINETUNE_STEPS = 60
TRAIN_OVERRIDES = [
    "train.device=cpu", "train.cpu_threads=1", f"train.max_steps={FINETUNE_STEPS}", "train.max_minutes=0",
    "train.batch_tokens=2000", "train.lr=5e-3", "train.schedule=constant", f"train.eval_every={FINETUNE_STEPS}",
    f"train.save_every={FINETUNE_STEPS}", "train.eval_max_sentences=100", "train.attention_samples=0",
    "train.log_every=1000", "decode.max_len_a=1.0", "decode.max_len_b=2",
]


@pytest.mark.slow
def test_fine_tuning_on_news_lowers_its_valid_loss_and_keeps_the_tokenizer(tiny_run, news_files, tmp_path) -> None:
    """nmt-train train.init_from=<a tiny Multi30k run> on WMT news: a new run (step count from 0) with the Multi30k
    model's config and tokenizer, whose valid loss on news is below the starting checkpoint's."""
    start = tiny_run.run_dir / "best.pt"
    start_payload = load_checkpoint(start)
    before = news_valid_loss(start, news_files)
    run_dir = tmp_path / "run"
    result = run_script("nmt-train", [*news_overrides(news_files, tmp_path / "data"), *TRAIN_OVERRIDES,
                                      f"train.init_from={tiny_run.run_dir}", f"hydra.run.dir={run_dir}"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout
    assert f"fine-tuning from {start.resolve()} (step 30 of its run)" in log
    assert "training SentencePiece" not in log
    (differ,) = [line for line in log.splitlines() if line.startswith("data.tokenizer settings differ")]
    assert "vocab_size=8000 (tokenizer: 250)" in differ

    payload = load_checkpoint(run_dir / "last.pt")
    assert payload["step"] == FINETUNE_STEPS  # counters start again
    assert Tokenizer.from_state_dict(payload["tokenizer"]).sha256 == \
        Tokenizer.from_state_dict(start_payload["tokenizer"]).sha256
    assert payload["config"]["model"] == start_payload["config"]["model"]  # not the rnn_attention preset's sizes
    assert payload["config"]["train"]["init_from"] == str(start.resolve())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    after = metrics["history"][-1]["valid_loss"]
    assert after == pytest.approx(news_valid_loss(run_dir / "last.pt", news_files), rel=1e-4)
    assert after < before - 0.1, (before, after)


@pytest.mark.slow
def test_fine_tuning_refusals_through_nmt_train(tiny_run, news_files, tmp_path) -> None:
    """One line and exit 2: a model size on the command line that differs from the checkpoint's, a garbage
    checkpoint, and init_from together with a resume path."""
    data = news_overrides(news_files, tmp_path / "data")
    resized = run_script("nmt-train", [*data, *TRAIN_OVERRIDES, f"train.init_from={tiny_run.run_dir}",
                                       "model.hidden=64", "model.emb_dim=16", f"hydra.run.dir={tmp_path / 'a'}"],
                         tmp_path)
    line = one_error_line(resized)
    assert "model.hidden=64 (checkpoint: 32)" in line and "emb_dim" not in line

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(os.urandom(5000))
    bad = run_script("nmt-train", [*data, *TRAIN_OVERRIDES, f"train.init_from={garbage}",
                                   f"hydra.run.dir={tmp_path / 'b'}"], tmp_path)
    assert one_error_line(bad).startswith(f"error: train.init_from: {garbage} is not a readable checkpoint")

    both = run_script("nmt-train", [*data, *TRAIN_OVERRIDES, f"train.init_from={tiny_run.run_dir}",
                                    f"train.resume={tiny_run.run_dir / 'last.pt'}", f"hydra.run.dir={tmp_path / 'c'}"],
                      tmp_path)
    assert "give only one of them" in one_error_line(both)


def tiny_files(root: Path) -> dict[str, list[str]]:
    root.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in (("train", 10), ("valid", 1)):
        for lang, lines in (("de", DE), ("en", EN)):
            (root / f"{split}.{lang}").write_text("\n".join(lines * n) + "\n", encoding="utf-8")
        files[split] = [str(root / f"{split}.de"), str(root / f"{split}.en")]
    return files


def tiny_config(tmp_path: Path, name: str, model: RNNAttentionConfig, **train: object) -> Config:
    data = DataConfig(name=name, source="files", files=tiny_files(tmp_path / name), root=str(tmp_path / "data"),
                      tokenizer=TokenizerConfig(vocab_size=40))
    train_cfg = TrainConfig(device="cpu", batch_tokens=200, lr=5e-3, eval_every=1000, save_every=1000,
                            attention_samples=0, log_every=1000, **train)
    return Config(data=data, model=model, train=train_cfg)


@pytest.mark.slow
def test_a_fine_tuning_run_resumes_from_its_own_last_checkpoint(tmp_path: Path, one_thread: None) -> None:
    """Run again on its run dir (train.resume=auto), a fine-tuning run continues from its last.pt rather than
    starting over from init_from; another init_from on that run dir is refused."""
    base = tiny_config(tmp_path, "base", RNNAttentionConfig(emb_dim=8, hidden=8, dropout=0.0), max_steps=2)
    Trainer(base, tmp_path / "base_run").fit()
    base_sha = Tokenizer.from_state_dict(load_checkpoint(tmp_path / "base_run" / "last.pt")["tokenizer"]).sha256

    def fine_tune(steps: int, init_from: Path) -> FitSummary:
        cfg = tiny_config(tmp_path, "other", RNNAttentionConfig(), max_steps=steps, init_from=str(init_from))
        cfg.data.files = {k: v[::-1] for k, v in cfg.data.files.items()}  # en -> de: another task, same tokenizer
        return Trainer(cfg, tmp_path / "ft_run").fit()

    assert fine_tune(2, tmp_path / "base_run").step == 2
    first = load_checkpoint(tmp_path / "ft_run" / "last.pt")
    assert Tokenizer.from_state_dict(first["tokenizer"]).sha256 == base_sha
    assert first["config"]["model"]["hidden"] == 8
    assert fine_tune(4, tmp_path / "base_run").step == 4  # 2 more steps, not 4 from the start
    log = (tmp_path / "ft_run" / "train.log").read_text()
    assert log.count("fine-tuning from") == 1 and "resumed from" in log
    other = tmp_path / "other.pt"
    other.write_bytes((tmp_path / "base_run" / "last.pt").read_bytes())
    with pytest.raises(NMTError, match=r"continues a run that was started from .*base_run/best.pt; use a new run"):
        fine_tune(6, other)
