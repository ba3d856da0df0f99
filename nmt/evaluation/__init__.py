"""Evaluation: decode a split with checkpoints and report (evaluate.py), Markdown reports (report.py)."""
