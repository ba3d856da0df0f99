"""Experiments: several trainings turned into verdicts (bottleneck.py, claims.py), with their runner
(runner.py), verdict rules (verdicts.py) and reports."""
