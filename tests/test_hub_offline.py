"""Hub corpora without the network: a fast failure with one line saying how to go on, the datasets cache when the
hub does not answer, the configs to choose from, and one prepared directory per hub corpus."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import datasets
import huggingface_hub.constants as hub_constants
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from console import BIN, one_error_line, script_env

from nmt.config import DataConfig, compose_config
from nmt.data import sources
from nmt.data.corpus import _data_config, prepared_dir
from nmt.errors import NMTError

OFFLINE_LIMIT_S = 5.0  # the whole command, start-up included


@pytest.fixture(autouse=True)
def empty_datasets_cache(tmp_path, monkeypatch):
    """A datasets cache that holds nothing, and no offline variables from the calling environment."""
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")
    for name in (*sources.OFFLINE_VARIABLES, "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)


def hub_cfg(tmp_path: Path, hub_name: str, **kw: object) -> DataConfig:
    return DataConfig(name="hubtest", source="hub", hub_name=hub_name, root=str(tmp_path / "data"), **kw)


def offline_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in script_env().items() if k not in (*sources.OFFLINE_VARIABLES, "HF_ENDPOINT")}
    return env | {"HF_DATASETS_CACHE": str(tmp_path / "hf-cache"), "HF_HOME": str(tmp_path / "hf-home")} | extra


def prepare(tmp_path: Path, env: dict[str, str], *args: str):
    """nmt-prepare through the installed script, timed from start to exit."""
    command = [str(BIN / "nmt-prepare"), "data=hub", "data.hub_name=Helsinki-NLP/opus-100", "data.hub_config=de-en",
               f"data.root={tmp_path / 'data'}", *args]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    return result, time.perf_counter() - start


def assert_offline_hint(line: str) -> None:
    assert "HF_HUB_OFFLINE=1" in line and "data=files" in line and "prepare the corpus once" in line


# Through nmt-prepare ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_unreachable_hub_fails_fast_with_the_hint(tmp_path: Path) -> None:
    """The hub as this machine sees it (no route to huggingface.co), or, where it is reachable, an endpoint that
    refuses connections: either way one line within the limit, not ~25 s of retries."""
    env = offline_env(tmp_path)
    if sources.probe_hub(sources.hub_endpoint(), timeout=2.0) is None:
        env["HF_ENDPOINT"] = "http://127.0.0.1:9"  # the discard port: nothing listens there
    result, seconds = prepare(tmp_path, env)
    line = one_error_line(result)
    assert line.startswith("error: cannot reach the datasets hub at ")
    assert "Helsinki-NLP/opus-100 (de-en) is not in the datasets cache" in line
    assert_offline_hint(line)
    assert seconds < OFFLINE_LIMIT_S, seconds


@pytest.mark.slow
def test_offline_variable_skips_the_network_and_says_so(tmp_path: Path) -> None:
    result, seconds = prepare(tmp_path, offline_env(tmp_path, HF_HUB_OFFLINE="1"))
    line = one_error_line(result)
    assert line.startswith("error: HF_HUB_OFFLINE=1 is set and Helsinki-NLP/opus-100 (de-en) is not in the datasets")
    assert "unset HF_HUB_OFFLINE to download it" in line and "data=files" in line
    assert seconds < OFFLINE_LIMIT_S, seconds


# In the library ----------------------------------------------------------------------------------------------
def test_probe_is_bounded_when_nothing_answers() -> None:
    """A server that accepts the connection and never answers: the probe gives up after its timeout."""
    class Silent(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            stop.wait(5)

    stop = threading.Event()
    server = HTTPServer(("127.0.0.1", 0), Silent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        start = time.perf_counter()
        reason = sources.probe_hub(f"http://127.0.0.1:{server.server_port}", timeout=0.5)
        assert reason is not None and time.perf_counter() - start < 2.0
    finally:
        stop.set()
        server.shutdown()
        server.server_close()


def test_probe_counts_any_http_answer_as_reachable() -> None:
    class NotFound(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert sources.probe_hub(f"http://127.0.0.1:{server.server_port}", timeout=2.0) is None
    finally:
        server.shutdown()
        server.server_close()


def test_unanswered_probe_reads_the_datasets_cache_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an answer the load runs in datasets' offline mode (a cached corpus still loads); afterwards the
    switches are as before."""
    seen = []

    def load_dataset(*args: object, **kwargs: object) -> None:
        seen.append((datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE))
        raise ConnectionError("Couldn't reach 'org/corpus' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(sources, "probe_hub", lambda url, timeout=0: "[Errno -2] Name or service not known")
    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    before = datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE
    logs: list[str] = []
    with pytest.raises(NMTError) as e:
        sources.load_hub(hub_cfg(tmp_path, "org/corpus"), log=logs.append)
    assert seen == [(True, True)] and (datasets.config.HF_HUB_OFFLINE, hub_constants.HF_HUB_OFFLINE) == before
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("cannot reach the datasets hub at https://huggingface.co ([Errno -2] Name or "
                                   "service not known) and org/corpus is not in the datasets cache")
    assert logs == ["the datasets hub at https://huggingface.co does not answer ([Errno -2] Name or service not "
                    "known): loading org/corpus from the datasets cache"]


def two_config_corpus(root: Path) -> Path:
    """A folder laid out like a hub corpus with two configs and no default."""
    for config in ("de-en", "fr-en"):
        (root / config).mkdir(parents=True)
        for split in ("train", "validation"):
            table = pa.table({"translation": [{"de": "ein Hund", "fr": "un chien", "en": "a dog"}]})
            pq.write_table(table, root / config / f"{split}.parquet")
    entries = "".join(
        f"- config_name: {c}\n  data_files:\n  - split: train\n    path: {c}/train.parquet\n"
        f"  - split: validation\n    path: {c}/validation.parquet\n" for c in ("de-en", "fr-en"))
    (root / "README.md").write_text(f"---\nconfigs:\n{entries}---\n")
    return root


@pytest.mark.parametrize("hub_config, says", [(None, "needs a config (data.hub_config)"),
                                              ("xx-yy", "has no config 'xx-yy'")])
def test_missing_or_wrong_config_lists_the_configs(tmp_path: Path, hub_config: str | None, says: str) -> None:
    root = two_config_corpus(tmp_path / "two")
    with pytest.raises(NMTError) as e:
        sources.load_hub(hub_cfg(tmp_path, str(root), hub_config=hub_config), log=lambda _: None)
    assert str(e.value) == f"{root} {says}; set data.hub_config=<one of its configs>: de-en, fr-en"


def test_a_long_config_list_puts_the_language_pair_first() -> None:
    names = [f"{a}-{b}" for a in ("af", "am", "ar", "az", "be", "bg", "bn") for b in ("en", "fr")] + ["de-en"]
    listing = sources.config_listing(names, "de", "en")
    assert listing.startswith("de-en, af-en, af-fr") and listing.endswith(f", ... ({len(names)} in all)")


def test_hub_preset_cache_name_follows_the_corpus_and_direction() -> None:
    names = {}
    for overrides in ([], ["data.hub_name=Helsinki-NLP/opus-100"], ["data.src_lang=en", "data.tgt_lang=de"]):
        data = compose_config("prepare", ["data=hub", *overrides]).data
        names[tuple(overrides)] = prepared_dir(_data_config(data)).name
    assert names == {(): "wmt14_de_en", ("data.hub_name=Helsinki-NLP/opus-100",): "Helsinki-NLP--opus-100_de_en",
                     ("data.src_lang=en", "data.tgt_lang=de"): "wmt14_en_de"}


def test_offline_variables_are_read_at_call_time(monkeypatch: pytest.MonkeyPatch) -> None:
    assert sources.offline_requested() is None
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "true")
    assert sources.offline_requested() == "HF_DATASETS_OFFLINE"
    assert os.environ["HF_DATASETS_OFFLINE"] == "true"
