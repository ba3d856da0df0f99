"""`make peer-bench`: this toolkit and JoeyNMT 2.3.0 trained side by side on the same machine, data, pieces and
minutes, scored by the same sacreBLEU pipeline. Driving JoeyNMT itself (its venv, data, config, clock) is
scripts/peer/joey.py.

    run_peer_bench(out_dir, minutes, ..., runs=3)  # per run (seed) and architecture: train both, decode, score;
                                                   # then pool the runs; report.md/json, plot

Runs: run k trains both toolkits with seed k. Each run's paired test (our outputs against JoeyNMT's on the same test
sentences) holds the test-set noise of that run only; the pooled difference is the mean over runs with a t-interval
over runs, so the run-to-run spread (seeds, and where each toolkit's clock stops) is in it. A finished run is kept
in run-<k>/results.json: the same command with the same --out continues at the first unfinished run.

Budget: our trainer counts `train.max_minutes` of training time (validation and checkpoints left out); JoeyNMT's
training time is read from its log by `JoeyClock`, and the driver stops it with SIGINT at the same budget.

Curves: the valid BLEU of each validation during training (each toolkit's own greedy decode, sacreBLEU 13a on
detokenized text both) at minutes = step x (training seconds / steps), the steady-rate rule of
scripts/plot_curves.py, for both toolkits alike; the last point is our pipeline's greedy score at the budget.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig

from nmt.config import compose_config
from nmt.data.corpus import PreparedCorpus, prepare_corpus
from nmt.errors import NMTError
from nmt.evaluation.report import fmt_interval, fmt_num, fmt_p
from nmt.inference.translator import Translator
from nmt.io import make_out_dir, read_json, write_json, write_lines, write_text
from nmt.metrics.scores import corpus_scores
from nmt.metrics.significance import paired_bootstrap, seed_interval
from nmt.plots import new_figure, save_png
from nmt.runtime import hardware, hardware_line, set_threads
from nmt.training.checkpoint import average_validated_higher, resolve_checkpoint

from peer.joey import (
    DECODES,
    GRACE_SECONDS,
    JOEY_BEAM_ALPHA,
    JOEY_LAUNCHER,
    JoeyClock,
    JoeyPaths,
    LogTail,
    decode_joey,
    export_corpus,
    install_peer,
    joey_checkpoint_stats,
    joey_config,
    joey_validations,
    one_thread_env,
    start_interruptible,
)

# Our composed configs (Hydra overrides of configs/config.yaml) for each architecture, as the README trains them.
ARCHS: dict[str, list[str]] = {
    "transformer": ["model=transformer", "train=transformer", "data=multi30k_de_en_v4k"],
    "rnn": ["model=rnn_attention", "train=rnn", "data=multi30k_de_en"],
}
SPLITS = ("valid", "test")  # valid = Multi30k val, test = the corpus's first test set (test_2016_flickr)


def our_config(arch: str, overrides: list[str] = ()) -> DictConfig:
    """Our composed config of `arch` (a key of ARCHS) plus `overrides`."""
    if arch not in ARCHS:
        raise NMTError(f"unknown architecture {arch!r}; choose from {', '.join(ARCHS)}")
    return compose_config("config", ARCHS[arch] + list(overrides))


def train_side_by_side(ours_cmd: list[str] | None, joey_cmd: list[str], joey_log: Path, logs_dir: Path,
                       minutes: float, log: Any = print, poll_seconds: float = 2.0) -> JoeyClock:
    """Start both trainings at once, one torch thread each; stop JoeyNMT with SIGINT after `minutes` of its
    training time (ours stops itself on train.max_minutes). `ours_cmd` None trains JoeyNMT alone. Returns
    JoeyNMT's clock."""
    env = one_thread_env()
    with (logs_dir / "nmt-train.log").open("w") as ours_out, (logs_dir / "joeynmt-train.log").open("w") as joey_out:
        ours = subprocess.Popen(ours_cmd, stdout=ours_out, stderr=subprocess.STDOUT, env=env) if ours_cmd else None
        joey = start_interruptible(joey_cmd, joey_out, env)
        procs = {"joeynmt train": joey, **({"nmt-train": ours} if ours else {})}
        clock, tail, stopped_at = JoeyClock(), LogTail(joey_log), None
        try:
            while any(proc.poll() is None for proc in procs.values()):
                for line in tail.lines():
                    clock.feed(line)
                if (joey.poll() not in (None, 0) and stopped_at is None) or (ours and ours.poll() not in (None, 0)):
                    break  # one side failed: no reason to wait for the other
                if joey.poll() is None and stopped_at is None and clock.train_seconds(time.time()) >= minutes * 60:
                    log(f"JoeyNMT reached {minutes:g} training minutes at step {clock.last_step}: stopping it")
                    clock.final_seconds = clock.train_seconds(time.time())
                    joey.send_signal(signal.SIGINT)
                    stopped_at = time.monotonic()
                elif joey.poll() is None and stopped_at is not None and time.monotonic() - stopped_at > GRACE_SECONDS:
                    joey.kill()
                time.sleep(poll_seconds)
        finally:
            for proc in procs.values():
                if proc.poll() is None:
                    proc.kill()
        for line in tail.lines():
            clock.feed(line)
    if clock.final_seconds is None:  # it stopped by itself (epochs, or the plateau schedule's minimum rate)
        clock.final_seconds = clock.train_seconds(clock.last_time or time.time())
    for name, proc in procs.items():
        if proc.returncode not in (0, -signal.SIGINT):
            tail_line = (logs_dir / f"{name.split()[0]}-train.log").read_text(errors="replace").strip().splitlines()
            raise NMTError(f"{name} failed (exit {proc.returncode}): {tail_line[-1] if tail_line else 'no output'}")
    return clock


