"""Files written by an earlier release keep working: a checkpoint of the trainer's payload (tests/fixtures/,
a tiny rnn_attention trained 30 steps) still loads and scores its references exactly as it did, and the
committed experiment reports re-render byte for byte from their report.json."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nmt.config import RNNAttentionConfig
from nmt.errors import NMTError
from nmt.evaluation.scoring import score
from nmt.experiments.bottleneck_report import render as render_bottleneck
from nmt.experiments.claims_report import render as render_claims
from nmt.experiments.results import BottleneckReport, ClaimsReport
from nmt.inference.translator import Translator
from nmt.training.checkpoint import load_model

FIXTURES = Path(__file__).parent / "fixtures"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_a_checkpoint_of_the_earlier_release_loads_and_scores_as_it_did():
    expected = json.loads((FIXTURES / "golden_rnn_attention.json").read_text(encoding="utf-8"))
    loaded = load_model(FIXTURES / "golden_rnn_attention.pt", "cpu")
    assert loaded.payload["step"] == expected["step"]
    # Checkpoint version 1, its model config flat (every architecture's options, ff_dim=64 and max_positions=128
    # among them, never read by rnn_attention): converted at load to rnn_attention's own options.
    assert torch.load(FIXTURES / "golden_rnn_attention.pt", weights_only=True)["version"] == 1
    assert OmegaConf.get_type(loaded.cfg.model) is RNNAttentionConfig and loaded.payload["version"] == 2
    assert set(loaded.payload["config"]["model"]) == {f.name for f in dataclasses.fields(RNNAttentionConfig)}
    assert (loaded.cfg.model.heads, loaded.cfg.model.emb_dim, loaded.cfg.model.hidden) == (2, 16, 32)
    assert loaded.model.num_parameters() == expected["num_parameters"]
    result = score(FIXTURES / "golden_rnn_attention.pt", sources=expected["sentences"],
                   references=expected["references"], device="cpu")
    assert result["scores"].sums() == pytest.approx(expected["log_probs"], abs=1e-3)
    translations = Translator.from_checkpoint(FIXTURES / "golden_rnn_attention.pt", "cpu").translate(
        expected["sentences"])
    assert len(translations) == len(expected["sentences"])


@pytest.mark.parametrize("name", ["bottleneck", "capacity"])
def test_the_committed_bottleneck_reports_render_from_their_json(name: str):
    report = BottleneckReport.read(DOCS / name / "report.json")
    assert render_bottleneck(report) == (DOCS / name / "report.md").read_text(encoding="utf-8")


def test_the_committed_claims_report_renders_from_its_json():
    """Byte for byte but the total-time line, which was written by hand: that run's report was completed by a
    second invocation on the same run directories, so its own clock measured only the second one."""
    rendered = render_claims(ClaimsReport.read(DOCS / "claims" / "report.json")).splitlines()
    committed = (DOCS / "claims" / "report.md").read_text(encoding="utf-8").splitlines()
    assert len(rendered) == len(committed)
    differ = [(a, b) for a, b in zip(rendered, committed, strict=True) if a != b]
    assert [(a[:15], b[:28]) for a, b in differ] == [("- total time: 2", "- total time: 35.4 min of tr")]


def test_a_report_of_an_earlier_format_reads_with_defaults_and_without_unknown_keys(tmp_path: Path):
    """`from_json` takes what a dataclass knows: a key it lacks is ignored, a field missing takes its default."""
    report = json.loads((DOCS / "capacity" / "report.json").read_text(encoding="utf-8"))
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
