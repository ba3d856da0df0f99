"""Evaluation reports: one JSON file with every number (metrics.json), and a Markdown page a person reads.

`EvaluationReport` is the report: metrics.json is its `to_dict()`, `EvaluationReport.read` reads one back, and
report.md is rendered from it. Its shape on disk:

    {"title", "split", "num_sentences", "decode": {...}, "length_edges", "bootstrap_samples",
     "systems": [{"name", "hypotheses_file", "checkpoint", "step", "arch", "num_parameters",
                  "speed": {"sentences", "seconds", "sentences_per_second", "tokens", "tokens_per_second",
                  "device"}, "scores": CorpusScores, "by_length": [LengthRow], "baseline": true (the baseline
                  only)}],
     "comparisons": [{"system", "baseline", "overall": PairedTest, "by_length": [PairedBucket]}],
     "notes": [str], "plots": {"bleu_by_length": file name, "attention": [file names]},
     "references": [file names: ref.txt, or ref1.txt, ref2.txt, ... for several references a sentence]}

With `comet_model` (nmt/metrics/comet.py) the report also has "comet_model" (the model as given), each system a
"comet" score and each length row a "comet" mean, and each comparison "comet" (a PairedTest) and
"comet_by_length". A system's fields that do not apply (a hypotheses file has no checkpoint, step or speed; no
COMET without comet_model) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from nmt.io import Record, from_json, read_json, write_json, write_text
from nmt.metrics.lengths import FEW_SENTENCES, LengthRow, PairedBucket
from nmt.metrics.scores import METRICS, CorpusScores
from nmt.metrics.significance import MIN_TEST_ITEMS, PairedTest
from nmt.runtime import hardware_line

Decode = dict[str, int | float | str]  # a DecodeConfig as written: field -> value


@dataclass
class DecodeSpeed(Record):
    """How fast a checkpoint decoded the evaluated sentences."""

    sentences: int
    seconds: float
    sentences_per_second: float
    tokens: int
    tokens_per_second: float
    device: str


@dataclass(kw_only=True)
class SystemInfo(Record):
    """Where an evaluated system comes from: a checkpoint (decoded by nmt-evaluate) or a file of hypotheses.
    A field that does not apply is None, and left out of metrics.json."""

    checkpoint: str | None = None
    step: int | None = None
    arch: str | None = None
    num_parameters: int | None = None
    speed: DecodeSpeed | None = None
    truncated_sources: int | None = None  # sources cut to the model's position table
    averaged_from: list[str] | None = None  # the checkpoints an averaged checkpoint was made of
    hypotheses_file_in: str | None = None  # the file a baseline's hypotheses were read from


@dataclass(kw_only=True)
class EvaluatedSystem(SystemInfo):
    """One system of a report: where it comes from, its scores and its BLEU by source length."""

    name: str
    hypotheses_file: str  # its hypotheses, in the report's directory
    scores: CorpusScores
    by_length: list[LengthRow]
    baseline: bool = False  # the system the others are compared with
    comet: float | None = None  # the mean of its COMET segment scores (<name>.comet.txt)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data = {"name": data.pop("name"), "hypotheses_file": data.pop("hypotheses_file")} | data
        return {k: v for k, v in data.items() if v is not None and (k != "baseline" or v)}


@dataclass
class Comparison(Record):
    """A system against the baseline: the paired test overall and within each source-length bucket, of BLEU and
    (with COMET) of the COMET segment scores."""

    system: str
    baseline: str
    overall: PairedTest
    by_length: list[PairedBucket]
    comet: PairedTest | None = None
    comet_by_length: list[PairedBucket] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items() if v is not None}


@dataclass
class Plots(Record):
    """The report's plot files, next to it."""

    bleu_by_length: str = ""
    attention: list[str] = field(default_factory=list)


@dataclass
class EvaluationReport(Record):
    """What `nmt-evaluate` (and `nmt.evaluate`) measures: every system's scores and the paired comparisons.
    `out_dir` and `report_file` say where it was written (not part of metrics.json)."""

    title: str
    split: str
    num_sentences: int
    decode: Decode
    length_edges: list[int]
    bootstrap_samples: int
    systems: list[EvaluatedSystem]
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: Plots | None = None
    references: list[str] | None = None  # the reference files beside the report (None: not recorded)
    comet_model: str | None = None  # the COMET model as given (path or hub name); None: no COMET
    out_dir: str | None = None
    report_file: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items()
                if v is not None or k not in ("plots", "references", "comet_model", "out_dir", "report_file")}

    def system(self, name: str) -> EvaluatedSystem:
        return next(s for s in self.systems if s.name == name)

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """A metrics.json that nmt-evaluate wrote."""
        return from_json(cls, read_json(path))


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


