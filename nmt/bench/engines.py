"""CPU inference engines side by side: our batched beam search against CTranslate2 (float32 and int8 weights).

`run(checkpoint, ...)` exports a Transformer checkpoint twice (as `nmt-export` does: float32 and int8), then for
each thread count decodes the same first N sentences of a test split with each engine (the same beam size,
length penalty, length limits and batch size) and reports sentences/s and sacreBLEU BLEU / chrF against the
references. Every engine translates a few sentences first, untimed; the CTranslate2 timings include loading the
model directory (part of each call). The engines run one after the other within a
thread count, so a change of machine load during the run would show in the ratios: run it on a quiet machine.

    nmt-bench --ctranslate2 outputs/.../transformer/<time>/best.pt --decode-sentences 1000 --engine-threads 1 2
    nmt-bench --ctranslate2 outputs/.../transformer/<time>/best.pt --decode-sentences 1000 --engine-beam 1
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nmt.config import DecodeConfig
from nmt.data.corpus import prepare_corpus
from nmt.evaluation.report import md_table
from nmt.inference.export import export_ctranslate2, load_ctranslate2
from nmt.inference.translator import Translator
from nmt.metrics.scores import corpus_scores
from nmt.runtime import hardware

WARMUP_SENTENCES = 8


def _timed(translate: Callable[[list[str]], list[str]], lines: list[str]) -> tuple[list[str], float]:
    """Translate a few lines untimed, then all of them: (hypotheses, seconds)."""
    translate(lines[:WARMUP_SENTENCES])
    start = time.perf_counter()
    hyps = translate(lines)
    return hyps, time.perf_counter() - start


def run(checkpoint: str | Path, split: str = "test", sentences: int = 1000, threads: list[int] | None = None,
        decode: DecodeConfig | None = None, out: str | Path | None = None) -> dict[str, Any]:
    """Rows {engine, threads, sentences_per_s, seconds, bleu, chrf, bleu_vs_ours} per engine and thread count.

    Engines: "nmt" (our batched beam search, torch CPU), "ctranslate2 float32", "ctranslate2 int8" (int8
    weights and int8 matrix products). The report is also written as JSON (default outputs/bench/engines-<time>.json).
    """
    decode = decode or DecodeConfig()
    threads = threads or [1, 2]
    ours = Translator.from_checkpoint(checkpoint, device="cpu", decode=decode)
    corpus = prepare_corpus(ours.loaded.cfg.data, log=lambda msg: print(f"data: {msg}", file=sys.stderr))
    data = corpus.split(split)
    lines, refs = list(data["src"][:sentences]), list(data["tgt"][:sentences])

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="nmt-engines-") as tmp:
        exports = {q: export_ctranslate2(checkpoint, Path(tmp) / q, quantization=q) for q in ("float32", "int8")}
        for n in threads:
            torch.set_num_threads(n)
            engines: dict[str, Callable[[list[str]], list[str]]] = {"nmt": ours.translate}
            for q, model_dir in exports.items():
                engines[f"ctranslate2 {q}"] = Translator.from_ctranslate2(model_dir, decode, threads=n).translate
            for name, translate in engines.items():
                print(f"decoding {len(lines)} sentences with {name}, {n} thread(s) ...", file=sys.stderr)
                hyps, seconds = _timed(translate, lines)
                scores = corpus_scores(hyps, refs)
                rows.append({"engine": name, "threads": n, "seconds": seconds,
                             "sentences_per_s": len(lines) / seconds, "bleu": scores["bleu"], "chrf": scores["chrf"]})
    for row in rows:
        base = next(r for r in rows if r["engine"] == "nmt" and r["threads"] == row["threads"])
        row["speedup"] = row["sentences_per_s"] / base["sentences_per_s"]
        row["bleu_vs_ours"] = row["bleu"] - base["bleu"]

    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "hardware": hardware(),
        "ctranslate2": load_ctranslate2().__version__,
        "checkpoint": str(checkpoint),
        "step": ours.loaded.payload["step"],
        "split": split,
        "sentences": len(lines),
        "decode": {"beam": decode.beam, "alpha": decode.alpha, "max_len_a": decode.max_len_a,
                   "max_len_b": decode.max_len_b, "batch_size": decode.batch_size},
        "rows": rows,
    }
    path = Path(out) if out else Path("outputs") / "bench" / f"engines-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    report["path"] = str(path)
    return report


def markdown(report: dict[str, Any]) -> str:
    d, hw = report["decode"], report["hardware"]
    head = (f"{report['sentences']} sentences of {report['split']} with {report['checkpoint']} (step "
            f"{report['step']}), beam {d['beam']}, alpha {d['alpha']}, batches of {d['batch_size']}; {hw['cpu']} "
            f"({hw['cpu_count']} cores), torch {hw['torch']}, CTranslate2 {report['ctranslate2']}.")
    table = md_table(
        ["engine", "threads", "sentences/s", "vs ours (x)", "BLEU", "BLEU vs ours", "chrF"],
        [[r["engine"], str(r["threads"]), f"{r['sentences_per_s']:.1f}", f"{r['speedup']:.2f}", f"{r['bleu']:.2f}",
          f"{r['bleu_vs_ours']:+.2f}", f"{r['chrf']:.2f}"] for r in report["rows"]],
    )
    return "\n".join([head, "", *table])
