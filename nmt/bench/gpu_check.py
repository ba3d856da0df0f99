"""The GPU path in one command: `make gpu-check` (nmt-gpu-check).

On a CUDA machine, in a few minutes: first the dtype of every recurrent layer under bf16 autocast and the number of
graphs torch.compile builds over variable-length batches (tiny models, seconds); then each default model trains for
`steps` steps through the real trainer with bf16 autocast, fused AdamW and TF32 (the Transformer first through
torch.compile in a child process, so a compiler failure or a poisoned CUDA context cannot break the eager run that
follows) and its validation loss must fall; a run is killed (SIGKILL) after its first checkpoint and resumed, and
the resumed weights must equal that checkpoint's; the Transformer decodes validation sentences with beam search; a
two-rank `torchrun` run (NCCL with two GPUs, gloo on the CPU otherwise) trains with DDP; and the speed benchmark
(nmt/bench/benchmark.py) prints tokens/s, peak memory and the Transformer's MFU.

Each check is isolated: one that fails records {"ok": false, "error": ...} and the next one runs, and
<out>/<time>/gpu_check.json is always written. Every child process runs in its own process group with a
timeout, is killed with its children when the timeout passes, and keeps its log (quoted on failure).

Without CUDA: exit 0 with one line only when the machine has no NVIDIA driver (no /proc/driver/nvidia/version,
no nvidia-smi); with a driver it is a failure (exit 1) that names torch's CUDA version and the driver's, as
torch is then a CPU build or too new for the driver. `device=cpu` runs the same checks on the CPU (gloo
instead of NCCL, no autocast), which is how the tests exercise it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from nmt.bench import benchmark
from nmt.config import DataConfig
from nmt.data.corpus import prepare_corpus
from nmt.decoding.search import translate
from nmt.errors import NMTError
from nmt.experiments.runner import compose_run
from nmt.metrics import corpus_score
from nmt.models import build_model
from nmt.runtime import pick_device
from nmt.training.checkpoint import load_checkpoint, load_model, resolve_checkpoint
from nmt.training.step import compile_dynamic
from nmt.training.trainer import Trainer

MODELS = ("rnn_fixed", "rnn_attention", "transformer")
CHILD_TIMEOUT_S = 900  # a child training run of the check (the killed-and-resumed run, torchrun, compile)
DRIVER_FILE = Path("/proc/driver/nvidia/version")


# Child processes -------------------------------------------------------------------------------------------
def run_child(cmd: list[str], log_path: Path, timeout: float, stop_when: Callable[[], bool] | None = None
              ) -> int | None:
    """Run `cmd` in its own process group, stdout and stderr into `log_path`; its exit code, or None when it
    was still running after `timeout` seconds. The group (the child and its children) is SIGKILLed on timeout,
    and as soon as `stop_when()` is true (then the code is -SIGKILL)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while proc.poll() is None and time.monotonic() < deadline and not (stop_when and stop_when()):
        time.sleep(0.2)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        code = proc.wait()
        return code if stop_when and stop_when() else None
    return proc.returncode


