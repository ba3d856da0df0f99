"""`nmt-evaluate comet_model=...`: COMET segment scores in the scores, the length buckets and the paired tests.

No COMET weights can be downloaded here, so the model is a tiny one built in the test: COMET's RegressionMetric
over a random two-layer XLM-RoBERTa whose tokenizer is a SentencePiece model trained on Multi30k lines, saved in
COMET's layout (checkpoints/model.ckpt, hparams.yaml) and loaded by comet.load_from_checkpoint. Its scores mean
nothing; the tests check where they go and the statistics made of them. The misuse lines need no COMET.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from test_evaluate_cli import lines, user_error

from nmt.cli.evaluate import evaluate_command
from nmt.config import CONFIG_DIR
from nmt.evaluation.report import EvaluationReport
from nmt.metrics.comet import EXTRA_MISSING
from nmt.metrics.lengths import assign_buckets

torch.set_num_threads(1)
FAST = ["device=cpu", "decode=greedy", "bootstrap_samples=200", "attention_sentences=[]"]


def evaluate(*overrides: str) -> EvaluationReport:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[*FAST, *overrides])
    return evaluate_command(cfg)


def build_tiny_comet(root: Path, mirror: Path) -> Path:
    """A COMET regression model over a random XLM-R encoder (hidden 32, 2 layers, 2 heads), its SentencePiece
    vocabulary trained on 2,000 Multi30k lines; returns its directory (checkpoints/model.ckpt, hparams.yaml)."""
    import pytorch_lightning
    import sentencepiece as spm
    import yaml
    from comet.models import RegressionMetric
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import XLMRobertaConfig, XLMRobertaModel, XLMRobertaTokenizerFast

    text = []
    for lang in ("de", "en"):
        with gzip.open(mirror / "multi30k" / f"train.{lang}.gz", "rt", encoding="utf-8") as f:
            text += [line.strip() for _, line in zip(range(1000), f, strict=False)]
    encoder = root / "encoder"
    encoder.mkdir(parents=True)
    # ids: unk 0, bos 1, eos 2, as XLM-R's own; fewer pieces on the constructed sample corpus (no mirror)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_prefix=str(encoder / "spm"), vocab_size=400,
                                   hard_vocab_limit=False, num_threads=1, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=str(encoder / "spm.model"))
    # XLM-R's vocabulary layout (transformers' XLMRobertaConverter), built without protobuf
    vocab = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(sp.id_to_piece(i), sp.get_score(i)) for i in range(3, sp.get_piece_size())] + [("<mask>", 0.0)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=3))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tokenizer = XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>")
    tokenizer.save_pretrained(encoder)
    torch.manual_seed(0)
    config = XLMRobertaConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                              intermediate_size=64, max_position_embeddings=130, pad_token_id=1)
    XLMRobertaModel(config, add_pooling_layer=False).save_pretrained(encoder)
    model = RegressionMetric(pretrained_model=str(encoder), hidden_sizes=[16], local_files_only=True)
    (root / "checkpoints").mkdir()
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": pytorch_lightning.__version__}, root / "checkpoints" / "model.ckpt")
    (root / "hparams.yaml").write_text(yaml.safe_dump(dict(model.hparams)), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def tiny_comet(mirror: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("comet", reason="the comet extra is not installed (pip install -e '.[comet]')")
    return build_tiny_comet(tmp_path_factory.mktemp("comet") / "tiny-comet", mirror)


@pytest.fixture(scope="module")
def against_cut(tiny_comet, tiny_run, tmp_path_factory) -> tuple[EvaluationReport, Path]:
    """The tiny run against a baseline of its references cut to their first three words, with COMET."""
    root = tmp_path_factory.mktemp("comet_eval")
    cut = root / "cut.txt"
    cut.write_text("".join(" ".join(r.split()[:3]) + "\n" for r in lines(Path(tiny_run.files["test"][1]))))
    report = evaluate(f"checkpoints=[{tiny_run.run_dir}]", f"baseline={cut}", f"comet_model={tiny_comet}",
                      f"out_dir={root / 'evals' / 'first'}")
    return report, Path(report.out_dir)


def test_comet_segment_scores_are_the_systems_score_and_feed_its_paired_test(against_cut, tiny_comet):
    report, out = against_cut
    system, baseline = report.systems
    seg = np.array([float(x) for x in lines(out / "rnn_attention.comet.txt")])
    base = np.array([float(x) for x in lines(out / "baseline_cut.comet.txt")])
    assert len(seg) == len(base) == report.num_sentences == 60
    assert system.comet == pytest.approx(seg.mean()) and baseline.comet == pytest.approx(base.mean())
    test = report.comparisons[0].comet
    assert test.metric == "comet" and test.count == 60
    assert (test.system, test.baseline) == pytest.approx((seg.mean(), base.mean()))
    assert test.difference == pytest.approx(np.mean(seg - base))  # the segment scores themselves, paired
    assert test.system_ci[0] <= test.system <= test.system_ci[1]
    assert test.p_value is not None and 1 / 201 <= test.p_value <= 1
    assert report.comparisons[0].overall.metric == "bleu"  # BLEU's test is still there, beside it
    written = json.loads((out / "metrics.json").read_text())
    assert written["comet_model"] == str(tiny_comet)
    assert written["comparisons"][0]["comet"]["difference"] == pytest.approx(test.difference)
    assert EvaluationReport.read(out / "metrics.json").comparisons[0].comet.difference == pytest.approx(
        test.difference)


def test_comet_by_length_is_each_buckets_mean_and_its_paired_test(against_cut, tiny_run):
    report, out = against_cut
    seg = np.array([float(x) for x in lines(out / "rnn_attention.comet.txt")])
    base = np.array([float(x) for x in lines(out / "baseline_cut.comet.txt")])
    which = np.array(assign_buckets(lines(out / "src.txt"), report.length_edges))
    rows = report.systems[0].by_length
    tests = report.comparisons[0].comet_by_length
    assert [r.count for r in rows] == [t.count for t in tests] == [int((which == b).sum()) for b in range(len(rows))]
    for b, (row, bucket) in enumerate(zip(rows, tests, strict=True)):
        if row.count == 0:
            assert row.comet is None and bucket.test is None
            continue
        assert row.comet == pytest.approx(seg[which == b].mean())
        assert bucket.test.difference == pytest.approx((seg[which == b] - base[which == b]).mean())


def test_the_report_names_the_comet_model_with_its_scores(against_cut, tiny_comet, capsys):
    report, out = against_cut
    text = (out / "report.md").read_text()
    assert f"COMET model: `{tiny_comet}`" in text
    assert "| COMET |" in text and "rnn_attention COMET" in text and "vs baseline:cut: COMET" in text
    assert f"{report.systems[0].comet:.4f}" in text


def test_a_second_evaluation_reads_the_cached_scores_and_a_system_against_itself_differs_by_nothing(
        against_cut, tiny_run, tiny_comet, monkeypatch):
    from comet.models import CometModel

    report, out = against_cut

    def no_model(*args, **kwargs):
        raise AssertionError("COMET ran although its scores were cached")

    monkeypatch.setattr(CometModel, "predict", no_model)
    again = evaluate(f"checkpoints=[{tiny_run.run_dir}]", f"baseline={out / 'rnn_attention.hyp.txt'}",
                     f"comet_model={tiny_comet}", f"out_dir={out.parent / 'second'}")
    assert again.systems[0].comet == report.systems[0].comet == again.systems[1].comet
    test = again.comparisons[0].comet
    assert test.difference == 0 and test.p_value == 1.0
    assert len(list((out.parent / "comet-cache").glob("*.json"))) == 2  # the system's and the cut baseline's


def fake_comet_dir(root: Path) -> Path:
    """COMET's layout with nothing loadable in it."""
    (root / "checkpoints").mkdir(parents=True)
    (root / "checkpoints" / "model.ckpt").write_bytes(b"not a checkpoint")
    (root / "hparams.yaml").write_text("class_identifier: regression_metric\n")
    return root


