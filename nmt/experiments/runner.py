"""One-command experiments: train a list of configs side by side, decode their test sets, and turn the
numbers into verdicts. Shared by `nmt-bottleneck` (nmt/experiments/bottleneck.py) and `nmt-claims`
(nmt/experiments/claims.py).

- Experiment configs (`BottleneckConfig`, `ClaimsConfig` in nmt/config.py) are structured configs composed by
  Hydra from configs/experiment/<script>/ (presets in its preset/ group), so an unknown key fails naming the key.
- Every training run is composed from configs/config.yaml with Hydra's compose API (`compose_run`), exactly as
  `nmt-train` would build it, and runs through the same `Trainer`.
- `run_jobs` trains (and decodes) jobs in `workers` processes with `threads` torch threads each; identical
  configs are trained once.
- Verdicts are computed from the numbers in nmt/experiments/verdicts.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from nmt.config import CONFIG_DIR, compose_config
from nmt.data.corpus import prepare_corpus
from nmt.decoding.search import translate
from nmt.errors import NMTError
from nmt.evaluation.scoring import ReferenceScores, score_references
from nmt.experiments.follow import CheckpointPoint, FollowSpec, follow_run
from nmt.io import canonical_json, fields_from_json, make_out_dir, read_json, read_text_lines, write_json
from nmt.runtime import pick_device
from nmt.training.checkpoint import load_model
from nmt.training.setup import check_train_config
from nmt.training.trainer import Trainer

RUN_GROUPS = ("data", "model", "train", "decode")  # top-level keys of a training run's Config
EXPERIMENT_DIR = Path(CONFIG_DIR) / "experiment"


def load_script_config(script: str, argv: Sequence[str]) -> tuple[DictConfig, str]:
    """The script config, composed by Hydra from configs/experiment/<script>/<script>.yaml: its schema
    (`base_<script>`, nmt/config.py), then `preset=<name>` (preset/<name>.yaml; `default` unless given), then
    `key=value` overrides. Returns (config, preset name).

    Dotted keys under data., model., train. and decode. (e.g. `train.max_steps=100`, `+data.files.x=[a,b]`)
    are training-run overrides: they are appended to `overrides` and reach every run. Unknown keys, wrong types
    and unknown presets fail in one line naming them.
    """
    run_overrides = [a for a in argv if a.lstrip("+~").split(".", 1)[0] in RUN_GROUPS and "." in a.split("=", 1)[0]]
    args = [a for a in argv if a not in run_overrides]
    presets = [a.split("=", 1)[1] for a in args if a.startswith("preset=")]
    if len(presets) > 1:
        raise NMTError("give preset= once")
    for a in args:
        if a.startswith(("+", "~")) or "=" not in a:
            raise NMTError(f"{a}: only plain key=value overrides are supported")
    cfg = compose_config(script, args, config_dir=str(EXPERIMENT_DIR / script))
    cfg.overrides = list(cfg.overrides) + run_overrides  # after the preset's, so the command line wins
    for key in ("bootstrap_samples", "workers"):
        if cfg[key] < 1:
            raise NMTError(f"{key} must be at least 1, got {cfg[key]}")
    if cfg.threads < 0:
        raise NMTError(f"threads must not be negative, got {cfg.threads}")
    return cfg, presets[0] if presets else "default"


def compose_run(overrides: list[str]) -> DictConfig:
    """A training run's Config, as `nmt-train <overrides>` would compose it, checked before anything runs.
    Experiments decode best.pt and follow the step checkpoints, the raw weights, so the moving average of the
    weights (`train.ema_decay`, on in the 20-minute recipes) is off unless `overrides` turn it on."""
    cfg = compose_config("config", ["train.ema_decay=0", *overrides])
    check_train_config(cfg.train)
    return cfg


# Training jobs ---------------------------------------------------------------------------------------------
@dataclass
class Job:
    """One training run: `config` is the resolved Config as a plain dict; its best.pt decodes `splits`; with
    `follow`, every kept step-<n>.pt is measured too (nmt/experiments/follow.py)."""

    name: str
    config: dict[str, Any]
    run_dir: str
    splits: list[str] = field(default_factory=list)
    threads: int = 1
    follow: FollowSpec | None = None

    def key(self) -> str:
        return canonical_json(self.config)

    def fingerprint(self) -> str:
        """sha256 of `key()`: what a finished run records to be reused only for the same job."""
        return hashlib.sha256(self.key().encode()).hexdigest()


def hypotheses_file(run_dir: str | Path, split: str) -> Path:
    return Path(run_dir) / f"{split}.hyp.txt"


@dataclass
class Decoded:
    """One split decoded by a run's checkpoint: the hypotheses file, decode seconds and output tokens."""

    file: str
    seconds: float
    tokens: int


