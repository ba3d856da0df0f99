"""Greedy and batched beam search over the `Seq2Seq` contract, and `translate` for raw sentences.

Both searches decode a whole batch at once and drop sentences from the active batch as soon as they are
finished (`select_batch` on the encoder output and decoder state), so a batch costs as many steps as its
longest output, and each step only as many rows as there are unfinished sentences.

Shapes: B = sentences, k = beam size, S = source length (with EOS), V = target vocabulary.
Lengths: a sentence of `src_len` tokens (EOS included) may produce at most
`floor(max_len_a * src_len + max_len_b)` tokens before its EOS, which is forced at that point.

Host syncs: on CUDA every copy of a device value to the host (`.tolist()`, `bool(t)`, `.nonzero()`, a boolean
mask index) waits for the GPU to catch up. Each search step copies one (b,) flag vector (which sentences are
done) and nothing else: finished hypotheses are kept on the device and copied once per batch, and rows are
dropped with indices computed on the device (`_rows_left`). The attention weights are asked of the model only
when the caller wants them (`with_attention`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from nmt.config import BOS_ID, CHOICES, EOS_ID, PAD_ID, DecodeConfig, check_values
from nmt.data.batching import collate
from nmt.errors import NMTError
from nmt.models.base import Seq2Seq, select_batch
from nmt.runtime import decode_precision, synchronize

Tensor = torch.Tensor


@dataclass
class SearchResult:
    """Search output for each sentence of the batch, in batch order.

    tokens[i][r]: token ids of the r-th best hypothesis of sentence i (no BOS, no EOS).
    scores[i][r]: its score: summed log-probability, divided by the length penalty in beam search.
    attention[i]: (len(tokens[i][0]) + 1, src_lens[i]) attention of the best hypothesis, one row per
        decoder step (the last is the EOS step), or None when not asked for or the model has none.
    """

    tokens: list[list[list[int]]]
    scores: list[list[float]]
    attention: list[Tensor] | None = None

    @property
    def best(self) -> list[list[int]]:
        return [hyps[0] for hyps in self.tokens]


LENGTH_NORMS = CHOICES["decode.length_norm"]


def length_penalty(length: int, alpha: float, norm: str = "gnmt") -> float:
    """What a finished hypothesis' log-probability is divided by; `length` counts its tokens with EOS.

    gnmt: ((5 + length) / 6) ** alpha (Wu et al. 2016). power: length ** alpha, as CTranslate2 4.x and
    fairseq normalise (CTranslate2 counts EOS in the length, as here). Both are 1 when alpha = 0.
    """
    if norm == "gnmt":
        return ((5.0 + length) / 6.0) ** alpha
    if norm == "power":
        return float(length) ** alpha
    raise NMTError(f"decode.length_norm must be one of {', '.join(LENGTH_NORMS)}, got {norm!r}")


CUDA_BATCH_FACTOR = 4  # how much the default decode.batch_size is raised on CUDA


def decode_batch_size(batch_size: int, device: torch.device | str) -> int:
    """Sentences per decoding batch on `device`: decode.batch_size as configured, except that its default is raised
    CUDA_BATCH_FACTOR-fold on CUDA, where a step over a wider batch costs about as much as over a narrow one (a
    batch_size set to anything else is taken as it is)."""
    if torch.device(device).type == "cuda" and batch_size == DecodeConfig.batch_size:
        return batch_size * CUDA_BATCH_FACTOR
    return batch_size


def max_output_lengths(model: Seq2Seq, src_lens: Tensor, max_len_a: float, max_len_b: int) -> Tensor:
    """(B,) most tokens each sentence may produce before EOS; capped by a model's position table."""
    lens = torch.floor(src_lens.float() * max_len_a + max_len_b).long().clamp(min=0)
    max_positions = getattr(model, "max_positions", None)
    if max_positions is not None:
        # Step t feeds the token at position t (BOS at 0), and the EOS step feeds position max_len.
        lens = lens.clamp(max=int(max_positions) - 1)
    return lens


def _score_dtype(model: Seq2Seq) -> torch.dtype:
    # Running scores in float64 only for float64 models (exact comparisons in tests); MPS has no float64.
    return torch.float64 if any(p.dtype == torch.float64 for p in model.parameters()) else torch.float32


