"""Follow a run over training: every kept checkpoint (step-<n>.pt) decoded on the one-sentence test set and the
longest test level, its references scored by teacher forcing, and its attention's segment alignment.

The bottleneck experiment compares retention at equal one-sentence quality (nmt/metrics/trajectory.py), so it
needs each checkpoint's quality on k = 1 items only (valid BLEU and NLL of a run trained with
data.concat.valid_mixture=false: the trainer's own validation history) and its outputs on the test levels.
Runs in the training worker, right after training, so two runs are followed side by side.

Per checkpoint, besides the hypotheses files:
- per-sentence delta NLL: inside each level-K example, the per-token NLL of joined sentence j's reference minus
  the same sentence's own k = 1 NLL (its EOS left out on both sides), j = 1..K, averaged over the groups with a
  bootstrap interval over groups. A model that loses the source as the input grows pays more for later sentences.
- alignment: the segment-alignment score (nmt/metrics/alignment.py) of teacher-forced attention on `align_groups`
  examples of K consecutive valid sentences (valid, not test: the score decides which checkpoints enter a
  comparison); None for a model without attention.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nmt.data.batching import collate
from nmt.data.concat import join, level_groups
from nmt.decoding.search import translate
from nmt.evaluation.scoring import score_references
from nmt.io import Record, read_json, write_lines
from nmt.metrics.alignment import segment_alignment
from nmt.metrics.significance import bootstrap_indices, percentile_interval
from nmt.training.checkpoint import load_model

STEP_FILE = re.compile(r"step-(\d+)\.pt")


@dataclass
class FollowSpec:
    """What to measure at each checkpoint: the k = 1 test split and the level-K split built from it, on their
    first `groups` disjoint groups (level K's first examples, sentences g*K .. g*K+K-1: the k = 1 split's first
    groups*K sentences), and the alignment sample size."""

    short: str
    long: str
    k: int
    groups: int
    align_groups: int = 200
    n_samples: int = 1000


@dataclass
class CheckpointPoint(Record):
    """One kept checkpoint of a run (see the module doc)."""

    step: int
    valid_bleu: float  # the trainer's validation at this step: k = 1 quality when valid has no joined examples
    valid_nll: float  # its per-token valid loss (no label smoothing)
    short_file: str  # hypotheses of the groups' sentences at k = 1
    long_file: str  # hypotheses of the groups at level K
    nll_short: float  # per-token NLL of the group sentences' references at k = 1
    nll_long: float  # ... of the joined references at level K
    delta_nll: list[float]  # per joined position j = 1..K
    delta_nll_ci: list[list[float]]  # 95% bootstrap interval over groups, per position
    spanned_groups: int  # groups whose joined pieces are their sentences' pieces (the others are left out)
    alignment: float | None
    seconds: float


def checkpoint_steps(run_dir: Path) -> list[int]:
    """The steps of the run's kept step-<n>.pt files, in order."""
    return sorted(int(m.group(1)) for p in run_dir.glob("step-*.pt") if (m := STEP_FILE.fullmatch(p.name)))


def sentence_spans(encode: Callable[[list[str]], list[list[int]]], sentences: list[list[str]], joined: list[str]
                   ) -> list[list[tuple[int, int]] | None]:
    """Per joined example, the [start, end) piece indices of each of its sentences, or None where the joined
    text's pieces are not the sentences' pieces one after another (SentencePiece may merge across a join)."""
    pieces = encode([s for group in sentences for s in group])
    whole = encode(joined)
    out, at = [], 0
    for group, ids in zip(sentences, whole, strict=True):
        own = pieces[at:at + len(group)]
        at += len(group)
        if [i for p in own for i in p] != list(ids):
            out.append(None)
            continue
        ends = np.cumsum([len(p) for p in own])
        out.append([(int(e - len(p)), int(e)) for p, e in zip(own, ends, strict=True)])
    return out


def delta_nll(short_lps: Sequence[np.ndarray], long_lps: Sequence[np.ndarray],
              spans: Sequence[list[tuple[int, int]] | None], groups: Sequence[Sequence[int]], n_samples: int
              ) -> tuple[list[float], list[list[float]], int]:
    """Per joined position j: mean over groups of (per-token NLL of sentence j inside the joined reference - its
    own k = 1 NLL), with a 95% bootstrap interval over groups, and the number of groups used.

    short_lps[i]: (T_i + 1,) log-probabilities of sentence i's reference pieces and its EOS; long_lps[g]: those
    of group g's joined reference; spans[g]: its sentences' target spans (None: left out)."""
    rows = []
    for g, span in enumerate(spans):
        if span is None:
            continue
        rows.append([float(-long_lps[g][a:b].mean() + short_lps[i][:-1].mean()) if b > a and len(short_lps[i]) > 1
                     else 0.0 for (a, b), i in zip(span, groups[g], strict=True)])
    deltas = np.array(rows)  # (groups used, K)
    reps = deltas[bootstrap_indices(len(deltas), n_samples)].mean(axis=1)  # (n_samples, K)
    return ([float(x) for x in deltas.mean(axis=0)], [percentile_interval(reps[:, j]) for j in range(deltas.shape[1])],
            len(deltas))


