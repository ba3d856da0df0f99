"""gpu-check cannot pass by accident: "no CUDA" passes only without an NVIDIA driver (faked here), each check is
isolated and the report always written, child processes die with their children on timeout; and the MFU peak
table knows the current data-centre GPUs and nothing else."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from nmt.bench import benchmark, gpu_check
from nmt.cli.gpu_check import main

OPEN_DRIVER = "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build  (dvs-builder)\n"


@pytest.fixture
def no_cuda(monkeypatch):
    """torch sees no CUDA device, whatever this machine has."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def fake_driver(monkeypatch, tmp_path, proc_text: str | None, smi_output: str | None) -> None:
    """/proc/driver/nvidia/version with `proc_text` (None: absent) and an nvidia-smi printing `smi_output` (None:
    not on PATH)."""
    proc = tmp_path / "proc-version"
    if proc_text is not None:
        proc.write_text(proc_text)
    monkeypatch.setattr(gpu_check, "DRIVER_FILE", proc)
    smi = None
    if smi_output is not None:
        smi = tmp_path / "nvidia-smi"
        smi.write_text(f"#!/bin/sh\necho '{smi_output}'\n")
        smi.chmod(0o755)
    monkeypatch.setattr(gpu_check.shutil, "which", lambda name: str(smi) if smi and name == "nvidia-smi" else None)


def test_no_driver_and_no_cuda_is_one_line_and_exit_0(no_cuda, monkeypatch, tmp_path, capsys):
    fake_driver(monkeypatch, tmp_path, None, None)
    main(["--out", str(tmp_path / "gpu")])  # returns: exit status 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert "no CUDA device and no NVIDIA driver" in line
    assert not (tmp_path / "gpu").exists()


@pytest.mark.parametrize(("proc_text", "smi_output", "driver"), [
    (OPEN_DRIVER, None, "550.54.15"),
    ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n", None, "535.104.05"),
    (None, "570.86.10", "570.86.10"),  # no /proc file, nvidia-smi answers
])
def test_a_driver_that_torch_cannot_use_fails_naming_both_versions(no_cuda, monkeypatch, tmp_path, capsys,
                                                                    proc_text, smi_output, driver):
    fake_driver(monkeypatch, tmp_path, proc_text, smi_output)
    monkeypatch.setattr(torch.version, "cuda", "13.0")  # a CUDA build too new for the driver
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path / "gpu")])
    assert exit_info.value.code == 1
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith("gpu-check FAILED: ") and f"NVIDIA driver {driver}" in line
    assert f"torch {torch.__version__}" in line and "CUDA version: 13.0" in line


def test_a_cpu_build_of_torch_with_a_driver_says_so(no_cuda, monkeypatch, tmp_path):
    fake_driver(monkeypatch, tmp_path, OPEN_DRIVER, None)
    monkeypatch.setattr(torch.version, "cuda", None)
    report = gpu_check.run_gpu_check(out=tmp_path / "gpu", log=lambda _: None)
    assert report is not None and not report.ok
    assert "none (a CPU build)" in report.error and report.driver == "550.54.15"


def test_each_check_is_isolated_and_the_report_always_written(monkeypatch, tmp_path):
    ran: list[str] = []

    def check(name, result=None, error=None):
        def run(*args):
            ran.append(name)
            if error is not None:
                raise error
            return result

        return run

    monkeypatch.setattr(gpu_check, "check_training", check("train", error=RuntimeError("CUDA error: misaligned\nx")))
    monkeypatch.setattr(gpu_check, "check_steps", check("steps", gpu_check.StepCheck(
        recipe="a", syncs_per_step=[1, 1], loader_batches_per_s=100.0)))
    monkeypatch.setattr(gpu_check, "check_resume", check("resume", gpu_check.ResumeCheck(
        model="a", killed_at_step=2, weights_restored=True, finished_step=4, finished=True, ok=True)))
    monkeypatch.setattr(gpu_check, "check_beam", check("beam", gpu_check.BeamCheck(
        beam=5, sentences=1, sentences_per_s=1.0, bleu=1.0)))
    monkeypatch.setattr(gpu_check, "check_torchrun", check("torchrun", gpu_check.TorchrunCheck(
        backend="gloo", ranks=2, exit_code=0, ok=True, log_tail="")))
    monkeypatch.setattr(gpu_check, "check_bench", check("bench", error=SystemExit("error: unknown model preset")))
    lines: list[str] = []
    report = gpu_check.run_gpu_check("cpu", steps=4, out=tmp_path, recipes=("a", "b"), log=lines.append)
    assert ran == ["train", "train", "steps", "resume", "beam", "torchrun", "bench"]  # every check ran after a failure
    assert report.training == [gpu_check.Failed(error="RuntimeError: CUDA error: misaligned")] * 2
    assert report.bench == gpu_check.Failed(error="SystemExit: error: unknown model preset")
    assert report.resume.ok and not report.ok
    assert "train: FAILED: RuntimeError: CUDA error: misaligned" in lines and lines[-1].startswith("gpu-check FAILED")
    saved = json.loads(next(tmp_path.glob("*/gpu_check.json")).read_text())
    assert saved["ok"] is False and saved["training"] == [asdict(r) for r in report.training]
    assert saved["training"] == [{"ok": False, "error": "RuntimeError: CUDA error: misaligned"}] * 2  # its keys
    assert saved["bench"] == {"ok": False, "error": "SystemExit: error: unknown model preset"}


