"""CTranslate2 export: exact weight mapping (teacher-forced log-probabilities), greedy outputs and (with
length_norm=power) beam outputs identical to ours, int8, the engine loaded once (ExportedTranslator), refusals
(RNN checkpoint, non-empty out dir, engine missing), the `nmt-export` CLI and the engine comparison."""

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
from nmt.decoding.search import max_output_lengths, translate  # noqa: E402
from nmt.errors import NMTError  # noqa: E402
from nmt.inference.export import INFO_FILE, export_ctranslate2  # noqa: E402
from nmt.inference.translator import ExportedTranslator, Translator  # noqa: E402
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
    save_checkpoint(path, {**{k: payload[k] for k in ("step", "train_state")},
                           "config": OmegaConf.to_container(cfg, resolve=True), "model": model.state_dict(),
                           "tokenizer": tok.state_dict()})
    return path


def ct2_translate(model_dir: Path, lines: list[str], **decode: object) -> list[str]:
    return Translator.from_ctranslate2(model_dir, decode).translate(lines)


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
    theirs = ct2_translate(exported, inputs, beam=1, max_len_a=1.5, max_len_b=10)
    assert len(set(ours[:N_SENTENCES])) > 5  # a model that says different things
    assert theirs == ours
    # Tight length limits are the same limits (including the empty-output limit 0), also where a batch of 4
    # sentences with different limits is decoded with its largest limit and each output cut to its own.
    short = DecodeConfig(beam=1, max_len_a=0.2, max_len_b=0)
    ours = translate(loaded.model, loaded.tokenizer, sentences, short, "cpu").hypotheses
    assert ct2_translate(exported, sentences, beam=1, max_len_a=0.2, max_len_b=0, batch_size=4) == ours
    assert len({len(h.split()) for h in ours}) > 2  # the limits differ


@pytest.mark.parametrize("alpha", [1.0, 0.6])
def test_beam_outputs_equal_ours_with_power_length_norm(exported, transformer_run, sentences, one_thread, alpha):
    """CTranslate2 normalises by length ** alpha (EOS counted): ours with length_norm=power is the same search,
    for every sentence whose output ends before its length limit (at the limit the engine ends a hypothesis
    without scoring EOS, ours scores a forced EOS). With the GNMT penalty (our default) outputs differ more."""
    loaded = load_model(transformer_run.run_dir / "last.pt")
    settings = {"beam": 5, "alpha": alpha, "max_len_a": 3.0, "max_len_b": 10, "batch_size": 8}
    ours = translate(loaded.model, loaded.tokenizer, sentences, DecodeConfig(**settings, length_norm="power"), "cpu")
    theirs = Translator.from_ctranslate2(exported, settings).translate_full(sentences)
    src_lens = torch.tensor([len(ids) + 1 for ids in loaded.tokenizer.encode_src(sentences)])
    limits = max_output_lengths(loaded.model, src_lens, 3.0, 10).tolist()
    free = [i for i, ids in enumerate(ours.ids) if len(ids) < limits[i]]
    assert len(free) >= 0.8 * len(sentences)
    assert [theirs.hypotheses[i] for i in free] == [ours.hypotheses[i] for i in free]
    # The scores agree up to the engine ruling PAD and BOS out before the softmax (ours after).
    assert [theirs.scores[i][0] for i in free] == pytest.approx([ours.scores[i][0] for i in free], abs=0.02)
    gnmt = translate(loaded.model, loaded.tokenizer, sentences, DecodeConfig(**settings), "cpu").hypotheses
    assert sum(a == b for a, b in zip(gnmt, theirs.hypotheses, strict=True)) >= 0.5 * len(sentences)


