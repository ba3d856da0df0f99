"""The corpus cache (reuse, rebuild, retrain, interrupted builds) and the `nmt-prepare` command."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from nmt.config import CONFIG_DIR, DataConfig, TokenizerConfig, compose_config
from nmt.data import corpus as corpus_module
from nmt.data import sources as sources_module
from nmt.data.corpus import prepare_corpus
from nmt.data.sources import read_corpus_lines
from nmt.data.tokenizer import Tokenizer
from nmt.errors import NMTError
from nmt.training.setup import check_train_config

REPO = Path(__file__).resolve().parents[1]


def quiet(_: str) -> None:
    pass


def write(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines))
    return str(path)


@pytest.fixture
def tiny_files(tmp_path) -> dict[str, list[str]]:
    de = ["ein Hund läuft im Park", "zwei Katzen schlafen", "ein Mann fährt Rad", "eine Frau liest ein Buch"] * 5
    en = ["a dog runs in the park", "two cats sleep", "a man rides a bike", "a woman reads a book"] * 5
    return {
        "train": [write(tmp_path / "train.de", de), write(tmp_path / "train.en", en)],
        "valid": [write(tmp_path / "valid.de", de[:3]), write(tmp_path / "valid.en", en[:3])],
    }


def config(tmp_path: Path, files: dict, vocab: int = 40, **kw) -> DataConfig:
    return DataConfig(
        name="tiny", source="files", files=files, root=str(tmp_path / "data"),
        tokenizer=TokenizerConfig(vocab_size=vocab), **kw,
    )  # fmt: skip


def spm_files(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.glob("spm-*.model")}


def test_second_prepare_reuses_the_cache_without_reading_or_training(tmp_path, tiny_files, monkeypatch):
    first = prepare_corpus(config(tmp_path, tiny_files), log=quiet)
    assert first.stats["cache"] == "rebuilt" and first.stats["tokenizer"] == "trained"
    before = spm_files(first.directory)
    assert len(before) == 1

    def fail(*args, **kwargs):
        raise AssertionError("a warm prepare must not read, clean or train")

    monkeypatch.setattr(corpus_module, "load_raw", fail)
    monkeypatch.setattr(Tokenizer, "train", fail)
    second = prepare_corpus(config(tmp_path, tiny_files), log=quiet)
    assert second.stats["cache"] == "hit"
    assert spm_files(second.directory) == before
    assert second.tokenizer.sha256 == first.tokenizer.sha256
    assert second.split("valid")["src"] == first.split("valid")["src"]
    assert second.stats["splits"] == first.stats["splits"]


def test_tokenizer_change_retrains_and_other_changes_reuse_it(tmp_path, tiny_files):
    first = prepare_corpus(config(tmp_path, tiny_files), log=quiet)
    old = spm_files(first.directory)

    # a new test set changes the corpus, not the train text: the tokenizer is reused as is
    test = [write(tmp_path / "test.de", ["ein Hund"]), write(tmp_path / "test.en", ["a dog"])]
    more = prepare_corpus(config(tmp_path, {**tiny_files, "test": test}), log=quiet)
    assert more.stats["cache"] == "rebuilt" and more.stats["tokenizer"] == "reused"
    assert spm_files(more.directory) == old and more.test_sets == ["test"]

    bpe = config(tmp_path, {**tiny_files, "test": test})
    bpe.tokenizer.model_type = "bpe"
    retrained = prepare_corpus(bpe, log=quiet)
    assert retrained.stats["tokenizer"] == "trained"
    assert set(spm_files(retrained.directory)).isdisjoint(old), "stale models are removed"
    assert retrained.tokenizer.sha256 != first.tokenizer.sha256


def test_changed_input_file_rebuilds(tmp_path, tiny_files):
    prepare_corpus(config(tmp_path, tiny_files), log=quiet)
    write(Path(tiny_files["valid"][1]), ["a dog", "two cats", "a man on a bike"])
    logged = []
    again = prepare_corpus(config(tmp_path, tiny_files), log=logged.append)
    assert again.stats["cache"] == "rebuilt" and again.stats["tokenizer"] == "reused"
    assert again.split("valid")["tgt"][2] == "a man on a bike"
    assert any("changed" in m for m in logged)
    # a changed train file changes what the tokenizer learns from: retrained
    write(Path(tiny_files["train"][0]), ["ein Hund rennt"] * 20)
    assert prepare_corpus(config(tmp_path, tiny_files), log=quiet).stats["tokenizer"] == "trained"


def test_cache_is_used_when_the_inputs_are_gone(tmp_path, tiny_files):
    first = prepare_corpus(config(tmp_path, tiny_files), log=quiet)
    for pair in tiny_files.values():
        for path in pair:
            Path(path).unlink()
    logged = []
    again = prepare_corpus(config(tmp_path, tiny_files), log=logged.append)
    assert again.stats["cache"] == "hit" and again.split("train")["src"] == first.split("train")["src"]
    assert any("not found locally" in m for m in logged)


def test_interrupted_prepare_leaves_no_valid_looking_cache(tmp_path, tiny_files, monkeypatch):
    prepare_corpus(config(tmp_path, tiny_files), log=quiet)
    directory = tmp_path / "data" / "prepared" / "tiny"

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Tokenizer, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare_corpus(config(tmp_path, tiny_files, vocab=45), log=quiet)
    assert not (directory / "manifest.json").exists()
    monkeypatch.undo()
    # the old settings no longer match a manifest: the next prepare rebuilds instead of trusting half a cache
    again = prepare_corpus(config(tmp_path, tiny_files), log=quiet)
    assert again.stats["cache"] == "rebuilt"
    assert json.loads((directory / "manifest.json").read_text())["tokenizer_settings"]["vocab_size"] == 40


def test_a_corpus_read_in_small_chunks_is_the_corpus_read_whole(tmp_path, real_mirror, monkeypatch):
    """Multi30k's first 3,000 train pairs (and its valid set) prepared in chunks of 7 lines, against one chunk:
    the same cleaned text, drops, statistics, corpus hash and tokenizer."""
    files = {}
    for split, name in (("train", "train"), ("valid", "val")):
        files[split] = [write(tmp_path / f"{split}.{lang}", read_corpus_lines(real_mirror / "multi30k" /
                                                                          f"{name}.{lang}.gz")[:3000])
                        for lang in ("de", "en")]
    whole = prepare_corpus(config(tmp_path / "whole", files, vocab=500), log=quiet)
    monkeypatch.setattr(sources_module, "CHUNK_LINES", 7)
    chunked = prepare_corpus(config(tmp_path / "chunked", files, vocab=500), log=quiet)
    assert chunked.corpus_sha256 == whole.corpus_sha256 and chunked.tokenizer.sha256 == whole.tokenizer.sha256
    assert chunked.stats["splits"] == whole.stats["splits"] and chunked.stats["dropped"] == whole.stats["dropped"]
    assert chunked.split("train")["src"] == whole.split("train")["src"]


def test_a_bad_line_late_in_a_changed_corpus_leaves_the_prepared_one_intact(tmp_path, tiny_files):
    first = prepare_corpus(config(tmp_path, tiny_files), log=quiet)
    directory = first.directory
    before = {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    with open(tiny_files["train"][0], "ab") as f:
        f.write(b"ein letzter \xff Satz\n")  # the new last line: invalid UTF-8
    with open(tiny_files["train"][1], "a") as f:
        f.write("a last sentence\n")
    with pytest.raises(NMTError, match=r"train\.de: invalid UTF-8 on line 21"):
        prepare_corpus(config(tmp_path, tiny_files), log=quiet)
    after = {p.relative_to(directory): p.read_bytes() for p in directory.rglob("*") if p.is_file()}
    assert after == before  # nothing half-written, the manifest still valid for the old inputs


# ------------------------------------------------------------------------------------------------------- CLI


def nmt_prepare(*args: str, cwd: Path, mirror: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if mirror is not None:
        env["NMT_DATA_MIRROR"] = str(mirror)
    return subprocess.run(
        [sys.executable, "-m", "nmt.cli.prepare", *args], cwd=cwd, env=env, capture_output=True, text=True
    )


@pytest.mark.slow
def test_cli_prepares_multi30k_from_the_mirror(tmp_path, real_mirror):
    root = tmp_path / "data"
    run = nmt_prepare(
        f"data.root={root}",
        "data.tokenizer.vocab_size=1000",
        "data.tokenizer.model_type=bpe",
        cwd=tmp_path,
        mirror=real_mirror,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.split()}
    assert int(rows["train"][1]) > 28900 and rows["valid"][1] == "1014" and rows["test_2016_flickr"][1] == "1000"
    assert "dropped" in out and "src 1000 pieces, tgt 1000 pieces" in out and "done in" in out
    assert not (tmp_path / "outputs").exists(), "preparing does not create a run directory"

    tokenizer = TokenizerConfig(vocab_size=1000, model_type="bpe")
    corpus = prepare_corpus(DataConfig(root=str(root), tokenizer=tokenizer), log=quiet)
    assert corpus.stats["cache"] == "hit"
    assert corpus.split("test")["src"] == read_corpus_lines(real_mirror / "multi30k" / "test_2016_flickr.de.gz")
    assert corpus.split("valid")["tgt"] == read_corpus_lines(real_mirror / "multi30k" / "val.en.gz")
    assert corpus.tokenizer.src_vocab_size == 1000


@pytest.mark.slow
def test_cli_reports_a_bad_corpus_in_one_line(tmp_path):
    src = write(tmp_path / "train.de", ["a", "b", "c"])
    tgt = write(tmp_path / "train.en", ["a", "b"])
    run = nmt_prepare(
        "data=files", f"data.root={tmp_path / 'data'}", f"+data.files={{train:[{src},{tgt}],valid:[{src},{tgt}]}}",
        cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.startswith("error: line counts differ") and len(run.stderr.strip().splitlines()) == 1
    assert src in run.stderr and tgt in run.stderr and "3 lines" in run.stderr and "has 2" in run.stderr


@pytest.mark.parametrize(
    "override, expected",
    [("data.batch_tokenz=1", ["batch_tokenz"]), ("data=nonexistent", ["data=nonexistent", "multi30k_de_en"])],
)
def test_cli_rejects_unknown_keys_and_groups_at_start_up(tmp_path, monkeypatch, capsys, override, expected):
    from nmt.cli import prepare

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["nmt-prepare", override])
    with pytest.raises(SystemExit) as e:
        prepare.main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert all(word in err for word in expected) and len(err.strip().splitlines()) == 1, err
    assert list(tmp_path.iterdir()) == [], "nothing is prepared or written"


def test_v4k_preset_is_multi30k_with_a_4k_vocabulary_and_its_own_cache():
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        base = compose(config_name="config")
        v4k = compose(config_name="config", overrides=["data=multi30k_de_en_v4k"])
    assert (v4k.data.name, v4k.data.tokenizer.vocab_size) == ("multi30k_de_en_v4k", 4000)
    assert base.data.tokenizer.vocab_size == 8000
    for key in ("source", "src_lang", "tgt_lang", "test_sets"):
        assert v4k.data[key] == base.data[key]


def test_the_transformer_recipe_is_one_option_for_three_groups():
    recipe = compose_config("config", ["recipe=transformer_cpu20"])
    spelled = compose_config("config", ["data=multi30k_de_en_v4k", "model=transformer", "train=transformer"])
    assert OmegaConf.to_container(recipe) == OmegaConf.to_container(spelled)
    assert compose_config("config", ["recipe=transformer_cpu20", "train.lr=1e-4"]).train.lr == 1e-4  # still overridable
    with pytest.raises(NMTError, match="unknown recipe=nope; valid choices: rnn_gpu, transformer_cpu20, trans"):
        compose_config("config", ["recipe=nope"])


@pytest.mark.parametrize("recipe, arch", [("transformer_gpu", "transformer"), ("rnn_gpu", "rnn_attention")])
def test_gpu_recipes_compose_into_a_valid_train_config(recipe, arch):
    cfg = compose_config("config", [f"recipe={recipe}"])
    check_train_config(cfg.train)
    assert (cfg.model.arch, cfg.model.hidden) == (arch, 512)
    assert 16384 <= cfg.train.batch_tokens <= 65536 and cfg.train.amp and cfg.train.num_workers > 0
    assert compose_config("config", [f"recipe={recipe}", "train.batch_tokens=8192"]).train.batch_tokens == 8192
    # sized for a GPU: cadence in training minutes, weights-only step files, a warm-up for Adam at the larger batch
    assert cfg.train.eval_every_minutes > 0 and cfg.train.save_every_minutes > 0 and cfg.train.save_weights_only
    assert cfg.train.warmup_steps >= 2 / (1 - cfg.train.betas[1])


def test_the_rnn_gpu_recipe_scales_the_rnn_presets_rate_by_the_square_root_of_the_batch():
    gpu, cpu = compose_config("config", ["recipe=rnn_gpu"]).train, compose_config("config", ["train=rnn"]).train
    assert gpu.lr == pytest.approx(cpu.lr * math.sqrt(gpu.batch_tokens / cpu.batch_tokens), rel=1e-3)