def _log_probs(logits: Tensor) -> Tensor:
    """(rows, V) logits -> log-probabilities with PAD and BOS ruled out (never valid outputs).

    Masked after the softmax, so the other tokens keep the model's own probabilities (and scores equal a
    teacher-forced pass). Low-precision logits (autocast) are scored in float32; float64 models keep theirs.
    """
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    logp = F.log_softmax(logits, dim=-1)
    logp[:, PAD_ID] = float("-inf")
    logp[:, BOS_ID] = float("-inf")
    return logp


def _rows_left(done: Tensor, n_left: int) -> Tensor:
    """(n_left,) indices of the rows where done (b,) is False, in order: `(~done).nonzero()` without its host sync
    (the caller knows n_left from the flags it has already copied)."""
    return torch.argsort(done.to(torch.uint8), stable=True)[:n_left]


def greedy_search(
    model: Seq2Seq,
    src: Tensor,
    src_lens: Tensor,
    max_len_a: float = DecodeConfig.max_len_a,
    max_len_b: int = DecodeConfig.max_len_b,
    with_attention: bool = False,
) -> SearchResult:
    """Pick the most probable token at every step. src (B, S), src_lens (B,) on the model's device."""
    batch, src_width = src.shape
    device = src.device
    enc = model.encode(src, src_lens)
    state = model.init_state(enc)
    max_lens = max_output_lengths(model, src_lens, max_len_a, max_len_b)
    steps = int(max_lens.max()) + 1

    out = torch.full((batch, steps), EOS_ID, dtype=torch.long, device=device)  # filled per original row
    lengths = torch.zeros(batch, dtype=torch.long, device=device)
    scores = torch.zeros(batch, dtype=_score_dtype(model), device=device)
    attn_out = torch.zeros(batch, steps, src_width, device=device) if with_attention else None
    has_attention = False

    alive = torch.arange(batch, device=device)  # original row of each active row
    alive_max = max_lens
    tokens = torch.full((batch,), BOS_ID, dtype=torch.long, device=device)
    for t in range(steps):
        logits, state, attn = model.decode_step(tokens, state, enc, need_attention=with_attention)
        logp = _log_probs(logits)  # (b, V)
        choice = logp.argmax(dim=-1)
        choice = torch.where(t >= alive_max, torch.full_like(choice, EOS_ID), choice)
        out[alive, t] = choice
        scores[alive] += logp.gather(1, choice.unsqueeze(1)).squeeze(1).to(scores.dtype)
        if attn_out is not None and attn is not None:
            attn_out[alive, t] = attn.to(attn_out.dtype)
            has_attention = True
        ended = choice == EOS_ID
        lengths[alive] = torch.where(ended, t, lengths[alive])
        ended_flags = ended.tolist()  # the step's one host sync
        if all(ended_flags):
            break
        if any(ended_flags):
            keep = _rows_left(ended, ended_flags.count(False))
            enc, state = select_batch(enc, keep), select_batch(state, keep)
            alive, alive_max, choice = alive[keep], alive_max[keep], choice[keep]
        tokens = choice

    lengths_list, out_list, scores_list = lengths.tolist(), out.tolist(), scores.tolist()
    attention = None
    if has_attention and attn_out is not None:
        attn_host = attn_out.cpu()
        attention = [attn_host[i, : n + 1, :src_len]
                     for i, (n, src_len) in enumerate(zip(lengths_list, src_lens.tolist(), strict=True))]
    return SearchResult(
        tokens=[[row[:n]] for row, n in zip(out_list, lengths_list, strict=True)],
        scores=[[s] for s in scores_list],
        attention=attention,
    )