def test_comet_misuse_is_one_line(tiny_run, tmp_path, monkeypatch, capsys):
    run = f"checkpoints=[{tiny_run.run_dir}]"
    fake = fake_comet_dir(tmp_path / "fake")
    monkeypatch.setitem(sys.modules, "comet", None)  # what `import comet` meets where the extra is missing
    assert user_error(capsys, run, f"comet_model={fake}") == f"error: {EXTRA_MISSING}"
    assert user_error(capsys, run, f"comet_model={tmp_path / 'none'}").startswith(
        f"error: COMET model not found: {tmp_path / 'none'}")
    (tmp_path / "empty").mkdir()
    assert user_error(capsys, run, f"comet_model={tmp_path / 'empty'}") == (
        f"error: {tmp_path / 'empty'} is not a COMET checkpoint: expected <dir>/checkpoints/model.ckpt and "
        f"<dir>/hparams.yaml")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    assert user_error(capsys, run, "comet_model=Unbabel/wmt22-comet-da") == (
        "error: COMET model Unbabel/wmt22-comet-da is not in the Hugging Face cache and cannot be downloaded "
        "(HF_HUB_OFFLINE=1); give the path of a downloaded COMET model")
    src, ref = tiny_run.files["test"]
    assert user_error(capsys, run, f"comet_model={fake}", f"src_file={src}", f"ref_file=[{ref},{ref}]") == (
        "error: comet_model scores against one reference a sentence: give one ref_file")


def test_a_file_in_comets_layout_that_is_no_checkpoint_is_one_line(tiny_run, tmp_path, capsys):
    pytest.importorskip("comet", reason="the comet extra is not installed (pip install -e '.[comet]')")
    fake = fake_comet_dir(tmp_path / "fake")
    line = user_error(capsys, f"checkpoints=[{tiny_run.run_dir}]", f"comet_model={fake}")
    assert line.startswith(f"error: cannot load the COMET model {fake}: ")
