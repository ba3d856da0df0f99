"""The GPU path in one command: `make gpu-check` (nmt-gpu-check).

On a CUDA machine, in a few minutes: each default model trains for `steps` steps through the real trainer
with bf16 autocast, fused AdamW and TF32 (the Transformer also through torch.compile, falling back to eager
when compilation fails) and its validation loss must fall; a run is killed (SIGKILL) after its first
checkpoint and resumed, and the resumed weights must equal that checkpoint's; the Transformer decodes
validation sentences with beam search; a one-process `torchrun` run initialises NCCL and trains; and the
speed benchmark (nmt/bench/benchmark.py) prints tokens/s, peak memory and the Transformer's MFU.
Without CUDA it says so in one line and does nothing (exit 0). `device=cpu` runs the same checks on the CPU
(gloo instead of NCCL, no autocast), which is how the tests exercise it.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from nmt.errors import NMTError

MODELS = ("rnn_fixed", "rnn_attention", "transformer")


def _train_overrides(model: str, device: str, steps: int, extra: list[str]) -> list[str]:
    return [f"model={model}", f"train.device={device}", f"train.max_steps={steps}", "train.max_minutes=0",
            f"train.eval_every={max(1, steps // 2)}", f"train.save_every={max(1, steps // 2)}",
            "train.eval_max_sentences=200", "train.attention_samples=0", "train.resume=never", *extra]


def check_training(model: str, device: str, steps: int, run_dir: Path, extra: list[str]) -> dict[str, Any]:
    """Train through the trainer; the validation loss at the end must be below the one half-way."""
    from nmt.experiments.runner import compose_run
    from nmt.training.trainer import Trainer

    overrides = _train_overrides(model, device, steps, extra)
    result: dict[str, Any] = {"model": model, "compile": False}
    if model.startswith("transformer") and device.startswith("cuda"):
        try:  # torch.compile where it works (on CUDA: on the CPU Inductor's C++ build is slow and can fail)
            summary = Trainer(compose_run(overrides + ["train.compile=true"]), run_dir / "compiled").fit()
            result["compile"] = True
        except Exception as e:  # an Inductor/toolchain failure: report it, train eagerly instead
            result["compile_error"] = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
    if not result["compile"]:
        summary = Trainer(compose_run(overrides), run_dir / "eager").fit()
    history = summary.get("history") or json.loads(((run_dir / ("compiled" if result["compile"] else "eager"))
                                                    / "metrics.json").read_text())["history"]
    losses = [h["valid_loss"] for h in history]
    result |= {"steps": summary["step"], "valid_losses": losses, "loss_falls": len(losses) >= 2 and
               losses[-1] < losses[0], "train_seconds": summary["train_seconds"]}
    return result


def check_resume(model: str, device: str, steps: int, run_dir: Path, extra: list[str]) -> dict[str, Any]:
    """nmt-train in a subprocess, SIGKILLed once its first checkpoint exists; the trainer set up again in the
    same run directory must restore exactly that checkpoint's weights, then finish the run."""
    from nmt.experiments.runner import compose_run
    from nmt.training.checkpoint import load_checkpoint
    from nmt.training.trainer import Trainer

    overrides = [o for o in _train_overrides(model, device, steps, extra) if o != "train.resume=never"]
    overrides = [o for o in overrides if not o.startswith("train.save_every")] + ["train.save_every=2"]
    cmd = [sys.executable, "-m", "nmt.cli.train", f"hydra.run.dir={run_dir}", *overrides]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last, deadline = run_dir / "last.pt", time.time() + 600
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not last.exists():
        raise NMTError(f"resume check: {model} wrote no checkpoint before it was killed ({run_dir})")
    saved = load_checkpoint(last)
    trainer = Trainer(compose_run(overrides), run_dir)
    try:
        trainer._setup()
        restored = all(torch.equal(v.cpu(), saved["model"][k].cpu()) for k, v in trainer.model.state_dict().items())
    finally:
        trainer.release()
    summary = Trainer(compose_run(overrides), run_dir).fit()
    return {"model": model, "killed_at_step": int(saved["step"]), "weights_restored": restored,
            "finished_step": summary["step"], "finished": summary["step"] == steps}


