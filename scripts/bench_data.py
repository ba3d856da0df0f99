"""How the data path scales: prepare and training start-up on synthetic corpora of N pairs.

    .venv/bin/python scripts/bench_data.py 200000 1000000            # (make bench-data N="200000 1000000")
    PYTHONPATH=/tmp/base .venv/bin/python scripts/bench_data.py 200000 --label base   # another tree's nmt

For each N: a corpus of N train pairs drawn with replacement (seeded) from the mirror's Multi30k and WMT newstest
train lines (valid and test: Multi30k's), then `nmt-prepare` and `nmt-train train.max_steps=5` (validating on 100
sentences; default tokenizer and model, data=files) each under `/usr/bin/time -v`: wall time and peak RSS, and for
training the seconds from its start to the log line of step 1. With --ranks 2, the same training under torchrun as
one gloo rank and as two, sampling each rank's proportional set size (PSS, /proc/<pid>/smaps_rollup: a page shared
by both counts half in each) once every rank has set up its data and model: the two ranks' sum above the empty
run's, against one rank's alone, shows whether they hold the corpus once (1.0x) or each its own copy (2.0x). An
"empty" run (1,000 pairs) gives the memory a training process needs without a corpus. The nmt that runs is whichever
`python -m nmt.cli...` imports (PYTHONPATH picks a tree), so two trees are compared with the same interpreter and
corpus. Results are printed and written as JSON lines.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

EMPTY_PAIRS = 1000
SEED = 1
# 5 steps, and their validation on 100 sentences: an untrained model decodes every sentence to the length limit
TRAIN = ["train.max_steps=5", "train.eval_max_sentences=100", "train.device=cpu"]


def mirror() -> Path:
    path = Path(os.environ.get("NMT_DATA_MIRROR", "../shared/data"))
    if not (path / "multi30k").is_dir():
        sys.exit(f"no corpus mirror at {path} (set NMT_DATA_MIRROR)")
    return path


def read_gz(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f]


def make_corpus(n: int, out: Path) -> dict[str, list[str]]:
    """N resampled train pairs, Multi30k's valid and test; returns the data.files table."""
    m = mirror()
    src, tgt = [], []
    for folder in ("multi30k", "wmt-newstest-de-en"):
        src += read_gz(m / folder / "train.de.gz")
        tgt += read_gz(m / folder / "train.en.gz")
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    rows = [rng.randrange(len(src)) for _ in range(n)]
    files = {"train": ("train", src, tgt, rows)}
    for split, name in (("valid", "val"), ("test", "test_2016_flickr")):
        s, t = read_gz(m / "multi30k" / f"{name}.de.gz"), read_gz(m / "multi30k" / f"{name}.en.gz")
        files[split] = (split, s, t, range(len(s)))
    table = {}
    for split, (stem, s, t, idx) in files.items():
        paths = [out / f"{stem}.de", out / f"{stem}.en"]
        for path, side in zip(paths, (s, t), strict=True):
            path.write_text("".join(side[i] + "\n" for i in idx), encoding="utf-8")
        table[split] = [str(p) for p in paths]
    return table


