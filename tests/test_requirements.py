"""scripts/requirements.py, which `make install TORCH=system` and `make wheels` run before anything is installed:
the interpreter's own torch is checked against pyproject.toml's lower bound, and the requirements but torch are
listed for the wheel folder of an offline machine."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "requirements.py"


def run(args: list[str], site: Path | None = None) -> subprocess.CompletedProcess:
    """The script under a bare interpreter (-S: no site-packages), seeing only `site` (a folder of dist-infos)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | ({"PYTHONPATH": str(site)} if site else {})
    return subprocess.run([sys.executable, "-S", str(SCRIPT), *args], capture_output=True, text=True, env=env,
                          timeout=60)


def fake_torch(tmp_path: Path, version: str) -> Path:
    """A site folder where importlib.metadata finds torch `version` (no torch code: the check never imports it)."""
    info = tmp_path / f"torch-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n", encoding="utf-8")
    return tmp_path


def lowest_torch() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["dependencies"]
    (torch,) = [d for d in deps if d.startswith("torch")]
    return torch.split(">=")[1].split(",")[0].strip()


@pytest.mark.parametrize("version", ["2.11.0+cu130", "2.13.0+cpu"])
def test_a_supported_system_torch_passes(tmp_path, version):
    done = run(["check-torch"], fake_torch(tmp_path, version))
    assert done.returncode == 0 and f"torch {version}" in done.stdout


def test_an_older_or_missing_system_torch_is_refused_in_one_line(tmp_path):
    assert lowest_torch() == "2.4"  # torch.is_autocast_enabled(device_type), used by nmt/models/rnn.py
    done = run(["check-torch"], fake_torch(tmp_path / "old", "2.3.1"))
    assert done.returncode != 0 and done.stderr.strip() == (
        f"error: {sys.executable} has torch 2.3.1, older than 2.4, the oldest nmt supports")
    missing = run(["check-torch"], tmp_path / "empty")
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1
    assert "has no torch" in missing.stderr


def test_the_wheel_list_is_every_requirement_but_torch():
    """Every requirement of every extra the Makefile installs into .venv (make install, make test / test-fast), so
    that those targets work offline from `make wheels`."""
    listed = run(["list"]).stdout.split()
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = [extra for line in (REPO / "Makefile").read_text().splitlines() if line.startswith("\t$(PY) -m pip")
              for group in re.findall(r"-e '\.\[([a-z,]+)\]'", line) for extra in group.split(",")]
    assert extras == ["dev", "fast", "mlflow"]
    expected = project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]
    assert listed == [r for r in expected if not r.startswith("torch")]