@dataclass
class RunResult:
    """What the experiments and their reports read of one trained and decoded run (report.json "runs")."""

    name: str
    run_dir: str
    checkpoint: str  # the evaluated checkpoint: best.pt, or last.pt when the run never validated
    checkpoint_step: int
    steps: int
    stop_reason: str | None
    train_seconds: float
    wall_seconds: float
    best_valid_bleu: float | None
    num_parameters: int
    device: str
    decoded: dict[str, Decoded]  # split -> its hypotheses
    trained_as: str | None = None  # the job that ran, when an identical config served several jobs
    trajectory: list[CheckpointPoint] = field(default_factory=list)  # the kept checkpoints, when followed
    job: str = ""  # `Job.fingerprint()` of the job that ran: a finished run is reused only for the same job

    def hypotheses(self, split: str) -> list[str]:
        return read_text_lines(self.decoded[split].file, "hypotheses")

    def reference_scores(self, sources: list[str], references: list[str]) -> ReferenceScores:
        """Teacher-forced log-probabilities of `references` under the evaluated checkpoint (no search)."""
        device = pick_device(self.device)
        loaded = load_model(self.checkpoint, device)
        return score_references(loaded.model, loaded.tokenizer, sources, references, device)


def decode_splits(checkpoint: Path, splits: Sequence[str], device: torch.device, suffix: str = ""
                  ) -> tuple[Any, Any, dict[str, Decoded]]:
    """Decode each split of the checkpoint's corpus with the checkpoint's decode config; the hypotheses go to
    <run dir>/<split><suffix>.hyp.txt. Returns (the loaded checkpoint, its prepared corpus, {split: Decoded})."""
    loaded = load_model(checkpoint, device)
    corpus = prepare_corpus(loaded.cfg.data, log=lambda _: None)
    decoded = {}
    for split in splits:
        out = translate(loaded.model, loaded.tokenizer, list(corpus.split(split)["src"]), loaded.cfg.decode, device)
        path = hypotheses_file(checkpoint.parent, split + suffix)
        path.write_text("".join(h + "\n" for h in out.hypotheses), encoding="utf-8")
        decoded[split] = Decoded(str(path), out.seconds, out.num_tokens)
    return loaded, corpus, decoded


RESULT_FILE = "result.json"  # a finished run's RunResult, in its run directory