def timed(cmd: list[str], log: Path, first_line: str | None = None) -> dict[str, float | None]:
    """Run `cmd` under /usr/bin/time -v: wall seconds, peak RSS in MB, and seconds until `first_line` is printed."""
    start = time.monotonic()
    first = None
    with open(log, "w") as out:
        proc = subprocess.Popen(["/usr/bin/time", "-v", *cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, bufsize=1)
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            if first is None and first_line is not None and first_line in line:
                first = time.monotonic() - start
        proc.wait()
    wall = time.monotonic() - start
    text = log.read_text()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed (exit {proc.returncode}); see {log}")
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return {"wall_s": round(wall, 1), "peak_rss_mb": int(rss.group(1)) // 1024 if rss else None,
            "first_step_s": None if first is None else round(first, 1)}


def pss_mb(pid: int) -> int | None:
    """A process's proportional set size in MB, None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    match = re.search(r"^Pss:\s+(\d+) kB", text, re.M)
    return int(match.group(1)) // 1024 if match else None


def ranks_pss(cmd: list[str], marker: str, log: Path, world: int) -> dict[str, object]:
    """Run a torchrun command of `world` ranks; every 0.2 s, the PSS of each rank (the processes whose command line
    holds `marker`, the launcher aside). Returns, in MB, each rank's PSS once every rank has set up its data and
    model, before any step (what holding the corpus costs): when rank 0 logs that all ranks are set up, or its model
    when it runs alone (the other ranks log nothing, and at rank 0's model line they may still be sorting their
    epoch); and the peaks of each rank and of their sum over the whole run (training steps included, whose
    activations vary with the random first batches)."""
    ready = b"ranks set up" if world > 1 else b"model:"
    peaks: dict[int, int] = {}
    peak_sum, set_up = 0, None
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        while proc.poll() is None:
            sizes = _ranks_pss(marker, proc.pid)
            for pid, size in sizes.items():
                peaks[pid] = max(peaks.get(pid, 0), size)
            peak_sum = max(peak_sum, sum(sizes.values()))
            if select.select([fd], [], [], 0.2)[0]:
                chunk = os.read(fd, 1 << 16)
                out.write(chunk)
                if set_up is None and ready in chunk:
                    set_up = sorted(_ranks_pss(marker, proc.pid).values())
        out.write(proc.stdout.read())
    if proc.returncode != 0:
        sys.exit(f"torchrun failed (exit {proc.returncode}); see {log}")
    return {"rank_setup_pss_mb": set_up, "rank_peak_pss_mb": sorted(peaks.values()), "sum_peak_pss_mb": peak_sum}


def _ranks_pss(marker: str, launcher: int) -> dict[int, int]:
    """pid -> PSS in MB of every process whose command line holds `marker`, but the launcher."""
    ranks = [int(p.name) for p in Path("/proc").iterdir()
             if p.name.isdigit() and int(p.name) != launcher and marker in _cmdline(p)]
    return {pid: size for pid in ranks if (size := pss_mb(pid)) is not None}


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def run_point(n: int, work: Path, prepare_args: list[str], skip_train: bool, ranks: int = 1) -> dict:
    corpus = work / f"corpus-{n}"
    files = make_corpus(n, corpus)
    data = ["data=files", f"data.name=bench{n}", f"data.root={work / 'data'}"]
    data += [f"+data.files.{split}=[{paths[0]},{paths[1]}]" for split, paths in files.items()]
    py = [sys.executable, "-P", "-m"]  # -P: the working directory stays off sys.path
    result: dict = {"pairs": n}
    result["prepare"] = timed([*py, "nmt.cli.prepare", *data, *prepare_args], work / f"prepare-{n}.log")
    for run_dir in work.glob(f"run*-{n}"):  # runs of an earlier call: a run directory would be resumed
        shutil.rmtree(run_dir)
    if not skip_train:
        train = [*py, "nmt.cli.train", *data, *TRAIN, "train.log_every=1", f"hydra.run.dir={work / f'run-{n}'}"]
        result["train"] = timed(train, work / f"train-{n}.log", first_line="step 1 |")
    if ranks > 1 and not skip_train:
        result["ranks"] = {}
        for world in (1, ranks):  # one rank alone, then `ranks` of them: the same launch
            marker = f"hydra.run.dir={work / f'run{world}-{n}'}"
            launch = [sys.executable, "-P", "-m", "torch.distributed.run", "--standalone",
                      f"--nproc_per_node={world}", "-m", "nmt.cli.train", *data, *TRAIN, marker]
            result["ranks"][str(world)] = ranks_pss(launch, marker, work / f"train{world}-{n}.log", world)
    return result


def held_once(results: list[dict], ranks: int) -> str | None:
    """For every corpus size after the empty run: the sum of the ranks' set-up PSS above the empty run's, against
    one rank's alone above its empty run (1.0x: the corpus is held once; 2.0x for two ranks: once per rank)."""
    empty = next((r for r in results if r["pairs"] == EMPTY_PAIRS and "ranks" in r), None)
    if empty is None:
        return None
    lines = []
    for r in results:
        if r is empty or "ranks" not in r:
            continue
        one, many = (sum(r["ranks"][k]["rank_setup_pss_mb"]) - sum(empty["ranks"][k]["rank_setup_pss_mb"])
                     for k in ("1", str(ranks)))
        lines.append(f"{r['pairs']} pairs: {ranks} ranks' PSS {many} MB above the empty run's, one rank's {one} MB: "
                     f"{many / one:.2f}x" if one > 0 else f"{r['pairs']} pairs: one rank holds {one} MB above empty")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pairs", type=int, nargs="+", help="corpus sizes (train pairs)")
    p.add_argument("--work", default="outputs/bench-data", help="corpora, prepared data, runs and logs")
    p.add_argument("--label", default="this tree", help="names the tree measured in the output")
    p.add_argument("--no-empty", action="store_true", help="skip the empty run (1,000 pairs)")
    p.add_argument("--prepare-only", action="store_true", help="measure nmt-prepare only")
    p.add_argument("--prepare-arg", action="append", default=[], help="extra nmt-prepare override (repeatable)")
    p.add_argument("--ranks", type=int, default=1, help="also train as this many gloo ranks, sampling their PSS")
    args = p.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    sizes = args.pairs if args.no_empty or args.prepare_only else [EMPTY_PAIRS, *args.pairs]
    print(f"{'tree':<12} {'pairs':>9}  {'prepare wall':>12} {'prepare RSS':>11}  {'train wall':>10} "
          f"{'first step':>10} {'train RSS':>9}")
    results: list[dict] = []
    for n in sizes:
        r = run_point(n, work, args.prepare_arg, args.prepare_only, args.ranks)
        r["label"] = args.label
        pr, tr = r["prepare"], r.get("train", {})
        print(f"{args.label:<12} {n:>9}  {pr['wall_s']:>10} s {pr['peak_rss_mb']:>8} MB  "
              f"{tr.get('wall_s', '-'):>8} s {tr.get('first_step_s', '-'):>8} s {tr.get('peak_rss_mb', '-'):>6} MB"
              + "".join(f"  {world} rank(s): PSS set up {m['rank_setup_pss_mb']}, peak {m['rank_peak_pss_mb']} MB, "
                        f"sum {m['sum_peak_pss_mb']} MB" for world, m in r.get("ranks", {}).items()), flush=True)
        results.append(r)
        with open(work / "results.jsonl", "a") as f:
            f.write(json.dumps(r) + "\n")
    if args.ranks > 1 and (summary := held_once(results, args.ranks)):
        print(summary)


if __name__ == "__main__":
    main()