def steady_curve(points: list[dict[str, float]], train_seconds: float, steps: int) -> list[dict[str, float]]:
    """Each {"step", "bleu"} with "minutes" = step x training seconds per step (a steady step rate)."""
    per_step = train_seconds / 60 / max(steps, 1)
    return [dict(p, minutes=p["step"] * per_step) for p in points]


def end_curve(curve: list[dict[str, Any]], final: dict[str, Any]) -> list[dict[str, Any]]:
    """The curve with its last point `final`: our pipeline's greedy valid BLEU at the end of the budget. A
    validation the trainer ran at that same step is replaced by it, not repeated."""
    return [p for p in curve if p["step"] != final["step"]] + [final]


def minutes_to_reach(curve: list[dict[str, float]], target: float) -> float | None:
    """First minute a curve reaches `target` BLEU, linearly between its points; None when it never does."""
    before = {"minutes": 0.0, "bleu": 0.0}
    for point in curve:
        if point["bleu"] >= target:
            rise = point["bleu"] - before["bleu"]
            frac = (target - before["bleu"]) / rise if rise > 0 else 1.0
            return before["minutes"] + frac * (point["minutes"] - before["minutes"])
        before = point
    return None


# ------------------------------------------------------------------------------------- decode and score


def read_outputs(hyps_file: Path) -> list[str]:
    """A file of detokenized outputs, one a line."""
    if not hyps_file.is_file():
        raise NMTError(f"no outputs to score: {hyps_file} does not exist")
    hyps = hyps_file.read_text(encoding="utf-8").split("\n")
    if hyps and hyps[-1] == "":
        hyps.pop()
    return hyps


def score_outputs(hyps_file: Path, refs: list[str]) -> dict[str, Any]:
    """Our sacreBLEU pipeline (nmt.metrics.scores.corpus_scores) on a file of detokenized outputs, one a line."""
    return corpus_scores(read_outputs(hyps_file), refs).to_dict()


