"""Evaluation reports: one JSON file with every number, and a Markdown page a person reads.

The report is a plain dict (so it round-trips through JSON) with this shape:

    {"title", "split", "num_sentences", "decode": {...}, "length_edges", "bootstrap_samples",
     "systems": [{"name", "checkpoint", "step", "arch", "num_parameters", "hypotheses_file",
                  "scores": corpus_scores(...), "speed": {"sentences", "seconds", "sentences_per_second",
                  "tokens", "tokens_per_second", "device"}, "by_length": bleu_by_length(...)}],
     "comparisons": [{"system", "baseline", "overall": paired_bootstrap(...),
                      "by_length": paired_bootstrap_by_length(...)}],
     "plots": {"bleu_by_length": file name, "attention": [file names]}, "notes": [str]}
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nmt.metrics.lengths import FEW_SENTENCES
from nmt.metrics.significance import MIN_TEST_ITEMS
from nmt.runtime import hardware_line


def fmt_num(x: float | None, digits: int = 2, thousands: bool = False) -> str:
    """`12.35` (`12,345.0` with thousands separators); "-" for a missing value or NaN."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}" if thousands else f"{x:.{digits}f}"


def fmt_interval(ci: Sequence[float] | None) -> str:
    return "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def fmt_pct(x: float | None, digits: int = 1) -> str:
    """A share as a percentage: 0.489 -> `48.9%`; "-" when missing."""
    return "-" if x is None else f"{x:.{digits}%}"


def fmt_pct_interval(ci: Sequence[float] | None, digits: int = 1) -> str:
    return "-" if ci is None else f"[{ci[0]:.{digits}%}, {ci[1]:.{digits}%}]"


def p_floor(n_samples: int) -> float:
    """The smallest p-value `n_samples` resamplings can give, (0 + 1) / (n + 1)."""
    return 1.0 / (n_samples + 1)


def p_text(p: float, n_samples: int = 1000, digits: int = 3) -> str:
    """"p = 0.012", or "p < 0.001" at the resampling floor (no resample reached the observed value)."""
    if p <= p_floor(n_samples) * (1 + 1e-9):
        return f"p < {1.0 / n_samples:.{digits}g}"
    return f"p = {p:.{digits}f}"


def fmt_p(p: float | None, alpha: float = 0.05, n_samples: int = 1000) -> str:
    """A table cell: the p-value ("< 0.001" at the resampling floor), starred when under `alpha`."""
    if p is None:
        return "n/a"
    text = p_text(p, n_samples, digits=4).removeprefix("p = ").removeprefix("p ")
    return text + (" *" if p < alpha else "")


def run_lines(first: str, overrides: Sequence[str], hardware: dict[str, Any], seconds: float) -> list[str]:
    """The header of an experiment report: `first`, the overrides of every run, the hardware, the total time."""
    given = ", ".join(f"`{o}`" for o in overrides) or "(none)"
    return [first, f"- overrides for every run: {given}", f"- hardware: {hardware_line(hardware)}",
            f"- total time: {seconds / 60:.1f} min"]


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _scores_section(report: dict[str, Any]) -> list[str]:
    rows = []
    for s in report["systems"]:
        sc, sp = s["scores"], s.get("speed") or {}
        params = s.get("num_parameters")
        rows.append(
            [
                s["name"],
                fmt_num(sc["bleu"]),
                fmt_num(sc["chrf"]),
                fmt_num(sc["ter"]),
                fmt_num(sc["bleu_lc"]),
                "-" if params is None else f"{params:,}",
                fmt_num(sp.get("sentences_per_second"), 1),
                fmt_num(sp.get("tokens_per_second"), 0),
            ]
        )
    header = ["system", "BLEU", "chrF", "TER", "BLEU (lowercased)", "parameters", "sentences/s", "tokens/s"]
    lines = ["## Scores", ""] + md_table(header, rows) + [""]
    first = report["systems"][0]["scores"]["signatures"]
    lines += ["sacreBLEU signatures:", ""]
    lines += [f"- {name}: `{sig}`" for name, sig in first.items()]
    lines.append("")
    for s in report["systems"]:
        if s["scores"].get("bleu_detail"):
            lines.append(f"- {s['name']}: `{s['scores']['bleu_detail']}`")
    lines.append("")
    for s in report["systems"]:
        sp = s.get("speed")
        if sp:
            lines.append(
                f"- {s['name']}: decoded {sp['sentences']} sentences ({sp['tokens']} output tokens) in "
                f"{sp['seconds']:.2f} s on {sp.get('device', '?')}"
            )
    return lines + [""]