def _scores_section(report: EvaluationReport) -> list[str]:
    metrics = [m for m in METRICS.values() if any(s.scores.has(m.name) for s in report.systems)]
    rows = []
    for s in report.systems:
        sp = s.speed
        rows.append([s.name, *(fmt_num(s.scores.score(m.name) if s.scores.has(m.name) else None) for m in metrics),
                     "-" if s.num_parameters is None else f"{s.num_parameters:,}",
                     fmt_num(sp.sentences_per_second if sp else None, 1),
                     fmt_num(sp.tokens_per_second if sp else None, 0)])
    header = ["system", *(m.column for m in metrics), "parameters", "sentences/s", "tokens/s"]
    if report.comet_model:
        header.insert(len(metrics) + 1, "COMET")
        for row, s in zip(rows, report.systems, strict=True):
            row.insert(len(metrics) + 1, fmt_num(s.comet, 4))
    lines = ["## Scores", ""] + md_table(header, rows) + [""]
    if report.comet_model:
        lines += [f"COMET model: `{report.comet_model}` (the mean of the segment scores, each system's in "
                  f"`<system>.comet.txt`)", ""]
    lines += ["sacreBLEU signatures:", ""]
    lines += [f"- {name}: `{sig}`" for name, sig in report.systems[0].scores.signatures.items()]
    lines.append("")
    lines += [f"- {s.name}: `{s.scores.bleu_detail}`" for s in report.systems if s.scores.bleu_detail]
    lines.append("")
    for s in report.systems:
        sp = s.speed
        if sp:
            lines.append(f"- {s.name}: decoded {sp.sentences} sentences ({sp.tokens} output tokens) in "
                         f"{sp.seconds:.2f} s on {sp.device or '?'}")
    return lines + [""]


def _length_section(report: EvaluationReport) -> list[str]:
    systems = report.systems
    header = ["source words", "sentences"] + [f"{s.name} BLEU [95% CI]" for s in systems]
    header += [f"{s.name} COMET" for s in systems] if report.comet_model else []
    rows = []
    for b, bucket in enumerate(systems[0].by_length):
        cells = [bucket.label, str(bucket.count)]
        for s in systems:
            r = s.by_length[b]
            cells.append("-" if r.bleu is None else f"{r.bleu:.2f} {fmt_interval(r.bleu_ci)}")
        cells += [fmt_num(s.by_length[b].comet, 4) for s in systems] if report.comet_model else []
        note = "empty" if bucket.count == 0 else ("few sentences" if bucket.few else "")
        rows.append(cells + [note])
    return (
        ["## BLEU by source length", ""]
        + md_table(header + ["note"], rows)
        + ["", f"Buckets with fewer than {FEW_SENTENCES} sentences are marked: their BLEU is noisy.", ""]
    )


def _comparison_section(report: EvaluationReport) -> list[str]:
    lines = ["## Paired comparison against the baseline", ""]
    n = report.bootstrap_samples
    lines.append(
        f"Difference = system - baseline, with its 95% paired bootstrap interval ({n} samples); p-values from "
        f"approximate randomisation ({n} shuffles, two-sided), n/a below {MIN_TEST_ITEMS} sentences; "
        "* marks p < 0.05."
    )
    lines.append("")
    for comp in report.comparisons:
        lines += [f"### {comp.system} vs {comp.baseline}", ""]
        lines += _paired_table("BLEU", comp.overall, comp.by_length, 2) + [""]
        if comp.comet is not None:
            lines += [f"### {comp.system} vs {comp.baseline}: COMET", ""]
            lines += _paired_table("COMET", comp.comet, comp.comet_by_length or [], 4) + [""]
    return lines


def _paired_table(metric: str, overall: PairedTest, by_length: Sequence[PairedBucket], digits: int) -> list[str]:
    header = ["bucket", "sentences", f"baseline {metric}", f"system {metric}", "difference", "95% CI", "p-value",
              "note"]
    rows = []
    for label, t in [("all", overall)] + [(b.label, b.test) for b in by_length]:
        if t is None or t.count == 0:
            rows.append([label, "0", "-", "-", "-", "-", "-", "empty"])
            continue
        ci = "-" if t.difference_ci is None else f"[{t.difference_ci[0]:.{digits}f}, {t.difference_ci[1]:.{digits}f}]"
        rows.append([label, str(t.count), fmt_num(t.baseline, digits), fmt_num(t.system, digits),
                     f"{t.difference:+.{digits}f}", ci, fmt_p(t.p_value),
                     "few sentences" if t.count < FEW_SENTENCES else ""])
    return md_table(header, rows)


def render_markdown(report: EvaluationReport) -> str:
    """The human-readable report.md of a report."""
    d = report.decode
    lines = [f"# {report.title}", ""]
    lines.append(f"- data: {report.split} ({report.num_sentences} sentences)")
    if report.references and len(report.references) > 1:
        lines.append(f"- references: {len(report.references)} a sentence ({', '.join(report.references)}), every "
                     f"score against all of them; length buckets by the source")
    if d:
        search = "greedy" if d.get("beam", 1) == 1 else f"beam {d['beam']}, length penalty alpha {d.get('alpha')}"
        lines.append(f"- decoding: {search}, max length {d.get('max_len_a')} * source + {d.get('max_len_b')}")
    for s in report.systems:
        where = s.checkpoint or s.hypotheses_file or ""
        extra = f", step {s.step}" if s.step is not None else ""
        arch = f"{s.arch}, " if s.arch else ""
        lines.append(f"- {s.name}: {arch}{where}{extra}")
    lines.append("")
    lines += _scores_section(report)
    lines += _length_section(report)
    if report.comparisons:
        lines += _comparison_section(report)
    plots = report.plots
    if plots and (plots.bleu_by_length or plots.attention):
        lines += ["## Plots", ""]
        if plots.bleu_by_length:
            lines += [f"![BLEU by source length]({plots.bleu_by_length})", ""]
        for name in plots.attention:
            lines += [f"![attention]({name})", ""]
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def write_report(out_dir: str | Path, report: EvaluationReport) -> tuple[Path, Path]:
    """Write report.md and metrics.json into `out_dir`; returns their paths."""
    out_dir = Path(out_dir)
    json_path = write_json(out_dir / "metrics.json", report)
    md_path = write_text(out_dir / "report.md", render_markdown(report))
    return md_path, json_path
