"""Score given references with a model: teacher-forced log-probabilities, no search.

`nmt-score checkpoint=<run or .pt> src_file=x.de ref_file=x.en [out=scores.tsv]` (and `nmt.score(...)`) gives,
per sentence, the summed and the per-token mean log-probability of the reference (its EOS included), written as
TSV, and summaries by source-length bucket and by target position. Peers call this scoring a reference
(fairseq --score-reference, Marian's scorer, OpenNMT-py's gold scores). It is the cleanest view of the
bottleneck: free of beam size, length penalty and early stopping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nmt.config import PAD_ID
from nmt.data.batching import TokenBatchSampler, collate
from nmt.errors import NMTError
from nmt.io import Record, check_writable, read_parallel_lines, read_text_lines, write_text
from nmt.metrics.lengths import DEFAULT_EDGES, assign_buckets, bucket_label, length_buckets
from nmt.metrics.scores import check_pair
from nmt.runtime import pick_device
from nmt.training.checkpoint import load_model, resolve_checkpoint

POSITION_BIN = 5  # target positions are summarised in bins of this many tokens


@dataclass
class NllBucket(Record):
    """One source-length bucket: sentences, target tokens and their per-token NLL (None when empty)."""

    label: str
    count: int
    tokens: int
    nll: float | None


@dataclass
class NllBin(Record):
    """One bin of target positions: where it starts (a position, or a fraction of the target's length), its
    tokens and their per-token NLL."""

    start: float
    tokens: int
    nll: float


@dataclass
class ReferenceScores:
    """Per-token log-probabilities of each reference, in input order.

    token_log_probs[i]: (T_i,) float64, the log-probability of each target token of sentence i, EOS last.
    """

    sources: list[str]
    references: list[str]
    token_log_probs: list[np.ndarray]

    def sums(self) -> list[float]:
        return [float(lp.sum()) for lp in self.token_log_probs]

    def means(self) -> list[float]:
        return [float(lp.mean()) for lp in self.token_log_probs]

    def mean_nll(self) -> float:
        """Per-token negative log-likelihood over all references (tokens weighted equally)."""
        return -float(np.concatenate(self.token_log_probs).mean())

    def by_length(self, edges: Sequence[int] = DEFAULT_EDGES) -> list[NllBucket]:
        """Per source-length bucket (whitespace words)."""
        which = assign_buckets(self.sources, edges)
        rows = []
        for b, (lo, hi) in enumerate(length_buckets(edges)):
            members = [self.token_log_probs[i] for i, w in enumerate(which) if w == b]
            tokens = int(sum(len(m) for m in members))
            nll = -float(np.concatenate(members).mean()) if members else None
            rows.append(NllBucket(label=bucket_label(lo, hi), count=len(members), tokens=tokens, nll=nll))
        return rows

    def by_position(self, width: int = POSITION_BIN) -> list[NllBin]:
        """Per bin of `width` target positions (0-based; `start` the bin's first position)."""
        return _binned([(np.arange(len(lp)) // width, lp) for lp in self.token_log_probs], lambda b: b * width)

    def tsv(self) -> str:
        lines = ["index\ttokens\tlog_prob\tmean_log_prob"]
        lines += [f"{i}\t{len(lp)}\t{lp.sum():.4f}\t{lp.mean():.4f}" for i, lp in enumerate(self.token_log_probs)]
        return "\n".join(lines) + "\n"


def _binned(rows: list[tuple[np.ndarray, np.ndarray]], start: Callable[[int], float]) -> list[NllBin]:
    """Mean NLL per bin over (bin index per token, log-prob per token) rows."""
    bins = np.concatenate([b for b, _ in rows])
    lps = np.concatenate([lp for _, lp in rows])
    return [NllBin(start=start(int(b)), tokens=int((bins == b).sum()), nll=-float(lps[bins == b].mean()))
            for b in np.unique(bins)]


@dataclass
class ScoreResult(Record):
    """What `score` returns: the checkpoint, the sentences and target tokens scored, the per-token NLL overall,
    by source length and by target position, and the per-sentence log-probabilities (`scores`, left out of
    `to_dict`: numpy arrays; `scores.tsv()` writes them)."""

    checkpoint: str
    sentences: int
    tokens: int
    nll: float  # per token
    by_length: list[NllBucket]
    by_position: list[NllBin]
    scores: ReferenceScores

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().to_dict().items() if k != "scores"}


@torch.no_grad()
def score_references(model: torch.nn.Module, tokenizer: Any, sources: list[str], references: list[str],
                     device: torch.device, batch_tokens: int = 4096,
                     where: tuple[str, str] = ("source", "reference")) -> ReferenceScores:
    """Teacher-forced log-probabilities of `references` given `sources` (eval mode, no autocast: fp32). A
    sentence longer than the model can embed is an NMTError naming `where` (the file) and its line."""
    check_pair(sources, references)
    src_ids, tgt_ids = tokenizer.encode_src(sources), tokenizer.encode_tgt(references)
    max_positions = getattr(model, "max_positions", None)
    if max_positions is not None:
        for name, ids in zip(where, (src_ids, tgt_ids), strict=True):
            for n, row in enumerate(ids, start=1):
                if len(row) + 1 > max_positions:  # EOS (source) or BOS (target input) takes one position
                    raise NMTError(f"{name} line {n}: {len(row)} pieces, more than the {max_positions - 1} that "
                                   f"model.max_positions={max_positions} allows")
    sampler = TokenBatchSampler([len(s) for s in src_ids], [len(t) for t in tgt_ids], batch_tokens, shuffle=False)
    out: list[np.ndarray | None] = [None] * len(sources)
    model.eval()
    for rows in sampler:
        rows = list(rows)
        batch = collate([src_ids[i] for i in rows], [tgt_ids[i] for i in rows], rows).to(device)
        logits = model(batch.src, batch.src_lens, batch.tgt_in)  # (B, T, V)
        log_probs = -F.cross_entropy(logits.float().transpose(1, 2), batch.tgt_out, ignore_index=PAD_ID,
                                     reduction="none")  # (B, T)
        lengths = (batch.tgt_out != PAD_ID).sum(1).tolist()
        for j, row in enumerate(rows):
            out[row] = log_probs[j, : lengths[j]].double().cpu().numpy()
    return ReferenceScores(list(sources), list(references), [lp for lp in out if lp is not None])


def score(checkpoint: str | Path, src_file: str | Path | None = None, ref_file: str | Path | None = None, *,
          sources: list[str] | None = None, references: list[str] | None = None, out: str | Path | None = None,
          device: str = "auto", batch_tokens: int = 4096, length_edges: Sequence[int] = DEFAULT_EDGES
          ) -> ScoreResult:
    """Score references with a checkpoint (or run directory): files or lists. With `out`, writes the per-sentence
    TSV there."""
    if (src_file is None) == (sources is None) or (ref_file is None) == (references is None):
        raise NMTError("give the sources and the references, each either as a file or as a list")
    if ref_file is not None and not isinstance(ref_file, (str, Path)):
        raise NMTError(f"nmt-score takes one reference file, got {len(ref_file)}: it gives the log-probability of one "
                       f"reference a sentence; score each reference file with its own nmt-score run")
    if sources is None and references is None:
        sources, references = read_parallel_lines(src_file, ref_file)
    if sources is None:
        sources = read_text_lines(src_file, "source file")
    if references is None:
        references = read_text_lines(ref_file, "reference file")
    where = (f"source file {src_file}" if src_file else "source", f"reference file {ref_file}" if ref_file
             else "reference")
    if len(sources) != len(references):
        raise NMTError(f"{len(sources)} sources but {len(references)} references: line counts must match")
    if out is not None:
        check_writable(out)
    path = resolve_checkpoint(checkpoint)
    dev = pick_device(device)
    loaded = load_model(path, dev)
    scores = score_references(loaded.model, loaded.tokenizer, sources, references, dev, batch_tokens, where)
    if out is not None:
        write_text(Path(out), scores.tsv())
    return ScoreResult(checkpoint=str(path), sentences=len(sources),
                       tokens=int(sum(len(lp) for lp in scores.token_log_probs)), nll=scores.mean_nll(),
                       by_length=scores.by_length(length_edges), by_position=scores.by_position(), scores=scores)
