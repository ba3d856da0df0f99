"""Experiments: several trainings turned into verdicts (bottleneck.py, claims.py, with runner.py and
verdicts.py), and the speed benchmark (benchmark.py)."""
