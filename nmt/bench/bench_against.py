"""`nmt-bench --against REV|FILE.json`: training throughput of this code against a git revision, side by side.

Against a revision: the revision is checked out into a temporary git worktree, and one small timing child
(nmt/bench/revision_probe.py, timing each package's own training step) runs alternately on the revision's
package and on this one (A B A B ..., `rounds` times per model), on the same pickled batches, with the same
threads: only the package differs, and a change of machine load hits both alike. The ratio is this code's
median tokens/s over the revision's.
Against a JSON file of an earlier `nmt-bench` run on the same machine: the ratios of the recorded rates.
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

from nmt.errors import NMTError

REPO = Path(__file__).resolve().parents[2]

PROBE = Path(__file__).with_name("revision_probe.py")  # the timing child, run on either side


def _probe(source_root: Path, model_yaml: Path, batches_file: Path, warmup: int, threads: int) -> float:
    env_path = str(source_root)
    # -P: the probe's own folder (nmt/bench of this tree) stays off sys.path, so `nmt` is the one under test.
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
        raise NMTError(f"--against {rev}: not a git revision of {REPO}")
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
                            raise NMTError(f"--against {rev}: {root.name} has no configs/model/{name}.yaml")
                        rates[side].append(_probe(root, yaml, batches_file, warmup, threads))
                this, old = statistics.median(rates["this"]), statistics.median(rates["revision"])
                out[name] = {"this": this, "revision": old, "ratio": this / old, "all": rates}
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)],
                           capture_output=True)
    return {"against": rev, "commit": sha, "rounds": rounds, "models": out}


def against_json(path: str | Path, report: dict[str, Any]) -> dict[str, Any]:
    """Ratios of this report's training tokens/s to those of an earlier report (same machine assumed)."""
    try:
        old = json.loads(Path(path).read_text(encoding="utf-8"))
        old_rates = {r["model"]: r["tokens_per_s"] for r in old["results"]}
    except (OSError, ValueError, KeyError, TypeError):
        raise NMTError(f"--against {path}: not a JSON report of nmt-bench") from None
    models = {r["model"]: {"this": r["tokens_per_s"], "revision": old_rates[r["model"]],
                           "ratio": r["tokens_per_s"] / old_rates[r["model"]]}
              for r in report["results"] if r["model"] in old_rates}
    return {"against": str(path), "commit": old.get("created"), "rounds": 1, "models": models}


def markdown(cmp: dict[str, Any]) -> str:
    lines = [f"Training tokens/s against {cmp['against']} ({cmp['commit']}), median of {cmp['rounds']} "
             "interleaved round(s):", "", "| model | this | against | ratio |", "|---|---:|---:|---:|"]
    for name, r in cmp["models"].items():
        lines.append(f"| {name} | {r['this']:,.0f} | {r['revision']:,.0f} | {r['ratio']:.2f}x |")
    return "\n".join(lines)
