"""`nmt-evaluate` end to end on a tiny trained checkpoint, checkpoint averaging, and the user errors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from matplotlib import image as mpimg

from nmt.cli.evaluate import evaluate_command
from nmt.config import CONFIG_DIR
from nmt.errors import NMTError
from nmt.metrics import corpus_scores
from nmt.training.average import average_checkpoints, last_checkpoints
from nmt.training.checkpoint import load_checkpoint, save_checkpoint

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
FAST = ["device=cpu", "decode.beam=2", "decode.batch_size=16", "bootstrap_samples=30"]


def evaluate(*overrides: str) -> Path:
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="evaluate", overrides=[*FAST, *overrides])
    return Path(evaluate_command(cfg).out_dir)


def user_error(capsys: pytest.CaptureFixture[str], *overrides: str) -> str:
    """Run nmt-evaluate expecting a user error; returns its one stderr line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        evaluate(*overrides)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def evaluated(tiny_run, tmp_path_factory) -> Path:
    """The tiny run evaluated on its test split, with TensorBoard output and attention plots."""
    out = tmp_path_factory.mktemp("eval") / "out"
    evaluate(f"checkpoints=[{tiny_run.run_dir}]", "split=test", f"out_dir={out}", "attention_sentences=[0,2,999]",
             f"tensorboard_dir={out.parent / 'tb'}")
    return out


def test_evaluate_writes_hypotheses_scores_report_and_plots(evaluated, tiny_run):
    refs = lines(Path(tiny_run.files["test"][1]))
    hyps = lines(evaluated / "rnn_attention.hyp.txt")
    assert len(hyps) == len(refs) == 60
    assert lines(evaluated / "ref.txt") == refs
    metrics = json.loads((evaluated / "metrics.json").read_text())
    (system,) = metrics["systems"]
    assert system["scores"]["bleu"] == pytest.approx(corpus_scores(hyps, refs).bleu)
    assert system["checkpoint"].endswith("best.pt") and system["step"] == 30
    payload = load_checkpoint(tiny_run.run_dir / "best.pt")
    tables = {t.data_ptr(): t for t in payload["model"].values()}  # a tied table is saved under each of its names
    assert system["num_parameters"] == sum(t.numel() for t in tables.values())
    assert system["speed"]["sentences"] == 60 and system["speed"]["sentences_per_second"] > 0
    assert sum(b["count"] for b in system["by_length"]) == 60
    assert metrics["comparisons"] == []

    report = (evaluated / "report.md").read_text()
    assert system["scores"]["signatures"]["bleu"] in report
    assert "BLEU by source length" in report and "few sentences" in report
    assert "sentences/s" in report
    assert "attention_sentences [999] are outside" in report

    width, height = mpimg.imread(evaluated / "bleu_by_length.png").shape[1::-1]
    assert (width, height) == (700, 450)
    assert metrics["plots"]["attention"] == ["attention_0.png", "attention_2.png"]
    for name in metrics["plots"]["attention"]:
        assert (evaluated / name).read_bytes()[:4] == b"\x89PNG"


def test_evaluate_logs_to_tensorboard(evaluated):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(evaluated.parent / "tb"))
    acc.Reload()
    assert "eval/test/bleu_by_length" in acc.Tags()["images"]
    assert "eval/test/attention_0" in acc.Tags()["images"]
    metrics = json.loads((evaluated / "metrics.json").read_text())
    (event,) = acc.Scalars("eval/test/rnn_attention/bleu")
    assert event.value == pytest.approx(metrics["systems"][0]["scores"]["bleu"])
    assert event.step == 30


def test_results_are_never_overwritten(evaluated, tiny_run, capsys):
    before = {p.name: p.read_bytes() for p in evaluated.iterdir()}
    err = user_error(capsys, f"checkpoints=[{tiny_run.run_dir}]", f"out_dir={evaluated}")
    assert "not empty" in err
    assert {p.name: p.read_bytes() for p in evaluated.iterdir()} == before


