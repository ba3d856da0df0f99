"""Thin Hydra entry points: nmt-prepare, nmt-train, nmt-evaluate, nmt-translate, nmt-average."""
