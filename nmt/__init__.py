"""nmt: a small, fast, honest neural machine translation lab.

    from nmt import Translator, evaluate, score
    Translator.from_checkpoint("outputs/<run dir>").translate(["Ein Hund läuft im Schnee."])
    report = evaluate(["outputs/<run dir>"], split="test")      # the numbers nmt-evaluate writes
    nll = score("outputs/<run dir>", "test.de", "test.en").nll  # reference log-likelihood, no search

The names are imported lazily, so `import nmt.data` does not pay for torch's model code.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Translator", "evaluate", "score"]


def __getattr__(name: str) -> Any:
    if name == "Translator":
        from nmt.inference.translator import Translator

        return Translator
    if name == "evaluate":
        from nmt.evaluation.evaluate import evaluate_checkpoints

        return evaluate_checkpoints
    if name == "score":
        from nmt.evaluation.scoring import score

        return score
    raise AttributeError(f"module 'nmt' has no attribute {name!r}")
