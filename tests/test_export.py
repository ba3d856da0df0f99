"""CTranslate2 export: exact weight mapping (teacher-forced log-probabilities), greedy outputs identical to
ours, int8, refusals (RNN checkpoint, non-empty out dir, engine missing) and the `nmt-export` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ct2 = pytest.importorskip("ctranslate2", reason="CTranslate2 is not installed (pip install -e .[fast])")

from conftest import TinyRun, train_tiny_run  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from nmt.config import DecodeConfig  # noqa: E402
from nmt.data.batching import collate  # noqa: E402
from nmt.data.tokenizer import Tokenizer  # noqa: E402
from nmt.decoding.search import translate  # noqa: E402
from nmt.errors import NMTError  # noqa: E402
from nmt.inference.export import INFO_FILE, export_ctranslate2, translate_ctranslate2  # noqa: E402
from nmt.models import build_model  # noqa: E402
from nmt.training.checkpoint import load_checkpoint, load_model, save_checkpoint  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
N_SENTENCES = 20


@pytest.fixture(scope="module")
def transformer_run(tiny_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """A Transformer trained 60 steps on the tiny corpus (enough for varied, non-uniform outputs)."""
    root = tmp_path_factory.mktemp("export_transformer")
    return train_tiny_run(root / "run", tiny_run.files, tiny_run.data_root, "transformer", steps=60, save_every=60)


@pytest.fixture(scope="module")
def exported(transformer_run: TinyRun, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ct2") / "fp32"
    return export_ctranslate2(transformer_run.run_dir / "last.pt", out, quantization="float32")


@pytest.fixture(scope="module")
def sentences(tiny_run: TinyRun) -> list[str]:
    return Path(tiny_run.files["test"][0]).read_text(encoding="utf-8").splitlines()[:N_SENTENCES]


@pytest.fixture
def random_checkpoint(transformer_run: TinyRun, tmp_path: Path) -> Path:
    """Learned positions, untied embeddings, separate vocabularies, 2+2 layers, 4 heads, and every weight
    (layer norms and biases included) random, so that any swapped or missing mapping shows."""
    payload = load_checkpoint(transformer_run.run_dir / "last.pt")
    loaded = load_model(transformer_run.run_dir / "last.pt")
    src = Path(transformer_run.files["train"][0]).read_text(encoding="utf-8").splitlines()
    tgt = Path(transformer_run.files["train"][1]).read_text(encoding="utf-8").splitlines()
    tok = Tokenizer.train(src, tgt, vocab_size=120, joint=False)
    cfg = OmegaConf.merge(loaded.cfg, {"model": {"positions": "learned", "tie_embeddings": False, "enc_layers": 2,
                                                 "dec_layers": 2, "heads": 4, "max_positions": 128}})
    torch.manual_seed(0)
    model = build_model(cfg.model, tok.src_vocab_size, tok.tgt_vocab_size)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm.weight" in name else 0.0))
    path = tmp_path / "random.pt"
    save_checkpoint(path, {**{k: payload[k] for k in ("step", "epoch", "metrics")},
                           "config": OmegaConf.to_container(cfg, resolve=True), "model": model.state_dict(),
                           "tokenizer": tok.state_dict()})
    return path


def teacher_forced_gap(checkpoint: Path, model_dir: Path, src: list[str], tgt: list[str],
                       compute_type: str = "default") -> float:
    """Largest |log p_ours - log p_ct2| over all target tokens (EOS included) of the given pairs."""
    loaded = load_model(checkpoint)
    tok = loaded.tokenizer
    src_ids, tgt_ids = tok.encode_src(src), tok.encode_tgt(tgt)
    batch = collate(src_ids, tgt_ids, list(range(len(src))))
    with torch.no_grad():
        logp = torch.log_softmax(loaded.model(batch.src, batch.src_lens, batch.tgt_in), dim=-1)
    ours = logp.gather(2, batch.tgt_out.unsqueeze(2)).squeeze(2)
    translator = ct2.Translator(str(model_dir), intra_threads=1, compute_type=compute_type)
    results = translator.score_batch([[tok.src_sp.id_to_piece(i) for i in s] for s in src_ids],
                                     [[tok.tgt_sp.id_to_piece(i) for i in t] for t in tgt_ids])
    gap = 0.0
    for i, result in enumerate(results):
        n = len(tgt_ids[i]) + 1
        assert len(result.log_probs) == n
        gap = max(gap, (ours[i, :n] - torch.tensor(result.log_probs)).abs().max().item())
    return gap


def test_export_directory_and_info(exported, transformer_run):
    names = {p.name for p in exported.iterdir()}
    assert {"model.bin", "config.json", "spm.model", INFO_FILE} <= names
    info = json.loads((exported / INFO_FILE).read_text(encoding="utf-8"))
    assert info["checkpoint"] == str((transformer_run.run_dir / "last.pt").resolve())
    assert info["step"] == 60 and info["quantization"] == "float32" and len(info["config_sha256"]) == 64
    config = json.loads((exported / "config.json").read_text(encoding="utf-8"))
    assert config["decoder_start_token"] == "<s>" and config["add_source_eos"] is True
    assert not list(exported.parent.glob(".*"))  # no staging directory left behind


def test_weights_map_exactly(exported, transformer_run, tiny_run, random_checkpoint, tmp_path):
    src = Path(tiny_run.files["test"][0]).read_text(encoding="utf-8").splitlines()[:N_SENTENCES]
    tgt = Path(tiny_run.files["test"][1]).read_text(encoding="utf-8").splitlines()[:N_SENTENCES]
    assert teacher_forced_gap(transformer_run.run_dir / "last.pt", exported, src, tgt) < 1e-4
    other = export_ctranslate2(random_checkpoint, tmp_path / "random", quantization="float32")
    assert {"spm.src.model", "spm.tgt.model"} <= {p.name for p in other.iterdir()}
    assert teacher_forced_gap(random_checkpoint, other, src, tgt) < 1e-4


def test_greedy_outputs_equal_ours(exported, transformer_run, sentences, one_thread):
    loaded = load_model(transformer_run.run_dir / "last.pt")
    inputs = sentences + ["", "   "]
    cfg = DecodeConfig(beam=1, max_len_a=1.5, max_len_b=10)
    ours = translate(loaded.model, loaded.tokenizer, inputs, cfg, "cpu").hypotheses
    theirs = translate_ctranslate2(exported, inputs, beam=1, max_len_a=1.5, max_len_b=10)
    assert len(set(ours[:N_SENTENCES])) > 5  # a model that says different things
    assert theirs == ours
    # Tight length limits are the same limits (including the empty-output limit 0).
    short = DecodeConfig(beam=1, max_len_a=0.2, max_len_b=0)
    ours = translate(loaded.model, loaded.tokenizer, sentences, short, "cpu").hypotheses
    assert translate_ctranslate2(exported, sentences, beam=1, max_len_a=0.2, max_len_b=0) == ours


def test_beam_search_runs_and_mostly_agrees(exported, transformer_run, sentences, one_thread):
    """Beam scores differ (length penalty form, forced final EOS), so only most outputs agree."""
    loaded = load_model(transformer_run.run_dir / "last.pt")
    ours = translate(loaded.model, loaded.tokenizer, sentences, DecodeConfig(beam=5, alpha=1.0), "cpu").hypotheses
    theirs = translate_ctranslate2(exported, sentences, beam=5, alpha=1.0)
    assert len(theirs) == len(sentences)
    assert sum(a == b for a, b in zip(ours, theirs, strict=True)) >= 0.6 * len(sentences)


def test_int8_export_runs(transformer_run, tiny_run, sentences, exported, tmp_path):
    out = export_ctranslate2(transformer_run.run_dir / "last.pt", tmp_path / "int8")
    assert json.loads((out / INFO_FILE).read_text(encoding="utf-8"))["quantization"] == "int8"
    assert (out / "model.bin").stat().st_size < (exported / "model.bin").stat().st_size
    hyps = translate_ctranslate2(out, sentences, beam=2)
    assert len(hyps) == len(sentences) and all(isinstance(h, str) for h in hyps)
    # The int8 weights themselves stay close to ours (computed dequantized).
    tgt = Path(tiny_run.files["test"][1]).read_text(encoding="utf-8").splitlines()[:N_SENTENCES]
    assert teacher_forced_gap(transformer_run.run_dir / "last.pt", out, sentences, tgt, "float32") < 0.2


def test_exported_translator_takes_one_sentence_and_refuses_non_strings(exported, sentences):
    from nmt.inference.translator import Translator

    translator = Translator.from_ctranslate2(exported, {"beam": 1})
    assert translator.translate(sentences[0]) == translator.translate(sentences[:1])[0]
    with pytest.raises(TypeError, match="sentence 1 is NoneType"):
        translator.translate([sentences[0], None])


def test_rnn_checkpoint_is_refused(tiny_run, tmp_path):
    with pytest.raises(NMTError, match="supports Transformer checkpoints only") as e:
        export_ctranslate2(tiny_run.run_dir / "best.pt", tmp_path / "rnn")
    assert "\n" not in str(e.value)
    assert not (tmp_path / "rnn").exists()


def test_non_empty_out_dir_is_never_overwritten(transformer_run, tmp_path):
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(NMTError, match="not empty"):
        export_ctranslate2(transformer_run.run_dir / "last.pt", out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (export_ctranslate2(transformer_run.run_dir / "last.pt", empty, "float32") / "model.bin").is_file()


def test_missing_engine_says_how_to_install(transformer_run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # makes `import ctranslate2` fail
    with pytest.raises(NMTError, match=r"pip install -e \.\[fast\]"):
        export_ctranslate2(transformer_run.run_dir / "last.pt", tmp_path / "x")


@pytest.mark.slow
def test_cli_end_to_end(transformer_run, tiny_run, tmp_path):
    def export(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "nmt.cli.export", *args], cwd=REPO, capture_output=True,
                              text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)

    ok = export(f"checkpoint={transformer_run.run_dir}", f"out={tmp_path / 'cli'}", "quantization=float32")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "cli" / "model.bin").is_file() and "exported" in ok.stdout
    source = tmp_path / "in.de"
    source.write_text("Ein Hund läuft.\n\nZwei Männer.\n", encoding="utf-8")
    translated = subprocess.run(
        [Path(sys.executable).parent / "nmt-translate", "engine=ctranslate2", f"export_dir={tmp_path / 'cli'}",
         f"input={source}", f"output={tmp_path / 'out.en'}", "threads=1"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert translated.returncode == 0, translated.stderr
    assert len((tmp_path / "out.en").read_text(encoding="utf-8").splitlines()) == 3
    bad = export(f"checkpoint={tiny_run.run_dir / 'best.pt'}", f"out={tmp_path / 'rnn'}")
    assert bad.returncode == 2
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "Transformer checkpoints only" in lines[0]


def test_engine_comparison(transformer_run, tmp_path, capsys):
    """nmt-bench --ctranslate2: our beam search and both exports on the same sentences, per thread count."""
    from nmt.cli import bench

    out = tmp_path / "engines.json"
    bench.main(["--ctranslate2", str(transformer_run.run_dir / "last.pt"), "--decode-sentences", "12",
                "--engine-threads", "1", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    report = json.loads(out.read_text(encoding="utf-8"))
    rows = report["rows"]
    assert [(r["engine"], r["threads"]) for r in rows] == [
        (e, n) for n in (1, 2) for e in ("nmt", "ctranslate2 float32", "ctranslate2 int8")]
    assert report["sentences"] == 12 and report["decode"]["beam"] == 5
    for r in rows:
        assert r["sentences_per_s"] > 0 and 0 <= r["bleu"] <= 100
        assert r["bleu_vs_ours"] == pytest.approx(r["bleu"] - rows[3 * (r["threads"] == 2)]["bleu"])
    assert rows[0]["speedup"] == 1.0 and "| ctranslate2 int8 | 2 |" in printed
    # Greedy: the float32 export is our model decoding our way, so its BLEU is ours exactly.
    bench.main(["--ctranslate2", str(transformer_run.run_dir / "last.pt"), "--decode-sentences", "12",
                "--engine-threads", "1", "--engine-beam", "1", "--out", str(out)])
    greedy = json.loads(out.read_text(encoding="utf-8"))
    assert greedy["decode"]["beam"] == 1 and greedy["rows"][1]["bleu_vs_ours"] == 0.0