def paired_tests(out_dir: Path, refs: list[str]) -> dict[str, Any]:
    """{decode: paired test} of our test outputs against JoeyNMT's (nmt - JoeyNMT; nmt.metrics.significance)."""
    return {name: paired_bootstrap(read_outputs(out_dir / f"nmt-{name}.test"),
                                   read_outputs(out_dir / f"joeynmt-{name}.test"), refs).to_dict()
            for name in DECODES}


def our_checkpoint(run_dir: Path, checkpoint: str) -> Path:
    """The checkpoint of our run to score, chosen on valid: for "best" the run's best weights (`resolve_checkpoint`:
    ema.pt where the moving average validated higher than every raw validation, else best.pt); for "last" the
    weights at the end of the budget, ema.pt where the moving average validated higher than the raw weights at
    the end, else last.pt."""
    if checkpoint == "best":
        return resolve_checkpoint(run_dir)
    return run_dir / ("ema.pt" if average_validated_higher(run_dir, than="end") else "last.pt")


def decode_ours(checkpoint: Path, sources: dict[str, list[str]], out_dir: Path) -> None:
    """Our search, greedy and beam 5 (configs/decode), outputs as <out_dir>/nmt-<decode>.<valid|test>."""
    for name, settings in DECODES.items():
        translator = Translator.from_checkpoint(checkpoint, device="cpu", decode=settings, max_input_tokens=None)
        for split, lines in sources.items():
            write_lines(out_dir / f"nmt-{name}.{split}", translator.translate(lines))


# ---------------------------------------------------------------------------------------- one architecture


def _ours_overrides(minutes: float, eval_every: int | None, sentences: int | None, seed: int) -> list[str]:
    extra = [f"train.eval_every={eval_every}", f"train.save_every={eval_every}"] if eval_every else []
    extra += [f"train.eval_max_sentences={sentences}"] if sentences else []
    return [f"train.max_minutes={minutes}", "train.cpu_threads=1", "train.device=cpu", f"train.seed={seed}", *extra]


def _target_share(corpus: PreparedCorpus) -> float:
    """Share of target pieces (+ EOS) among source + target pieces (+ EOS each) in the train split."""
    train = corpus.stats["splits"]["train"]
    return (train["tgt_pieces_mean"] + 1) / (train["src_pieces_mean"] + train["tgt_pieces_mean"] + 2)


def _score_all(out_dir: Path, refs: dict[str, list[str]], toolkits: tuple[str, ...]) -> dict[str, Any]:
    """{toolkit: {decode: {split: corpus_scores}}} of every output file written by decode_ours/decode_joey."""
    suffix = {"nmt": {"valid": "valid", "test": "test"}, "joeynmt": {"valid": "dev", "test": "test"}}
    return {tk: {name: {split: score_outputs(out_dir / f"{tk}-{name}.{suffix[tk][split]}", refs[split])
                        for split in SPLITS} for name in DECODES} for tk in toolkits}


