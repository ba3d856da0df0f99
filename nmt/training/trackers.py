"""Experiment trackers besides TensorBoard, chosen by `train.trackers` (off by default): `[mlflow]` mirrors a
training run into MLflow (pip install 'nmt-bottleneck[mlflow]').

The run's logger (nmt.training.run_log.RunLogger) stays the one path for scalars: every scalar it writes to
TensorBoard it hands, with the same tag, step and value, to each tracker (the `Tracker` protocol there). A tracker
also records the run's config when it opens (MLflow params: the flattened config of TensorBoard's HParams table)
and, when the run closes, the files the run has written by then (`ARTIFACTS`). Only rank 0 logs, so only rank 0
tracks.

MLflow: runs go to $MLFLOW_TRACKING_URI when it is set, else to a SQLite store inside the run directory,
sqlite:///<run dir>/mlflow.db, with the artifacts in <run dir>/mlartifacts/ (MLflow 3 refuses its plain-file store
`mlruns/` unless told otherwise, and SQLite is its own local store). The experiment is `train.mlflow_experiment`,
by default the corpus's `data.name`. A resumed run continues its MLflow run, whose id <run dir>/mlflow_run_id
keeps; params already logged keep the value they were first logged with (MLflow never changes a param), and steps
logged after the last checkpoint of a crashed run stay in MLflow's history (TensorBoard drops them on resume).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nmt.errors import NMTError
from nmt.io import write_text
from nmt.training.run_log import Tracker, flatten_config

RUN_ID_FILE = "mlflow_run_id"  # in the run directory: the MLflow run a resume continues
STORE_FILE = "mlflow.db"  # the run directory's own store, when MLFLOW_TRACKING_URI is not set
ARTIFACT_DIR = "mlartifacts"
# What a run has written when it closes: its metrics, its log and the record of its config (nmt.training.record).
ARTIFACTS = ("metrics.json", "train.log", ".hydra/config.yaml")
PARAMS_PER_CALL = 100  # MLflow's limit of params in one log_batch


def check_trackers(names: Sequence[str]) -> None:
    """NMTError for a tracker whose package is missing, before anything of the run is read or written (the names
    themselves are checked with the other choices: nmt.config.CHOICES)."""
    if "mlflow" in names:
        try:
            import mlflow  # noqa: F401  (the optional extra: only its presence is checked here)
        except ImportError:
            raise NMTError("train.trackers=[mlflow] needs the mlflow extra: pip install 'nmt-bottleneck[mlflow]'") \
                from None


def make_trackers(names: Sequence[str], run_dir: Path, experiment: str, config: Mapping[str, Any]
                  ) -> list[Tracker]:
    """The trackers of `train.trackers`, not yet opened (RunLogger opens them with its files)."""
    return [MlflowTracker(run_dir, experiment or "nmt", config) for name in names if name == "mlflow"]


class MlflowTracker:
    """One training run as one MLflow run: params at `open`, metrics at each `scalars`, artifacts at `close`."""

    def __init__(self, run_dir: Path, experiment: str, config: Mapping[str, Any]) -> None:
        self.run_dir, self.experiment, self.config = Path(run_dir), experiment, config
        self.client: Any = None
        self.run_id: str | None = None

    @property
    def tracking_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{self.run_dir / STORE_FILE}"

    def open(self) -> None:
        """Start the MLflow run, or continue the one this run directory started, and log the config as params;
        NMTError naming the store when MLflow cannot."""
        from mlflow.exceptions import MlflowException  # the optional extra (check_trackers made sure it is there)

        for name in ("mlflow", "alembic"):  # creating a SQLite store logs its schema migrations at INFO
            logging.getLogger(name).setLevel(logging.WARNING)
        try:
            self._open()
        except MlflowException as e:
            raise NMTError(f"cannot open an MLflow run in {self.tracking_uri}: {str(e).splitlines()[0]}") from None

    def _open(self) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        self.client = MlflowClient(self.tracking_uri)
        run = self._stored_run()
        if run is None:
            run = self.client.create_run(self._experiment_id(), run_name=self.run_dir.name)
            write_text(self.run_dir / RUN_ID_FILE, run.info.run_id + "\n")
        else:
            self.client.update_run(run.info.run_id, status="RUNNING")
        self.run_id = run.info.run_id
        params = [Param(k, str(v)) for k, v in flatten_config(self.config).items() if k not in run.data.params]
        for start in range(0, len(params), PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=params[start : start + PARAMS_PER_CALL])

    def _stored_run(self) -> Any:
        """The MLflow run of an earlier session of this run directory, if the store still has it."""
        from mlflow.exceptions import MlflowException

        path = self.run_dir / RUN_ID_FILE
        if not path.is_file():
            return None
        try:
            return self.client.get_run(path.read_text(encoding="utf-8").strip())
        except MlflowException:  # another store now (MLFLOW_TRACKING_URI changed): a new MLflow run
            return None

    def _experiment_id(self) -> str:
        found = self.client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        own_store = not os.environ.get("MLFLOW_TRACKING_URI")  # else the tracking server decides where artifacts go
        location = (self.run_dir / ARTIFACT_DIR).as_uri() if own_store else None
        return self.client.create_experiment(self.experiment, artifact_location=location)

    def scalars(self, values: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        if self.run_id is None or not values:
            return
        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(tag, float(v), now, step) for tag, v in values.items()])

    def close(self, failed: bool) -> None:
        """Store the run's files as artifacts and end the MLflow run (FAILED when the training failed)."""
        if self.run_id is None:
            return
        for name in ARTIFACTS:
            if (self.run_dir / name).is_file():
                self.client.log_artifact(self.run_id, str(self.run_dir / name))
        self.client.set_terminated(self.run_id, "FAILED" if failed else "FINISHED")
        self.run_id = None
