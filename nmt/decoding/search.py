"""Greedy and batched beam search over the `Seq2Seq` contract, and `translate` for raw sentences.

Both searches decode a whole batch at once and drop sentences from the active batch as soon as they are
finished (`select_batch` on the encoder output and decoder state), so a batch costs as many steps as its
longest output, and each step only as many rows as there are unfinished sentences.

Shapes: B = sentences, k = beam size, S = source length (with EOS), V = target vocabulary.
Lengths: a sentence of `src_len` tokens (EOS included) may produce at most
`floor(max_len_a * src_len + max_len_b)` tokens before its EOS, which is forced at that point.
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
        logits, state, attn = model.decode_step(tokens, state, enc)
        logp = _log_probs(logits)  # (b, V)
        choice = logp.argmax(dim=-1)
        choice = torch.where(t >= alive_max, torch.full_like(choice, EOS_ID), choice)
        out[alive, t] = choice
        scores[alive] += logp.gather(1, choice.unsqueeze(1)).squeeze(1).to(scores.dtype)
        if attn_out is not None and attn is not None:
            attn_out[alive, t] = attn.to(attn_out.dtype)
            has_attention = True
        ended = choice == EOS_ID
        lengths[alive[ended]] = t
        if bool(ended.all()):
            break
        if bool(ended.any()):
            keep = (~ended).nonzero().squeeze(1)
            enc, state = select_batch(enc, keep), select_batch(state, keep)
            alive, alive_max, choice = alive[keep], alive_max[keep], choice[keep]
        tokens = choice

    lengths_list, out_list, scores_list = lengths.tolist(), out.tolist(), scores.tolist()
    attention = None
    if has_attention:
        attention = [attn_out[i, : n + 1, : int(src_lens[i])].cpu() for i, n in enumerate(lengths_list)]
    return SearchResult(
        tokens=[[row[:n]] for row, n in zip(out_list, lengths_list, strict=True)],
        scores=[[s] for s in scores_list],
        attention=attention,
    )


@dataclass
class _Finished:
    """Completed hypotheses of one sentence: (score, tokens, attention (steps, S) or None)."""

    hyps: list[tuple[float, list[int], Tensor | None]] = field(default_factory=list)


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
    length_norm).
    """
    if beam < 1:
        raise NMTError(f"decode.beam must be at least 1, got {beam}")
    if not 1 <= nbest <= beam:
        raise NMTError(f"decode.nbest={nbest} must be between 1 and decode.beam={beam}")
    length_penalty(1, alpha, length_norm)  # one clear line for an unknown length_norm, before any work
    batch, src_width = src.shape
    k = beam
    device = src.device
    enc = select_batch(model.encode(src, src_lens), torch.arange(batch, device=device).repeat_interleave(k))
    state = model.init_state(enc)
    max_lens = max_output_lengths(model, src_lens, max_len_a, max_len_b)
    finished = [_Finished() for _ in range(batch)]

    alive = torch.arange(batch, device=device)  # original sentence of each active sentence
    alive_max = max_lens
    # Only the first beam is live at the start: the others hold copies of it and must not be chosen.
    scores = torch.full((batch, k), float("-inf"), device=device, dtype=_score_dtype(model))
    scores[:, 0] = 0.0
    history = torch.empty(batch * k, 0, dtype=torch.long, device=device)  # (b*k, t) tokens so far
    attn_history: Tensor | None = torch.empty(batch * k, 0, src_width, device=device) if with_attention else None
    tokens = torch.full((batch * k,), BOS_ID, dtype=torch.long, device=device)
    beam_offsets = torch.arange(k, device=device)

    for t in range(int(max_lens.max()) + 1):
        logits, state, attn = model.decode_step(tokens, state, enc)
        logp = _log_probs(logits).to(scores.dtype)  # (b*k, V)
        vocab = logp.size(-1)
        forced = (t >= alive_max).repeat_interleave(k)
        if bool(forced.any()):
            eos_only = torch.full_like(logp[forced], float("-inf"))
            eos_only[:, EOS_ID] = logp[forced][:, EOS_ID]
            logp[forced] = eos_only
        if attn is None:
            attn_history = None

        n_alive = alive.numel()
        cand = (scores.view(-1, 1) + logp).view(n_alive, k * vocab)
        top_scores, top_idx = cand.topk(min(2 * k, k * vocab), dim=1)  # (b, 2k), best first
        top_beam, top_tok = top_idx // vocab, top_idx % vocab
        is_eos = top_tok == EOS_ID

        # Finish EOS candidates ranked within the top k (as in fairseq): lower ones would not survive.
        to_finish = is_eos[:, :k] & torch.isfinite(top_scores[:, :k])
        if bool(to_finish.any()):
            rows, cols = to_finish.nonzero(as_tuple=True)  # row-major: best candidates first
            parent = rows * k + top_beam[rows, cols]
            penalty = length_penalty(t + 1, alpha, length_norm)
            finals = (top_scores[rows, cols] / penalty).tolist()
            parent_tokens = history[parent].tolist()
            final_attn = None
            if attn_history is not None:
                final_attn = torch.cat([attn_history[parent], attn[parent].unsqueeze(1).float()], dim=1).cpu()
            for j, (r, score) in enumerate(zip(rows.tolist(), finals, strict=True)):
                done_list = finished[int(alive[r])].hyps
                if len(done_list) < k:
                    done_list.append((score, parent_tokens[j], None if final_attn is None else final_attn[j]))

        cont_scores = top_scores.masked_fill(is_eos, float("-inf"))
        next_scores, pos = cont_scores.topk(k, dim=1)  # (b, k)
        next_beam, next_tok = top_beam.gather(1, pos), top_tok.gather(1, pos)
        done = torch.tensor([len(finished[i].hyps) >= k for i in alive.tolist()], device=device)
        done |= t >= alive_max
        parent = (torch.arange(n_alive, device=device).unsqueeze(1) * k + next_beam).view(-1)  # (b*k,)
        if bool(done.all()):
            break
        if bool(done.any()):
            keep = (~done).nonzero().squeeze(1)
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

    out_tokens, out_scores, out_attn = [], [], []
    for i, fin in enumerate(finished):
        ranked = sorted(fin.hyps, key=lambda h: h[0], reverse=True)[:nbest]
        if not ranked:  # unreachable with a vocabulary of more than EOS; kept so no sentence goes missing
            ranked = [(float("-inf"), [], None)]
        out_tokens.append([h[1] for h in ranked])
        out_scores.append([h[0] for h in ranked])
        best_attn = ranked[0][2]
        out_attn.append(None if best_attn is None else best_attn[:, : int(src_lens[i])])
    has_attention = with_attention and all(a is not None for a in out_attn)
    return SearchResult(out_tokens, out_scores, out_attn if has_attention else None)


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
    """Translate raw sentences in batches of cfg.batch_size, longest first, and return them in input order.

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
            for b in range(0, len(todo), cfg.batch_size):
                rows = todo[b : b + cfg.batch_size]
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
