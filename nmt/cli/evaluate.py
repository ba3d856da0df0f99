"""`nmt-evaluate`: decode a split (or a pair of files) with checkpoints and report sacreBLEU.

    nmt-evaluate checkpoints='[outputs/multi30k_de_en/rnn_attention/<time>]'            # its best.pt, test set
    nmt-evaluate checkpoints='[runs/attn,runs/fixed]' baseline=runs/fixed split=valid    # + paired test
    nmt-evaluate checkpoints='[runs/attn]' average_last=3 decode=greedy                  # average last 3
    nmt-evaluate checkpoints='[runs/attn/best.pt]' src_file=x.de ref_file=x.en out_dir=eval/x
    nmt-evaluate checkpoints='[runs/attn]' src_file=x.de 'ref_file=[x.ref1.en,x.ref2.en]'  # several references
    nmt-evaluate checkpoints='[runs/attn]' baseline=other_system.txt                     # baseline hypotheses

Everything goes into a NEW directory (default <run dir>/eval/<split>-<time>); see nmt/evaluation/evaluate.py.
"""

from __future__ import annotations

from omegaconf import DictConfig

from nmt.cli.entry import hydra_command
from nmt.errors import user_errors
from nmt.evaluation.evaluate import evaluate
from nmt.evaluation.report import EvaluationReport, p_text
from nmt.metrics import METRICS


@user_errors
def evaluate_command(cfg: DictConfig) -> EvaluationReport:
    report = evaluate(cfg)
    comet = f" | COMET {{:.4f}} ({report.comet_model})" if report.comet_model else ""
    for s in report.systems:
        print(f"{s.name}: " + " | ".join(f"{m.column} {s.scores.score(m.name):.2f}" for m in METRICS.values())
              + comet.format(s.comet))
    for c in report.comparisons:
        for o, metric, digits in [(c.overall, "BLEU", 2)] + ([(c.comet, "COMET", 4)] if c.comet else []):
            p = "p n/a" if o.p_value is None else p_text(o.p_value, int(cfg.bootstrap_samples))
            print(f"{c.system} - {c.baseline}: {o.difference:+.{digits}f} {metric} "
                  f"[{o.difference_ci[0]:+.{digits}f}, {o.difference_ci[1]:+.{digits}f}], {p}")
    print(f"report: {report.report_file}")
    return report


@hydra_command("evaluate")
def main(cfg: DictConfig) -> None:
    evaluate_command(cfg)


if __name__ == "__main__":
    main()
