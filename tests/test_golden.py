"""Files written by an earlier release keep working: a checkpoint of the trainer's payload (tests/fixtures/,
a tiny rnn_attention trained 30 steps) still loads and scores its references exactly as it did, and the
experiment and nmt-evaluate reports of earlier runs (frozen copies in tests/fixtures/reports/, from docs/reports/)
read back from their report.json and metrics.json and re-render byte for byte (a bottleneck report as its
rendered.md, refreshed only when the report's format changed on purpose)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nmt.config import RNNAttentionConfig
from nmt.errors import NMTError
from nmt.evaluation.report import EvaluationReport, render_markdown
from nmt.evaluation.scoring import score
from nmt.experiments.bottleneck_report import render as render_bottleneck
from nmt.experiments.claims_report import render as render_claims
from nmt.experiments.results import BottleneckReport, ClaimsReport
from nmt.inference.translator import Translator
from nmt.io import json_text
from nmt.training.checkpoint import Checkpoint, load_checkpoint, load_model

FIXTURES = Path(__file__).parent / "fixtures"
REPORTS = FIXTURES / "reports"  # report.json / report.md pairs as the experiments wrote them
BOTTLENECK, CAPACITY, CLAIMS = ("2026-12-06_bottleneck_default", "2026-12-03_bottleneck_capacity",
                                "2026-12-02_claims_default")


def test_a_checkpoint_of_the_earlier_release_loads_and_scores_as_it_did():
    expected = json.loads((FIXTURES / "golden_rnn_attention.json").read_text(encoding="utf-8"))
    loaded = load_model(FIXTURES / "golden_rnn_attention.pt", "cpu")
    assert loaded.checkpoint.step == expected["step"]
    # Checkpoint version 1, its model config flat (every architecture's options, ff_dim=64 and max_positions=128
    # among them, never read by rnn_attention): converted at load to rnn_attention's own options.
    assert torch.load(FIXTURES / "golden_rnn_attention.pt", weights_only=True)["version"] == 1
    assert OmegaConf.get_type(loaded.cfg.model) is RNNAttentionConfig
    assert set(loaded.checkpoint.config["model"]) == {f.name for f in dataclasses.fields(RNNAttentionConfig)}
    assert (loaded.cfg.model.heads, loaded.cfg.model.emb_dim, loaded.cfg.model.hidden) == (2, 16, 32)
    assert loaded.model.num_parameters() == expected["num_parameters"]
    result = score(FIXTURES / "golden_rnn_attention.pt", sources=expected["sentences"],
                   references=expected["references"], device="cpu")
    assert result.scores.sums() == pytest.approx(expected["log_probs"], abs=1e-3)
    translations = Translator.from_checkpoint(FIXTURES / "golden_rnn_attention.pt", "cpu").translate(
        expected["sentences"])
    assert len(translations) == len(expected["sentences"])


def test_the_earlier_release_checkpoint_reads_as_one_train_state():
    """It was written with the loop's counters as loose entries (checkpoint version 1): they read as one
    TrainState, and saved again it has the current layout."""
    expected = json.loads((FIXTURES / "golden_rnn_attention.json").read_text(encoding="utf-8"))
    payload = load_checkpoint(FIXTURES / "golden_rnn_attention.pt")
    assert payload["version"] == 1 and "train_state" not in payload and "train_loss" in payload["metrics"]
    checkpoint = Checkpoint.from_payload(payload)
    state = checkpoint.state
    assert (state.step, state.epoch, state.batch_in_epoch, state.best_bleu) == (expected["step"], 0, 30, None)
    assert state.history == [] and state.bad_steps == 0 and set(state.rng) == {"python", "numpy", "torch"}
    assert checkpoint.num_parameters == expected["num_parameters"] and checkpoint.optimizer is not None
    again = checkpoint.to_payload()
    assert again["train_state"]["batch_in_epoch"] == 30 and "metrics" not in again


@pytest.mark.parametrize("name", [BOTTLENECK, CAPACITY])
def test_the_committed_bottleneck_reports_render_from_their_json(name: str):
    """An earlier report.json reads back and renders as rendered.md, which holds what the current renderer made of
    it when the report's format last changed on purpose (report.md beside it: what the experiment wrote then)."""
    report = BottleneckReport.read(REPORTS / name / "report.json")
    assert render_bottleneck(report) == (REPORTS / name / "rendered.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", [BOTTLENECK, CAPACITY])
def test_the_committed_evaluation_reports_read_back_write_and_render_as_they_were(name: str):
    """metrics.json keeps its format: a committed one reads back as an EvaluationReport whose to_dict() is the
    file itself, key order included, and whose report.md is the committed one."""
    path = REPORTS / name / "multi30k_de_en" / "test_2016_flickr" / "seed1" / "metrics.json"
    report = EvaluationReport.read(path)
    assert json_text(report) == json.dumps(json.loads(path.read_text(encoding="utf-8")), indent=2)
    assert render_markdown(report) == path.with_name("report.md").read_text(encoding="utf-8")
    assert report.comparisons[0].overall.p_value is not None and report.system("rnn_fixed").baseline


