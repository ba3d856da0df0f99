"""What `nmt-bottleneck` measures, as types: its report.json is `dataclasses.asdict(BottleneckReport)` and its
report.md is rendered from a `BottleneckReport` (nmt/experiments/bottleneck_report.py), built by
nmt/experiments/bottleneck.py or read back with `BottleneckReport.read`.

Records that come whole from the layers below stay as they return them: the sacreBLEU comparisons and
by-length rows of nmt/evaluation ({"difference", "difference_ci", "p_value", ...}), length statistics
({"ratio", "brevity_penalty"}), NLL bins over the target ({"start", "tokens", "nll"}), configs and hardware.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nmt.experiments.runner import RunResult
from nmt.io import from_json
from nmt.metrics.retention import Retention, RetentionDifference, Slope


@dataclass
class MeanStd:
    """A statistic over seeds: mean, sample std (None for one seed) and the number of seeds."""

    mean: float
    std: float | None
    n: int


@dataclass
class Verdict:
    """One question's answer over seeds: the label, each seed's label and why."""

    label: str
    per_seed: list[str]
    reason: str


# Length-controlled levels ---------------------------------------------------------------------------------------
@dataclass
class Level:
    """One length-controlled test split: k sentences joined per example."""

    split: str
    k: int
    examples: int
    offsets: list[int]  # the groupings (start offsets) the split holds
    src_words: float  # mean source words per example


@dataclass
class LevelScores:
    """One system of one seed on every level (lists in order of k)."""

    bleu: list[float]
    bleu_ci: list[list[float]]
    slope: Slope
    length: list[dict[str, float]]  # {"ratio", "brevity_penalty"} per level
    nll: list[float] = field(default_factory=list)  # per-token NLL of the references per level
    nll_by_position: list[dict[str, float]] = field(default_factory=list)  # longest level, per tenth of the target


@dataclass
class Control:
    """The equal-quality control: the attention checkpoint whose validation BLEU is closest to the fixed model's."""

    step: int
    valid_bleu: float
    fixed_valid_bleu: float
    bleu: list[float]  # per level
    retained: float | None
    retained_ci: list[float]
    difference: RetentionDifference  # this checkpoint - the fixed model, retained share


@dataclass
class LevelSeed:
    """One seed on the levels: the retention test, both questions' labels and every system's scores."""

    seed: int
    retention: Retention
    verdict: str  # question (a)
    reason: str
    removal: str  # question (b)
    removal_reason: str
    systems: dict[str, LevelScores]
    control: Control | None = None


@dataclass
class SweepRow:
    """One model of the capacity sweep (or a reference model) on every level."""

    system: str
    summary: int | None  # size of the summary vector c (None: attention)
    bleu: list[float]
    bleu_ci: list[list[float]]
    parameters: int
    retained: float | None
    retained_ci: list[float]


@dataclass
class SweepPair:
    """Retained share of the larger summary size minus the smaller, one-sided p-values both ways."""

    larger: int
    smaller: int
    value: float | None
    ci: list[float]
    p_value: float | None  # the larger retains more
    p_less: float | None  # the larger retains less


@dataclass
class Sweep:
    """The capacity sweep of one test set (one seed)."""

    fixed: list[SweepRow]  # in increasing summary size
    unprojected: SweepRow  # the main fixed-context model (c = h)
    attention: SweepRow
    pairs: list[SweepPair]
    n_samples: int
    sentence: str  # what the paired tests decide (nmt.experiments.verdicts.capacity_sentence)
    seed: int
    plot: str = ""


@dataclass
class Levels:
    """The length-controlled view of one test set."""

    test: str
    levels: list[Level]
    groups: int  # disjoint groups the retention test resamples
    seeds: list[LevelSeed]
    verdict: Verdict  # question (a)
    removal: Verdict  # question (b)
    aggregate: dict[str, list[MeanStd | None]]  # system -> BLEU per level over seeds
    ratio: dict[str, MeanStd | None]  # "k1" / "longest" -> attention / fixed BLEU over seeds
    sweep: Sweep | None = None
    plot: str = ""
    nll_plot: str = ""


# Natural lengths -------------------------------------------------------------------------------------------------
@dataclass
class NaturalSystem:
    """One system of one seed on the original test set."""

    bleu: float
    bleu_ci: list[float]
    chrf: float
    chrf_ci: list[float]
    ter: float
    bleu_lc: float
    by_length: list[dict[str, Any]]  # nmt-evaluate's rows per source-length bucket


@dataclass
class NaturalSeed:
    """One seed on the original test set: scores and paired tests (attention - fixed), as nmt-evaluate gives
    them, and where that seed's full report is."""

    seed: int
    report: str
    systems: dict[str, NaturalSystem]
    bleu: dict[str, Any]  # paired test of BLEU: {"difference", "difference_ci", "p_value", ...}
    chrf: dict[str, Any]
    by_length: list[dict[str, Any]]  # paired test per bucket: {"label", "count", "few", "difference", ...}
    signatures: dict[str, str]


@dataclass
class BucketMean:
    label: str
    count: int
    bleu: MeanStd | None


@dataclass
class SystemMean:
    bleu: MeanStd | None
    chrf: MeanStd | None
    by_length: list[BucketMean]


@dataclass
class BucketDifference:
    label: str
    count: int
    difference: MeanStd | None
    p_values: list[float | None]  # per seed


@dataclass
class DifferenceMean:
    bleu: MeanStd | None
    chrf: MeanStd | None
    by_length: list[BucketDifference]


@dataclass
class NaturalAggregate:
    """Mean ± std over seeds of every score, bucket and difference."""

    systems: dict[str, SystemMean]
    difference: DifferenceMean


@dataclass
class Natural:
    seeds: list[NaturalSeed]
    aggregate: NaturalAggregate
    plot: str = ""


# The report ----------------------------------------------------------------------------------------------------
@dataclass
class Budget:
    """The training budget every run of a corpus shares."""

    max_steps: int
    max_minutes: float
    max_epochs: int
    batch_tokens: int
    eval_every: int
    lr: float


@dataclass
class Section:
    """One test set of one corpus: both verdicts, the natural-length and the length-controlled views."""

    data: str  # data config group
    corpus: str
    split: str
    num_sentences: int
    decode: dict[str, Any]
    length_edges: list[int]
    concat_k: int
    parameters: dict[str, int]  # system -> parameter count
    budget: Budget
    models: dict[str, str]  # system -> model config group
    natural: Natural
    budget_text: str  # "at 500 updates of 4.096k tokens"
    still_improving: list[str]  # runs whose best checkpoint is the last one
    verdict: Verdict  # question (a)
    removal: Verdict | None  # question (b); None without levels
    levels: Levels | None = None


@dataclass
class BottleneckReport:
    title: str
    preset: str | None
    config: dict[str, Any]  # the experiment's resolved config
    hardware: dict[str, Any]
    runs: list[RunResult]
    sections: list[Section]
    seconds: float = 0.0

    @classmethod
    def read(cls, path: str | Path) -> BottleneckReport:
        """A report.json written by `nmt-bottleneck`."""
        return from_json(cls, json.loads(Path(path).read_text(encoding="utf-8")))
