"""train.trackers=[mlflow]: a tiny real training run mirrored into a real MLflow store (SQLite in the run
directory): the TensorBoard scalars tag by tag and step by step, the config as params, the run's files as artifacts,
a resume that continues the same MLflow run, and the one-line refusals before training starts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from train_utils import overrides, tiny_config, train_cli, write_corpus

from nmt.config import typed_config
from nmt.training.run_log import flatten_config
from nmt.training.trainer import Trainer

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def setup(mirror, tmp_path_factory):
    """(corpus dir, prepared-data root), the same tiny corpus as the training tests."""
    base = tmp_path_factory.getbasetemp() / "nmt-train"
    return write_corpus(mirror, base / "corpus"), base / "data"


@pytest.fixture(scope="module")
def tracked(setup, tmp_path_factory, monkeypatch_module) -> tuple[Path, str, dict]:
    """(run dir, the MLflow run id of its first session, its config): 4 steps validated at 2 and 4, then resumed
    to 6 steps in the same run directory."""
    pytest.importorskip("mlflow", reason="MLflow is not installed (pip install -e '.[mlflow]')")
    monkeypatch_module.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_dir = tmp_path_factory.mktemp("mlflow") / "run"
    given = ("train.eval_every=2", "train.trackers=[mlflow]", "train.mlflow_experiment=tiny-exp")
    cfg = tiny_config(*setup, *given)
    Trainer(cfg, run_dir).fit()
    first = (run_dir / "mlflow_run_id").read_text().strip()
    Trainer(tiny_config(*setup, *given, "train.max_steps=6", "train.resume=auto"), run_dir).fit()
    return run_dir, first, OmegaConf.to_container(typed_config(cfg), resolve=True)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.slow
def test_mlflow_holds_the_tensorboard_scalars_params_and_files_of_the_run(tracked):
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, first, config = tracked
    client = MlflowClient(f"sqlite:///{run_dir / 'mlflow.db'}")
    run_id = (run_dir / "mlflow_run_id").read_text().strip()
    assert run_id == first  # the resume continued the MLflow run
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "tiny-exp"
    assert len(client.search_runs([run.info.experiment_id])) == 1

    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "valid/bleu", "valid/loss", "memory/host_peak_gb"} <= set(tags)
    assert set(run.data.metrics) == set(tags)
    for tag in tags:
        tensorboard = [(e.step, e.value) for e in events.Scalars(tag)]
        history = sorted(client.get_metric_history(run_id, tag), key=lambda m: (m.step, m.timestamp))
        assert [(m.step, float(np.float32(m.value))) for m in history] == tensorboard, tag  # events hold float32
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [1, 2, 3, 4, 5, 6]
    assert sorted(m.step for m in client.get_metric_history(run_id, "valid/bleu")) == [2, 4, 6]

    assert run.data.params == {k: str(v) for k, v in flatten_config(config).items()}
    assert run.data.params["train.trackers"] == "['mlflow']" and run.data.params["train.max_steps"] == "4"
    assert {a.path for a in client.list_artifacts(run_id)} == {"metrics.json", "train.log"}
    stored = Path(client.download_artifacts(run_id, "metrics.json", str(run_dir.parent)))
    assert json.loads(stored.read_text()) == json.loads((run_dir / "metrics.json").read_text())
    assert json.loads(stored.read_text())["step"] == 6


def test_trackers_are_refused_in_one_line_before_training(setup, tmp_path, monkeypatch, capsys):
    """An unknown name, and mlflow without its package: exit 2, one line, nothing of the run written."""
    monkeypatch.setitem(sys.modules, "mlflow", None)  # what `import mlflow` meets where the extra is missing
    for given, expected in (("train.trackers=[mlflow]", "error: train.trackers=[mlflow] needs the mlflow extra: pip "
                                                        "install 'nmt-bottleneck[mlflow]'"),
                            ("train.trackers=[wandb]", "error: unknown train.trackers='wandb'; valid values: mlflow")):
        run_dir = tmp_path / given.split("[")[1].rstrip("]")
        capsys.readouterr()
        assert train_cli(monkeypatch, overrides(*setup, given, f"hydra.run.dir={run_dir}")) == 2
        assert capsys.readouterr().err.strip().splitlines() == [expected]
        assert [p.name for p in run_dir.iterdir()] == [".lock"]  # nmt-train's lock on its run directory only