def log_tail(log_path: Path, lines: int = 5) -> str:
    """The last lines of a child's log, joined with ' | ' (for one-line errors)."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:]) or "(empty log)"


def nvidia_driver_version() -> str | None:
    """The NVIDIA driver's version ("unknown" when present but unreadable), or None when this machine has no
    NVIDIA driver: neither /proc/driver/nvidia/version nor nvidia-smi."""
    if DRIVER_FILE.exists():
        text = DRIVER_FILE.read_text(errors="replace")
        found = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
        return found.group(1) if found else "unknown"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "nvidia-smi.log"
        code = run_child([smi, "--query-gpu=driver_version", "--format=csv,noheader"], log, timeout=30)
        found = re.search(r"\d+(?:\.\d+)+", log.read_text(errors="replace")) if code == 0 else None
    return found.group(0) if found else "unknown"


def no_cuda_report(driver: str) -> dict[str, Any]:
    """The failed report of a machine whose NVIDIA driver torch cannot use."""
    torch_cuda = torch.version.cuda or "none (a CPU build)"
    error = (f"NVIDIA driver {driver} is installed but torch {torch.__version__} cannot use CUDA (torch's CUDA "
             f"version: {torch_cuda}); install a build of torch for a CUDA version this driver supports")
    return {"ok": False, "error": error, "driver": driver, "torch": torch.__version__, "torch_cuda": torch.version.cuda}


# The checks ------------------------------------------------------------------------------------------------
def _train_overrides(model: str, device: str, steps: int, extra: list[str]) -> list[str]:
    return [f"model={model}", f"train.device={device}", f"train.max_steps={steps}", "train.max_minutes=0",
            f"train.eval_every={max(1, steps // 2)}", f"train.save_every={max(1, steps // 2)}",
            "train.eval_max_sentences=200", "train.attention_samples=0", "train.resume=never", *extra]


def _train_cmd(run_dir: Path, overrides: list[str]) -> list[str]:
    return [sys.executable, "-m", "nmt.cli.train", f"hydra.run.dir={run_dir}", *overrides]


def check_training(model: str, device: str, steps: int, run_dir: Path, extra: list[str]) -> dict[str, Any]:
    """Train through the trainer; the validation loss at the end must be below the one half-way."""
    overrides = _train_overrides(model, device, steps, extra)
    result: dict[str, Any] = {"model": model, "compile": False}
    done_dir = run_dir / "compiled"
    if model.startswith("transformer") and device.startswith("cuda"):
        # torch.compile where it works (on CUDA: on the CPU Inductor's C++ build is slow and can fail), in a
        # child process; on failure report it and train eagerly here.
        code = run_child(_train_cmd(done_dir, overrides + ["train.compile=true"]), run_dir / "compiled.log",
                         CHILD_TIMEOUT_S)
        result["compile"] = code == 0
        if code != 0:
            result["compile_error"] = f"exit {code}: {log_tail(run_dir / 'compiled.log', 2)}"[:300]
    if not result["compile"]:
        done_dir = run_dir / "eager"
        Trainer(compose_run(overrides), done_dir).fit()
    metrics = json.loads((done_dir / "metrics.json").read_text())
    losses = [h["valid_loss"] for h in metrics["history"]]
    loss_falls = len(losses) >= 2 and losses[-1] < losses[0]
    return result | {"steps": metrics["step"], "valid_losses": losses, "loss_falls": loss_falls,
                     "train_seconds": metrics["train_seconds"], "run_dir": str(done_dir), "ok": loss_falls}


def check_resume(model: str, device: str, steps: int, run_dir: Path, extra: list[str]) -> dict[str, Any]:
    """nmt-train in a child process, SIGKILLed once its first checkpoint exists; the trainer set up again in the
    same run directory must restore exactly that checkpoint's weights, then finish the run."""
    overrides = [o for o in _train_overrides(model, device, steps, extra) if o != "train.resume=never"]
    overrides = [o for o in overrides if not o.startswith("train.save_every")] + ["train.save_every=2"]
    last, child_log = run_dir / "last.pt", run_dir.parent / "resume-child.log"
    code = run_child(_train_cmd(run_dir, overrides), child_log, CHILD_TIMEOUT_S, stop_when=last.exists)
    if not last.exists():
        raise NMTError(f"{model} wrote no checkpoint before it was to be killed (exit {code}); its log "
                       f"({child_log}) ends: {log_tail(child_log)}")
    saved = load_checkpoint(last)
    trainer = Trainer(compose_run(overrides), run_dir)
    try:
        trainer._setup()
        restored = all(torch.equal(v.cpu(), saved["model"][k].cpu()) for k, v in trainer.model.state_dict().items())
    finally:
        trainer.release()
    summary = Trainer(compose_run(overrides), run_dir).fit()
    finished = summary["step"] == steps
    return {"model": model, "killed_at_step": int(saved["step"]), "weights_restored": restored,
            "finished_step": summary["step"], "finished": finished, "ok": restored and finished}


def check_beam(run_dir: Path, device: str, sentences: int = 200) -> dict[str, Any]:
    dev = pick_device(device)
    loaded = load_model(resolve_checkpoint(run_dir), dev)
    valid = prepare_corpus(loaded.cfg.data, log=lambda _: None).split("valid")
    src, ref = list(valid["src"][:sentences]), list(valid["tgt"][:sentences])
    out = translate(loaded.model, loaded.tokenizer, src, loaded.cfg.decode, dev)
    return {"beam": int(loaded.cfg.decode.beam), "sentences": len(src), "sentences_per_s": out.sentences_per_second,
            "bleu": corpus_score(out.hypotheses, ref), "ok": True}