def beam_search(
    model: Seq2Seq,
    src: Tensor,
    src_lens: Tensor,
    beam: int = DecodeConfig.beam,
    alpha: float = DecodeConfig.alpha,
    max_len_a: float = DecodeConfig.max_len_a,
    max_len_b: int = DecodeConfig.max_len_b,
    nbest: int = DecodeConfig.nbest,
    with_attention: bool = False,
    length_norm: str = "gnmt",
) -> SearchResult:
    """Beam search over all B sentences at once, on B_active * k rows.

    Each step expands every live hypothesis, keeps the 2k best (beam, token) candidates per sentence,
    finishes those ending in EOS that rank among the top k, and continues with the k best others. A
    sentence is done once it has k finished hypotheses (or reached its length limit); done sentences leave
    the batch. Finished hypotheses are ranked by log-probability / length_penalty(length incl. EOS, alpha,
    length_norm), ties in the order they finished.

    Finished hypotheses stay on the device, in k slots per sentence (filled in the order they finish) and one
    more slot for those that find no room: fin_scores (B, k + 1), fin_tokens (B, k + 1, steps), fin_attn
    (B, k + 1, steps, S) when asked for, fin_count (B,) slots filled.
    """
    if beam < 1:
        raise NMTError(f"decode.beam must be at least 1, got {beam}")
    if not 1 <= nbest <= beam:
        raise NMTError(f"decode.nbest={nbest} must be between 1 and decode.beam={beam}")
    length_penalty(1, alpha, length_norm)  # one clear line for an unknown length_norm, before any work
    batch, src_width = src.shape
    k = beam
    device = src.device
    dtype = _score_dtype(model)
    enc = select_batch(model.encode(src, src_lens), torch.arange(batch, device=device).repeat_interleave(k))
    state = model.init_state(enc)
    max_lens = max_output_lengths(model, src_lens, max_len_a, max_len_b)
    steps = int(max_lens.max()) + 1

    fin_scores = torch.full((batch, k + 1), float("-inf"), dtype=dtype, device=device)
    fin_tokens = torch.zeros(batch, k + 1, steps, dtype=torch.long, device=device)
    fin_lens = torch.zeros(batch, k + 1, dtype=torch.long, device=device)
    fin_count = torch.zeros(batch, dtype=torch.long, device=device)
    fin_attn = torch.zeros(batch, k + 1, steps, src_width, device=device) if with_attention else None

    alive = torch.arange(batch, device=device)  # original sentence of each active sentence
    alive_max = max_lens
    # Only the first beam is live at the start: the others hold copies of it and must not be chosen.
    scores = torch.full((batch, k), float("-inf"), device=device, dtype=dtype)
    scores[:, 0] = 0.0
    history = torch.empty(batch * k, 0, dtype=torch.long, device=device)  # (b*k, t) tokens so far
    attn_history = torch.empty(batch * k, 0, src_width, device=device) if with_attention else None  # (b*k, t, S)
    tokens = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)
    beam_offsets = torch.arange(k, device=device)

    for t in range(steps):
        logits, state, attn = model.decode_step(tokens, state, enc, need_attention=with_attention)
        logp = _log_probs(logits).to(dtype)  # (b*k, V)
        vocab = logp.size(-1)
        # At its length limit a sentence may only end: every token but EOS ruled out, EOS keeps its probability.
        not_eos = torch.arange(vocab, device=device) != EOS_ID
        logp = logp.masked_fill((t >= alive_max).repeat_interleave(k).unsqueeze(1) & not_eos, float("-inf"))
        if attn is None:
            attn_history = fin_attn = None

        n_alive = alive.numel()
        rows = torch.arange(n_alive, device=device).unsqueeze(1)  # (b, 1)
        cand = (scores.view(-1, 1) + logp).view(n_alive, k * vocab)
        top_scores, top_idx = cand.topk(min(2 * k, k * vocab), dim=1)  # (b, 2k), best first
        top_beam, top_tok = top_idx // vocab, top_idx % vocab
        is_eos = top_tok == EOS_ID

        # Finish EOS candidates ranked within the top k (as in fairseq): lower ones would not survive. Each goes
        # to the sentence's next free slot, best first; those beyond k finished hypotheses go to slot k, unused.
        to_finish = is_eos[:, :k] & torch.isfinite(top_scores[:, :k])  # (b, k)
        slot = fin_count[alive].unsqueeze(1) + to_finish.cumsum(dim=1) - 1
        slot = torch.where(to_finish & (slot < k), slot, k)
        sentence = alive.unsqueeze(1).expand(-1, k)
        parent = rows * k + top_beam[:, :k]  # (b, k) rows of the finishing hypotheses
        fin_scores[sentence, slot] = top_scores[:, :k] / length_penalty(t + 1, alpha, length_norm)
        fin_tokens[sentence, slot, :t] = history[parent]
        fin_lens[sentence, slot] = t
        if fin_attn is not None and attn_history is not None:
            fin_attn[sentence, slot, : t + 1] = torch.cat([attn_history[parent], attn[parent].unsqueeze(2).float()], 2)
        fin_count[alive] = (fin_count[alive] + to_finish.sum(dim=1)).clamp(max=k)

        cont_scores = top_scores.masked_fill(is_eos, float("-inf"))
        next_scores, pos = cont_scores.topk(k, dim=1)  # (b, k)
        next_beam, next_tok = top_beam.gather(1, pos), top_tok.gather(1, pos)
        done = (fin_count[alive] >= k) | (t >= alive_max)
        parent = (rows * k + next_beam).view(-1)  # (b*k,)
        done_flags = done.tolist()  # the step's one host sync
        if all(done_flags):
            break
        if any(done_flags):
            keep = _rows_left(done, done_flags.count(False))
            enc = select_batch(enc, (keep.unsqueeze(1) * k + beam_offsets).view(-1))
            parent = parent.view(n_alive, k)[keep].view(-1)
            alive, alive_max = alive[keep], alive_max[keep]
            next_scores, next_tok = next_scores[keep], next_tok[keep]
        state = select_batch(state, parent)
        history = torch.cat([history[parent], next_tok.view(-1, 1)], dim=1)
        if attn_history is not None:
            attn_history = torch.cat([attn_history[parent], attn[parent].unsqueeze(1).float()], dim=1)
        scores = next_scores
        tokens = next_tok.view(-1)
    return _ranked(fin_scores[:, :k], fin_tokens, fin_lens, fin_count, fin_attn, src_lens, nbest)