def test_exported_translator_loads_once_and_reports_its_settings(exported, sentences, one_thread):
    translator = ExportedTranslator(exported, DecodeConfig(beam=4, nbest=3, batch_size=5), inter_threads=2,
                                    intra_threads=1, max_input_tokens=6)
    assert (translator.compute_type, translator.device) == ("float32", "cpu")
    assert (translator.inter_threads, translator.intra_threads, translator.input_limit) == (2, 1, 6)
    engine = translator.engine
    out = translator.translate_full(sentences + [""])
    assert translator.engine is engine  # no reload per call
    assert translator.last_batches >= 4  # 20 sentences in batches of at most 5
    assert [len(n) for n in out.nbest] == [3] * N_SENTENCES + [1] and out.hypotheses[-1] == ""
    assert all(s == sorted(s, reverse=True) for s in out.scores[:N_SENTENCES])
    long_rows = [i for i, ids in enumerate(translator.src_sp.encode(sentences)) if len(ids) > 6]
    assert out.truncated == long_rows and long_rows  # cut to the input limit, listed as the torch engine lists
    tokens = ExportedTranslator(exported, DecodeConfig(beam=1), batch_type="tokens", batch_tokens=40)
    assert tokens.translate(sentences) == ct2_translate(exported, sentences, beam=1)
    assert tokens.last_batches > 1  # the same 20 sentences are one batch of 64 examples
    with pytest.raises(NMTError, match="batch_type"):
        ExportedTranslator(exported, DecodeConfig(), batch_type="sentences")


def test_int8_export_runs(transformer_run, tiny_run, sentences, exported, tmp_path):
    out = export_ctranslate2(transformer_run.run_dir / "last.pt", tmp_path / "int8")
    assert json.loads((out / INFO_FILE).read_text(encoding="utf-8"))["quantization"] == "int8"
    assert (out / "model.bin").stat().st_size < (exported / "model.bin").stat().st_size
    hyps = ct2_translate(out, sentences, beam=2)
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


@pytest.mark.slow
def test_engine_comparison(transformer_run, tmp_path, capsys):
    """nmt-bench --ctranslate2: every engine on the same sentences, per thread count and thread layout, in
    interleaved rounds with medians; float32 beam outputs equal ours (length_norm=power, the harness default)."""
    from nmt.cli import bench

    out = tmp_path / "engines.json"
    bench.main(["--ctranslate2", str(transformer_run.run_dir / "last.pt"), "--decode-sentences", "12",
                "--engine-threads", "1", "2", "--rounds", "1", "--decode-batch-size", "5", "--out", str(out)])
    printed = capsys.readouterr().out
    report = json.loads(out.read_text(encoding="utf-8"))
    rows = report["rows"]
    assert [(r["engine"], r["inter_threads"], r["intra_threads"]) for r in rows] == [
        ("nmt", None, None), ("nmt dynamic int8", None, None),
        ("ctranslate2 float32", 1, 1), ("ctranslate2 int8", 1, 1),
        ("nmt", None, None), ("nmt dynamic int8", None, None),
        ("ctranslate2 float32", 2, 1), ("ctranslate2 float32", 1, 2),
        ("ctranslate2 int8", 2, 1), ("ctranslate2 int8", 1, 2)]
    assert [r["threads"] for r in rows] == [1] * 4 + [2] * 6
    assert report["rounds"] == 3 and report["sentences"] == 12  # at least 3 rounds, whatever --rounds says
    assert report["decode"]["beam"] == 5 and report["decode"]["length_norm"] == "power"
    assert set(report["cpu_flags"]) <= set(engines_module().CPU_FLAGS) and "torch_quantized_engine" in report
    for r in rows:
        assert len(r["seconds"]) == 3 and r["sentences_per_s"] == pytest.approx(sorted(12 / s for s in r["seconds"])[1])
        assert r["batches"] >= 3 and 0 <= r["bleu"] <= 100  # 12 sentences in batches of at most 5
        base = rows[0] if r["threads"] == 1 else rows[4]
        assert r["bleu_vs_ours"] == pytest.approx(r["bleu"] - base["bleu"])
    assert rows[0]["speedup"] == 1.0 and rows[0]["hypotheses_equal_ours"] == 12
    # float32 is ours but for outputs that reach the length limit (see ExportedTranslator), frequent in this tiny model
    assert rows[2]["hypotheses_equal_ours"] == rows[6]["hypotheses_equal_ours"] >= 8
    assert "| ctranslate2 int8 | 2 | 1 x 2 |" in printed and "median of 3 interleaved rounds" in printed
    # Greedy with token batches: the float32 export is our model decoding our way, so its BLEU is ours exactly.
    bench.main(["--ctranslate2", str(transformer_run.run_dir / "last.pt"), "--decode-sentences", "12",
                "--engine-threads", "1", "--engine-beam", "1", "--engine-batch-type", "tokens",
                "--engine-batch-tokens", "60", "--out", str(out)])
    greedy = json.loads(out.read_text(encoding="utf-8"))
    assert greedy["decode"]["beam"] == 1 and greedy["decode"]["batch_type"] == "tokens"
    assert greedy["rows"][2]["bleu_vs_ours"] == 0.0 and greedy["rows"][2]["hypotheses_equal_ours"] == 12
    assert greedy["rows"][0]["batches"] == greedy["rows"][2]["batches"] > 1  # the same token batches