def check_torchrun(model: str, device: str, run_dir: Path, extra: list[str]) -> dict[str, Any]:
    """A two-rank torchrun: the process group comes up, DDP steps and their collectives run, training finishes.
    NCCL on CUDA with at least two GPUs, gloo on the CPU otherwise (two ranks cannot share one GPU's NCCL)."""
    nccl = device.startswith("cuda") and torch.cuda.device_count() >= 2
    rank_device = "cuda" if nccl else "cpu"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
           "nmt.cli.train", f"hydra.run.dir={run_dir}", *_train_overrides(model, rank_device, 4, extra)]
    child_log = run_dir.parent / "torchrun.log"
    code = run_child(cmd, child_log, CHILD_TIMEOUT_S)
    log = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else ""
    ok = code == 0 and "x 2 ranks (" in log
    return {"backend": "nccl" if nccl else "gloo", "ranks": 2, "exit_code": code, "ok": ok,
            "log_tail": "" if ok else log_tail(child_log)}


def check_bench(device: str, steps: int, out: Path, models: tuple[str, ...], bench_models: tuple[str, ...],
                extra: list[str]) -> dict[str, Any]:
    args = benchmark.bench_args(device=device, models=list(bench_models), decode_sentences=0,
                                out=str(out / "bench.json"), batch_tokens=16384 if device.startswith("cuda") else 600)
    data_node = compose_run(_train_overrides(models[0], device, steps, extra)).data  # the corpus trained on
    data = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig), data_node))
    return benchmark.run_benchmark(args, data) | {"ok": True}


RECURRENT = (torch.nn.GRU, torch.nn.LSTM, torch.nn.GRUCell, torch.nn.LSTMCell)


def _record_dtype(seen: dict[str, str], key: str) -> Callable[..., None]:
    """A forward hook that records the dtype of a module's (first) output under `key`."""
    def hook(module: torch.nn.Module, inputs: Any, output: Any) -> None:
        out = output[0] if isinstance(output, tuple) else output
        out = out.data if isinstance(out, torch.nn.utils.rnn.PackedSequence) else out
        seen[key] = str(out.dtype).removeprefix("torch.")

    return hook


def check_precision(device: str, lengths: tuple[int, ...] = (7, 11, 13, 17, 23, 29)) -> dict[str, Any]:
    """The questions a first GPU settles in a minute, before any training: under bf16 autocast, the dtype of every
    recurrent layer's output (fp32 intended) and of each model's logits (bf16); on CUDA, how many graphs
    torch.compile builds for the Transformer over batches of `lengths` different source/target lengths, compiled
    as the trainer compiles (dynamic shapes should keep it to a few, not one per length). Tiny random models, no
    data."""
    dev = pick_device(device)
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16)
    dtypes: dict[str, dict[str, str]] = {}
    for name in MODELS:
        cfg = compose_run([f"model={name}"]).model
        for key, size in (("emb_dim", 32), ("hidden", 32), ("ff_dim", 64)):  # tiny, where the architecture has it
            if key in cfg:
                cfg[key] = size
        model = build_model(cfg, 50, 50).to(dev)
        seen: dict[str, str] = {}
        hooks = [m.register_forward_hook(_record_dtype(seen, k)) for k, m in model.named_modules()
                 if isinstance(m, RECURRENT)]
        src, tgt = torch.randint(4, 50, (2, 9), device=dev), torch.randint(4, 50, (2, 6), device=dev)
        with torch.no_grad(), autocast:
            logits = model(src, torch.tensor([9, 7], device=dev), tgt)
        for h in hooks:
            h.remove()
        dtypes[name] = {**seen, "logits": str(logits.dtype).removeprefix("torch.")}
    recurrent_fp32 = all(v == "float32" for d in dtypes.values() for k, v in d.items() if k != "logits")
    result: dict[str, Any] = {"dtypes": dtypes, "recurrent_fp32": recurrent_fp32, "graphs": None}
    if dev.type == "cuda":  # inductor on the CPU needs a C++ toolchain and minutes; the question is about CUDA
        cfg = compose_run(["model=transformer"]).model
        compiled = compile_dynamic(build_model(cfg, 1000, 1000).to(dev))  # as the trainer compiles
        torch._dynamo.reset()
        for n in lengths:
            with torch.no_grad(), autocast:
                compiled(torch.randint(4, 1000, (8, n), device=dev), torch.full((8,), n, device=dev),
                         torch.randint(4, 1000, (8, n + 2), device=dev))
        result["graphs"] = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
    result["ok"] = recurrent_fp32 and (result["graphs"] is None or result["graphs"] < len(lengths))
    return result