def run_arch(arch: str, arch_dir: Path, minutes: float, python: Path, eval_every: int | None, checkpoint: str,
             sentences: int | None = None, reference: dict[str, Any] | None = None, seed: int = 1,
             log: Any = print) -> dict[str, Any]:
    """Train our `arch` and its JoeyNMT counterpart side by side, both with `seed`, decode valid and test with
    both (greedy, beam 5), score everything with our pipeline and test the differences on test; the
    architecture's part of a run's results. `sentences` cuts valid and test (validation during training and
    scoring alike) to their first lines. With `reference` (this architecture's part of an earlier report) only
    JoeyNMT trains, and our side is the reference's (no paired test: its outputs are not here)."""
    overrides = _ours_overrides(minutes, eval_every, sentences, seed)
    cfg = our_config(arch, overrides)
    corpus = prepare_corpus(cfg.data, log)
    paths = export_corpus(corpus, arch_dir / "joeynmt-data", arch_dir / "joeynmt", sentences)
    joey, unmatched = joey_config(cfg, paths)
    joey_yaml = write_text(arch_dir / "joeynmt.yaml", yaml.safe_dump(joey, sort_keys=False))
    logs_dir, out_dir, run_dir = arch_dir / "logs", arch_dir / "outputs", arch_dir / "nmt"
    for d in (logs_dir, out_dir):
        d.mkdir(parents=True, exist_ok=True)
    log(f"{arch}: training {'JoeyNMT' if reference else 'both'} for {minutes:g} minutes (logs in {logs_dir})")
    ours_cmd = None if reference else [sys.executable, "-m", "nmt.cli.train", *ARCHS[arch], *overrides,
                                       f"hydra.run.dir={run_dir}"]
    joey_cmd = [str(python), str(JOEY_LAUNCHER), "train", str(joey_yaml), "--skip-test"]
    clock = train_side_by_side(ours_cmd, joey_cmd, paths.model_dir / "train.log", logs_dir, minutes, log)

    joey_ckpt = paths.model_dir / ("latest.ckpt" if checkpoint == "last" else "best.ckpt")
    if not joey_ckpt.exists():
        raise NMTError(f"JoeyNMT wrote no {joey_ckpt.name} in {paths.model_dir}; see {logs_dir}")
    log(f"{arch}: decoding valid and {paths.test_set}, greedy and beam 5")
    splits = {"valid": corpus.split("valid"), "test": corpus.split(paths.test_set)}
    sources = {split: list(data["src"][:sentences]) for split, data in splits.items()}
    refs = {split: list(data["tgt"][:sentences]) for split, data in splits.items()}
    joey_proc = decode_joey(python, joey, joey_ckpt.resolve(), out_dir, logs_dir)
    scored = our_checkpoint(run_dir, checkpoint) if reference is None else None
    try:
        if scored is not None:
            decode_ours(scored, sources, out_dir)
    finally:
        joey_proc.wait()
    if joey_proc.returncode != 0:
        raise NMTError(f"joeynmt test failed (exit {joey_proc.returncode}); see {logs_dir / 'joeynmt-test.log'}")
    ours = _ours_result(run_dir, _target_share(corpus), scored) if scored is not None else {
        "system": reference["systems"]["nmt"], "curve": reference["curves"]["nmt"]}
    scores = _score_all(out_dir, refs, ("joeynmt",) if reference else ("nmt", "joeynmt"))
    if reference is not None:
        scores["nmt"] = reference["scores"]["nmt"]
    result = _arch_result(arch, ours, paths, clock, scores, unmatched)
    if reference is None:
        result["paired"] = paired_tests(out_dir, refs["test"])
    else:
        result["reference_joeynmt"] = reference["systems"]["joeynmt"]
    return result


def _ours_result(run_dir: Path, target_share: float, scored: Path) -> dict[str, Any]:
    """Our run's system row (`scored`: the checkpoint decoded) and valid-BLEU curve from its metrics.json."""
    ours = json.loads((run_dir / "metrics.json").read_text())
    system = {"steps": ours["step"], "train_minutes": ours["train_seconds"] / 60,
              "tokens_per_s": ours["tokens_per_sec"],
              "target_tokens_per_s": ours["tokens_per_sec"] * target_share, "target_tokens_estimated": True,
              "parameters": ours.get("num_parameters"), "checkpoint": str(scored)}
    curve = steady_curve([{"step": h["step"], "bleu": h["bleu"]} for h in ours["history"]],
                         ours["train_seconds"], ours["step"])
    return {"system": system, "curve": curve}


