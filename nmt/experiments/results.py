"""What the experiments measure, as types. A report.json is the `to_dict()` of a `BottleneckReport`
(nmt/experiments/bottleneck.py) or a `ClaimsReport` (nmt/experiments/claims.py); report.md is rendered from the
dataclass (nmt/experiments/bottleneck_report.py, claims_report.py), built by the experiment or read back from its
report.json with `.read`.

Records that come whole from the layers below keep their own types: paired tests (`PairedTest`, `MeanTest`,
`RatioTest`), by-length rows (`LengthRow`, `PairedBucket`), length statistics (`LengthRatio`) and retention
(nmt/metrics), NLL bins over the target (`NllBin`, nmt/evaluation/scoring.py). Only the configs and the hardware
stay plain dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from nmt.evaluation.report import Decode
from nmt.evaluation.scoring import NllBin, NllBucket
from nmt.experiments.runner import RunResult
from nmt.io import Record, from_json, read_json
from nmt.metrics.lengths import LengthRow, NllRise, PairedBucket
from nmt.metrics.retention import Retention, RetentionDifference, Slope
from nmt.metrics.scores import LengthRatio
from nmt.metrics.significance import MeanTest, PairedTest, RatioTest, SeedInterval
from nmt.metrics.trajectory import MatchedRetention


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
    """One system of one seed on every level (lists in order of k).

    retained[k]: BLEU at level k over the BLEU of the same system's k = 1 outputs joined into the same groups
    (the anchor, `anchor`); the slope is fitted to it (share kept per 10 source words), not to raw BLEU.
    sentences: mean sentences per output (nmt.metrics.retention.count_sentences; the reference's beside it in
    `Levels.ref_sentences`). delta_nll: the per-sentence NLL evidence of the evaluated checkpoint
    (nmt/experiments/follow.py), per joined position j = 1..K.
    """

    bleu: list[float]
    bleu_ci: list[list[float]]
    slope: Slope
    length: list[LengthRatio]  # per level
    nll: list[float] = field(default_factory=list)  # per-token NLL of the references per level
    nll_by_position: list[NllBin] = field(default_factory=list)  # longest level, per tenth of the target (old)
    anchor: list[float] = field(default_factory=list)
    retained: list[float | None] = field(default_factory=list)
    sentences: list[float] = field(default_factory=list)
    delta_nll: list[float] = field(default_factory=list)
    delta_nll_ci: list[list[float]] = field(default_factory=list)


@dataclass
class Control:
    """The equal-quality control: the attention checkpoint whose validation BLEU is closest to the fixed model's."""

    step: int
    valid_bleu: float
    fixed_valid_bleu: float
    bleu: list[float]  # per level (k = 1 and the longest only, for a followed run)
    retained: float | None
    retained_ci: list[float]
    difference: RetentionDifference  # this checkpoint - the fixed model, retained share
    alignment: float | None = None  # its segment-alignment score (nmt/metrics/alignment.py)


@dataclass
class TrajectoryRow:
    """One kept checkpoint of a followed run: its k = 1 quality on valid and what it keeps at the longest level."""

    step: int
    valid_bleu: float
    valid_nll: float
    bleu_short: float  # test, the k = 1 outputs joined into the level-K groups
    bleu_long: float
    retained: float | None
    precision_retained: float | None  # BLEU / brevity penalty at both levels
    delta_nll: float  # per-token reference NLL at level K - at k = 1 (the same sentences)
    alignment: float | None
    aligned: bool  # enters the matched comparison (attention: alignment >= min_alignment)


@dataclass
class Followed:
    """One run followed over training."""

    system: str
    seed: int
    points: list[TrajectoryRow]


@dataclass
class Matched:
    """Question (c) at matched k = 1 quality: the statistic, its verdict, and the same on another matching variable."""

    quality: str  # what the checkpoints are matched on
    result: MatchedRetention
    verdict: Verdict
    by_nll: MatchedRetention | None = None  # matched on valid NLL (lower is better) instead, as a check


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
class SweepSeeds:
    """The capacity sweep over seeds: each size's retained share (mean ± std), the largest minus the smallest size
    per seed with its seed-level interval, and what that interval can resolve."""

    sizes: list[int]
    retained: list[MeanStd | None]  # per size, over seeds
    largest_minus_smallest: list[float | None]  # per seed
    seed_level: SeedInterval | None
    sentence: str


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
    # seed level, over seeds' values: "difference" (attention - fixed retained share), "attention" (its share)
    seed_level: dict[str, SeedInterval | None] = field(default_factory=dict)
    ref_sentences: list[float] = field(default_factory=list)  # mean sentences per reference, per level
    followed: list[Followed] = field(default_factory=list)
    matched: Matched | None = None
    min_alignment: float | None = None
    trajectory_plot: str = ""
    sweep_seeds: list[Sweep] = field(default_factory=list)  # the sweep of every seed (`sweep`: the first)
    sweep_summary: SweepSeeds | None = None


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
    by_length: list[LengthRow]  # nmt-evaluate's rows per source-length bucket
    nll_by_length: list[NllBucket] = field(default_factory=list)  # teacher-forced reference NLL per bucket