def test_the_committed_claims_report_renders_from_its_json():
    """Byte for byte but the total-time line, which was written by hand: that run's report was completed by a
    second invocation on the same run directories, so its own clock measured only the second one."""
    rendered = render_claims(ClaimsReport.read(REPORTS / CLAIMS / "report.json")).splitlines()
    committed = (REPORTS / CLAIMS / "report.md").read_text(encoding="utf-8").splitlines()
    assert len(rendered) == len(committed)
    differ = [(a, b) for a, b in zip(rendered, committed, strict=True) if a != b]
    assert [(a[:15], b[:28]) for a, b in differ] == [("- total time: 2", "- total time: 35.4 min of tr")]


def test_the_metric_records_of_the_committed_reports_write_back_as_they_were():
    """The records inside report.json (paired tests, by-length rows, ratio tests, length ratios, NLL bins) are
    written again exactly as they were read, key order included."""
    def same(written: object, committed: object) -> bool:
        return json.dumps(written) == json.dumps(committed)

    for name in (BOTTLENECK, CAPACITY):
        committed = json.loads((REPORTS / name / "report.json").read_text(encoding="utf-8"))["sections"][0]
        written = json.loads(json_text(BottleneckReport.read(REPORTS / name / "report.json")))["sections"][0]
        for w, c in zip(written["natural"]["seeds"], committed["natural"]["seeds"], strict=True):
            assert all(same(w[key], c[key]) for key in ("bleu", "chrf", "by_length", "signatures"))
            assert all(same({k: w["systems"][system][k] for k in scores}, scores)
                       for system, scores in c["systems"].items())
        # Written again, each seed's scores keep every field they had (fields added since take their defaults).
        assert all(same({k: w["systems"][system][k] for k in scores}, scores)
                   for w, c in zip(written["levels"]["seeds"], committed["levels"]["seeds"], strict=True)
                   for system, scores in c["systems"].items())
    committed = json.loads((REPORTS / CLAIMS / "report.json").read_text(encoding="utf-8"))["claims"]
    written = json.loads(json_text(ClaimsReport.read(REPORTS / CLAIMS / "report.json")))["claims"]
    for seed in committed["scaling"]["seeds"]:
        for w, c in zip(written["scaling"]["seeds"][seed]["rows"], committed["scaling"]["seeds"][seed]["rows"],
                        strict=True):
            assert same(w["bleu"], c["bleu"])
            assert same(w["trained"]["grad_norm_change"], c["trained"]["grad_norm_change"])
        ours, theirs = written["temperature"]["seeds"][seed], committed["temperature"]["seeds"][seed]
        assert same(ours["entropy_steps"], theirs["entropy_steps"])
        assert same([r["vs_trained"] for r in ours["rows"]], [r["vs_trained"] for r in theirs["rows"]])
        assert same(written["hard"]["seeds"][seed]["tests"], committed["hard"]["seeds"][seed]["tests"])
        ours, theirs = written["scorers"]["seeds"][seed], committed["scorers"]["seeds"][seed]
        assert same(ours["heads_test"], theirs["heads_test"])
        assert same([r["vs_reference"] for r in ours["rows"]], [r["vs_reference"] for r in theirs["rows"]])


def test_a_report_of_an_earlier_format_reads_with_defaults_and_without_unknown_keys(tmp_path: Path):
    """`from_json` takes what a dataclass knows: a key it lacks is ignored, a field missing takes its default."""
    report = json.loads((REPORTS / CAPACITY / "report.json").read_text(encoding="utf-8"))
    report["retired_field"] = {"anything": 1}
    del report["seconds"]
    for run in report["runs"]:
        run.pop("trained_as", None)
    (tmp_path / "report.json").write_text(json.dumps(report), encoding="utf-8")
    read = BottleneckReport.read(tmp_path / "report.json")
    assert read.seconds == 0.0 and all(r.trained_as is None for r in read.runs)
    assert isinstance(read.sections[0].levels.sweep.pairs[0].larger, int)
    assert read.sections[0].levels.seeds[0].control.difference.p_less is None  # not written before


def test_a_report_that_is_not_one_is_refused_in_one_line(tmp_path: Path):
    (tmp_path / "cut.json").write_text('{"title": "x", ', encoding="utf-8")
    with pytest.raises(NMTError, match="cut.json is not a readable JSON file"):
        BottleneckReport.read(tmp_path / "cut.json")
    (tmp_path / "other.json").write_text('{"title": "x", "runs": []}', encoding="utf-8")
    with pytest.raises(NMTError, match="BottleneckReport: missing preset, config, hardware, sections"):
        BottleneckReport.read(tmp_path / "other.json")
    with pytest.raises(NMTError, match="no such file"):
        ClaimsReport.read(tmp_path / "absent.json")