@torch.no_grad()
def alignment_score(model: torch.nn.Module, tokenizer: object, sources: list[str], targets: list[str], k: int,
                    count: int, device: torch.device) -> float | None:
    """Mean segment-alignment score of teacher-forced attention on the first `count` examples of k consecutive
    sentences of (sources, targets); None for a model without attention or without a usable example."""
    groups = level_groups(len(sources), k, [0])[:count]
    src, tgt = join(sources, targets, groups)
    src_spans = sentence_spans(tokenizer.encode_src, [[sources[i] for i in g] for g in groups], src)
    tgt_spans = sentence_spans(tokenizer.encode_tgt, [[targets[i] for i in g] for g in groups], tgt)
    keep = [g for g in range(len(groups)) if src_spans[g] is not None and tgt_spans[g] is not None]
    if not keep:
        return None
    batch = collate(tokenizer.encode_src([src[g] for g in keep]), tokenizer.encode_tgt([tgt[g] for g in keep]),
                    list(range(len(keep)))).to(device)
    model.eval()
    attention = model.forward_attention(batch.src, batch.src_lens, batch.tgt_in)  # (B, T, S) or None
    if attention is None:
        return None
    scores = segment_alignment(attention.float().cpu().numpy(), [src_spans[g] for g in keep],
                               [tgt_spans[g] for g in keep])  # (B,)
    return float(scores.mean())


def follow_run(run_dir: Path, spec: FollowSpec, corpus: object, device: torch.device) -> list[CheckpointPoint]:
    """Measure every kept step-<n>.pt of `run_dir` (see the module doc); hypotheses go to run_dir/follow/."""
    history = {h["step"]: h for h in read_json(run_dir / "metrics.json")["history"]}
    short, long = corpus.split(spec.short), corpus.split(spec.long)
    sentences = spec.groups * spec.k  # the groups' sentences: the first ones, as groups of offset 0 are
    short_src, short_ref = list(short["src"])[:sentences], list(short["tgt"])[:sentences]
    long_src, long_ref = list(long["src"])[:spec.groups], list(long["tgt"])[:spec.groups]
    groups = level_groups(sentences, spec.k, [0])
    valid = corpus.split("valid")
    out_dir = run_dir / "follow"
    out_dir.mkdir(exist_ok=True)
    points, spans = [], None
    for step in checkpoint_steps(run_dir):
        if step not in history:  # a checkpoint saved without a validation: no quality to match on
            continue
        start = time.perf_counter()
        loaded = load_model(run_dir / f"step-{step}.pt", device)
        model, tok = loaded.model, loaded.tokenizer
        if spans is None:
            spans = sentence_spans(tok.encode_tgt, [[short_ref[i] for i in g] for g in groups], long_ref)
        files = {}
        for name, src in (("short", short_src), ("long", long_src)):
            hyps = translate(model, tok, src, loaded.cfg.decode, device).hypotheses
            files[name] = out_dir / f"step-{step}.{getattr(spec, name)}.hyp.txt"
            write_lines(files[name], hyps)
        short_lps = score_references(model, tok, short_src, short_ref, device).token_log_probs
        long_lps = score_references(model, tok, long_src, long_ref, device).token_log_probs
        used = [i for g in groups for i in g]
        delta, delta_ci, spanned = delta_nll(short_lps, long_lps, spans, groups, spec.n_samples)
        points.append(CheckpointPoint(
            step=step, valid_bleu=float(history[step]["bleu"]), valid_nll=float(history[step]["valid_loss"]),
            short_file=str(files["short"]), long_file=str(files["long"]),
            nll_short=-float(np.concatenate([short_lps[i] for i in used]).mean()),
            nll_long=-float(np.concatenate(long_lps).mean()), delta_nll=delta, delta_nll_ci=delta_ci,
            spanned_groups=spanned,
            alignment=alignment_score(model, tok, list(valid["src"]), list(valid["tgt"]), spec.k, spec.align_groups,
                                      device),
            seconds=time.perf_counter() - start))
    return points
