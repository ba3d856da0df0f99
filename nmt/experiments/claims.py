"""Side claims about attention, each measured and given verdicts computed from the numbers, in every seed.

- scaling: scaled (q.k / sqrt(d_k)) vs unscaled dot-product attention for several d_k at a fixed model size
  (queries and keys projected to d_k with W_q, W_k at every d_k, model.attention_dim, so the axis changes one
  thing): softmax entropy, max weight, and the gradient where scaling acts (at the raw q.k, at the scaled scores,
  at the query/key projections), at initialisation (the model's own random queries and keys, and synthetic
  unit-variance random vectors, the premise of Vaswani et al. 2017) and after training; BLEU of both. The change
  of the gradient norm is a ratio of means (scaled / unscaled) with a log-scale bootstrap interval.
- temperature: softmax temperature at inference on the trained base model: attention entropy (a property of
  softmax) and whether the trained temperature translates best, two verdicts.
- hard: argmax vs soft attention, switched on at inference and trained with the straight-through estimator:
  BLEU, chrF, length ratio and brevity penalty.
- scorers: dot / scaled_dot (parameter-free) / general / additive at equal budget; heads (slices of the scored
  space and of the encoder states, no extra parameters) 1 vs more at an equal parameter count: BLEU.

Every variant trains once per seed, for a budget in updates (train.max_steps); each claim is analysed per seed
and each verdict is the seeds' common one (inconclusive when they disagree). `run_claims` writes
<out_dir>/report.md, report.json and scaling.png.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from nmt.config import PAD_ID
from nmt.data.batching import collate
from nmt.data.corpus import prepare_corpus
from nmt.decoding.search import translate
from nmt.errors import NMTError
from nmt.evaluation.report import p_text
from nmt.experiments.bottleneck import resolve_split
from nmt.experiments.claims_report import change_text, plot_scaling, render
from nmt.experiments.results import (
    AttentionOptions,
    Claim,
    Claims,
    ClaimsReport,
    ClaimsRun,
    ClaimVerdict,
    GradientChange,
    HardClaim,
    HardSeed,
    NamedPairedTest,
    ProbeStats,
    ScalingBleu,
    ScalingClaim,
    ScalingRow,
    ScalingSeed,
    ScalingStage,
    Scored,
    ScorerRow,
    ScorersClaim,
    ScorersSeed,
    SeedClaim,
    TemperatureClaim,
    TemperatureRow,
    TemperatureSeed,
)
from nmt.experiments.runner import Job, RunResult, compose_run, run_jobs
from nmt.experiments.verdicts import (
    CLAIM_QUESTIONS,
    all_or_any,
    budget_text,
    comparison_verdict,
    differs_verdict,
    magnitude_verdict,
    seeds_verdict,
)
from nmt.io import make_out_dir, safe_name, write_json, write_text
from nmt.metrics.scores import corpus_scores, length_stats, sentence_stats
from nmt.metrics.significance import bootstrap_interval, paired_bootstrap, paired_mean_bootstrap, ratio_bootstrap
from nmt.models import build_model, model_class
from nmt.models.base import lengths_to_mask
from nmt.runtime import hardware
from nmt.training.checkpoint import load_model
from nmt.training.step import sequence_loss

CLAIMS = ("scaling", "temperature", "hard", "scorers")
HARD_TRAINED = "hard=trained"
BASE = "base"


# Attention statistics -----------------------------------------------------------------------------------------
@dataclass
class Probe:
    """`attention_probe`'s per-sentence statistics (means over heads and target steps), and the gradient norm of
    each query/key projection the scorer has (averaged over the probe batches)."""

    entropy: list[float] = field(default_factory=list)
    max_weight: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    raw_grad_norm: list[float] = field(default_factory=list)
    param_grad: dict[str, float] = field(default_factory=dict)

    def means(self) -> ProbeStats:
        """The means over sentences."""
        return ProbeStats(entropy=mean(self.entropy), max_weight=mean(self.max_weight), grad_norm=mean(self.grad_norm),
                          raw_grad_norm=mean(self.raw_grad_norm), param_grad=self.param_grad)


def attention_probe(model: torch.nn.Module, batches: list[Any], device: torch.device) -> Probe:
    """Teacher-forced pass of an `AttentionSeq2Seq` with gradients taken where the attention scores are made.

    For every decoder step: entropy (nats) and max of the attention weights, and the L2 norm over source
    positions of d loss / d scores, the loss being the summed token cross-entropy (so a row's gradient is on
    the scale of one token's loss): at the scorer's output (after the 1/sqrt(d_k) scaling, "grad_norm") and,
    for dot scorers, at the raw q.k before it ("raw_grad_norm"), per sentence, and the gradient norms of the
    query/key projections (`Probe`).
    """
    attention = model.decoder.attention
    scorer = attention.scorer
    scale = getattr(scorer, "scale", None)  # dot scorers: the module that turns q.k into the scores
    captured: list[tuple[torch.Tensor, torch.Tensor]] = []

    def keep(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        raw = inputs[0] if scale is not None else output
        output.retain_grad()
        raw.retain_grad()
        captured.append((raw, output))

    handle = (scale if scale is not None else scorer).register_forward_hook(keep)
    projections = {name: getattr(scorer, name) for name in ("query_proj", "key_proj")
                   if isinstance(getattr(scorer, name, None), torch.nn.Linear)}
    was_training = model.training
    model.eval()  # no dropout; gradients still flow
    out = Probe()
    param_grads: dict[str, list[float]] = {name: [] for name in projections}
    try:
        for batch in batches:
            batch = batch.to(device)
            captured.clear()
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                logits = model(batch.src, batch.src_lens, batch.tgt_in)  # (B, T, V)
                sequence_loss(logits, batch.tgt_out).backward()
            scores = torch.stack([c[1].detach() for c in captured], dim=1).float()  # (B, T, h, S)
            grads = torch.stack([c[1].grad for c in captured], dim=1).float()
            raw_grads = torch.stack([c[0].grad for c in captured], dim=1).float()
            pad = ~lengths_to_mask(batch.src_lens, batch.src.size(1), batch.src.device)[:, None, None, :]
            weights = torch.softmax(scores.masked_fill(pad, float("-inf")) / attention.temperature, dim=-1)
            entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1)  # (B, T, h)
            steps = (batch.tgt_out != PAD_ID).float()  # (B, T)
            n = steps.sum(1)
            for name, value in (("entropy", entropy), ("max_weight", weights.amax(-1)),
                                ("grad_norm", grads.masked_fill(pad, 0.0).norm(dim=-1)),
                                ("raw_grad_norm", raw_grads.masked_fill(pad, 0.0).norm(dim=-1))):
                getattr(out, name).extend(((value.mean(-1) * steps).sum(1) / n).tolist())
            for name, proj in projections.items():
                param_grads[name].append(float(proj.weight.grad.norm()))
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    out.param_grad = {name: mean(v) for name, v in param_grads.items()}
    return out


def synthetic_probe(d_k: int, scaled: bool, queries: int = 2000, keys: int = 20, seed: int = 0) -> ProbeStats:
    """Vaswani et al.'s premise, without a model: q, k with unit-variance components, so q.k has variance d_k.

    Upstream of the softmax sits a context sum_s p_s v_s read by a random linear loss u . context (v, u also
    unit-variance), so the gradient at the scores is J^T (V u) with J the softmax Jacobian: it vanishes when
    the softmax saturates. The same random draws for scaled and unscaled. Returns mean entropy, max weight, and
    gradient norm at the scores ("grad_norm", after the 1/sqrt(d_k)) and at q.k ("raw_grad_norm", the chain rule
    through the scaling) over the queries.
    """
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(queries, d_k, generator=g), torch.randn(queries, keys, d_k, generator=g)
    v, u = torch.randn(queries, keys, d_k, generator=g), torch.randn(queries, d_k, generator=g)
    factor = 1.0 / math.sqrt(d_k) if scaled else 1.0
    scores = (k @ q.unsqueeze(-1)).squeeze(-1) * factor  # (queries, keys)
    scores.requires_grad_(True)
    weights = torch.softmax(scores, dim=-1)
    ((weights.unsqueeze(-1) * v).sum(1) * u).sum().backward()
    entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1)
    grad_norm = scores.grad.norm(dim=-1).mean().item()
    return ProbeStats(entropy=entropy.mean().item(), max_weight=weights.amax(-1).mean().item(), grad_norm=grad_norm,
                      raw_grad_norm=grad_norm * factor)


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def decode_entropy(attention: list[torch.Tensor]) -> list[float]:
    """Per sentence, mean entropy (nats) of the attention rows (T, S) of a decoded translation."""
    out = []
    for a in attention:
        a = a.float().clamp_min(1e-30)
        out.append(float(-(a * a.log()).sum(-1).mean()))
    return out


# The experiment ------------------------------------------------------------------------------------------------
def variants(cfg: DictConfig) -> dict[str, list[str]]:
    """Variant name -> model overrides over the base model; identical resolved configs train once."""
    out: dict[str, list[str]] = {BASE: []}
    if "scorers" in cfg.claims:
        out |= {f"scorer={s}": [f"model.scorer={s}", "model.heads=1", "model.attention_dim=0"] for s in cfg.scorers}
        out |= {f"heads={h}": [f"model.heads={h}"] for h in cfg.heads}
    if "scaling" in cfg.claims:
        # Queries and keys projected to d_k at every size (also at the decoder's own size), so that only d_k
        # changes along the axis, never the kind of scorer.
        out |= {f"d_k={d}/{s}": [f"model.scorer={s}", "model.heads=1", f"model.attention_dim={d}"]
                for d in cfg.d_k for s in ("dot", "scaled_dot")}
    if "hard" in cfg.claims:
        out[HARD_TRAINED] = ["model.hard=true"]
    return out


@dataclass
class SeedRuns:
    """One seed's trained variants and their decoded test split: what that seed's claims are analysed from."""

    cfg: DictConfig
    seed: int
    configs: dict[str, DictConfig]  # variant name -> its resolved run config
    results: dict[str, RunResult]  # variant name -> its trained run
    hyps: dict[str, list[str]]  # variant name -> its decoded test split
    refs: list[str]
    sources: list[str]
    corpus: Any
    device: torch.device
    n_samples: int  # bootstrap / randomisation samples


def probe_batches(corpus: Any, n: int) -> list[Any]:
    """The first `n` validation pairs as batches of 32."""
    valid = corpus.split("valid")
    n = min(n, len(valid))
    src = corpus.tokenizer.encode_src(list(valid["src"][:n]))
    tgt = corpus.tokenizer.encode_tgt(list(valid["tgt"][:n]))
    return [collate(src[i:i + 32], tgt[i:i + 32], list(range(i, min(i + 32, n)))) for i in range(0, n, 32)]


def scored(hyps: list[str], refs: list[str], n: int) -> Scored:
    """BLEU with its 95% interval, chrF, length ratio (hypothesis / reference tokens) and brevity penalty."""
    s = corpus_scores(hyps, refs)
    lengths = length_stats(sentence_stats(hyps, refs).sum(0))
    return Scored(bleu=s.bleu, bleu_ci=list(bootstrap_interval(hyps, refs, n)), chrf=s.chrf, ratio=lengths.ratio,
                  brevity_penalty=lengths.brevity_penalty, signature=s.signatures["bleu"])


def claims_budget(runs: list[RunResult], batch_tokens: int) -> str:
    """"at 300 updates of 2.048k tokens" over every run; says so when a run stopped at the wall-clock limit (its
    update count then depends on the machine)."""
    text = budget_text([r.steps for r in runs], batch_tokens)
    if any(r.stop_reason == "max_minutes" for r in runs):
        text += " (some runs stopped at train.max_minutes: their update counts depend on the machine)"
    return text


def train_variants(cfg: DictConfig, log: Callable[[str], None]) -> tuple[Path, Any, str, dict, dict]:
    """Compose and check every variant of every seed, then make the output directory (a mistake in the runs'
    options leaves nothing behind) and train. Returns (out_dir, corpus, split, configs, results), configs and
    results keyed by (variant, seed)."""
    common = [f"data={cfg.data}", f"model={cfg.model}", f"train={cfg.train}", f"decode={cfg.decode}", *cfg.overrides]
    base = compose_run(common)
    if not model_class(base.model.arch).attention_cell:  # the claims vary that cell's options
        raise NMTError(f"claims need an rnn_attention base model, model={cfg.model} is {base.model.arch}")
    corpus = prepare_corpus(base.data, log=lambda msg: log(f"[{cfg.data}] {msg}"))
    split = resolve_split(corpus, cfg.split)
    configs = {(name, int(seed)): compose_run(common + extra + [f"train.seed={seed}"])
               for seed in cfg.seeds for name, extra in variants(cfg).items()}
    tok = corpus.tokenizer
    for run_cfg in configs.values():  # fail on a bad combination (e.g. heads vs sizes) before training
        build_model(run_cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.joint)
    out = make_out_dir(cfg.out_dir, Path("outputs") / "claims")
    log(f"claims: {out}")
    jobs = [Job(f"{name}/seed{seed}", OmegaConf.to_container(c, resolve=True),
                str(out / "runs" / f"{safe_name(name)}-seed{seed}"), [split], int(cfg.threads))
            for (name, seed), c in configs.items()]
    results = dict(zip(configs, run_jobs(jobs, int(cfg.workers), log), strict=True))
    return out, corpus, split, configs, results


def run_claims(cfg: DictConfig, preset: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Run the selected claims as configured; returns the output directory."""
    unknown = [c for c in cfg.claims if c not in CLAIMS]
    if unknown or not cfg.claims:
        raise NMTError(f"unknown claims {unknown}; choose from {', '.join(CLAIMS)}")
    if not cfg.seeds:
        raise NMTError("seeds must not be empty")
    started = time.time()
    out, corpus, split, configs, results = train_variants(cfg, log)
    if cfg.threads > 0:  # training is over: decoding and probes may use every worker's threads
        torch.set_num_threads(min(int(cfg.threads) * int(cfg.workers), os.cpu_count() or 1))

    dataset = corpus.split(split)
    refs, sources = list(dataset["tgt"]), list(dataset["src"])
    names = list(variants(cfg))
    base = configs[(BASE, int(cfg.seeds[0]))]
    budget = claims_budget(list(results.values()), int(base.train.batch_tokens))
    runs = [ClaimsRun(**vars(r), model=AttentionOptions(**{f.name: configs[key].model[f.name]
                                                           for f in fields(AttentionOptions)}))
            for key, r in results.items()]
    report = ClaimsReport(
        title=f"Attention claims on {corpus.name} {split}", preset=preset,
        config=OmegaConf.to_container(cfg, resolve=True), hardware=hardware(int(cfg.workers), int(cfg.threads)),
        split=split, num_sentences=len(refs), decode=OmegaConf.to_container(base.decode, resolve=True),
        budget=budget, runs=runs, claims=Claims())
    per_seed: dict[str, dict[str, SeedClaim]] = {}
    for seed in (int(x) for x in cfg.seeds):
        mine = {name: results[(name, seed)] for name in names}
        seed_runs = SeedRuns(cfg=cfg, seed=seed, configs={name: configs[(name, seed)] for name in names},
                             results=mine, hyps={name: r.hypotheses(split) for name, r in mine.items()},
                             refs=refs, sources=sources, corpus=corpus, device=torch.device(mine[BASE].device),
                             n_samples=int(cfg.bootstrap_samples))
        per_seed[str(seed)] = {}
        for claim in cfg.claims:
            log(f"claim: {claim}, seed {seed} ...")
            per_seed[str(seed)][claim] = CLAIM_FUNCTIONS[claim](seed_runs)
    for claim in cfg.claims:
        setattr(report.claims, claim, aggregate_seeds(claim, {seed: c[claim] for seed, c in per_seed.items()}, budget))
    if report.claims.scaling:
        seed = str(cfg.seeds[0])
        report.claims.scaling.plot = plot_scaling(report.claims.scaling.seeds[seed], out / "scaling.png",
                                                  f"seed {seed}, trained {budget}")
    report.seconds = time.time() - started
    write_json(out / "report.json", report)
    write_text(out / "report.md", render(report))
    for claim in cfg.claims:
        log(f"{claim}: {getattr(report.claims, claim).summary}")
    log(f"report: {out / 'report.md'}")
    return out


def aggregate_seeds(claim: str, seeds: dict[str, SeedClaim], budget: str) -> Claim:
    """Each verdict of a claim over seeds (the label every seed gives, else inconclusive), with its question and
    the budget; the summary names every verdict, so no claim reads as its easiest part alone."""
    verdicts = {}
    for key, question in CLAIM_QUESTIONS[claim].items():
        labels = [c.verdicts[key] for c in seeds.values() if key in c.verdicts]
        if labels:
            verdicts[key] = ClaimVerdict(question, seeds_verdict(labels), labels)
    summary = "; ".join(f"{v.question}: {v.label}" for v in verdicts.values()) + f" ({budget})"
    return CLAIM_TYPES[claim](verdicts=verdicts, budget=budget, summary=summary, seeds=seeds)


# Scaling ---------------------------------------------------------------------------------------------------------
def gradient_change(scaled: list[float], unscaled: list[float], n: int) -> GradientChange:
    """Scaled / unscaled mean gradient norm over sentences (`ratio_bootstrap`), with the change in percent and
    its 95% interval."""
    test = ratio_bootstrap(scaled, unscaled, n)
    return GradientChange(**vars(test), change_pct=100.0 * (test.ratio - 1.0),
                          change_ci=[None if x is None else 100.0 * (x - 1.0) for x in test.ratio_ci])


def probe_stage(runs: SeedRuns, names: dict[str, str], stage: str, batches: list[Any]) -> ScalingStage:
    """Attention statistics of the dot and scaled_dot models `names` at initialisation or after training."""
    tok = runs.corpus.tokenizer
    stats = {}
    for scorer, name in names.items():
        if stage == "init":  # the trainer's own initialisation: same seed, same parameter layout
            torch.manual_seed(runs.seed)
            model = build_model(runs.configs[name].model, tok.src_vocab_size, tok.tgt_vocab_size, tok.joint)
            model.to(runs.device)
        else:
            model = load_model(runs.results[name].checkpoint, runs.device).model
        stats[scorer] = attention_probe(model, batches, runs.device)
    scaled, dot = stats["scaled_dot"], stats["dot"]
    return ScalingStage(dot=dot.means(), scaled_dot=scaled.means(),
                        grad_norm_change=gradient_change(scaled.grad_norm, dot.grad_norm, runs.n_samples),
                        raw_grad_norm_change=gradient_change(scaled.raw_grad_norm, dot.raw_grad_norm, runs.n_samples))


def _scaling(runs: SeedRuns) -> ScalingSeed:
    n = runs.n_samples
    batches = probe_batches(runs.corpus, int(runs.cfg.probe_sentences))
    rows = []
    for d in runs.cfg.d_k:
        names = {s: f"d_k={d}/{s}" for s in ("dot", "scaled_dot")}
        syn = {s: synthetic_probe(int(d), s == "scaled_dot") for s in ("dot", "scaled_dot")}
        synthetic = ScalingStage(dot=syn["dot"], scaled_dot=syn["scaled_dot"], raw_grad_change_pct=100.0 * (
            syn["scaled_dot"].raw_grad_norm / syn["dot"].raw_grad_norm - 1.0))
        bleu = ScalingBleu(**{s: scored(runs.hyps[name], runs.refs, n) for s, name in names.items()},
                           test=paired_bootstrap(runs.hyps[names["scaled_dot"]], runs.hyps[names["dot"]], runs.refs,
                                                 n))
        rows.append(ScalingRow(d_k=int(d), init=probe_stage(runs, names, "init", batches),
                               trained=probe_stage(runs, names, "trained", batches), synthetic=synthetic, bleu=bleu))
    top = max(rows, key=lambda r: r.d_k)
    change, bleu = top.trained.raw_grad_norm_change, top.bleu.test
    assert change is not None  # a trained stage always has its test
    # The source's claim is about gradients (softmax saturation at large d_k), measured where scaling acts: at
    # q.k. Direction: scaling keeps larger gradients (log-ratio > 0). Magnitude: the source says "up to 40%".
    verdicts = {"gradient": comparison_verdict(math.log(change.ratio), change.p_value),
                "magnitude": magnitude_verdict(change.change_ci),
                "bleu": comparison_verdict(bleu.difference, bleu.p_value, (bleu.system, bleu.baseline),
                                           float(runs.cfg.min_bleu))}
    summary = (f"at d_k={top.d_k} after training, scaled / unscaled gradient norm at q.k = {change_text(change)}, "
               f"{p_text(change.p_value, n)}; BLEU "
               f"scaled - unscaled {bleu.difference:+.2f} ({p_text(bleu.p_value, n)})")
    return ScalingSeed(verdicts=verdicts, summary=summary, rows=rows)


# Temperature -----------------------------------------------------------------------------------------------------
def _temperature(runs: SeedRuns) -> TemperatureSeed:
    n = runs.n_samples
    taus = sorted(float(t) for t in runs.cfg.temperatures)
    if len(taus) < 2 or 1.0 not in taus:
        raise NMTError(f"temperatures must hold 1.0 (the trained value) and another one, got {taus}")
    rows, hyps, ents = [], {}, {}
    for tau in taus:
        loaded = load_model(runs.results[BASE].checkpoint, runs.device, [f"model.temperature={tau}"])
        t = translate(loaded.model, loaded.tokenizer, runs.sources, loaded.cfg.decode, runs.device,
                      with_attention=True)
        hyps[tau], ents[tau] = t.hypotheses, decode_entropy(t.attention)
    for tau in taus:
        rows.append(TemperatureRow(**vars(scored(hyps[tau], runs.refs, n)), temperature=tau, entropy=mean(ents[tau]),
                                   vs_trained=None if tau == 1.0 else paired_bootstrap(hyps[1.0], hyps[tau],
                                                                                         runs.refs, n)))
    # Verdict 1: entropy rises with the temperature (each step up, paired over sentences).
    steps = [paired_mean_bootstrap(ents[b], ents[a], n) for a, b in zip(taus, taus[1:], strict=False)]
    entropy_votes = [comparison_verdict(s.difference, s.p_value) for s in steps]
    # Verdict 2: the trained temperature (1.0) translates best, against every other one.
    bleu_votes = [comparison_verdict(t.difference, t.p_value, (t.system, t.baseline), float(runs.cfg.min_bleu))
                  for t in (r.vs_trained for r in rows) if t is not None]
    verdicts = {"entropy": all_or_any(entropy_votes), "bleu": all_or_any(bleu_votes)}
    entropies = ", ".join(f"{r.entropy:.3f}" for r in rows)
    bleus = ", ".join(f"{r.bleu:.2f}" for r in rows)
    summary = f"attention entropy {entropies} nats and BLEU {bleus} at temperature {', '.join(f'{t:g}' for t in taus)}"
    return TemperatureSeed(verdicts=verdicts, summary=summary, rows=rows, entropy_steps=steps)


# Hard attention --------------------------------------------------------------------------------------------------
def _hard(runs: SeedRuns) -> HardSeed:
    """Soft attention against hard (argmax) attention, switched on at inference in the soft-trained model and
    trained with the straight-through estimator (forward: one-hot argmax; backward: the softmax's gradient)."""
    n, refs = runs.n_samples, runs.refs
    loaded = load_model(runs.results[BASE].checkpoint, runs.device, ["model.hard=true"])
    switched = translate(loaded.model, loaded.tokenizer, runs.sources, loaded.cfg.decode, runs.device).hypotheses
    soft = runs.hyps[BASE]
    systems = {"soft": soft, "hard at inference": switched, "hard trained": runs.hyps[HARD_TRAINED]}
    rows = {name: scored(h, refs, n) for name, h in systems.items()}
    tests, votes = {}, {}
    for key, name in (("inference", "hard at inference"), ("trained", "hard trained")):
        test = tests[name] = paired_bootstrap(soft, systems[name], refs, n)
        votes[key] = comparison_verdict(test.difference, test.p_value, (test.system, test.baseline),
                                        float(runs.cfg.min_bleu))
    summary = "soft - hard attention: " + ", ".join(
        f"{name} {t.difference:+.2f} BLEU ({p_text(t.p_value, n)}), "
        f"chrF {rows['soft'].chrf - rows[name].chrf:+.2f}, length ratio {rows[name].ratio:.3f} vs "
        f"{rows['soft'].ratio:.3f}" for name, t in tests.items())
    return HardSeed(verdicts=votes, summary=summary, rows=rows, tests=tests)


# Scorers and heads -----------------------------------------------------------------------------------------------
def _scorers(runs: SeedRuns) -> ScorersSeed:
    n, min_bleu = runs.n_samples, float(runs.cfg.min_bleu)
    reference = f"scorer={runs.configs[BASE].model.scorer}"
    names = [f"scorer={s}" for s in runs.cfg.scorers] + [f"heads={h}" for h in runs.cfg.heads]
    rows = []
    for name in names:
        m, result = runs.configs[name].model, runs.results[name]
        same = result.run_dir == runs.results[reference].run_dir  # the reference run itself
        rows.append(ScorerRow(**vars(scored(runs.hyps[name], runs.refs, n)), name=name, scorer=m.scorer,
                              heads=m.heads, hidden=m.hidden, attention_dim=m.attention_dim,
                              num_parameters=result.num_parameters, steps=result.steps,
                              vs_reference=None if same else paired_bootstrap(runs.hyps[name], runs.hyps[reference],
                                                                              runs.refs, n)))
    scorer_rows = [r for r in rows if r.name.startswith("scorer=")]
    verdicts = {"scorers_differ": differs_verdict([r.vs_reference for r in scorer_rows if r.vs_reference], min_bleu)}
    heads_test = None
    head_rows = sorted((r for r in rows if r.name.startswith("heads=")), key=lambda r: r.heads)
    if len(head_rows) >= 2:  # "more heads translate better": the most heads against the fewest
        many, one = head_rows[-1], head_rows[0]
        test = paired_bootstrap(runs.hyps[many.name], runs.hyps[one.name], runs.refs, n)
        heads_test = NamedPairedTest(**vars(test), system_name=many.name, baseline_name=one.name)
        verdicts["more_heads"] = comparison_verdict(heads_test.difference, heads_test.p_value,
                                                    (heads_test.system, heads_test.baseline), min_bleu)
    best = max(scorer_rows, key=lambda r: r.bleu)
    summary = f"best {best.name} at {best.bleu:.2f} BLEU; against {reference}: " + ", ".join(
        f"{r.name} {r.vs_reference.difference:+.2f} ({p_text(r.vs_reference.p_value, n)})"
        for r in scorer_rows if r.vs_reference is not None)
    heads_summary = None if heads_test is None else (
        f"BLEU of {heads_test.system_name} - {heads_test.baseline_name}: {heads_test.difference:+.2f} "
        f"[{heads_test.difference_ci[0]:+.2f}, {heads_test.difference_ci[1]:+.2f}] "
        f"({p_text(heads_test.p_value, n)}) at {head_rows[-1].num_parameters:,} / "
        f"{head_rows[0].num_parameters:,} parameters")
    return ScorersSeed(verdicts=verdicts, summary=summary, rows=rows, reference=reference, heads_test=heads_test,
                       heads_summary=heads_summary)


CLAIM_FUNCTIONS: dict[str, Callable[[SeedRuns], SeedClaim]] = {
    "scaling": _scaling, "temperature": _temperature, "hard": _hard, "scorers": _scorers}
CLAIM_TYPES: dict[str, type[Claim]] = {
    "scaling": ScalingClaim, "temperature": TemperatureClaim, "hard": HardClaim, "scorers": ScorersClaim}