def _arch_result(arch: str, ours: dict[str, Any], paths: JoeyPaths, clock: JoeyClock, scores: dict[str, Any],
                 unmatched: list[str]) -> dict[str, Any]:
    stats = joey_checkpoint_stats(paths.model_dir / "latest.ckpt")
    joey_seconds = clock.final_seconds or 0.0
    curves = {"nmt": ours["curve"],
              "joeynmt": steady_curve(joey_validations(paths.model_dir), joey_seconds, stats["steps"])}
    ends = {"nmt": (ours["system"]["steps"], ours["system"]["train_minutes"]),
            "joeynmt": (stats["steps"], joey_seconds / 60)}
    for tk, (steps, minutes) in ends.items():
        curves[tk] = end_curve(curves[tk], {"step": steps, "minutes": minutes,
                                            "bleu": scores[tk]["greedy"]["valid"]["bleu"], "final": True})
    systems = {
        "nmt": ours["system"],
        "joeynmt": {"steps": stats["steps"], "train_minutes": joey_seconds / 60, "tokens_per_s": None,
                    "target_tokens_per_s": stats["total_tokens"] / max(joey_seconds, 1e-9),
                    "target_tokens_estimated": False, "parameters": clock.total_params,
                    "validation_minutes": clock.valid_seconds / 60, "checkpoint": str(paths.model_dir)},
    }
    final = {tk: curves[tk][-1]["bleu"] for tk in curves}
    reach = {"nmt_to_joeynmt_final": minutes_to_reach(curves["nmt"], final["joeynmt"]),
             "joeynmt_to_nmt_final": minutes_to_reach(curves["joeynmt"], final["nmt"])}
    return {"arch": arch, "our_overrides": ARCHS[arch], "systems": systems, "scores": scores, "curves": curves,
            "minutes_to_other_final_valid_bleu": reach, "unmatched": unmatched,
            "joeynmt_config": str(paths.model_dir.parent / "joeynmt.yaml")}


# ------------------------------------------------------------------------------------------ the report


def arch_results(runs: list[dict[str, Any]], arch: str) -> list[dict[str, Any]]:
    """`arch`'s part of every run's results, in run order."""
    return [next(res for res in run["results"] if res["arch"] == arch) for run in runs]


def plot_curves(runs: list[dict[str, Any]], path: Path) -> Path:
    """Valid BLEU over training minutes, both toolkits (every run), one panel per architecture."""
    archs = [res["arch"] for res in runs[0]["results"]]
    fig = new_figure(5.2 * len(archs), 4.0)
    for i, arch in enumerate(archs):
        ax = fig.add_subplot(1, len(archs), i + 1)
        for k, res in enumerate(arch_results(runs, arch)):
            for tk, (style, color) in (("nmt", ("-", "C0")), ("joeynmt", ("--", "C1"))):
                curve = res["curves"][tk]
                ax.plot([p["minutes"] for p in curve], [p["bleu"] for p in curve], marker="o", linestyle=style,
                        color=color, alpha=0.8 if len(runs) == 1 else 0.5,
                        label=tk if k == 0 else None)
        ax.set_title(arch if len(runs) == 1 else f"{arch} ({len(runs)} runs)")
        ax.set_xlabel("training minutes")
        ax.set_ylabel("valid BLEU (greedy)")
        ax.grid(alpha=0.3)
        ax.legend()
    return save_png(fig, path)


def end_minus_best(res: dict[str, Any]) -> float:
    """Our valid BLEU (greedy) at the end of the budget minus the best validation of the run."""
    curve = res["curves"]["nmt"]
    return curve[-1]["bleu"] - max(p["bleu"] for p in curve)


def pool_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """{arch: {decode: pooled difference}} over runs: each run's paired difference on test (nmt - JoeyNMT), their
    mean, between-run SD and 95% t-interval over runs (`seed_interval`), beside each run's own p; and our end of
    budget minus our best validation, per run and its mean."""
    pooled: dict[str, Any] = {}
    for arch in [res["arch"] for res in runs[0]["results"]]:
        results = arch_results(runs, arch)
        if any("paired" not in res for res in results):
            continue  # a JoeyNMT-only run against a reference has no paired test
        pooled[arch] = {}
        for name in DECODES:
            differences = [res["paired"][name]["difference"] for res in results]
            pooled[arch][name] = {"differences": differences,
                                  "p_values": [res["paired"][name]["p_value"] for res in results],
                                  **seed_interval(differences).to_dict()}
        ends = [end_minus_best(res) for res in results]
        pooled[arch]["end_minus_best_valid"] = {"per_run": ends, "mean": sum(ends) / len(ends)}
    return pooled


