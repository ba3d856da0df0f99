"""`nmt-score`: teacher-forced log-probabilities of given references, no search.

    nmt-score checkpoint=outputs/<run dir> src_file=test.de ref_file=test.en
    nmt-score checkpoint=runs/attn/best.pt src_file=test.de ref_file=test.en out=test.scores.tsv

Prints the per-token negative log-likelihood overall, by source length and by target position; with `out`,
writes one TSV row per sentence (index, tokens, log_prob, mean_log_prob). See nmt/evaluation/scoring.py.
"""

from __future__ import annotations

from omegaconf import DictConfig

from nmt.cli.entry import hydra_command
from nmt.errors import NMTError, user_errors
from nmt.evaluation.report import fmt_num
from nmt.evaluation.scoring import ScoreResult, score


@user_errors
def score_command(cfg: DictConfig) -> ScoreResult:
    if not cfg.checkpoint or not cfg.src_file or not cfg.ref_file:
        raise NMTError("give checkpoint=, src_file= and ref_file= (nmt-score checkpoint=<run dir> "
                       "src_file=x.de ref_file=x.en)")
    result = score(cfg.checkpoint, cfg.src_file, cfg.ref_file, out=cfg.out, device=cfg.device,
                   batch_tokens=cfg.batch_tokens, length_edges=list(cfg.length_edges))
    print(f"{result.checkpoint}: {result.sentences} sentences, {result.tokens} target tokens, "
          f"NLL {result.nll:.4f} nats per token")
    print("by source length: " + ", ".join(f"{r.label} ({r.count}) {fmt_num(r.nll, 3)}" for r in result.by_length))
    print("by target position: " + ", ".join(f"{r.start}+ {r.nll:.3f}" for r in result.by_position))
    if cfg.out:
        print(f"per sentence: {cfg.out}")
    return result


@hydra_command("score")
def main(cfg: DictConfig) -> None:
    score_command(cfg)


if __name__ == "__main__":
    main()
