"""Training throughput of this tree against a git revision (or an earlier `nmt-bench` JSON), side by side.

    .venv/bin/python scripts/bench_against.py REV [nmt-bench options]      # e.g. main~3 --models transformer
    .venv/bin/python scripts/bench_against.py FILE.json [nmt-bench options]
    make bench-against REV=main~3

First `nmt-bench` runs with the given options (its report is printed and written as usual). Against a revision:
the revision is checked out into a temporary git worktree, and one small timing child (scripts/revision_probe.py,
timing each package's own training step) runs alternately on the revision's package and on this one (A B A B ...,
`--rounds` times per model, at least 3), on the same pickled batches, with the same threads: only the package
differs, and a change of machine load hits both alike. The ratio is this code's median tokens/s over the
revision's. Against a JSON file of an earlier `nmt-bench` run on the same machine: the ratios of the recorded rates.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from nmt.bench import benchmark
from nmt.bench.benchmark import BenchReport
from nmt.cli import bench as bench_cli
from nmt.errors import NMTError, user_errors

REPO = Path(__file__).resolve().parents[1]

PROBE = Path(__file__).with_name("revision_probe.py")  # the timing child, run on either side


def _probe(source_root: Path, model_yaml: Path, batches_file: Path, warmup: int, threads: int) -> float:
    env_path = str(source_root)
    # -P: the probe's own folder (scripts/) stays off sys.path, so `nmt` is the one under test.
    done = subprocess.run([sys.executable, "-P", str(PROBE), str(model_yaml), str(batches_file), str(warmup),
                           str(threads)], capture_output=True, text=True, env={"PYTHONPATH": env_path,
                                                                               "PATH": "/usr/bin:/bin"})
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise NMTError(f"the timing run on {source_root} failed: {tail}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["tokens_per_s"])


def against_revision(rev: str, models: list[str], batches: list[Any], vocab: tuple[int, int], warmup: int,
                     rounds: int, threads: int) -> dict[str, Any]:
    """{"against": rev, "commit", "rounds", "models": {name: {"this", "revision" (median tokens/s), "ratio"}}}."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                            capture_output=True, text=True)
    if commit.returncode != 0:
        raise NMTError(f"{rev}: not a git revision of {REPO}")
    sha = commit.stdout.strip()
    with tempfile.TemporaryDirectory(prefix="nmt-bench-") as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), sha], check=True,
                       capture_output=True)
        try:
            batches_file = Path(tmp) / "batches.pt"
            torch.save({"vocab": vocab, "batches": [(b.src, b.src_lens, b.tgt_in, b.tgt_out, b.num_tokens)
                                                    for b in batches]}, batches_file)
            out: dict[str, Any] = {}
            for name in models:
                rates: dict[str, list[float]] = {"this": [], "revision": []}
                for _ in range(rounds):
                    for side, root in (("revision", tree), ("this", REPO)):
                        yaml = root / "configs" / "model" / f"{name}.yaml"
                        if not yaml.is_file():
                            raise NMTError(f"{rev}: {root.name} has no configs/model/{name}.yaml")
                        rates[side].append(_probe(root, yaml, batches_file, warmup, threads))
                this, old = statistics.median(rates["this"]), statistics.median(rates["revision"])
                out[name] = {"this": this, "revision": old, "ratio": this / old, "all": rates}
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)
    return {"against": rev, "commit": sha, "rounds": rounds, "models": out}


def against_json(path: str | Path, report: BenchReport) -> dict[str, Any]:
    """Ratios of this report's training tokens/s to those of an earlier report (same machine assumed)."""
    try:
        old = BenchReport.read(path)
    except NMTError as e:
        raise NMTError(f"{path}: not a JSON report of nmt-bench ({e})") from None
    old_rates = {r.model: r.tokens_per_s for r in old.results}
    models = {r.model: {"this": r.tokens_per_s, "revision": old_rates[r.model],
                        "ratio": r.tokens_per_s / old_rates[r.model]}
              for r in report.results if r.model in old_rates}
    return {"against": str(path), "commit": old.created, "rounds": 1, "models": models}


def markdown(cmp: dict[str, Any]) -> str:
    lines = [f"Training tokens/s against {cmp['against']} ({cmp['commit']}), median of {cmp['rounds']} "
             "interleaved round(s):", "", "| model | this | against | ratio |", "|---|---:|---:|---:|"]
    for name, r in cmp["models"].items():
        lines.append(f"| {name} | {r['this']:,.0f} | {r['revision']:,.0f} | {r['ratio']:.2f}x |")
    return "\n".join(lines)


@user_errors
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("-"):
        raise NMTError("usage: scripts/bench_against.py REV|FILE.json [nmt-bench options]")
    against, args = argv[0], bench_cli.parse_args(argv[1:])
    if against.endswith(".json") and not Path(against).is_file():
        raise NMTError(f"{against}: no such file (a JSON report of an earlier nmt-bench run)")
    run = benchmark.run_benchmark(args, benchmark.data_config(args.data, args.data_root))
    print(benchmark.markdown(run.report))
    if against.endswith(".json"):
        cmp = against_json(against, run.report)
    else:
        cmp = against_revision(against, run.report.config.models, run.batches, run.vocab, args.warmup,
                               max(args.rounds, 3), args.threads or torch.get_num_threads())
    print("\n" + markdown(cmp) + f"\n\nwritten: {run.path}")


if __name__ == "__main__":
    main()