def _ranked(fin_scores: Tensor, fin_tokens: Tensor, fin_lens: Tensor, fin_count: Tensor, fin_attn: Tensor | None,
            src_lens: Tensor, nbest: int) -> SearchResult:
    """The nbest best of each sentence's finished hypotheses (beam_search's slots, fin_scores (B, k)), best first,
    ties in the order they finished, copied to the host at once."""
    order = fin_scores.sort(dim=1, descending=True, stable=True).indices[:, :nbest]  # (B, nbest)
    steps = fin_tokens.size(2)
    tokens = fin_tokens.gather(1, order.unsqueeze(2).expand(-1, -1, steps)).tolist()
    scores, lens = fin_scores.gather(1, order).tolist(), fin_lens.gather(1, order).tolist()
    counts = fin_count.tolist()
    out_tokens, out_scores = [], []
    for i, n in enumerate(counts):
        n = min(n, nbest)
        if n == 0:  # unreachable with a vocabulary of more than EOS; kept so no sentence goes missing
            out_tokens.append([[]])
            out_scores.append([float("-inf")])
            continue
        out_tokens.append([tokens[i][r][: lens[i][r]] for r in range(n)])
        out_scores.append(scores[i][:n])
    if fin_attn is None or 0 in counts:
        return SearchResult(out_tokens, out_scores, None)
    best = order[:, 0]
    attn = fin_attn[torch.arange(best.numel(), device=best.device), best].cpu()  # (B, steps, S)
    attention = [attn[i, : len(hyps[0]) + 1, :src_len]
                 for i, (hyps, src_len) in enumerate(zip(out_tokens, src_lens.tolist(), strict=True))]
    return SearchResult(out_tokens, out_scores, attention)


@dataclass
class Translations:
    """`translate` output, in input order.

    hypotheses: best detokenized translation per sentence ("" for an empty input line).
    nbest / scores: the decode.nbest best translations and their scores, best first.
    ids: token ids of the best translation (no BOS/EOS), e.g. for plot labels.
    attention: per sentence (len(ids) + 1, source pieces + 1) weights, or None (not asked for / no attention).
    num_tokens: output tokens of the best translations, EOS excluded. seconds: wall time of the search.
    truncated: input rows cut to max_input_tokens pieces.
    """

    hypotheses: list[str]
    nbest: list[list[str]]
    scores: list[list[float]]
    ids: list[list[int]]
    attention: list[Tensor] | None
    num_tokens: int
    seconds: float
    truncated: list[int] = field(default_factory=list)

    @property
    def sentences_per_second(self) -> float:
        return len(self.hypotheses) / self.seconds if self.seconds > 0 else 0.0

    @property
    def tokens_per_second(self) -> float:
        return self.num_tokens / self.seconds if self.seconds > 0 else 0.0