@pytest.mark.slow
def test_default_output_directories_are_fresh(tiny_run, tmp_path):
    src, ref = tiny_run.files["test"]
    args = [f"checkpoints=[{tiny_run.run_dir / 'step-10.pt'}]", f"src_file={src}", f"ref_file={ref}",
            "attention_sentences=[]", "bootstrap_samples=0", "decode.nbest=2"]
    first, second = evaluate(*args), evaluate(*args)
    assert first != second
    assert first.parent == second.parent == tiny_run.run_dir / "eval"
    assert first.name.startswith("test.de-")
    assert lines(first / "rnn_attention.hyp.txt") == lines(second / "rnn_attention.hyp.txt")
    nbest = [line.split(" ||| ") for line in lines(first / "rnn_attention.nbest.txt")]
    assert [int(r[0]) for r in nbest] == [i // 2 for i in range(120)]
    assert [r[1] for r in nbest[::2]] == lines(first / "rnn_attention.hyp.txt")


@pytest.mark.slow
def test_baseline_checkpoint_comparison(tiny_run, tmp_path):
    out = evaluate(f"checkpoints=[{tiny_run.run_dir},{tiny_run.run_dir / 'step-20.pt'}]",
                   f"baseline={tiny_run.run_dir / 'step-10.pt'}", "split=valid", f"out_dir={tmp_path / 'cmp'}",
                   "attention_sentences=[0]")
    metrics = json.loads((out / "metrics.json").read_text())
    names = [s["name"] for s in metrics["systems"]]
    assert names == ["rnn_attention", "rnn_attention-2", "baseline:rnn_attention"]
    scores = {s["name"]: s["scores"]["bleu"] for s in metrics["systems"]}
    assert len(metrics["comparisons"]) == 2
    for comp in metrics["comparisons"]:
        overall = comp["overall"]
        assert comp["baseline"] == "baseline:rnn_attention"
        assert overall["system"] == pytest.approx(scores[comp["system"]])
        assert overall["baseline"] == pytest.approx(scores["baseline:rnn_attention"])
        assert overall["difference"] == pytest.approx(overall["system"] - overall["baseline"])
        assert 0 < overall["p_value"] <= 1
        assert sum(b["count"] for b in comp["by_length"]) == 30
    report = (out / "report.md").read_text()
    assert "### rnn_attention vs baseline:rnn_attention" in report
    assert (out / "attention_0.png").exists() and (out / "attention_rnn_attention-2_0.png").exists()


def test_baseline_hypotheses_file_against_itself(evaluated, tiny_run, tmp_path):
    out = evaluate(f"checkpoints=[{tiny_run.run_dir}]", f"baseline={evaluated / 'rnn_attention.hyp.txt'}",
                   f"out_dir={tmp_path / 'self'}", "attention_sentences=[]")
    (comp,) = json.loads((out / "metrics.json").read_text())["comparisons"]
    assert comp["baseline"] == "baseline:rnn_attention.hyp"
    assert comp["overall"]["difference"] == 0.0 and comp["overall"]["p_value"] == 1.0


def test_average_last_checkpoints(tiny_run, tmp_path):
    out = evaluate(f"checkpoints=[{tiny_run.run_dir}]", "average_last=2", "split=valid", f"out_dir={tmp_path / 'avg'}",
                   "attention_sentences=[]")
    (averaged,) = out.glob("averaged-*.pt")
    weights = load_checkpoint(averaged)["model"]
    a, b = (load_checkpoint(tiny_run.run_dir / f"step-{n}.pt")["model"] for n in (20, 30))
    for name, t in weights.items():
        torch.testing.assert_close(t, (a[name] + b[name]) / 2)
    (system,) = json.loads((out / "metrics.json").read_text())["systems"]
    assert [Path(p).name for p in system["averaged_from"]] == ["step-20.pt", "step-30.pt"]


def test_last_checkpoints_counts_linked_copies_once(tiny_run, tmp_path):
    # last.pt holds step 30, the same as step-30.pt: three distinct checkpoints, oldest first.
    assert [p.name for p in last_checkpoints(tiny_run.run_dir, 3)] == ["step-10.pt", "step-20.pt", "step-30.pt"]
    with pytest.raises(NMTError, match="fewer than 4"):
        last_checkpoints(tiny_run.run_dir, 4)


def test_average_refuses_different_models(tiny_run, tmp_path):
    payload = load_checkpoint(tiny_run.run_dir / "step-10.pt")
    payload["config"]["model"]["hidden"] = 64
    payload["model"] = {k: v.clone() for k, v in payload["model"].items()}
    save_checkpoint(tmp_path / "other.pt", payload)
    with pytest.raises(NMTError, match="different model configs"):
        average_checkpoints([tiny_run.run_dir / "step-20.pt", tmp_path / "other.pt"])
    single = average_checkpoints([tiny_run.run_dir / "step-20.pt"])
    assert single.optimizer is None and single.step == 20 and single.state.rng is None


def test_user_errors(tiny_run, tmp_path, capsys):
    run_dir = tiny_run.run_dir
    assert "checkpoint not found" in user_error(capsys, f"checkpoints=[{tmp_path / 'missing.pt'}]")
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    assert "not an nmt checkpoint" in user_error(capsys, f"checkpoints=[{foreign}]")
    assert "no split 'nosuch'" in user_error(capsys, f"checkpoints=[{run_dir}]", "split=nosuch")
    short = tmp_path / "short.txt"
    short.write_text("one line\n")
    err = user_error(capsys, f"checkpoints=[{run_dir}]", f"baseline={short}", "split=valid")
    assert "1 lines but there are 30 references" in err
    src, ref = tiny_run.files["test"]
    assert user_error(capsys, f"checkpoints=[{run_dir}]", f"src_file={src}", f"ref_file={short}") == \
        f"error: source file {src} has 60 lines but reference file {short} has 1: they must be line-parallel"
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert "empty" in user_error(capsys, f"checkpoints=[{run_dir}]", f"src_file={empty}", f"ref_file={empty}")
    assert "no checkpoints given" in user_error(capsys)
    assert not list(tmp_path.glob("**/metrics.json"))  # nothing was written by a failed run


def second_reference(tiny_run, tmp_path: Path) -> tuple[Path, Path, Path]:
    """(source, reference, second reference) files of the tiny test split. The corpora keep one reference a
    sentence, so the second is the real one with a fifth of its words dropped (seeded)."""
    src, ref = (Path(f) for f in tiny_run.files["test"])
    rng = random.Random(9)
    ref2 = tmp_path / "test.ref2.en"
    ref2.write_text("".join(" ".join(w for w in line.split() if rng.random() > 0.2) + "\n" for line in lines(ref)),
                    encoding="utf-8")
    return src, ref, ref2


@pytest.mark.slow
def test_multi_reference_evaluation_scores_as_the_sacrebleu_command_line(tiny_run, tmp_path):
    """ref_file=[ref,ref2]: ref1.txt and ref2.txt beside the report, every score as `sacrebleu ref1.txt ref2.txt
    -i hyp` gives it (nrefs:2), the paired test and the length buckets on both references."""
    src, ref, ref2 = second_reference(tiny_run, tmp_path)
    out = evaluate(f"checkpoints=[{tiny_run.run_dir}]", f"src_file={src}", f"ref_file=[{ref},{ref2}]",
                   f"baseline={tiny_run.run_dir / 'step-10.pt'}", f"out_dir={tmp_path / 'multi'}",
                   "attention_sentences=[]")
    assert lines(out / "ref1.txt") == lines(ref) and lines(out / "ref2.txt") == lines(ref2)
    assert not (out / "ref.txt").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["references"] == ["ref1.txt", "ref2.txt"]
    cli = [str(Path(sys.executable).with_name("sacrebleu")), "ref1.txt", "ref2.txt", "-w", "4", "-m", "bleu", "chrf",
           "ter"]
    for system in metrics["systems"]:
        theirs = json.loads(subprocess.run([*cli, "-i", system["hypotheses_file"]], cwd=out, capture_output=True,
                                           text=True, check=True).stdout)
        scores = system["scores"]
        assert [round(scores[m], 4) for m in ("bleu", "chrf", "ter")] == [t["score"] for t in theirs]
        assert scores["signatures"]["bleu"] == theirs[0]["signature"] and "nrefs:2" in theirs[0]["signature"]
        assert sum(b["count"] for b in system["by_length"]) == 60
    hyps = lines(out / "rnn_attention.hyp.txt")
    assert metrics["systems"][0]["scores"]["bleu"] != pytest.approx(corpus_scores(hyps, lines(ref)).bleu)
    (comparison,) = metrics["comparisons"]
    assert comparison["overall"]["system"] == pytest.approx(metrics["systems"][0]["scores"]["bleu"])
    assert comparison["overall"]["baseline"] == pytest.approx(metrics["systems"][1]["scores"]["bleu"])
    report = (out / "report.md").read_text()
    assert "references: 2 a sentence (ref1.txt, ref2.txt)" in report
    assert "sacrebleu ref1.txt ref2.txt -i rnn_attention.hyp.txt" in report


def test_a_reference_file_out_of_line_with_the_source_is_one_line(tiny_run, tmp_path, capsys):
    src, ref, ref2 = second_reference(tiny_run, tmp_path)
    ref2.write_text("".join(line + "\n" for line in lines(ref2)[:-1]), encoding="utf-8")
    err = user_error(capsys, f"checkpoints=[{tiny_run.run_dir}]", f"src_file={src}", f"ref_file=[{ref},{ref2}]",
                     f"out_dir={tmp_path / 'out'}")
    assert err == f"error: source file {src} has 60 lines but reference file {ref2} has 59: they must be line-parallel"
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_command_line_exit_code_and_single_error_line(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-m", "nmt.cli.evaluate", f"checkpoints=[{tmp_path / 'nope.pt'}]"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: checkpoint not found: {tmp_path / 'nope.pt'}"]
    assert list(tmp_path.iterdir()) == []  # no stray log files or output directories


@pytest.mark.slow
def test_transformer_attention_heatmap_and_head_grid(tiny_transformer_run, tmp_path):
    out = evaluate(f"checkpoints=[{tiny_transformer_run.run_dir}]", "split=valid", f"out_dir={tmp_path / 'tf'}",
                   "attention_sentences=[1]", "decode.max_len_b=4")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["systems"][0]["arch"] == "transformer"
    assert metrics["plots"]["attention"] == ["attention_1.png", "attention_1_heads.png"]
    single = mpimg.imread(out / "attention_1.png").shape
    grid = mpimg.imread(out / "attention_1_heads.png").shape
    assert grid[1] > single[1]  # two heads side by side


@pytest.mark.slow
def test_a_standard_test_set_by_its_sacrebleu_name_scores_as_sacrebleu(tiny_run, tmp_path, capsys):
    """testset=wmt08 (the mirror's news-test2008, de-en: the tiny run's direction): the same BLEU and chrF as
    sacrebleu.corpus_bleu / corpus_chrf on the mirror's files, and the set's name in the report."""
    import gzip

    import sacrebleu

    from nmt.data.testsets import mirrored_files

    files = mirrored_files("wmt08", "de-en")
    if files is None:
        pytest.skip("no WMT newstest mirror (NMT_DATA_MIRROR)")
    out = evaluate(f"checkpoints=[{tiny_run.run_dir}]", "testset=wmt08", f"out_dir={tmp_path / 'out'}",
                   "decode.beam=1", "decode.max_len_a=0.5", "decode.max_len_b=2", "attention_sentences=[]")
    report = json.loads((out / "metrics.json").read_text())
    assert report["split"] == "wmt08-de-en"
    with gzip.open(files[1], "rt", encoding="utf-8") as f:
        refs = [line.rstrip("\n") for line in f]
    hyps = lines(out / "rnn_attention.hyp.txt")
    assert len(hyps) == len(refs) == 2051
    scores = report["systems"][0]["scores"]
    assert scores["bleu"] == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)
    assert scores["chrf"] == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert "unknown test set wmt99" in user_error(capsys, f"checkpoints=[{tiny_run.run_dir}]", "testset=wmt99",
                                                 f"out_dir={tmp_path / 'x'}")
    assert "testset or src_file/ref_file, not both" in user_error(
        capsys, f"checkpoints=[{tiny_run.run_dir}]", "testset=wmt08", f"src_file={files[0]}", f"ref_file={files[1]}",
        f"out_dir={tmp_path / 'y'}")
