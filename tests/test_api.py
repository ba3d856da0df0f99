"""The Python API: the README's snippet runs as written (on a tiny trained run), and it agrees with the CLIs."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

import nmt
from nmt.errors import NMTError
from nmt.evaluation.report import EvaluationReport
from nmt.inference.translator import Translator, check_lines

README = Path(__file__).resolve().parents[1] / "README.md"
RUN_DIR_IN_README = "outputs/multi30k_de_en/rnn_attention/2026-12-01_18-00-00"


def readme_snippet() -> str:
    """The ```python block that follows the README's "<!-- python-api -->" marker."""
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- python-api -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md has no python-api snippet"
    return match.group(1)


@pytest.mark.slow
def test_readme_snippet_runs(tiny_run, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # evaluate() writes its report next to the run, never into the checkout
    code = readme_snippet()
    assert RUN_DIR_IN_README in code
    exec(compile(code.replace(RUN_DIR_IN_README, str(tiny_run.run_dir)), "README.md", "exec"), {})
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 3  # the translation list, the n-best list with scores, the BLEU


def test_translator_matches_nmt_translate_and_evaluate(tiny_run, tmp_path):
    from nmt.decoding.search import translate
    from nmt.training.checkpoint import load_model

    sources = Path(tiny_run.files["test"][0]).read_text(encoding="utf-8").splitlines()[:12]
    translator = Translator.from_checkpoint(tiny_run.run_dir, device="cpu", decode={"beam": 2, "batch_size": 4})
    loaded = load_model(tiny_run.run_dir / "best.pt", "cpu")
    expected = translate(loaded.model, loaded.tokenizer, sources, translator.decode, "cpu").hypotheses
    assert translator.translate(sources) == expected
    full = translator.translate_full(sources[:3], nbest=2, with_attention=True)
    assert [len(n) for n in full.nbest] == [2, 2, 2] and full.attention is not None
    report = nmt.evaluate(tiny_run.run_dir, split="test", decode={"beam": 1}, bootstrap_samples=0,
                          out_dir=str(tmp_path / "eval"), attention_sentences=[])
    assert report.out_dir == str(tmp_path / "eval") and (tmp_path / "eval" / "metrics.json").is_file()
    assert report.systems[0].scores.num_sentences == 60
    # metrics.json is the report's to_dict(), without where it was written; it reads back as the report.
    written = EvaluationReport.read(tmp_path / "eval" / "metrics.json")
    assert written == dataclasses.replace(report, out_dir=None, report_file=None)
    assert report.to_dict()["out_dir"] == report.out_dir and "out_dir" not in written.to_dict()
    with pytest.raises(NMTError, match="beem"):
        Translator.from_checkpoint(tiny_run.run_dir, decode={"beem": 2})
    with pytest.raises(NMTError, match="not a model directory written by nmt-export"):
        Translator.from_ctranslate2(tmp_path)


def test_one_sentence_as_a_str_gets_one_str_back(tiny_run):
    translator = Translator.from_checkpoint(tiny_run.run_dir, device="cpu", decode={"beam": 1})
    sentence = "Ein Hund läuft im Schnee."
    assert translator.translate(sentence) == translator.translate([sentence])[0]
    assert isinstance(translator.translate(sentence), str)
    assert len(translator.translate_full(sentence).hypotheses) == 1
    assert translator.translate(("Zwei Männer.", "")) == translator.translate(["Zwei Männer.", ""])


@pytest.mark.parametrize("lines, words", [
    (None, ["got NoneType"]),
    (5, ["got int"]),
    (b"Ein Hund.", ["got bytes", "decode"]),
    ([None], ["sentence 0 is NoneType", "''"]),
    (["Ein Hund.", 3], ["sentence 1 is int"]),
    (["Ein Hund.", b"Zwei"], ["sentence 1 is bytes", "decode"]),
])
def test_wrong_input_is_a_type_error_naming_the_position_and_the_fix(lines, words):
    with pytest.raises(TypeError) as e:
        check_lines(lines)
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value), str(e.value)


def test_model_overrides_must_be_a_list_of_strings():
    with pytest.raises(TypeError, match=r"use \['model.temperature=0.5'\]"):  # before anything is loaded
        Translator.from_checkpoint("no/such/run", model_overrides="model.temperature=0.5")
    with pytest.raises(TypeError, match="'key=value' strings, got float"):
        Translator.from_checkpoint("no/such/run", model_overrides=[0.5])