def test_the_report_is_written_even_when_the_check_itself_is_interrupted(monkeypatch, tmp_path):
    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(gpu_check, "check_training", interrupted)
    with pytest.raises(KeyboardInterrupt):
        gpu_check.run_gpu_check("cpu", steps=4, out=tmp_path, recipes=("a",), log=lambda _: None)
    assert json.loads(next(tmp_path.glob("*/gpu_check.json")).read_text())["ok"] is False


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def test_a_child_past_its_timeout_is_killed_with_its_children(tmp_path):
    pid_file, log = tmp_path / "grandchild.pid", tmp_path / "child.log"
    cmd = ["bash", "-c", f"sleep 60 & echo $! > {pid_file}; echo started; wait"]
    started = time.monotonic()
    assert gpu_check.run_child(cmd, log, timeout=1.0) is None
    assert time.monotonic() - started < 10
    grandchild = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while alive(grandchild) and time.monotonic() < deadline:  # SIGKILL is delivered asynchronously
        time.sleep(0.05)
    assert not alive(grandchild)
    assert gpu_check.log_tail(log) == "started"  # the child's log is kept


def test_a_child_stopped_on_a_condition_and_one_that_exits(tmp_path):
    flag = tmp_path / "flag"
    cmd = ["bash", "-c", f"touch {flag}; sleep 60"]
    assert gpu_check.run_child(cmd, tmp_path / "a.log", timeout=30, stop_when=flag.exists) == -9
    assert gpu_check.run_child(["bash", "-c", "echo bad; exit 3"], tmp_path / "b.log", timeout=30) == 3
    assert gpu_check.log_tail(tmp_path / "b.log") == "bad"


@pytest.mark.parametrize(("name", "peak"), [
    ("NVIDIA H100 80GB HBM3", 989.0),  # SXM
    ("NVIDIA H100 SXM5 80GB", 989.0),
    ("NVIDIA H100 PCIe", 756.0),
    ("NVIDIA H100 NVL", 835.0),
    ("NVIDIA H200", 989.0),
    ("NVIDIA H200 NVL", 835.0),
    ("NVIDIA A100-SXM4-80GB", 312.0),
    ("NVIDIA A100 80GB PCIe", 312.0),
    ("NVIDIA L40S", 362.0),
    ("NVIDIA L40", None),  # not an L40S, nor an L4
    ("NVIDIA A100-SXM4-40GB MIG 1g.5gb", None),  # a slice of the GPU
    ("NVIDIA H100 MIG 3g.40gb", None),
    ("NVIDIA GH200 480GB", None),
    ("NVIDIA H100", None),  # which H100?
    ("Some Future GPU", None),
])
def test_mfu_peak_table(name, peak):
    assert benchmark.bf16_peak_tflops(name) == peak


def test_mfu_column_says_unknown_peak_on_an_unknown_gpu():
    assert benchmark._mfu_cell(None, "NVIDIA H100 MIG 3g.40gb") == "unknown peak"
    assert benchmark._mfu_cell(None, None) == "-"
    assert benchmark._mfu_cell(41.25, "NVIDIA H100 PCIe") == "41.2%"



def test_precision_check_reports_the_recurrent_layers_in_fp32_under_bf16_autocast():
    result = gpu_check.check_precision("cpu")
    assert result.ok and result.recurrent_fp32 and result.graphs is None  # compile is asked on CUDA only
    assert result.dtypes["rnn_fixed"]["encoder.rnn"] == "float32"
    assert result.dtypes["rnn_attention"]["decoder.cells.0"] == "float32"
    assert {d["logits"] for d in result.dtypes.values()} == {"bfloat16"}
    assert "fp32 as intended" in gpu_check.describe("precision", result)
