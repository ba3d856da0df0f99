"""sacreBLEU metrics, length buckets, bootstrap tests, plots and reports."""

from __future__ import annotations

import gzip
import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg
from sacrebleu.metrics import BLEU
from sacrebleu.significance import PairedTest

from nmt.errors import NMTError
from nmt.evaluation.report import (
    Comparison,
    DecodeSpeed,
    EvaluatedSystem,
    EvaluationReport,
    Plots,
    render_markdown,
    write_report,
)
from nmt.metrics import METRICS, bleu_by_length, corpus_scores, paired_bootstrap, paired_bootstrap_by_length
from nmt.metrics.lengths import FEW_SENTENCES, assign_buckets, length_buckets
from nmt.metrics.significance import MIN_TEST_ITEMS
from nmt.plots import log_to_tensorboard, plot_attention, plot_bleu_by_length, save_png
from nmt.training.run_log import METRIC_TAGS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def corpus(mirror: Path) -> tuple[list[str], list[str]]:
    """200 real Multi30k validation pairs (German source, English reference)."""
    src_path, ref_path = mirror / "multi30k" / "val.de.gz", mirror / "multi30k" / "val.en.gz"
    with gzip.open(src_path, "rt", encoding="utf-8") as f:
        src = [line.strip() for _, line in zip(range(200), f, strict=False)]
    with gzip.open(ref_path, "rt", encoding="utf-8") as f:
        ref = [line.strip() for _, line in zip(range(200), f, strict=False)]
    return src, ref


def degrade(refs: list[str], drop: float, seed: int) -> list[str]:
    """A stand-in system output: the reference with a fraction of its words dropped."""
    rng = random.Random(seed)
    return [" ".join(w for w in r.split() if rng.random() > drop) for r in refs]


def test_references_score_100_against_themselves(corpus):
    _, ref = corpus
    s = corpus_scores(ref, ref)
    assert s.bleu == pytest.approx(100.0)
    assert s.bleu_lc == pytest.approx(100.0)
    assert s.chrf == pytest.approx(100.0)
    assert s.ter == pytest.approx(0.0)
    assert s.num_sentences == len(ref)
    assert "tok:13a" in s.signatures["bleu"] and "case:mixed" in s.signatures["bleu"]
    assert "case:lc" in s.signatures["bleu_lc"]