@dataclass
class NaturalSeed:
    """One seed on the original test set: scores and paired tests (attention - fixed), as nmt-evaluate gives
    them, and where that seed's full report is."""

    seed: int
    report: str
    systems: dict[str, NaturalSystem]
    bleu: PairedTest  # attention - fixed
    chrf: PairedTest
    by_length: list[PairedBucket]  # the paired test of BLEU per bucket
    signatures: dict[str, str]
    nll_rise: list[NllRise] = field(default_factory=list)  # NLL rise over the shortest bucket, fixed - attention


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
    # per bucket, over seeds: fixed - attention rise of NLL over the shortest bucket, and its seed-level interval
    nll_rise: list[MeanStd | None] = field(default_factory=list)
    nll_rise_seed_level: list[SeedInterval | None] = field(default_factory=list)


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
    decode: Decode
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
class ExperimentReport(Record):
    """What every experiment's report starts with."""

    title: str
    preset: str | None
    config: dict[str, Any]  # the experiment's resolved config
    hardware: dict[str, Any]

    @classmethod
    def read(cls, path: str | Path) -> Self:
        """A report.json the experiment wrote."""
        return from_json(cls, read_json(path))


@dataclass
class BottleneckReport(ExperimentReport):
    runs: list[RunResult]
    sections: list[Section]
    seconds: float = 0.0


# The claims --------------------------------------------------------------------------------------------------------
@dataclass
class Scored:
    """One system on the test set: BLEU with its 95% interval, chrF, length ratio (hypothesis / reference
    tokens), brevity penalty and the BLEU signature."""

    bleu: float
    bleu_ci: list[float]
    chrf: float
    ratio: float
    brevity_penalty: float
    signature: str


@dataclass
class ProbeStats:
    """Attention statistics of one model (means over probe sentences and decoder steps), or of synthetic vectors."""

    entropy: float  # nats
    max_weight: float
    grad_norm: float  # at the scores (after any 1/sqrt(d_k))
    raw_grad_norm: float  # at q.k
    param_grad: dict[str, float] = field(default_factory=dict)  # projection name -> gradient norm (models only)


@dataclass
class GradientChange(RatioTest):
    """Scaled / unscaled mean gradient norm (`ratio_bootstrap`), and that change in percent with its 95% interval
    (an upper end None: unbounded)."""

    change_pct: float
    change_ci: list[float | None]


@dataclass
class NamedPairedTest(PairedTest):
    """A paired test of two variants, with their names."""

    system_name: str
    baseline_name: str


@dataclass
class ScalingStage:
    """dot vs scaled_dot at one stage (synthetic, init, trained) and one d_k."""

    dot: ProbeStats
    scaled_dot: ProbeStats
    grad_norm_change: GradientChange | None = None  # models only
    raw_grad_norm_change: GradientChange | None = None
    raw_grad_change_pct: float | None = None  # synthetic only: one draw, no test


@dataclass
class ScalingBleu:
    dot: Scored
    scaled_dot: Scored
    test: PairedTest  # scaled_dot - dot


@dataclass
class ScalingRow:
    d_k: int
    init: ScalingStage
    trained: ScalingStage
    synthetic: ScalingStage
    bleu: ScalingBleu


@dataclass
class TemperatureRow(Scored):
    temperature: float
    entropy: float  # mean attention entropy (nats) of the decoded test set
    vs_trained: PairedTest | None  # temperature 1 - this one (None at 1)


@dataclass
class ScorerRow(Scored):
    name: str  # the variant
    scorer: str
    heads: int
    hidden: int
    attention_dim: int
    num_parameters: int
    steps: int
    vs_reference: PairedTest | None  # against the reference scorer (None: the reference itself)


@dataclass
class SeedClaim:
    """One claim analysed on one seed: each question's label and a one-line summary of the numbers."""

    verdicts: dict[str, str]  # question key (verdicts.CLAIM_QUESTIONS) -> label
    summary: str


@dataclass
class ScalingSeed(SeedClaim):
    rows: list[ScalingRow]  # per d_k


@dataclass
class TemperatureSeed(SeedClaim):
    rows: list[TemperatureRow]  # in increasing temperature
    entropy_steps: list[MeanTest]  # paired test of the entropy per step up in temperature


@dataclass
class HardSeed(SeedClaim):
    rows: dict[str, Scored]  # "soft", "hard at inference", "hard trained"
    tests: dict[str, PairedTest]  # hard variant -> soft - hard


@dataclass
class ScorersSeed(SeedClaim):
    rows: list[ScorerRow]
    reference: str  # the reference variant
    heads_test: NamedPairedTest | None  # most heads - fewest
    heads_summary: str | None


@dataclass
class ClaimVerdict:
    """One question of a claim over seeds: the label every seed gives, else inconclusive."""

    question: str
    label: str
    per_seed: list[str]


@dataclass
class Claim:
    verdicts: dict[str, ClaimVerdict]
    budget: str  # "at 300 updates of 2.048k tokens"
    summary: str  # every verdict of the claim, with the budget


@dataclass
class ScalingClaim(Claim):
    seeds: dict[str, ScalingSeed]
    plot: str = ""


@dataclass
class TemperatureClaim(Claim):
    seeds: dict[str, TemperatureSeed]


@dataclass
class HardClaim(Claim):
    seeds: dict[str, HardSeed]


@dataclass
class ScorersClaim(Claim):
    seeds: dict[str, ScorersSeed]


@dataclass
class Claims:
    """The claims that were run (None: not selected)."""

    scaling: ScalingClaim | None = None
    temperature: TemperatureClaim | None = None
    hard: HardClaim | None = None
    scorers: ScorersClaim | None = None


@dataclass
class AttentionOptions:
    """The model options the claims vary."""

    scorer: str
    heads: int
    hidden: int
    attention_dim: int
    hard: bool


@dataclass
class ClaimsRun(RunResult):
    """A trained variant and the attention options that make it one."""

    model: AttentionOptions | None = None


@dataclass
class ClaimsReport(ExperimentReport):
    split: str
    num_sentences: int
    decode: Decode
    budget: str
    runs: list[ClaimsRun]
    claims: Claims
    seconds: float = 0.0
