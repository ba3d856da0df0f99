"""The record of how a run was made: <run dir>/.hydra/ (config.yaml, hydra.yaml, overrides.yaml, as Hydra writes
them), written by the trainer once the run is open, never by Hydra itself (configs/hydra/run.yaml sets
`output_subdir: null`): so a command that is refused (a resume with another model config, a busy run directory)
changes nothing, the files are written atomically (a full disk is one line, no torn file), and a later command on
the same run directory (a resume) never rewrites the record of the first one."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from nmt.io import write_text

RECORD_DIR = ".hydra"


def save_run_record(run_dir: Path, cfg: DictConfig) -> None:
    """Write run_dir/.hydra/ for a run started through Hydra, unless the run has one already."""
    record = run_dir / RECORD_DIR
    if record.exists() or not HydraConfig.initialized():
        return
    hydra_cfg = HydraConfig.get()
    with_hydra = OmegaConf.create({"hydra": OmegaConf.to_container(hydra_cfg)})
    with_hydra.hydra.output_subdir = RECORD_DIR  # where the record is, as Hydra would have said
    # overrides.yaml and hydra.yaml first: config.yaml last marks the record complete
    write_text(record / "overrides.yaml", OmegaConf.to_yaml(hydra_cfg.overrides.task))
    write_text(record / "hydra.yaml", OmegaConf.to_yaml(with_hydra))
    write_text(record / "config.yaml", OmegaConf.to_yaml(cfg))


def run_overrides(run_dir: Path) -> list[str] | None:
    """The command-line overrides the run in `run_dir` was started with (its .hydra/overrides.yaml); None when
    unknown."""
    try:
        overrides = yaml.safe_load((run_dir / RECORD_DIR / "overrides.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    return [str(o) for o in overrides] if isinstance(overrides, list) else None


def how_to_continue(run_dir: Path) -> str:
    """The end of a refused resume's line: the command that continues the run in `run_dir` as it was made."""
    overrides = run_overrides(run_dir)
    if overrides is None:
        return "; repeat the overrides the run was started with, or give a new hydra.run.dir for the new config"
    command = shlex.join(["nmt-train", *overrides, f"hydra.run.dir={run_dir}"])
    return f"; to continue this run: {command} (or give a new hydra.run.dir for the new config)"
