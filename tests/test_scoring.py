"""Scoring references without search: teacher-forced log-probabilities per sentence, bucket and position."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from nmt.errors import NMTError
from nmt.evaluation.scoring import score, score_references

V = 12  # vocabulary of the constructed model
BOOST = 5  # the id the constructed model favours; never a reference token


class WordTokenizer:
    """Words w4..w11 -> ids 4..11 (0-3 are PAD, UNK, BOS, EOS)."""

    def encode_src(self, texts: list[str]) -> list[list[int]]:
        return [[int(w[1:]) for w in t.split()] for t in texts]

    encode_tgt = encode_src


class PositionModel(torch.nn.Module):
    """Logits 0 everywhere except `t` for id BOOST at target position t: a reference token at position t has
    log-probability -log(V - 1 + e^t), known in closed form."""

    def forward(self, src: torch.Tensor, src_lens: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*tgt_in.shape, V)
        logits[:, :, BOOST] = torch.arange(tgt_in.size(1), dtype=torch.float32)
        return logits  # (B, T, V)


def expected(t: int) -> float:
    return -math.log(V - 1 + math.exp(t))


def test_a_sentence_longer_than_the_model_embeds_names_the_file_and_line() -> None:
    model = PositionModel()
    model.max_positions = 4  # three pieces and EOS
    sources, references = ["w4", "w4 w5 w6", "w4"], ["w4", "w4", "w4 w5 w6 w7"]
    with pytest.raises(NMTError) as refused:
        score_references(model, WordTokenizer(), sources, references, torch.device("cpu"), 64,
                         ("source file a.de", "reference file a.en"))
    assert str(refused.value) == "reference file a.en line 3: 4 pieces, more than the 3 that " \
                                 "model.max_positions=4 allows"
    assert len(score_references(model, WordTokenizer(), sources, ["w4"] * 3, torch.device("cpu"), 64)
               .token_log_probs) == 3


def test_log_probabilities_of_a_model_whose_loss_is_known_per_position() -> None:
    sources = ["w4 w6", "w7", "w8 w9 w10 w11 w4 w6 w7 w8 w9 w10 w11 w4"]
    references = ["w4 w6 w7", "w9", "w4 w6 w7 w8 w9 w10 w11"]
    scores = score_references(PositionModel(), WordTokenizer(), sources, references, torch.device("cpu"), 64)
    lengths = [4, 2, 8]  # tokens + EOS
    for lp, n in zip(scores.token_log_probs, lengths, strict=True):
        assert lp == pytest.approx([expected(t) for t in range(n)], rel=1e-6)
    assert scores.sums()[1] == pytest.approx(expected(0) + expected(1), rel=1e-6)
    assert scores.means()[0] == pytest.approx(np.mean([expected(t) for t in range(4)]), rel=1e-6)
    # By position, bins of 5 tokens: positions 0-4 hold 4 + 2 + 5 tokens, 5-7 hold 3.
    first, second = scores.by_position()
    assert (first.start, first.tokens, second.start, second.tokens) == (0, 11, 5, 3)
    assert second.nll == pytest.approx(-np.mean([expected(t) for t in (5, 6, 7)]), rel=1e-6)
    # By source length: 2 and 1 words in 0-10, 12 words in 10-20.
    rows = scores.by_length([0, 10, 20])
    assert [(r.label, r.count, r.tokens) for r in rows] == [("0-10", 2, 6), ("10-20", 1, 8), ("20+", 0, 0)]
    assert rows[2].nll is None
    assert scores.tsv().splitlines()[0] == "index\ttokens\tlog_prob\tmean_log_prob"
    assert scores.tsv().splitlines()[2].startswith("1\t2\t")


def test_score_a_checkpoint_from_files(tiny_run, tmp_path: Path) -> None:  # noqa: ANN001
    src, ref = tiny_run.files["valid"]
    out = tmp_path / "scores.tsv"
    result = score(tiny_run.run_dir, src, ref, out=out, device="cpu")
    n = len(Path(ref).read_text(encoding="utf-8").splitlines())
    assert result.sentences == n and len(out.read_text().splitlines()) == n + 1
    assert 0 < result.nll < 20 and sum(r.count for r in result.by_length) == n
    # The same references in Python lists give the same numbers, and the mean is the token-weighted mean.
    again = score(tiny_run.run_dir, sources=Path(src).read_text().splitlines(),
                  references=Path(ref).read_text().splitlines(), device="cpu")
    assert again.nll == pytest.approx(result.nll)
    lps = result.scores.token_log_probs
    assert result.nll == pytest.approx(-sum(lp.sum() for lp in lps) / sum(len(lp) for lp in lps))


def test_bad_input_is_one_clear_error(tiny_run, tmp_path: Path) -> None:  # noqa: ANN001
    src, ref = tiny_run.files["valid"]
    short = tmp_path / "short.en"
    short.write_text("one line\n", encoding="utf-8")
    n = len(Path(src).read_text(encoding="utf-8").splitlines())
    with pytest.raises(NMTError) as refused:
        score(tiny_run.run_dir, src, short, device="cpu")
    assert str(refused.value) == (f"source file {src} has {n} lines but reference file {short} has 1: "
                                  f"they must be line-parallel")
    latin1 = tmp_path / "latin1.en"
    latin1.write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(NMTError, match=f"reference file {latin1}: line 2 is not valid UTF-8"):
        score(tiny_run.run_dir, src, latin1, device="cpu")
    with pytest.raises(NMTError, match="not found"):
        score(tiny_run.run_dir, tmp_path / "missing.de", ref, device="cpu")
    with pytest.raises(NMTError, match="either as a file or as a list"):
        score(tiny_run.run_dir, src, device="cpu")


@pytest.mark.slow
def test_nmt_score_command(tiny_run, tmp_path: Path) -> None:  # noqa: ANN001
    """Through the installed script: the summary and the TSV; mistakes are one line and exit 2."""
    from console import finish, one_error_line, run_script, start_script

    src, ref = tiny_run.files["valid"]
    ok = run_script("nmt-score", [f"checkpoint={tiny_run.run_dir}", f"src_file={src}", f"ref_file={ref}",
                                  f"out={tmp_path / 'valid.tsv'}", "device=cpu"], tmp_path)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "nats per token" in ok.stdout and "by source length: 0-10" in ok.stdout
    assert (tmp_path / "valid.tsv").read_text().startswith("index\ttokens\tlog_prob\tmean_log_prob\n")
    short = tmp_path / "short.en"
    short.write_text("one line\n", encoding="utf-8")
    mistakes = {"lines but reference file": [f"checkpoint={tiny_run.run_dir}", f"src_file={src}", f"ref_file={short}"],
                "checkpointt": [f"checkpointt={tiny_run.run_dir}"],
                "give checkpoint=": [f"src_file={src}"],
                "not found": [f"checkpoint={tiny_run.run_dir}", f"src_file={tmp_path / 'no.de'}", f"ref_file={ref}"],
                "takes one reference file, got 2": [f"checkpoint={tiny_run.run_dir}", f"src_file={src}",
                                                    f"ref_file=[{ref},{ref}]"]}
    started = {words: start_script("nmt-score", [*args, "device=cpu"], tmp_path) for words, args in mistakes.items()}
    for words, proc in started.items():
        assert words in one_error_line(finish(proc, timeout=120))
