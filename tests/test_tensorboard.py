"""A real TensorBoard server reads a short run's events: scalars, attention images, sample text, hparams.

The server is started the way `make tensorboard` starts it, with --samples_per_plugin=images=1000, so the
image plugin keeps the attention plot of every validation (by default it keeps a sample of 10 steps per tag;
images=0 would keep them all but then serve none).
"""

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
    "train/step_ms",
    "train/data_wait_ms",
    "memory/host_peak_gb",
    "valid/seconds",
    "valid/loss",
    "valid/ppl",
    "valid/bleu",
    "valid/chrf",
}
METRICS = {"valid/bleu", "valid/chrf", "valid/loss", "valid/ppl", "valid/best_bleu"}
STATUSES = ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"]
VALIDATIONS = [2, 4, 6]


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
    cfg = tiny_config(*setup, "train.max_steps=6", "train.eval_every=2", "train.attention_samples=2")
    Trainer(cfg, logdir / "run").fit()
    return logdir


@pytest.mark.slow
def test_tensorboard_server_shows_scalars_images_text_and_hparams(run_dir):
    tensorboard = Path(sys.executable).with_name("tensorboard")
    if not tensorboard.exists():
        pytest.skip("tensorboard is not installed next to the test interpreter")
    port = free_port()
    server = subprocess.Popen(
        [str(tensorboard), "--logdir", str(run_dir), "--host", "127.0.0.1", "--port", str(port),
         "--load_fast", "false", "--reload_interval", "1", "--samples_per_plugin", "images=1000"],
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
        # The final metrics are the valid/* curves' last values in the HParams tab, not one-point charts.
        assert not [tag for tag in scalars["run"] if tag.startswith("hparams/")]
        values = _get(f"{base}/plugin/scalars/scalars?run=run&tag=valid/bleu")
        assert [row[1] for row in values] == VALIDATIONS  # (wall time, step, value): every eval_every steps
        images = _poll(f"{base}/plugin/images/tags", lambda t: "run" in t, deadline)
        assert {"attention/0", "attention/1"} <= set(images["run"])
        for tag in ("attention/0", "attention/1"):  # one plot per validation under one tag: the step slider
            shown = _get(f"{base}/plugin/images/images?run=run&tag={tag}&sample=0")
            assert [image["step"] for image in shown] == VALIDATIONS
        text = _poll(f"{base}/plugin/text/tags", lambda t: "run" in t, deadline)
        assert "valid/samples/text_summary" in text["run"]
        plugins = _poll(f"{base}/plugins_listing", lambda p: "hparams" in p, deadline)
        assert plugins["hparams"]["enabled"]
        experiment = _post(f"{base}/plugin/hparams/experiment", {"experimentName": ""})
        hparams = {h["name"] for h in experiment["hparamInfos"]}
        assert {"model.arch", "train.lr", "data.name"} <= hparams
        metrics = {m["name"]["tag"] for m in experiment["metricInfos"]}
        assert METRICS <= metrics and not [m for m in metrics if m.startswith("hparams/")]
        request = {"experimentName": "", "allowedStatuses": STATUSES, "colParams": [], "startIndex": 0, "sliceSize": 10}
        groups = _post(f"{base}/plugin/hparams/session_groups", request)
        assert [[s["name"] for s in g["sessions"]] for g in groups["sessionGroups"]] == [["run"]]  # no sub-run
        (group,) = groups["sessionGroups"]
        assert group["hparams"]["model.arch"] == "rnn_attention"
        shown = {m["name"]["tag"]: (m["trainingStep"], m["value"]) for m in group["sessions"][0]["metricValues"]}
        assert METRICS <= set(shown)
        history = json.loads((run_dir / "run" / "metrics.json").read_text())["history"]
        final = history[-1]
        for tag, key in (("valid/bleu", "bleu"), ("valid/chrf", "chrf"), ("valid/loss", "valid_loss")):
            assert shown[tag] == (VALIDATIONS[-1], pytest.approx(final[key], rel=1e-5))
        assert shown["valid/best_bleu"][1] == pytest.approx(max(h["bleu"] for h in history), rel=1e-5)
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