def finished_run(job: Job) -> RunResult | None:
    """The recorded result of `job` when its run directory holds one for the same job (an experiment started again
    with the same out_dir reuses it), else None."""
    path = Path(job.run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    result = fields_from_json(RunResult, read_json(path))
    return result if result.job == job.fingerprint() else None


def train_and_decode(job: Job) -> RunResult:
    """Train `job` (console output goes to <run_dir>/console.log), decode each split with best.pt, and follow the
    kept checkpoints when the job asks; the result is recorded as <run_dir>/result.json.

    Runs in a worker process (or in-process with workers=1).
    """
    if job.threads > 0:
        torch.set_num_threads(job.threads)
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = OmegaConf.create(job.config)
    with open(run_dir / "console.log", "a", encoding="utf-8") as console:
        with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
            start = time.perf_counter()
            summary = Trainer(cfg, run_dir).fit()
            wall = time.perf_counter() - start
            if summary.stop_reason == "signal":
                raise NMTError(f"{job.name}: training was interrupted; its last.pt is in {run_dir}")
            best = run_dir / "best.pt"
            checkpoint = best if best.is_file() else run_dir / "last.pt"
            device = pick_device(cfg.train.device)
            loaded, corpus, decoded = decode_splits(checkpoint, job.splits, device)
            trajectory = [] if job.follow is None else follow_run(run_dir, job.follow, corpus, device)
    result = RunResult(name=job.name, run_dir=str(run_dir), checkpoint=str(checkpoint),
                       checkpoint_step=loaded.checkpoint.step, steps=summary.step,
                       stop_reason=summary.stop_reason, train_seconds=summary.train_seconds,
                       wall_seconds=wall, best_valid_bleu=summary.best_bleu,
                       num_parameters=int(loaded.model.num_parameters()), device=str(device), decoded=decoded,
                       trajectory=trajectory, job=job.fingerprint())
    write_json(run_dir / RESULT_FILE, result)
    return result


def run_jobs(jobs: Sequence[Job], workers: int, log: Callable[[str], None] = print) -> list[RunResult]:
    """Train every job (identical configs once), `workers` at a time; results in job order, named after
    their job (with `trained_as` the job that ran, for a config trained once for several jobs).

    A job whose run directory records its finished result (`finished_run`) is not trained again. Worker
    processes are spawned (a forked torch can deadlock on its thread pools); with one worker, or one job to
    train, everything runs in this process.
    """
    unique: dict[str, Job] = {}
    for job in jobs:
        unique.setdefault(job.key(), job)
    results: dict[str, RunResult] = {}
    for key, job in unique.items():
        if (done := finished_run(job)) is not None:
            log(f"  reusing {job.name}: finished in {job.run_dir}")
            results[key] = done
    todo = [job for key, job in unique.items() if key not in results]
    if workers <= 1 or len(todo) <= 1:
        for i, job in enumerate(todo, start=1):
            log(f"[{i}/{len(todo)}] training {job.name} in {job.run_dir}")
            results[job.key()] = train_and_decode(job)
            _log_result(results[job.key()], log)
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            futures = {job.key(): pool.submit(train_and_decode, job) for job in todo}
            log(f"training {len(todo)} runs, {workers} at a time (logs: <run dir>/console.log, train.log)")
            try:
                for job in todo:
                    results[job.key()] = futures[job.key()].result()
                    _log_result(results[job.key()], log)
            except BaseException:
                for future in futures.values():  # a failed run fails the experiment: start nothing new
                    future.cancel()
                raise
    out = []
    for job in jobs:
        r = results[job.key()]
        if r.name != job.name:  # the same config as an earlier job: one run serves both
            r = replace(r, name=job.name, trained_as=r.name)
        out.append(r)
    return out


def _log_result(r: RunResult, log: Callable[[str], None]) -> None:
    bleu = "-" if r.best_valid_bleu is None else f"{r.best_valid_bleu:.2f}"
    log(f"  done {r.name}: {r.steps} steps ({r.stop_reason}) in {r.wall_seconds / 60:.1f} min, "
        f"best valid BLEU {bleu} at step {r.checkpoint_step}")


EXPERIMENT_FILE = "experiment.json"  # the resolved experiment config, in its output directory


def experiment_dir(cfg: DictConfig, parent: Path) -> Path:
    """The experiment's output directory: a new one (nmt.io.make_out_dir), or `cfg.out_dir` again when an earlier
    start of the same experiment config made it, so an interrupted experiment continues there: finished runs are
    reused (`run_jobs`), unfinished ones resume from their last.pt (train.resume=auto). Another config is refused."""
    config = OmegaConf.to_container(cfg, resolve=True)
    marker = Path(cfg.out_dir) / EXPERIMENT_FILE if cfg.out_dir else None
    if marker is not None and marker.is_file():
        if canonical_json(read_json(marker)) != canonical_json(config):
            raise NMTError(f"{cfg.out_dir} holds an experiment with another config ({marker}); give a new out_dir")
        return Path(cfg.out_dir)
    out = make_out_dir(cfg.out_dir, parent)
    write_json(out / EXPERIMENT_FILE, config)
    return out


def script_main(script: str, run: Callable[..., Any], doc: str, argv: Sequence[str] | None = None) -> None:
    """What `nmt-bottleneck` and `nmt-claims` do: print `doc` for -h/--help, else load the script config (preset
    `default` unless one is given) and run it."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if any(a in ("-h", "--help") for a in argv):
        print(doc)
        return
    cfg, preset = load_script_config(script, argv)
    run(cfg, preset)