def isolated(check: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """The check's result, or {"ok": False, "error": ...} when it raised: the next check runs either way."""
    try:
        return check(*args)
    except (Exception, SystemExit) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return {"ok": False, "error": f"{type(e).__name__}: {first}"[:500]}


def describe(name: str, result: dict[str, Any]) -> str:
    """One log line for a check's result."""
    if "error" in result:
        return f"{name}: FAILED: {result['error']}"
    if name == "precision":
        rnn = ", ".join(f"{m}: " + "/".join(sorted({v for k, v in d.items() if k != "logits"}) or ["-"])
                        for m, d in result["dtypes"].items())
        graphs = "-" if result["graphs"] is None else str(result["graphs"])
        verdict = "fp32 as intended" if result["recurrent_fp32"] else "NOT fp32"
        return (f"precision under bf16 autocast: recurrent layers {rnn} ({verdict}); torch.compile graphs over "
                f"variable lengths: {graphs}")
    if name == "train":
        losses = " -> ".join(f"{x:.3f}" for x in result["valid_losses"])
        return (f"train {result['model']}: {result['steps']} steps, valid loss {losses} "
                f"({'falls' if result['loss_falls'] else 'DOES NOT FALL'}), compile: {result['compile']}")
    if name == "resume":
        return (f"resume: killed at step {result['killed_at_step']}, weights restored: "
                f"{result['weights_restored']}, finished: {result['finished']}")
    if name == "beam":
        return (f"beam {result['beam']}: {result['sentences_per_s']:.1f} sentences/s, "
                f"valid BLEU {result['bleu']:.2f}")
    if name == "torchrun":
        return f"torchrun ({result['backend']}, 2 ranks): {'ok' if result['ok'] else 'FAILED: ' + result['log_tail']}"
    return benchmark.markdown(result)


def run_gpu_check(device: str = "cuda", steps: int = 300, out: str | Path = "outputs/gpu_check",
                  models: tuple[str, ...] = MODELS, extra: list[str] | None = None,
                  bench_models: tuple[str, ...] = ("rnn_fixed", "rnn_attention", "transformer", "transformer_base"),
                  log: Any = print) -> dict[str, Any] | None:
    """Every check above; returns the report (also written to <out>/<time>/gpu_check.json), or None on a
    machine without CUDA and without an NVIDIA driver."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        driver = nvidia_driver_version()
        if driver is None:
            log(f"gpu-check: no CUDA device and no NVIDIA driver on this machine (torch {torch.__version__}); "
                f"nothing to check")
            return None
        report = no_cuda_report(driver)
        log(f"gpu-check FAILED: {report['error']}")
        return report
    extra = list(extra or [])
    out = Path(out) / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"device": device, "torch": torch.__version__, "torch_cuda": torch.version.cuda,
                              "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None}
    started = time.time()
    checks: list[dict[str, Any]] = []
    try:
        report["precision"] = isolated(check_precision, device)
        log(describe("precision", report["precision"]))
        report["training"] = []
        for m in models:
            report["training"].append(isolated(check_training, m, device, steps, out / m, extra))
            log(describe("train", report["training"][-1]))
        report["resume"] = isolated(check_resume, models[0], device, 4, out / "resume", extra)
        log(describe("resume", report["resume"]))
        last_run = Path(report["training"][-1].get("run_dir", out / models[-1] / "eager"))
        report["beam"] = isolated(check_beam, last_run, device)
        log(describe("beam", report["beam"]))
        report["torchrun"] = isolated(check_torchrun, models[-1], device, out / "torchrun", extra)
        log(describe("torchrun", report["torchrun"]))
        report["bench"] = isolated(check_bench, device, steps, out, models, bench_models, extra)
        log(describe("bench", report["bench"]))
        checks = [report["precision"], *report["training"], report["resume"], report["beam"], report["torchrun"],
                  report["bench"]]
    finally:
        report["seconds"] = time.time() - started
        report["ok"] = bool(checks) and all(c["ok"] for c in checks)
        (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    log(f"gpu-check {'passed' if report['ok'] else 'FAILED'} in {report['seconds'] / 60:.1f} min: {out}")
    return report
