"""`nmt-gpu-check`: one line and exit 0 without CUDA; every check of the GPU path run on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_experiment import tiny_overrides

from nmt.bench import gpu_check
from nmt.bench.gpu_check import run_gpu_check
from nmt.cli.gpu_check import main
from nmt.io import write_json


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the real check applies")
def test_without_cuda_one_line_and_exit_0(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "nvidia_driver_version", lambda: None)  # a machine without an NVIDIA driver
    main(["--out", str(tmp_path / "gpu")])  # returns: exit status 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA device" in out[0]
    assert not (tmp_path / "gpu").exists()


@pytest.mark.slow
def test_every_check_runs_the_gpu_recipes_through_nmt_train_on_the_cpu(tiny_corpus_files, tmp_path, one_thread):
    # The overrides every recipe takes; each recipe's model shrunk by its own.
    extra = ["data=files", "train.num_workers=0", "train.lr=5e-3", "train.warmup_steps=0"] + [
        o for o in tiny_overrides(tiny_corpus_files, tmp_path / "data")
        if not o.startswith(("train.max_steps", "train.eval_every", "train.save_every", "train.max_minutes",
                             "train.device", "train.resume", "train.attention_samples", "train.eval_max_sentences",
                             "train.lr", "model."))]
    recipes = {"rnn_gpu": ["model.emb_dim=16", "model.hidden=16"],
               "transformer_gpu": ["model.hidden=16", "model.ff_dim=32", "model.heads=2", "model.enc_layers=1",
                                   "model.dec_layers=1"]}
    lines: list[str] = []
    report = run_gpu_check("cpu", steps=8, out=tmp_path / "gpu", extra=extra, recipes=recipes,
                           bench_models=("transformer_small",), log=lines.append)
    assert isinstance(report, gpu_check.GpuCheckReport)
    assert [(r.recipe, r.model) for r in report.training] == [("rnn_gpu", "rnn_attention"),
                                                              ("transformer_gpu", "transformer")]
    for r in report.training:
        assert r.exit_code == 0 and r.steps == 8 and len(r.valid_losses) == 2
        assert not r.compile and r.tokens_per_s > 0 and r.peak_memory_gb > 0 and not r.out_of_memory
    assert report.steps.recipe == "rnn_gpu" and report.steps.syncs_per_step is None  # nothing waits on the CPU
    assert report.steps.loader_batches_per_s > 0
    assert report.resume.weights_restored and report.resume.finished
    assert report.resume.killed_at_step >= 2
    assert report.beam.sentences == 30 and report.beam.beam == 5
    assert report.torchrun.ok and report.torchrun.backend == "gloo" and report.torchrun.note == ""
    (bench,) = report.bench.results
    assert bench.model == "transformer_small" and bench.tokens_per_s > 0 and bench.peak_memory_mib > 0
    out = next(Path(tmp_path / "gpu").glob("*/"))
    saved = json.loads((out / "gpu_check.json").read_text())
    assert saved["ok"] == report.ok
    # the file keeps its keys: the bench's report flat under "bench", with its own file's path
    assert saved["bench"]["results"][0]["model"] == "transformer_small" and saved["bench"]["ok"] is True
    assert json.loads(Path(saved["bench"]["path"]).read_text())["results"] == saved["bench"]["results"]
    page = (out / "report.md").read_text()
    assert page.startswith("gpu-check on cpu") and "train transformer_gpu (transformer)" in page
    assert "loader" in page and "no OOM" in page and "torchrun DDP (gloo, 2 ranks): ok" in page
    assert any(line.startswith("gpu-check ") for line in lines)


def test_a_recipe_that_fell_back_to_eager_or_recompiled_fails(tmp_path, monkeypatch):
    """The verdict read from a recipe's metrics.json: a compile that fell back to eager, or that built more graphs
    than MAX_GRAPHS, fails the check even though training went on and the loss fell."""
    run_dir = tmp_path / "transformer_gpu"

    def child_writing(compiled):  # a child that ran nmt-train and wrote this metrics.json
        def child(cmd, log_path, timeout, stop_when=None):
            run_dir.mkdir(parents=True, exist_ok=True)
            write_json(run_dir / "metrics.json", {
                "step": 4, "history": [{"valid_loss": 5.0}, {"valid_loss": 4.0}], "train_seconds": 3.0,
                "tokens_per_sec": 900.0, "compile_seconds": 20.0, "compile": compiled,
                "peak_memory": {"memory/host_peak_gb": 1.0}})
            return 0

        return child

    monkeypatch.setattr(gpu_check, "_train_overrides", lambda *args: ["recipe=transformer_gpu"])  # compile kept on
    for compiled, ok in (({"fell_back": False, "graphs": 1}, True), ({"fell_back": True, "graphs": 1}, False),
                         ({"fell_back": False, "graphs": 2}, False)):
        monkeypatch.setattr(gpu_check, "run_child", child_writing(compiled))
        result = gpu_check.check_training("transformer_gpu", "cpu", 4, run_dir, [])
        assert result.compile and result.ok is ok and result.loss_falls
    assert "graph(s) (MORE THAN 1)" in result.summary()
