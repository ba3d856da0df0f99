"""Plot valid BLEU against training time for one or more runs, from their metrics.json.

    .venv/bin/python scripts/plot_curves.py outputs/multi30k_de_en/transformer/cpu20 \
        outputs/multi30k_de_en/rnn_attention/cpu20 --out valid_bleu.png \
        --labels "transformer" "rnn_attention" \
        --reference outputs/multi30k_de_en/transformer/cpu20_prev_default "transformer, previous default"

Reference runs (--reference RUN LABEL, repeatable) are drawn dashed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nmt.plots import new_figure, save_png


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories holding metrics.json")
    parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
    parser.add_argument("--labels", nargs="+", help="one legend label per run (default: arch and parameters)")
    parser.add_argument("--reference", nargs=2, action="append", default=[], metavar=("RUN", "LABEL"),
                        help="a reference run (e.g. a previous default), drawn dashed")
    args = parser.parse_args()
    if args.labels and len(args.labels) != len(args.runs):
        parser.error(f"--labels needs one label per run ({len(args.runs)})")

    fig = new_figure(6.4, 4.0)
    ax = fig.add_subplot(1, 1, 1)
    labels = args.labels or [None] * len(args.runs)
    curves = [(run, label, "-") for run, label in zip(args.runs, labels, strict=True)]
    curves += [(Path(run), label, "--") for run, label in args.reference]
    for run, label, style in curves:
        metrics = json.loads((run / "metrics.json").read_text())
        history = metrics["history"]
        label = label or metrics["arch"]
        # Training minutes at each validation, assuming a steady step rate (validation time excluded).
        minutes_per_step = metrics["train_seconds"] / 60 / max(metrics["step"], 1)
        ax.plot(
            [h["step"] * minutes_per_step for h in history],
            [h["bleu"] for h in history],
            marker="o",
            linestyle=style,
            label=f"{label} ({metrics['num_parameters'] / 1e6:.1f}M params)",
        )
    ax.set_xlabel("training minutes")
    ax.set_ylabel("valid BLEU (greedy)")
    ax.grid(alpha=0.3)
    ax.legend()
    print(save_png(fig, args.out))


if __name__ == "__main__":
    main()