def engines_module():
    from nmt.bench import engines

    return engines


def test_translate_command_warns_about_truncated_lines_with_the_exported_engine(exported, sentences, tmp_path):
    """engine=ctranslate2 cuts over-long lines to max_input_tokens and says so, as engine=torch does."""
    import io

    from hydra import compose, initialize_config_dir

    from nmt.cli.translate import translate_command
    from nmt.config import CONFIG_DIR

    (tmp_path / "in.de").write_text("\n".join(sentences[:4]) + "\n", encoding="utf-8")
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="translate", overrides=[
            "engine=ctranslate2", f"export_dir={exported}", f"input={tmp_path / 'in.de'}",
            f"output={tmp_path / 'out.en'}", "max_input_tokens=2", "decode=greedy"])
    stderr = io.StringIO()
    assert translate_command(cfg, stderr=stderr) == 4
    warnings = [line for line in stderr.getvalue().splitlines() if line.startswith("warning:")]
    assert warnings and all("longer than max_input_tokens=2 pieces, truncated" in w for w in warnings)
    assert len((tmp_path / "out.en").read_text(encoding="utf-8").splitlines()) == 4


@pytest.mark.parametrize("damage, message", [
    ("no-manifest", "no nmt_export.json"),
    ("not-json", "is not a readable JSON file"),
    ("other-format", "is not an nmt CTranslate2 export"),
    ("no-spm", "no SentencePiece models named"),
    ("spm-file-missing", "missing spm.model"),
])  # fmt: skip
def test_a_damaged_export_directory_is_refused_in_one_line_before_loading(exported, tmp_path, damage, message):
    """nmt_export.json is checked (JSON, format, the keys read, the files it names) before CTranslate2 loads."""
    from nmt.inference.export import read_export_info

    copy = tmp_path / "export"
    copy.mkdir()
    for f in exported.iterdir():
        if f.is_file():
            (copy / f.name).write_bytes(f.read_bytes())
    info = json.loads((copy / INFO_FILE).read_text(encoding="utf-8"))
    if damage == "no-manifest":
        (copy / INFO_FILE).unlink()
    elif damage == "not-json":
        (copy / INFO_FILE).write_text("{not json", encoding="utf-8")
    elif damage == "other-format":
        (copy / INFO_FILE).write_text(json.dumps(info | {"format": "something"}), encoding="utf-8")
    elif damage == "no-spm":
        (copy / INFO_FILE).write_text(json.dumps({k: v for k, v in info.items() if k != "spm"}), encoding="utf-8")
    else:
        (copy / info["spm"]["src"]).unlink()
    with pytest.raises(NMTError, match=message) as refused:
        read_export_info(copy)
    assert "\n" not in str(refused.value)
    with pytest.raises(NMTError, match=message):
        ExportedTranslator(copy)