def check_beam(run_dir: Path, device: str, sentences: int = 200) -> dict[str, Any]:
    from nmt.data.corpus import prepare_corpus
    from nmt.decoding.search import translate
    from nmt.metrics import corpus_score
    from nmt.runtime import pick_device
    from nmt.training.checkpoint import load_model, resolve_checkpoint

    dev = pick_device(device)
    loaded = load_model(resolve_checkpoint(run_dir), dev)
    valid = prepare_corpus(loaded.cfg.data, log=lambda _: None).split("valid")
    src, ref = list(valid["src"][:sentences]), list(valid["tgt"][:sentences])
    out = translate(loaded.model, loaded.tokenizer, src, loaded.cfg.decode, dev)
    return {"beam": int(loaded.cfg.decode.beam), "sentences": len(src), "sentences_per_s": out.sentences_per_second,
            "bleu": corpus_score(out.hypotheses, ref)}


def check_torchrun(model: str, device: str, run_dir: Path, extra: list[str]) -> dict[str, Any]:
    """A one-process torchrun: the process group (NCCL on CUDA, gloo on CPU) comes up and training finishes."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m",
           "nmt.cli.train", f"hydra.run.dir={run_dir}", *_train_overrides(model, device, 4, extra)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    log = (run_dir / "train.log").read_text() if (run_dir / "train.log").exists() else ""
    return {"backend": "nccl" if device.startswith("cuda") else "gloo", "exit_code": done.returncode,
            "ranks_logged": "x 1 ranks" in log, "ok": done.returncode == 0 and "x 1 ranks (" in log,
            "stderr_tail": done.stderr.strip().splitlines()[-3:] if done.returncode else []}


def run_gpu_check(device: str = "cuda", steps: int = 300, out: str | Path = "outputs/gpu_check",
                  models: tuple[str, ...] = MODELS, extra: list[str] | None = None,
                  bench_models: tuple[str, ...] = ("rnn_fixed", "rnn_attention", "transformer", "transformer_base"),
                  log: Any = print) -> dict[str, Any] | None:
    """Every check above; returns the report (also written to <out>/gpu_check.json), or None without CUDA."""
    if device.startswith("cuda") and not torch.cuda.is_available():
        log(f"gpu-check: no CUDA device on this machine (torch {torch.__version__}); nothing to check")
        return None
    from omegaconf import OmegaConf

    from nmt.bench import benchmark
    from nmt.config import DataConfig
    from nmt.experiments.runner import compose_run

    extra = list(extra or [])
    out = Path(out) / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"device": device, "torch": torch.__version__,
                              "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None}
    started = time.time()
    report["training"] = [check_training(m, device, steps, out / m, extra) for m in models]
    for r in report["training"]:
        log(f"train {r['model']}: {r['steps']} steps, valid loss {' -> '.join(f'{x:.3f}' for x in r['valid_losses'])}"
            f" ({'falls' if r['loss_falls'] else 'DOES NOT FALL'}), compile: {r['compile']}")
    report["resume"] = check_resume(models[0], device, 4, out / "resume", extra)
    log(f"resume: killed at step {report['resume']['killed_at_step']}, weights restored: "
        f"{report['resume']['weights_restored']}, finished: {report['resume']['finished']}")
    last = report["training"][-1]
    report["beam"] = check_beam(out / last["model"] / ("compiled" if last["compile"] else "eager"), device)
    log(f"beam {report['beam']['beam']}: {report['beam']['sentences_per_s']:.1f} sentences/s, "
        f"valid BLEU {report['beam']['bleu']:.2f} after {steps} steps")
    report["torchrun"] = check_torchrun(models[-1], device, out / "torchrun", extra)
    log(f"torchrun ({report['torchrun']['backend']}, 1 process): {'ok' if report['torchrun']['ok'] else 'FAILED'}")
    args = benchmark.bench_args(device=device, models=list(bench_models), decode_sentences=0,
                                out=str(out / "bench.json"), batch_tokens=16384 if device.startswith("cuda") else 600)
    data_node = compose_run(_train_overrides(models[0], device, steps, extra)).data  # the corpus trained on
    report["bench"] = benchmark.run(args, OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DataConfig),
                                                                               data_node)))
    log(benchmark.markdown(report["bench"]))
    report["seconds"] = time.time() - started
    report["ok"] = (all(r["loss_falls"] for r in report["training"]) and report["resume"]["weights_restored"]
                    and report["resume"]["finished"] and report["torchrun"]["ok"])
    (out / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    log(f"gpu-check {'passed' if report['ok'] else 'FAILED'} in {report['seconds'] / 60:.1f} min: {out}")
    return report