def _length_section(report: dict[str, Any]) -> list[str]:
    systems = report["systems"]
    buckets = systems[0]["by_length"]
    header = ["source words", "sentences"] + [f"{s['name']} BLEU [95% CI]" for s in systems] + ["note"]
    rows = []
    for b, bucket in enumerate(buckets):
        cells = [bucket["label"], str(bucket["count"])]
        for s in systems:
            r = s["by_length"][b]
            cells.append("-" if r["bleu"] is None else f"{r['bleu']:.2f} {fmt_interval(r['bleu_ci'])}")
        note = "empty" if bucket["count"] == 0 else ("few sentences" if bucket["few"] else "")
        rows.append(cells + [note])
    return (
        ["## BLEU by source length", ""]
        + md_table(header, rows)
        + ["", f"Buckets with fewer than {FEW_SENTENCES} sentences are marked: their BLEU is noisy.", ""]
    )


def _comparison_section(report: dict[str, Any]) -> list[str]:
    lines = ["## Paired comparison against the baseline", ""]
    n = report.get("bootstrap_samples")
    lines.append(
        f"Difference = system - baseline, with its 95% paired bootstrap interval ({n} samples); p-values from "
        f"approximate randomisation ({n} shuffles, two-sided), n/a below {MIN_TEST_ITEMS} sentences; "
        "* marks p < 0.05."
    )
    lines.append("")
    header = ["bucket", "sentences", "baseline BLEU", "system BLEU", "difference", "95% CI", "p-value", "note"]
    for comp in report["comparisons"]:
        lines += [f"### {comp['system']} vs {comp['baseline']}", ""]
        rows = []
        for label, r in [("all", comp["overall"])] + [(b["label"], b) for b in comp["by_length"]]:
            if r.get("count", 0) == 0:
                rows.append([label, "0", "-", "-", "-", "-", "-", "empty"])
                continue
            rows.append(
                [
                    label,
                    str(r["count"]),
                    fmt_num(r["baseline"]),
                    fmt_num(r["system"]),
                    f"{r['difference']:+.2f}",
                    fmt_interval(r["difference_ci"]),
                    fmt_p(r["p_value"]),
                    "few sentences" if r["count"] < FEW_SENTENCES else "",
                ]
            )
        lines += md_table(header, rows) + [""]
    return lines


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report.md for a report dict (see the module docstring)."""
    d = report.get("decode") or {}
    lines = [f"# {report.get('title', 'Evaluation')}", ""]
    lines.append(f"- data: {report['split']} ({report['num_sentences']} sentences)")
    if d:
        search = "greedy" if d.get("beam", 1) == 1 else f"beam {d['beam']}, length penalty alpha {d.get('alpha')}"
        lines.append(f"- decoding: {search}, max length {d.get('max_len_a')} * source + {d.get('max_len_b')}")
    for s in report["systems"]:
        where = s.get("checkpoint") or s.get("hypotheses_file") or ""
        extra = f", step {s['step']}" if s.get("step") is not None else ""
        arch = f"{s['arch']}, " if s.get("arch") else ""
        lines.append(f"- {s['name']}: {arch}{where}{extra}")
    lines.append("")
    lines += _scores_section(report)
    lines += _length_section(report)
    if report.get("comparisons"):
        lines += _comparison_section(report)
    plots = report.get("plots") or {}
    if plots.get("bleu_by_length") or plots.get("attention"):
        lines += ["## Plots", ""]
        if plots.get("bleu_by_length"):
            lines += [f"![BLEU by source length]({plots['bleu_by_length']})", ""]
        for name in plots.get("attention", []):
            lines += [f"![attention]({name})", ""]
    if report.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in report["notes"]] + [""]
    return "\n".join(lines)


def write_report(out_dir: str | Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write report.md and metrics.json into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "metrics.json"
    # allow_nan=False: a NaN would make the file unreadable for strict JSON parsers; fail loudly instead.
    json_path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    md_path = out_dir / "report.md"
    md_path.write_text(render_markdown(report), encoding="utf-8")
    return md_path, json_path
