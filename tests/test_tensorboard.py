"""A real TensorBoard server reads a short run's events: scalars, attention images, sample text, hparams."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from train_utils import free_port, tiny_config, write_corpus

from nmt.training.trainer import Trainer

torch.set_num_threads(1)

SCALARS = {
    "train/loss",
    "train/lr",
    "train/grad_norm",
    "train/tokens_per_sec",
    "train/padding_fraction",
    "valid/loss",
    "valid/ppl",
    "valid/bleu",
    "valid/chrf",
}


def _get(url: str) -> dict | list | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def _poll(url: str, ready, deadline: float):
    """GET `url` until `ready(json)` holds (the server loads event files in the background) or time runs out."""
    data = None
    while time.monotonic() < deadline:
        data = _get(url)
        if data is not None and ready(data):
            return data
        time.sleep(0.25)  # polling interval of a condition check, not a fixed wait for the server
    raise AssertionError(f"{url} never became ready; last answer: {data}")


@pytest.fixture(scope="module")
def run_dir(mirror, tmp_path_factory) -> Path:
    base = tmp_path_factory.getbasetemp() / "nmt-train"
    setup = write_corpus(mirror, base / "corpus"), base / "data"
    logdir = tmp_path_factory.mktemp("tb")
    cfg = tiny_config(*setup, "train.max_steps=2", "train.eval_every=2", "train.attention_samples=2")
    Trainer(cfg, logdir / "run").fit()
    return logdir


def test_tensorboard_server_shows_scalars_images_text_and_hparams(run_dir):
    tensorboard = Path(sys.executable).with_name("tensorboard")
    if not tensorboard.exists():
        pytest.skip("tensorboard is not installed next to the test interpreter")
    port = free_port()
    server = subprocess.Popen(
        [str(tensorboard), "--logdir", str(run_dir), "--host", "127.0.0.1", "--port", str(port),
         "--load_fast", "false", "--reload_interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/data"
    try:
        deadline = time.monotonic() + 90
        runs = _poll(f"{base}/runs", lambda runs: "run" in runs, deadline)
        assert runs == ["run"]
        scalars = _poll(f"{base}/plugin/scalars/tags", lambda t: SCALARS <= set(t.get("run", {})), deadline)
        assert SCALARS <= set(scalars["run"])
        images = _poll(f"{base}/plugin/images/tags", lambda t: "run" in t, deadline)
        assert {"attention/0", "attention/1"} <= set(images["run"])
        text = _poll(f"{base}/plugin/text/tags", lambda t: "run" in t, deadline)
        assert "valid/samples/text_summary" in text["run"]
        plugins = _poll(f"{base}/plugins_listing", lambda p: "hparams" in p, deadline)
        assert plugins["hparams"]["enabled"]
        experiment = _post(f"{base}/plugin/hparams/experiment", {"experimentName": ""})
        hparams = {h["name"] for h in experiment["hparamInfos"]}
        assert {"model.arch", "train.lr", "data.name"} <= hparams
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert {"hparams/bleu", "hparams/best_bleu", "hparams/valid_loss"} <= metrics
        values = _get(f"{base}/plugin/scalars/scalars?run=run&tag=valid/bleu")
        assert [row[1] for row in values] == [2]  # (wall time, step, value): one validation at step 2
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
