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


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the real check applies")
def test_without_cuda_one_line_and_exit_0(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(gpu_check, "nvidia_driver_version", lambda: None)  # a machine without an NVIDIA driver
    main(["--out", str(tmp_path / "gpu")])  # returns: exit status 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA device" in out[0]
    assert not (tmp_path / "gpu").exists()


@pytest.mark.slow
def test_every_check_runs_on_the_cpu(tiny_corpus_files, tmp_path, one_thread):
    # The overrides every model takes (model.emb_dim is not an option of the Transformer).
    extra = ["data=files"] + [o for o in tiny_overrides(tiny_corpus_files, tmp_path / "data")
             if not o.startswith(("train.max_steps", "train.eval_every", "train.save_every", "train.max_minutes",
                                  "train.device", "train.resume", "train.attention_samples",
                                  "train.eval_max_sentences", "model.emb_dim"))]
    lines: list[str] = []
    report = run_gpu_check("cpu", steps=8, out=tmp_path / "gpu", extra=extra,
                           models=("rnn_fixed_small", "transformer_small"), bench_models=("transformer_small",),
                           log=lines.append)
    assert isinstance(report, gpu_check.GpuCheckReport)
    assert [r.model for r in report.training] == ["rnn_fixed_small", "transformer_small"]
    for r in report.training:
        assert r.steps == 8 and len(r.valid_losses) == 2
    assert report.resume.weights_restored and report.resume.finished
    assert report.resume.killed_at_step >= 2
    assert report.beam.sentences == 30 and report.beam.beam == 5
    assert report.torchrun.ok and report.torchrun.backend == "gloo"
    (bench,) = report.bench.results
    assert bench.model == "transformer_small" and bench.tokens_per_s > 0 and bench.peak_memory_mib > 0
    saved = json.loads(next(Path(tmp_path / "gpu").glob("*/gpu_check.json")).read_text())
    assert saved["ok"] == report.ok
    # the file keeps its keys: the bench's report flat under "bench", with its own file's path
    assert saved["bench"]["results"][0]["model"] == "transformer_small" and saved["bench"]["ok"] is True
    assert json.loads(Path(saved["bench"]["path"]).read_text())["results"] == saved["bench"]["results"]
    assert any(line.startswith("gpu-check ") for line in lines)
