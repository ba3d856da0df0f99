"""Evaluation: decode a split with checkpoints and report (evaluate.py), translate from Python (translator.py),
Markdown reports (report.py)."""