def _arch_markdown(res: dict[str, Any], level: str = "##") -> list[str]:
    lines = [f"{level} {res['arch']} (ours: {' '.join(res['our_overrides'])})", "",
             "| toolkit | steps | training min | target tokens/s | valid greedy | valid beam 5 | test greedy | "
             "test beam 5 | parameters |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for tk, sys_ in res["systems"].items():
        s = res["scores"][tk]
        est = " (est.)" if sys_["target_tokens_estimated"] else ""
        lines.append(f"| {tk} | {sys_['steps']} | {fmt_num(sys_['train_minutes'])} | "
                     f"{fmt_num(sys_['target_tokens_per_s'], 0, thousands=True)}{est} | "
                     f"{fmt_num(s['greedy']['valid']['bleu'])} | "
                     f"{fmt_num(s['beam5']['valid']['bleu'])} | {fmt_num(s['greedy']['test']['bleu'])} | "
                     f"{fmt_num(s['beam5']['test']['bleu'])} | {fmt_num(sys_['parameters'], 0, thousands=True)} |")
    reach = res["minutes_to_other_final_valid_bleu"]
    if res.get("reference_joeynmt"):
        ref, joey = res["reference_joeynmt"], res["systems"]["joeynmt"]
        lines += ["", f"JoeyNMT here: {fmt_num(joey['steps'] / max(joey['train_minutes'], 1e-9), 1)} steps per "
                  "training minute; in the reference run "
                  f"{fmt_num(ref['steps'] / max(ref['train_minutes'], 1e-9), 1)} ({ref['steps']} steps in "
                  f"{fmt_num(ref['train_minutes'])} min)."]
    if res.get("paired"):
        lines += ["", "Test, nmt − JoeyNMT (paired bootstrap 95% interval, p): " + "; ".join(
            f"{name} {fmt_num(t['difference'])} {fmt_interval(t['difference_ci'])}, p {fmt_p(t['p_value'])}"
            for name, t in res["paired"].items()) + f". Our valid BLEU at the end minus our best validation: "
            f"{fmt_num(end_minus_best(res))}."]
    lines += ["", f"Minutes to the other's final valid BLEU (greedy) within this run: nmt "
              f"{fmt_num(reach['nmt_to_joeynmt_final'])}, JoeyNMT {fmt_num(reach['joeynmt_to_nmt_final'])} "
              "(- = not reached in the budget).", ""]
    return lines


def _pooled_markdown(pooled: dict[str, Any], runs: int) -> list[str]:
    lines = [f"## Pooled over {runs} runs (seeds 1-{runs})" if runs > 1 else "## One run (seed 1)", "",
             "Test BLEU, nmt − JoeyNMT: each run's paired difference, their mean, the between-run SD and a 95% "
             "t-interval over runs (it holds the run-to-run spread; one run gives none).", "",
             "| architecture | search | per run (p) | mean | between-run SD | 95% interval over runs | "
             "our end − best valid |", "|---|---|---|---:|---:|---|---:|"]
    for arch, by_decode in pooled.items():
        ends = by_decode["end_minus_best_valid"]
        for name in DECODES:
            d = by_decode[name]
            per_run = ", ".join(f"{fmt_num(x)} ({fmt_p(p)})" for x, p in zip(d["differences"], d["p_values"],
                                                                              strict=True))
            lines.append(f"| {arch} | {name} | {per_run} | {fmt_num(d['mean'])} | {fmt_num(d['sd'])} | "
                         f"{fmt_interval(d['ci'] or None)} | {fmt_num(ends['mean'])} |")
    return lines + [""]


def render_markdown(report: dict[str, Any]) -> str:
    """report.md: command, machine, versions, the pooled table, one table per run and architecture, the plot,
    the options JoeyNMT cannot match."""
    runs = report["runs"]
    first = runs[0]["results"]
    sig = first[0]["scores"]["nmt"]["greedy"]["valid"]["signatures"]["bleu"] if first else ""
    beam = report["beam5"]
    lines = ["# nmt vs JoeyNMT, side by side", "", f"Command: `{report['command']}`", "",
             f"Machine: {report['hardware_line']}", "",
             f"Versions: nmt on torch {report['hardware']['torch']}; JoeyNMT {report['peer_versions']['joeynmt']} on "
             f"torch {report['peer_versions']['torch']}", "",
             (f"Budget: {report['minutes']:g} training minutes each (validation and checkpoints excluded), both runs "
              "at once, one torch thread each." if not report.get("reference") else
              f"Budget: JoeyNMT alone, {report['minutes']:g} training minutes (validation and checkpoints excluded), "
              f"one torch thread, the architectures one after the other or in parallel runs; nmt's side is not "
              f"retrained but copied from the earlier side-by-side report `{report['reference']}`: compare JoeyNMT's "
              "steps per minute in both runs before reading minutes across them.")
             + " Scored checkpoint: "
             f"{'the weights at the end of the budget' if report['checkpoint'] == 'last' else 'best valid BLEU'}"
             + (" (ours: the moving average of the weights where it validated higher than the raw weights)."
                if report["checkpoint"] == "last" else ".")
             + (f" Valid and test cut to their first {report['sentences']} sentences (validation during training "
                "and scoring alike)." if report.get("sentences") else ""),
             "", f"BLEU: our pipeline (nmt.metrics.scores) on detokenized outputs, `{sig}`. Beam 5: ours alpha "
             f"{beam['alpha']}, length_norm {beam['length_norm']} (configs/decode/beam5.yaml), JoeyNMT beam_alpha "
             f"{JOEY_BEAM_ALPHA} (its documented configs). Target tokens/s of nmt are estimated from its source + "
             "target rate and the train split's target share.", "",
             f"![valid BLEU over training minutes]({Path(report['plot']).name})", ""]
    if report["pooled"]:
        lines += _pooled_markdown(report["pooled"], len(runs))
    for run in runs:
        if len(runs) > 1:
            lines += [f"## Run {run['seed']} (seed {run['seed']})", ""]
        lines += [line for res in run["results"] for line in _arch_markdown(res, "###" if len(runs) > 1 else "##")]
    lines += ["## Options JoeyNMT cannot match", ""]
    for res in first:
        lines += [f"{res['arch']}:", ""] + [f"- {u}" for u in res["unmatched"]] + [""]
    return "\n".join(lines)


def load_reference(path: str | Path, archs: list[str], sentences: int | None, checkpoint: str
                   ) -> dict[str, dict[str, Any]]:
    """{arch: result} of an earlier report.json (its first run) whose nmt side a JoeyNMT-only run compares
    against; it must hold every architecture asked for and have been scored on the same sentences and checkpoint
    kind."""
    try:
        report = json.loads(Path(path).read_text())
        runs = report["runs"] if "runs" in report else [{"results": report["results"]}]  # older single-run reports
        results = {res["arch"]: res for res in runs[0]["results"]}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as e:
        raise NMTError(f"cannot read the reference report {path}: {e}") from None
    missing = [arch for arch in archs if arch not in results]
    if missing:
        raise NMTError(f"the reference report {path} has no {', '.join(missing)} results")
    for key, ours in (("sentences", sentences), ("checkpoint", checkpoint)):
        if report.get(key) != ours:
            raise NMTError(f"the reference report {path} was made with {key}={report.get(key)}, this run with "
                           f"{key}={ours}: the scores would not compare")
    return results


def open_bench_dir(given: str | Path | None, settings: dict[str, Any]) -> Path:
    """The benchmark's output directory: a new one, or `given` when it holds an earlier benchmark of the same
    settings (runs aside) to continue; settings.json records them."""
    if given and (Path(given) / "settings.json").is_file():
        out = Path(given)
        earlier = read_json(out / "settings.json")
        changed = [f"{k}={earlier.get(k)!r} there, {v!r} here" for k, v in settings.items()
                   if k != "runs" and earlier.get(k) != v]
        if changed:
            raise NMTError(f"{out} holds a benchmark of other settings ({', '.join(changed)}); give a new --out")
    else:
        out = make_out_dir(given, "outputs/peer", "peer")
    write_json(out / "settings.json", settings)
    return out


def run_peer_bench(out_dir: str | Path | None, minutes: float, archs: list[str], venv: str | Path,
                   eval_every: int | None = None, checkpoint: str = "last", command: str = "",
                   sentences: int | None = None, reference: str | Path | None = None, runs: int = 1,
                   log: Any = print) -> dict[str, Any]:
    """The whole benchmark: install the peer, then per run (seed k = 1..runs) and architecture train both side by
    side, decode, score; pool the runs; writes report.json, report.md and valid_bleu.png into the output
    directory and returns the report. A run whose run-<k>/results.json exists (an earlier call with the same
    settings and --out) is kept, not trained again. `reference` (an earlier report.json) trains JoeyNMT alone,
    for longer, against that report's nmt side."""
    if minutes <= 0:
        raise NMTError(f"minutes must be positive, got {minutes}")
    if sentences is not None and sentences < 1:
        raise NMTError(f"sentences must be at least 1, got {sentences}")
    if checkpoint not in ("last", "best"):
        raise NMTError(f"checkpoint must be last or best, got {checkpoint!r}")
    if runs < 1:
        raise NMTError(f"runs must be at least 1, got {runs}")
    if reference and runs != 1:
        raise NMTError("a JoeyNMT-only run against a reference report is one run: use --runs 1")
    for arch in archs:
        our_config(arch)  # an unknown architecture fails before anything is installed or trained
    refs = load_reference(reference, archs, sentences, checkpoint) if reference else {}
    set_threads(1)
    python, versions = install_peer(Path(venv), log)
    out = open_bench_dir(out_dir, {"minutes": minutes, "archs": list(archs), "eval_every": eval_every,
                                   "checkpoint": checkpoint, "sentences": sentences,
                                   "reference": str(reference) if reference else None, "runs": runs,
                                   "beam5": DECODES["beam5"]})
    all_runs = []
    for seed in range(1, runs + 1):
        run_dir, done = out / f"run-{seed}", out / f"run-{seed}" / "results.json"
        if done.is_file():
            log(f"run {seed}: finished earlier, kept ({done})")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run starts again from nothing
            log(f"run {seed} of {runs} (seed {seed})")
            write_json(done, [run_arch(arch, run_dir / arch, minutes, python, eval_every, checkpoint, sentences,
                                       refs.get(arch), seed, log) for arch in archs])
        all_runs.append({"seed": seed, "results": read_json(done)})
    hw = hardware(workers=2, threads=1)
    report = {"command": command, "minutes": minutes, "checkpoint": checkpoint, "sentences": sentences,
              "beam5": DECODES["beam5"],
              "reference": str(reference) if reference else None, "hardware": hw,
              "hardware_line": hardware_line(hw), "peer_versions": versions, "runs": all_runs,
              "pooled": pool_runs(all_runs), "plot": str(plot_curves(all_runs, out / "valid_bleu.png"))}
    write_json(out / "report.json", report)
    write_text(out / "report.md", render_markdown(report) + "\n")
    report["out_dir"] = str(out)
    return report