def test_scores_match_the_sacrebleu_command_line(corpus, tmp_path):
    _, ref = corpus
    hyp = degrade(ref, 0.3, seed=1)
    hyp = [h.lower() if i % 4 == 0 else h for i, h in enumerate(hyp)]  # makes cased and lowercased BLEU differ
    (tmp_path / "ref.txt").write_text("\n".join(ref) + "\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("\n".join(hyp) + "\n", encoding="utf-8")
    cli = str(Path(sys.executable).with_name("sacrebleu"))
    args = [cli, str(tmp_path / "ref.txt"), "-i", str(tmp_path / "hyp.txt"), "-b", "-w", "4"]
    out = subprocess.run(args + ["-m", "bleu", "chrf", "ter"], capture_output=True, text=True, check=True)
    bleu, chrf, ter = json.loads(out.stdout)
    lc = subprocess.run(args + ["-m", "bleu", "-lc"], capture_output=True, text=True, check=True)
    chrfpp = subprocess.run(args + ["-m", "chrf", "--chrf-word-order", "2"], capture_output=True, text=True,
                            check=True)

    s = corpus_scores(hyp, ref)
    assert round(s.chrfpp, 4) == pytest.approx(float(chrfpp.stdout), abs=1e-9) and s.chrfpp != s.chrf
    assert "nw:2" in s.signatures["chrfpp"]
    assert round(s.bleu, 4) == pytest.approx(bleu, abs=1e-9)
    assert round(s.chrf, 4) == pytest.approx(chrf, abs=1e-9)
    assert round(s.ter, 4) == pytest.approx(ter, abs=1e-9)
    assert round(s.bleu_lc, 4) == pytest.approx(float(lc.stdout), abs=1e-9)
    assert s.bleu_lc > s.bleu


@pytest.fixture(scope="module")
def news(real_mirror: Path) -> tuple[list[str], list[str]]:
    """The first 300 pairs of newstest2019 de-en as released (German source, English reference)."""
    sides = []
    for lang in ("de", "en"):
        with gzip.open(real_mirror / "wmt-newstest-de-en" / "by-set" / f"newstest2019.de-en.{lang}.gz", "rt",
                       encoding="utf-8") as f:
            sides.append([line.rstrip("\n") for _, line in zip(range(300), f, strict=False)])
    return sides[0], sides[1]


def test_several_references_score_as_the_sacrebleu_command_line(news, tmp_path):
    """A tuple of references a sentence scores as `sacrebleu ref1 ref2 -i hyp` (nrefs:2), and so do the paired
    test and the length buckets. The mirror keeps one reference a set, so the second is the first with a fifth
    of its words dropped: it must change every score."""
    src, ref = news
    ref2 = degrade(ref, 0.2, seed=9)
    hyp, base = degrade(ref, 0.3, seed=1), degrade(ref, 0.4, seed=2)
    for name, text in (("ref1.txt", ref), ("ref2.txt", ref2), ("hyp.txt", hyp)):
        (tmp_path / name).write_text("\n".join(text) + "\n", encoding="utf-8")
    cli = [str(Path(sys.executable).with_name("sacrebleu")), str(tmp_path / "ref1.txt"), str(tmp_path / "ref2.txt"),
           "-i", str(tmp_path / "hyp.txt"), "-w", "4"]
    out = subprocess.run(cli + ["-m", "bleu", "chrf", "ter"], capture_output=True, text=True, check=True)
    theirs = {r["name"]: r for r in json.loads(out.stdout)}
    chrfpp = subprocess.run(cli + ["-b", "-m", "chrf", "--chrf-word-order", "2"], capture_output=True, text=True,
                            check=True)

    refs = list(zip(ref, ref2, strict=True))
    s = corpus_scores(hyp, refs)
    assert round(s.bleu, 4) == pytest.approx(theirs["BLEU"]["score"], abs=1e-9)
    assert round(s.chrf, 4) == pytest.approx(theirs["chrF2"]["score"], abs=1e-9)
    assert round(s.ter, 4) == pytest.approx(theirs["TER"]["score"], abs=1e-9)
    assert round(s.chrfpp, 4) == pytest.approx(float(chrfpp.stdout), abs=1e-9)
    assert s.signatures["bleu"] == theirs["BLEU"]["signature"] and "nrefs:2" in s.signatures["bleu"]
    assert all("nrefs:2" in sig for sig in s.signatures.values())
    single = corpus_scores(hyp, ref)
    assert (s.bleu, s.chrf, s.ter) != (single.bleu, single.chrf, single.ter)

    ours = paired_bootstrap(hyp, base, refs, n_samples=100, seed=12345)
    _, table = PairedTest([("base", base), ("sys", hyp)], {"BLEU": BLEU()}, [ref, ref2], test_type="bs",
                          n_samples=100)()
    assert ours.system == pytest.approx(table["BLEU"][1].score, abs=1e-9)
    assert ours.baseline == pytest.approx(table["BLEU"][0].score, abs=1e-9)
    rows = bleu_by_length(src, hyp, refs, n_samples=0)
    first = [i for i, x in enumerate(src) if len(x.split()) < 10]
    assert sum(r.count for r in rows) == len(src) and rows[0].count == len(first)
    assert rows[0].bleu == pytest.approx(BLEU().corpus_score([hyp[i] for i in first],
                                                             [[ref[i] for i in first], [ref2[i] for i in first]]).score)
    with pytest.raises(NMTError, match="as many references"):
        corpus_scores(hyp[:2], [("a", "b"), ("c",)])


def test_line_count_mismatch_and_empty_input_are_user_errors():
    with pytest.raises(NMTError, match="line counts"):
        corpus_scores(["a b"], ["a b", "c d"])
    with pytest.raises(NMTError, match="nothing to score"):
        corpus_scores([], [])


def test_bucket_edges_and_assignment():
    assert length_buckets([0, 10, 20]) == [(0, 10), (10, 20), (20, None)]
    sources = ["w " * n for n in (0, 9, 10, 19, 20, 49, 50, 120)]
    assert assign_buckets(sources) == [0, 0, 1, 1, 2, 4, 5, 5]
    for bad in ([], [5, 10], [0, 10, 10], [0, 20, 10]):
        with pytest.raises(NMTError, match="length edges"):
            length_buckets(bad)


def test_bleu_by_length_counts_add_up_and_empty_buckets_are_listed(corpus):
    src, ref = corpus
    hyp = degrade(ref, 0.2, seed=2)
    rows = bleu_by_length(src, hyp, ref, n_samples=50)
    assert [r.label for r in rows] == ["0-10", "10-20", "20-30", "30-40", "40-50", "50+"]
    assert sum(r.count for r in rows) == len(src)
    empty = [r for r in rows if r.count == 0]
    assert empty, "Multi30k has no 50+ word sentences among the first 200"
    assert all(r.bleu is None and r.bleu_ci is None and r.few for r in empty)
    for r in rows:
        if r.count:
            lo, hi = r.bleu_ci
            assert lo <= r.bleu <= hi
            assert r.few == (r.count < FEW_SENTENCES)
    # The bucket's BLEU is the BLEU of exactly its sentences.
    first = [i for i, s in enumerate(src) if len(s.split()) < 10]
    expected = BLEU().corpus_score([hyp[i] for i in first], [[ref[i] for i in first]]).score
    assert rows[0].bleu == pytest.approx(expected)


def test_paired_bootstrap_of_a_system_against_itself_finds_no_difference(corpus):
    _, ref = corpus
    hyp = degrade(ref, 0.2, seed=3)
    r = paired_bootstrap(hyp, list(hyp), ref, n_samples=200)
    assert r.difference == 0.0
    assert r.difference_ci == [0.0, 0.0]
    assert r.p_value == 1.0
    assert r.system == r.baseline


def test_paired_bootstrap_scores_agree_with_sacrebleu_paired_test(corpus):
    """Same scores as `sacrebleu --paired-bs`; the p-value is ours (approximate randomisation, calibrated in
    tests/test_significance.py), and it agrees that a clearly worse system is worse."""
    _, ref = corpus
    base, system = degrade(ref, 0.2, seed=4), degrade(ref, 0.3, seed=5)
    ours = paired_bootstrap(system, base, ref, n_samples=300, seed=12345)
    _, table = PairedTest([("base", base), ("sys", system)], {"BLEU": BLEU()}, [ref], test_type="bs", n_samples=300)()
    theirs = table["BLEU"][1]
    assert ours.system == pytest.approx(theirs.score, abs=1e-9)
    assert ours.baseline == pytest.approx(table["BLEU"][0].score, abs=1e-9)
    assert ours.p_value < 0.01 and theirs.p_value < 0.01
    assert ours.difference < 0
    lo, hi = ours.difference_ci
    assert lo <= ours.difference <= hi < 0  # dropping 30% vs 20% of the words is clearly worse


def test_paired_bootstrap_by_length_covers_every_bucket(corpus):
    src, ref = corpus
    base, system = degrade(ref, 0.2, seed=6), degrade(ref, 0.1, seed=7)
    rows = paired_bootstrap_by_length(src, system, base, ref, n_samples=50)
    assert len(rows) == 6
    assert sum(r.count for r in rows) == len(src)
    for r in rows:
        if r.count:
            t = r.test
            assert t.count == r.count
            assert t.difference == pytest.approx(t.system - t.baseline)
            if r.count >= MIN_TEST_ITEMS:
                assert 0.0 < t.p_value <= 1.0
            else:
                assert t.p_value is None  # too few sentences for a test: reports print n/a
        else:
            assert r.test is None
            assert "difference" not in r.to_dict() and list(r.to_dict()) == ["label", "lo", "hi", "count", "few"]


def read_png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return width, height


def test_bleu_by_length_plot_is_a_png_of_the_expected_size(corpus, tmp_path):
    src, ref = corpus
    systems = {
        "attention": bleu_by_length(src, degrade(ref, 0.1, 8), ref, n_samples=20),
        "fixed": bleu_by_length(src, degrade(ref, 0.4, 9), ref, n_samples=20),
    }
    path = save_png(plot_bleu_by_length(systems, size=(6.0, 4.0)), tmp_path / "bleu_by_length.png")
    assert read_png_size(path) == (600, 400)
    pixels = mpimg.imread(path)
    assert pixels.shape[:2] == (400, 600)
    assert pixels[..., :3].std() > 0.05  # something was drawn, not a blank canvas


def test_attention_heatmap_png(tmp_path):
    weights = np.random.default_rng(0).dirichlet(np.ones(5), size=4)  # (tgt 4, src 5), rows sum to 1
    fig = plot_attention(weights, ["▁ein", "▁Hund", "▁läuft", ".", "</s>"], ["▁a", "▁dog", "▁runs"], size=(5, 4))
    path = save_png(fig, tmp_path / "attention_0.png")
    assert read_png_size(path) == (500, 400)
    assert mpimg.imread(path).shape[:2] == (400, 500)


def test_figures_and_scalars_reach_tensorboard(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fig = plot_attention(np.eye(3), ["a", "b", "c"], ["x", "y", "z"], size=(3, 3))
    log_to_tensorboard(tmp_path / "tb", figures={"eval/attention_0": fig}, scalars={"eval/bleu": 12.5}, step=7)
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert acc.Tags()["images"] == ["eval/attention_0"]
    (event,) = acc.Scalars("eval/bleu")
    assert (event.step, event.value) == (7, 12.5)


def test_report_renders_every_section_and_round_trips_as_json(corpus, tmp_path):
    src, ref = corpus
    hyp, base = degrade(ref, 0.1, 10), degrade(ref, 0.3, 11)
    system = EvaluatedSystem(
        name="attn",
        checkpoint="runs/a/best.pt",
        step=100,
        arch="rnn_attention",
        num_parameters=12345,
        hypotheses_file="attn.hyp.txt",
        scores=corpus_scores(hyp, ref),
        speed=DecodeSpeed(sentences=200, seconds=2.0, sentences_per_second=100.0, tokens=2000, tokens_per_second=1000.0,
                          device="cpu"),
        by_length=bleu_by_length(src, hyp, ref, n_samples=20),
    )
    report = EvaluationReport(
        title="Evaluation on valid",
        split="valid",
        num_sentences=len(ref),
        decode={"beam": 5, "alpha": 0.6, "max_len_a": 1.5, "max_len_b": 10},
        length_edges=[0, 10, 20, 30, 40, 50],
        bootstrap_samples=20,
        systems=[system],
        comparisons=[
            Comparison(
                system="attn",
                baseline="fixed",
                overall=paired_bootstrap(hyp, base, ref, n_samples=20),
                by_length=paired_bootstrap_by_length(src, hyp, base, ref, n_samples=20),
            )
        ],
        plots=Plots(bleu_by_length="bleu_by_length.png", attention=["attention_0.png"]),
    )
    md_path, json_path = write_report(tmp_path, report)
    written = json.loads(json_path.read_text())
    assert written == report.to_dict()
    assert EvaluationReport.read(json_path) == report  # metrics.json reads back as the report it was
    assert "baseline" not in written["systems"][0] and "truncated_sources" not in written["systems"][0]
    assert list(written["systems"][0]["scores"]) == ["num_sentences", "signatures", "bleu", "bleu_detail", "chrf",
                                                     "ter", "bleu_lc", "chrfpp"]
    md = md_path.read_text()
    assert md == render_markdown(report)
    assert f"| attn | {system.scores.bleu:.2f} |" in md
    assert system.scores.signatures["bleu"] in md
    assert "12,345" in md and "100.0" in md  # parameter count, sentences/s
    assert "| 50+ | 0 |" in md and "empty" in md and "few sentences" in md
    assert "### attn vs fixed" in md and "![BLEU by source length](bleu_by_length.png)" in md


def test_every_metric_of_the_table_is_scored_reported_and_logged():
    """One table: each metric of METRICS has its CorpusScores field, its report column, and its TensorBoard tag
    (in training only where it is validated)."""
    scores = corpus_scores(["a dog runs ."], ["a dog runs ."])
    assert list(scores.signatures) == list(METRICS)
    assert all(isinstance(scores.score(name), float) for name in METRICS)
    assert [m.column for m in METRICS.values()] == ["BLEU", "chrF", "chrF++", "TER", "BLEU (lowercased)"]
    validated = {m.valid_tag for m in METRICS.values() if m.validate}
    assert validated == {"valid/bleu", "valid/chrf"} and validated <= set(METRIC_TAGS.values())
    assert METRICS["bleu"].eval_tag("test", "rnn_attention") == "eval/test/rnn_attention/bleu"
    with pytest.raises(NMTError, match="no per-sentence statistics"):
        paired_bootstrap(["a b"] * 3, ["a c"] * 3, ["a b"] * 3, n_samples=5, metric="ter")
