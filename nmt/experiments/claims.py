"""Side claims about attention, each measured and given a verdict computed from the numbers, in every seed.

- scaling: scaled (q.k / sqrt(d_k)) vs unscaled dot-product attention for several d_k at a fixed model size
  (queries and keys projected to d_k, model.attention_dim; at the decoder's own size the parameter-free
  scorers): softmax entropy, max weight, and the gradient where scaling acts (at the raw q.k, at the scaled
  scores, at the query/key projections), at initialisation (the model's own random queries and keys, and
  unit-variance random vectors, the premise of Vaswani et al. 2017) and after training; BLEU of both.
- temperature: softmax temperature at inference on the trained base model: attention entropy and BLEU.
- hard: argmax vs soft attention, switched on at inference and trained with (straight-through): BLEU.
- scorers: dot / scaled_dot (parameter-free) / general / additive, and 1 vs more heads at an equal parameter
  count, trained at equal budget: BLEU.

Every variant trains once per seed; each claim is analysed per seed and its verdict is the seeds' common one
(inconclusive when they disagree). `run_claims` writes <out_dir>/report.md, report.json and scaling.png.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf

from nmt.config import PAD_ID
from nmt.errors import NMTError
from nmt.evaluation.report import fmt_p
from nmt.experiments.runner import Job, compose_run, job_dict, run_jobs
from nmt.experiments.verdicts import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, comparison_verdict
from nmt.io import make_out_dir, read_text_lines, safe_name, write_json, write_text
from nmt.metrics import paired_mean_bootstrap
from nmt.runtime import hardware

CLAIMS = ("scaling", "temperature", "hard", "scorers")
HARD_TRAINED = "hard=trained"
SOURCE_GRADIENT_CHANGE = "up to 40%"  # the source's figure for what scaling does to the gradient norm
BASE = "base"


# Attention statistics -----------------------------------------------------------------------------------------
def attention_probe(model: torch.nn.Module, batches: list[Any], device: torch.device) -> dict[str, Any]:
    """Teacher-forced pass of an `AttentionSeq2Seq` with gradients taken where the attention scores are made.

    For every decoder step: entropy (nats) and max of the attention weights, and the L2 norm over source
    positions of d loss / d scores, the loss being the summed token cross-entropy (so a row's gradient is on
    the scale of one token's loss): at the scorer's output (after the 1/sqrt(d_k) scaling, "grad_norm") and,
    for dot scorers, at the raw q.k before it ("raw_grad_norm"). Returns per-sentence means over heads and
    target steps as lists, and "param_grad": the gradient norm of each query/key projection the scorer has,
    averaged over the probe batches.
    """
    from nmt.models.base import lengths_to_mask

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
    out: dict[str, Any] = {"entropy": [], "max_weight": [], "grad_norm": [], "raw_grad_norm": []}
    param_grads: dict[str, list[float]] = {name: [] for name in projections}
    try:
        for batch in batches:
            batch = batch.to(device)
            captured.clear()
            model.zero_grad(set_to_none=True)
            with torch.enable_grad():
                logits = model(batch.src, batch.src_lens, batch.tgt_in)  # (B, T, V)
                F.cross_entropy(logits.float().flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD_ID,
                                reduction="sum").backward()
            scores = torch.stack([c[1].detach() for c in captured], dim=1).float()  # (B, T, h, S)
            grads = torch.stack([c[1].grad for c in captured], dim=1).float()
            raw_grads = torch.stack([c[0].grad for c in captured], dim=1).float()
            pad = ~lengths_to_mask(batch.src_lens, batch.src.size(1))[:, None, None, :]
            weights = torch.softmax(scores.masked_fill(pad, float("-inf")) / attention.temperature, dim=-1)
            entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1)  # (B, T, h)
            steps = (batch.tgt_out != PAD_ID).float()  # (B, T)
            n = steps.sum(1)
            for name, value in (("entropy", entropy), ("max_weight", weights.amax(-1)),
                                ("grad_norm", grads.masked_fill(pad, 0.0).norm(dim=-1)),
                                ("raw_grad_norm", raw_grads.masked_fill(pad, 0.0).norm(dim=-1))):
                out[name] += ((value.mean(-1) * steps).sum(1) / n).tolist()
            for name, proj in projections.items():
                param_grads[name].append(float(proj.weight.grad.norm()))
    finally:
        handle.remove()
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    out["param_grad"] = {name: mean(v) for name, v in param_grads.items()}
    return out


def synthetic_probe(d_k: int, scaled: bool, queries: int = 2000, keys: int = 20, seed: int = 0) -> dict[str, float]:
    """Vaswani et al.'s premise: q, k with unit-variance components, so q.k has variance d_k.

    Upstream of the softmax sits a context sum_s p_s v_s read by a random linear loss u . context (v, u also
    unit-variance), so the gradient at the scores is J^T (V u) with J the softmax Jacobian: it vanishes when
    the softmax saturates. The same random draws for scaled and unscaled. Returns mean entropy, max weight
    and gradient norm over the queries.
    """
    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(queries, d_k, generator=g), torch.randn(queries, keys, d_k, generator=g)
    v, u = torch.randn(queries, keys, d_k, generator=g), torch.randn(queries, d_k, generator=g)
    scores = (k @ q.unsqueeze(-1)).squeeze(-1) * (1.0 / math.sqrt(d_k) if scaled else 1.0)  # (queries, keys)
    scores.requires_grad_(True)
    weights = torch.softmax(scores, dim=-1)
    ((weights.unsqueeze(-1) * v).sum(1) * u).sum().backward()
    entropy = -(weights * weights.clamp_min(1e-30).log()).sum(-1)
    return {"entropy": entropy.mean().item(), "max_weight": weights.amax(-1).mean().item(),
            "grad_norm": scores.grad.norm(dim=-1).mean().item()}


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
def variants(cfg: DictConfig, base: DictConfig) -> dict[str, list[str]]:
    """Variant name -> model overrides over the base model; identical resolved configs train once."""
    out: dict[str, list[str]] = {BASE: []}
    plain = {s: [f"model.scorer={s}", "model.heads=1", "model.attention_dim=0"] for s in ("dot", "scaled_dot")}
    if "scorers" in cfg.claims:
        out |= {f"scorer={s}": [f"model.scorer={s}", "model.heads=1", "model.attention_dim=0"] for s in cfg.scorers}
        out |= {f"heads={h}": [f"model.heads={h}"] for h in cfg.heads}
    if "scaling" in cfg.claims:
        for d in cfg.d_k:
            for s in ("dot", "scaled_dot"):
                # At the decoder's own size the parameter-free scorers already have d_k = hidden.
                out[f"d_k={d}/{s}"] = plain[s] if int(d) == int(base.model.hidden) else [
                    f"model.scorer={s}", "model.heads=1", f"model.attention_dim={d}"]
    if "hard" in cfg.claims:
        out[HARD_TRAINED] = ["model.hard=true"]
    return out


def probe_batches(corpus: Any, n: int) -> list[Any]:
    from nmt.data.batching import collate

    valid = corpus.split("valid")
    n = min(n, len(valid))
    src = corpus.tokenizer.encode_src(list(valid["src"][:n]))
    tgt = corpus.tokenizer.encode_tgt(list(valid["tgt"][:n]))
    return [collate(src[i:i + 32], tgt[i:i + 32], list(range(i, min(i + 32, n)))) for i in range(0, n, 32)]


def scored(hyps: list[str], refs: list[str], n: int) -> dict[str, Any]:
    from nmt.metrics import bootstrap_interval, corpus_scores

    s = corpus_scores(hyps, refs)
    return {"bleu": s["bleu"], "bleu_ci": list(bootstrap_interval(hyps, refs, n)), "chrf": s["chrf"],
            "signature": s["signatures"]["bleu"]}


def run_claims(cfg: DictConfig, preset: str | None = None, log: Callable[[str], None] = print) -> Path:
    """Run the selected claims as configured; returns the output directory."""
    from nmt.data.corpus import prepare_corpus
    from nmt.experiments.bottleneck import resolve_split
    from nmt.experiments.claims_report import plot_scaling, render
    from nmt.models import build_model

    unknown = [c for c in cfg.claims if c not in CLAIMS]
    if unknown or not cfg.claims:
        raise NMTError(f"unknown claims {unknown}; choose from {', '.join(CLAIMS)}")
    if not cfg.seeds:
        raise NMTError("seeds must not be empty")
    started = time.time()
    out = make_out_dir(cfg.out_dir, Path("outputs") / "claims")
    log(f"claims: {out}")
    common = [f"data={cfg.data}", f"model={cfg.model}", f"train={cfg.train}", f"decode={cfg.decode}", *cfg.overrides]
    base = compose_run(common)
    if base.model.arch != "rnn_attention":
        raise NMTError(f"claims need an rnn_attention base model, model={cfg.model} is {base.model.arch}")
    corpus = prepare_corpus(base.data, log=lambda msg: log(f"[{cfg.data}] {msg}"))
    split = resolve_split(corpus, cfg.split)
    extras = variants(cfg, base)
    configs = {(name, int(seed)): compose_run(common + extra + [f"train.seed={seed}"])
               for seed in cfg.seeds for name, extra in extras.items()}
    tok = corpus.tokenizer
    for run_cfg in configs.values():  # fail on a bad combination (e.g. heads vs sizes) before training
        build_model(run_cfg.model, tok.src_vocab_size, tok.tgt_vocab_size, tok.joint)
    jobs = [Job(f"{name}/seed{seed}", OmegaConf.to_container(c, resolve=True),
                str(out / "runs" / f"{safe_name(name)}-seed{seed}"), [split], int(cfg.threads))
            for (name, seed), c in configs.items()]
    results = dict(zip(configs, run_jobs(jobs, int(cfg.workers), log), strict=True))
    if cfg.threads > 0:  # training is over: decoding and probes may use every worker's threads
        torch.set_num_threads(min(int(cfg.threads) * int(cfg.workers), os.cpu_count() or 1))

    dataset = corpus.split(split)
    refs, sources = list(dataset["tgt"]), list(dataset["src"])
    report: dict[str, Any] = {
        "title": f"Attention claims on {corpus.name} {split}",
        "preset": preset, "config": OmegaConf.to_container(cfg, resolve=True),
        "hardware": hardware(int(cfg.workers), int(cfg.threads)), "split": split, "num_sentences": len(refs),
        "decode": OmegaConf.to_container(base.decode, resolve=True),
        "runs": [job_dict(j) | {"model": {k: configs[key].model[k] for k in ("scorer", "heads", "hidden",
                                                                             "attention_dim", "hard")}} | r
                 for j, (key, r) in zip(jobs, results.items(), strict=True)],
        "claims": {},
    }
    per_seed: dict[int, dict[str, Any]] = {}
    for seed in (int(x) for x in cfg.seeds):
        mine = {name: results[(name, seed)] for name in extras}
        ctx = {"cfg": cfg, "seed": seed, "configs": {name: configs[(name, seed)] for name in extras},
               "results": mine, "refs": refs, "sources": sources, "n": int(cfg.bootstrap_samples),
               "hyps": {name: read_text_lines(r["decoded"][split]["file"], "hypotheses") for name, r in mine.items()},
               "device": torch.device(mine[BASE]["device"]), "corpus": corpus, "log": log}
        per_seed[seed] = {}
        for claim in cfg.claims:
            log(f"claim: {claim}, seed {seed} ...")
            per_seed[seed][claim] = CLAIM_FUNCTIONS[claim](ctx)
    for claim in cfg.claims:
        seeds = {seed: per_seed[seed][claim] for seed in per_seed}
        labels = [c["verdict"] for c in seeds.values()]
        report["claims"][claim] = {
            "verdict": labels[0] if all(x == labels[0] for x in labels) else INCONCLUSIVE,
            "per_seed": labels, "seeds": seeds,
            "summary": " | ".join(f"seed {seed}: {c['summary']}" for seed, c in seeds.items())}
    if "scaling" in report["claims"]:
        first = report["claims"]["scaling"]["seeds"][int(cfg.seeds[0])]
        report["claims"]["scaling"]["plot"] = plot_scaling(first, out / "scaling.png")
    report["seconds"] = time.time() - started
    write_json(out / "report.json", report)
    write_text(out / "report.md", render(report))
    for claim, c in report["claims"].items():
        log(f"{claim}: {c['verdict']} - {c['summary']}")
    log(f"report: {out / 'report.md'}")
    return out


def _change(test: dict[str, Any]) -> dict[str, Any]:
    """A paired test of scaled - unscaled gradient norms as a percent change of the unscaled one, with its 95%
    interval."""
    base = test["b"]
    if base <= 0:
        return {"pct": None, "ci": None, "p_value": test["p_value"]}
    return {"pct": 100.0 * test["difference"] / base, "ci": [100.0 * x / base for x in test["difference_ci"]],
            "p_value": test["p_value"]}


def _scaling(ctx: dict[str, Any]) -> dict[str, Any]:
    from nmt.metrics import paired_bootstrap
    from nmt.models import build_model
    from nmt.training.checkpoint import load_model

    cfg, tok, n = ctx["cfg"], ctx["corpus"].tokenizer, ctx["n"]
    batches = probe_batches(ctx["corpus"], int(cfg.probe_sentences))
    rows = []
    for d in cfg.d_k:
        row: dict[str, Any] = {"d_k": int(d), "projected": int(ctx["configs"][f"d_k={d}/dot"].model.attention_dim) > 0}
        names = {s: f"d_k={d}/{s}" for s in ("dot", "scaled_dot")}
        for stage in ("init", "trained"):
            stats = {}
            for s, name in names.items():
                if stage == "init":  # the trainer's own initialisation: same seed, same parameter layout
                    torch.manual_seed(int(ctx["seed"]))
                    model = build_model(ctx["configs"][name].model, tok.src_vocab_size, tok.tgt_vocab_size,
                                        tok.joint)
                    model.to(ctx["device"])
                else:
                    model = load_model(ctx["results"][name]["checkpoint"], ctx["device"]).model
                stats[s] = attention_probe(model, batches, ctx["device"])
            row[stage] = {s: {k: (mean(v) if isinstance(v, list) else v) for k, v in st.items()}
                          for s, st in stats.items()}
            for where in ("grad_norm", "raw_grad_norm"):
                test = paired_mean_bootstrap(stats["scaled_dot"][where], stats["dot"][where], n)
                row[stage][f"{where}_test"] = test
                row[stage][f"{where}_change"] = _change(test)
        row["synthetic"] = {s: synthetic_probe(int(d), s == "scaled_dot") for s in ("dot", "scaled_dot")}
        syn = row["synthetic"]
        row["synthetic"]["grad_change_pct"] = 100.0 * (syn["scaled_dot"]["grad_norm"] / syn["dot"]["grad_norm"] - 1)
        row["bleu"] = {s: scored(ctx["hyps"][name], ctx["refs"], n) for s, name in names.items()}
        row["bleu"]["test"] = paired_bootstrap(ctx["hyps"][names["scaled_dot"]], ctx["hyps"][names["dot"]],
                                               ctx["refs"], n)
        rows.append(row)
    top = max(rows, key=lambda r: r["d_k"])
    grad, bleu = top["trained"]["raw_grad_norm_test"], top["bleu"]["test"]
    change = top["trained"]["raw_grad_norm_change"]
    # The source's claim is about gradients (softmax saturation at large d_k), measured where scaling acts: at
    # q.k. Direction: scaling keeps larger gradients. Magnitude: the source says "up to 40%".
    verdicts = {"gradient": comparison_verdict(grad["difference"], grad["p_value"]),
                "magnitude": _magnitude_verdict(change),
                "bleu": comparison_verdict(bleu["difference"], bleu["p_value"], (bleu["system"], bleu["baseline"]),
                                           float(cfg.min_bleu))}
    pct = "-" if change["pct"] is None else f"{change['pct']:+.1f}% [{change['ci'][0]:+.1f}%, {change['ci'][1]:+.1f}%]"
    summary = (f"at d_k={top['d_k']} after training, scaling changes the gradient norm at q.k by {pct} "
               f"(p = {fmt_p(grad['p_value'])}; the source: {SOURCE_GRADIENT_CHANGE}: {verdicts['magnitude']}) and "
               f"BLEU by {bleu['difference']:+.2f} (p = {fmt_p(bleu['p_value'])})")
    return {"rows": rows, "verdicts": verdicts, "verdict": verdicts["gradient"], "summary": summary,
            "source_gradient_change": SOURCE_GRADIENT_CHANGE}


def _magnitude_verdict(change: dict[str, Any]) -> str:
    """"Up to 40%": supported when the 95% interval of the measured change overlaps (0%, 40%], not supported
    when it lies wholly above 40% or at or below 0%."""
    if change["ci"] is None:
        return INCONCLUSIVE
    lo, hi = change["ci"]
    return SUPPORTED if lo <= 40.0 and hi > 0.0 else NOT_SUPPORTED


def _temperature(ctx: dict[str, Any]) -> dict[str, Any]:
    from nmt.decoding.search import translate
    from nmt.metrics import paired_bootstrap
    from nmt.training.checkpoint import load_model

    cfg, n = ctx["cfg"], ctx["n"]
    taus = sorted(float(t) for t in cfg.temperatures)
    if len(taus) < 2 or 1.0 not in taus:
        raise NMTError(f"temperatures must hold 1.0 (the trained value) and another one, got {taus}")
    rows, hyps, ents = [], {}, {}
    for tau in taus:
        loaded = load_model(ctx["results"][BASE]["checkpoint"], ctx["device"], [f"model.temperature={tau}"])
        t = translate(loaded.model, loaded.tokenizer, ctx["sources"], loaded.cfg.decode, ctx["device"],
                      with_attention=True)
        hyps[tau], ents[tau] = t.hypotheses, decode_entropy(t.attention)
        rows.append({"temperature": tau, "entropy": mean(ents[tau]), **scored(t.hypotheses, ctx["refs"], n)})
    for row in rows:
        tau = row["temperature"]
        row["vs_trained"] = None if tau == 1.0 else paired_bootstrap(hyps[1.0], hyps[tau], ctx["refs"], n)
    # Claim 1: entropy rises with the temperature (each step up, paired over sentences).
    steps = [paired_mean_bootstrap(ents[b], ents[a], n) for a, b in zip(taus, taus[1:], strict=False)]
    entropy_votes = [comparison_verdict(s["difference"], s["p_value"]) for s in steps]
    # Claim 2: the trained temperature (1.0) translates best.
    bleu_votes = [comparison_verdict(t["difference"], t["p_value"], (t["system"], t["baseline"]), float(cfg.min_bleu))
                  for t in (r["vs_trained"] for r in rows) if t is not None]
    verdicts = {"entropy": _all_or_any(entropy_votes), "bleu": _all_or_any(bleu_votes)}
    entropies = ", ".join(f"{r['entropy']:.3f}" for r in rows)
    bleus = ", ".join(f"{r['bleu']:.2f}" for r in rows)
    summary = (f"Attention entropy {entropies} nats and BLEU {bleus} at temperature "
               f"{', '.join(f'{t:g}' for t in taus)}")
    return {"rows": rows, "entropy_steps": steps, "verdicts": verdicts, "verdict": verdicts["entropy"],
            "summary": summary}


def _all_or_any(votes: list[str]) -> str:
    """supported when every part is; not supported when any part is; else inconclusive."""
    if votes and all(v == SUPPORTED for v in votes):
        return SUPPORTED
    return NOT_SUPPORTED if NOT_SUPPORTED in votes else INCONCLUSIVE


def _hard(ctx: dict[str, Any]) -> dict[str, Any]:
    """Soft attention against hard (argmax) attention, switched on at inference in the soft-trained model and
    trained with (straight-through gradients)."""
    from nmt.decoding.search import translate
    from nmt.metrics import paired_bootstrap
    from nmt.training.checkpoint import load_model

    cfg, refs, n = ctx["cfg"], ctx["refs"], ctx["n"]
    loaded = load_model(ctx["results"][BASE]["checkpoint"], ctx["device"], ["model.hard=true"])
    switched = translate(loaded.model, loaded.tokenizer, ctx["sources"], loaded.cfg.decode, ctx["device"]).hypotheses
    soft = ctx["hyps"][BASE]
    rows = {"soft": soft, "hard at inference": switched, "hard trained": ctx["hyps"][HARD_TRAINED]}
    out: dict[str, Any] = {"rows": {name: scored(h, refs, n) for name, h in rows.items()}, "tests": {}}
    votes = []
    for name in ("hard at inference", "hard trained"):
        test = paired_bootstrap(soft, rows[name], refs, n)
        out["tests"][name] = test
        votes.append(comparison_verdict(test["difference"], test["p_value"], (test["system"], test["baseline"]),
                                        float(cfg.min_bleu)))
    out["verdicts"] = dict(zip(("inference", "trained"), votes, strict=True))
    out["verdict"] = _all_or_any(votes)
    out["summary"] = "soft - hard attention: " + ", ".join(
        f"{name} {t['difference']:+.2f} BLEU (p = {fmt_p(t['p_value'])})" for name, t in out["tests"].items())
    return out


def _scorers(ctx: dict[str, Any]) -> dict[str, Any]:
    from nmt.metrics import paired_bootstrap

    cfg, results, n = ctx["cfg"], ctx["results"], ctx["n"]
    reference = f"scorer={ctx['configs'][BASE].model.scorer}"
    names = [f"scorer={s}" for s in cfg.scorers] + [f"heads={h}" for h in cfg.heads]
    rows = []
    for name in names:
        m = ctx["configs"][name].model
        row = {"name": name, "scorer": m.scorer, "heads": m.heads, "hidden": m.hidden, "attention_dim": m.attention_dim,
               "num_parameters": results[name]["num_parameters"], "steps": results[name]["steps"],
               **scored(ctx["hyps"][name], ctx["refs"], n)}
        same = results[name]["run_dir"] == results[reference]["run_dir"]  # the reference run itself
        row["vs_reference"] = None if same else paired_bootstrap(ctx["hyps"][name], ctx["hyps"][reference],
                                                                 ctx["refs"], n)
        rows.append(row)
    # "The scorer matters at equal budget": some scorer differs significantly from the reference one.
    tests = [r["vs_reference"] for r in rows if r["name"].startswith("scorer=") and r["vs_reference"]]
    min_bleu = float(cfg.min_bleu)
    votes = [comparison_verdict(abs(t["difference"]), t["p_value"], (t["system"], t["baseline"]), min_bleu)
             for t in tests]
    verdicts = {"scorers_differ": SUPPORTED if SUPPORTED in votes else INCONCLUSIVE}
    heads_test = None
    head_rows = sorted((r for r in rows if r["name"].startswith("heads=")), key=lambda r: r["heads"])
    if len(head_rows) >= 2:  # "more heads translate better": the most heads against the fewest
        many, one = head_rows[-1], head_rows[0]
        heads_test = paired_bootstrap(ctx["hyps"][many["name"]], ctx["hyps"][one["name"]], ctx["refs"], n)
        heads_test |= {"system_name": many["name"], "baseline_name": one["name"]}
        verdicts["more_heads"] = comparison_verdict(heads_test["difference"], heads_test["p_value"],
                                                    (heads_test["system"], heads_test["baseline"]), min_bleu)
    best = max(rows, key=lambda r: r["bleu"])
    summary = f"Best {best['name']} at {best['bleu']:.2f} BLEU; against {reference}: " + ", ".join(
        f"{r['name']} {r['vs_reference']['difference']:+.2f} (p = {fmt_p(r['vs_reference']['p_value'])})"
        for r in rows if r["vs_reference"] is not None)
    return {"rows": rows, "reference": reference, "heads_test": heads_test, "verdicts": verdicts,
            "verdict": verdicts["scorers_differ"], "summary": summary}


CLAIM_FUNCTIONS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "scaling": _scaling, "temperature": _temperature, "hard": _hard, "scorers": _scorers}