def translate(
    model: Seq2Seq,
    tokenizer: Any,
    sentences: list[str],
    cfg: DecodeConfig,
    device: torch.device | str,
    with_attention: bool = False,
    max_input_tokens: int | None = None,
) -> Translations:
    """Translate raw sentences in batches of cfg.batch_size (`decode_batch_size`: the default is raised on CUDA),
    longest first, and return them in input order.

    beam 1 runs greedy search. Empty (or whitespace-only) lines give empty translations without decoding.
    Sources longer than `max_input_tokens` pieces (or than the model's position table) are truncated and
    listed in `.truncated`. The model is put in eval mode for the call and restored afterwards. The search runs
    in cfg.precision (`nmt.runtime.decode_precision`).
    """
    device = torch.device(device)
    check_values(cfg, "decode")
    if not cfg.nbest <= cfg.beam:
        raise NMTError(f"decode.nbest={cfg.nbest} must be between 1 and decode.beam={cfg.beam}")
    precision = decode_precision(cfg.precision, device)
    n = len(sentences)
    ids = tokenizer.encode_src([s.strip() for s in sentences])
    limit = max_input_tokens
    max_positions = getattr(model, "max_positions", None)
    if max_positions is not None:
        limit = min(limit or max_positions, int(max_positions) - 1)  # room for EOS
    truncated = [i for i, seq in enumerate(ids) if limit is not None and len(seq) > limit]
    for i in truncated:
        ids[i] = ids[i][:limit]

    todo = sorted((i for i in range(n) if sentences[i].strip()), key=lambda i: -len(ids[i]))
    best_ids: list[list[int]] = [[] for _ in range(n)]
    nbest_ids: list[list[list[int]]] = [[[]] for _ in range(n)]
    scores: list[list[float]] = [[0.0] for _ in range(n)]
    attention: list[Tensor | None] = [torch.zeros(1, len(ids[i]) + 1) for i in range(n)]

    was_training = model.training
    model.eval()
    synchronize(device)
    start = time.perf_counter()
    try:
        with torch.inference_mode(), precision:
            batch_size = decode_batch_size(cfg.batch_size, device)
            for b in range(0, len(todo), batch_size):
                rows = todo[b : b + batch_size]
                batch = collate([ids[i] for i in rows], [[] for _ in rows], rows)
                src, src_lens = batch.src.to(device), batch.src_lens.to(device)
                if cfg.beam == 1:
                    result = greedy_search(model, src, src_lens, cfg.max_len_a, cfg.max_len_b, with_attention)
                else:
                    result = beam_search(
                        model,
                        src,
                        src_lens,
                        cfg.beam,
                        cfg.alpha,
                        cfg.max_len_a,
                        cfg.max_len_b,
                        cfg.nbest,
                        with_attention,
                        cfg.length_norm,
                    )
                for j, i in enumerate(rows):
                    nbest_ids[i] = result.tokens[j]
                    best_ids[i] = result.tokens[j][0]
                    scores[i] = result.scores[j]
                    attention[i] = None if result.attention is None else result.attention[j]
        synchronize(device)
    finally:
        model.train(was_training)
    seconds = time.perf_counter() - start

    flat = [hyp for hyps in nbest_ids for hyp in hyps]
    decoded = iter(tokenizer.decode_tgt(flat))
    nbest_text = [[next(decoded) for _ in hyps] for hyps in nbest_ids]
    keep_attention = with_attention and bool(todo) and all(attention[i] is not None for i in todo)
    return Translations(
        hypotheses=[hyps[0] for hyps in nbest_text],
        nbest=nbest_text,
        scores=scores,
        ids=best_ids,
        attention=attention if keep_attention else None,  # type: ignore[arg-type]
        num_tokens=sum(len(x) for x in best_ids),
        seconds=seconds,
        truncated=truncated,
    )
