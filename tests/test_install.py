"""`pip install .` outside the checkout: the wheel carries configs/ as nmt/configs/ and its commands run from any
directory; the editable install (`make install`) keeps reading the top-level configs/.

Each install goes into a fresh venv without pip (the test's own pip installs into it via --python, with
--ignore-installed so it neither looks at nor removes anything outside that venv); a .pth file lets the venv
import the heavy dependencies (torch, hydra, setuptools for the editable build, ...) from the test's
environment. A .pth line only adds a path, it does not run the .pth files there, so the test environment's
editable nmt stays inactive and the venv imports its own copy.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from train_utils import REPO, overrides, write_corpus

BUILD_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "data", "outputs", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
)


def _run(args: list, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env |= {"OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, f"{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


def _checkout_copy(dest: Path) -> Path:
    """The files of the checkout (tracked or not ignored), so no stale build/ of the real tree gets in."""
    if shutil.which("git") and (REPO / ".git").exists():
        listed = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, capture_output=True, check=True,
        ).stdout.decode().split("\0")  # fmt: skip
        for name in filter(None, listed):
            if (REPO / name).is_file():
                (dest / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / name, dest / name)
    else:
        shutil.copytree(REPO, dest, ignore=BUILD_IGNORE, dirs_exist_ok=True)
    return dest


def _venv(path: Path, *pip_args: str) -> Path:
    """A venv that sees the test environment's packages, with `pip install --no-deps <pip_args>` done."""
    _run([sys.executable, "-m", "venv", "--without-pip", path], cwd=path.parent)
    python = path / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=path).stdout
    Path(purelib.strip(), "test-environment.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = [sys.executable, "-m", "pip", "--python", python]
    _run([*pip, "install", "-q", "--no-deps", "--no-index", "--ignore-installed", *pip_args], cwd=path.parent)
    return python


def _where(python: Path, cwd: Path) -> tuple[Path, Path]:
    code = "import nmt, nmt.config; print(nmt.__file__); print(nmt.config.CONFIG_DIR)"
    module, config_dir = _run([python, "-c", code], cwd=cwd).stdout.split()
    return Path(module).resolve(), Path(config_dir).resolve()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    source = _checkout_copy(root / "src")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", root, "."], source)
    (built,) = root.glob("nmt_bottleneck-*.whl")  # the distribution nmt-bottleneck, imported as nmt
    return built


def test_wheel_has_every_package_and_config(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    packages = sorted(p.parent.relative_to(REPO).as_posix() for p in (REPO / "nmt").rglob("__init__.py"))
    missing = [p for p in packages if f"{p}/__init__.py" not in names]
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"
    configs = sorted(p.relative_to(REPO / "configs").as_posix() for p in (REPO / "configs").rglob("*.yaml"))
    assert configs and [c for c in configs if f"nmt/configs/{c}" not in names] == []
    assert not [n for n in names if n.startswith("configs/")]  # inside the package, not a top-level "configs"


def test_wheel_ships_the_toolkit_without_the_lab(wheel):
    """The peer benchmark and the revision comparison live in scripts/, outside the wheel."""
    names = zipfile.ZipFile(wheel).namelist()
    assert all(n.split("/")[0] == "nmt" or n.split("/")[0].endswith(".dist-info") for n in names)
    lab = [n for n in names if any(word in n for word in ("peer", "joey", "revision_probe", "bench_against"))]
    assert not lab, f"lab code in the wheel: {lab}"


@pytest.mark.slow
def test_installed_wheel_runs_from_any_directory(wheel, mirror, tmp_path):
    python = _venv(tmp_path / "venv", wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    module, config_dir = _where(python, work)
    site = (tmp_path / "venv").resolve()
    assert module.is_relative_to(site), f"imported {module}, not the wheel installed in {site}"
    assert config_dir.is_relative_to(site) and config_dir.name == "configs" and config_dir.parent == module.parent
    bin_dir = tmp_path / "venv" / "bin"
    assert "multi30k_de_en" in _run([bin_dir / "nmt-prepare", "--help"], cwd=work).stdout  # its config groups
    corpus = write_corpus(mirror, work / "corpus")
    args = overrides(corpus, work / "data", "train.max_steps=3", "train.eval_every=3", f"hydra.run.dir={work}/run")
    _run([bin_dir / "nmt-train", *args], cwd=work)
    assert (work / "run" / "last.pt").is_file() and (work / "run" / "train.log").is_file()
    assert not (REPO / "nmt" / "configs").exists()  # the checkout still has configs/ in one place


@pytest.mark.slow
def test_editable_install_reads_the_top_level_configs(tmp_path):
    python = _venv(tmp_path / "venv", "--no-build-isolation", "-e", REPO)
    work = tmp_path / "elsewhere"
    work.mkdir()
    module, config_dir = _where(python, work)
    assert module == (REPO / "nmt" / "__init__.py").resolve()
    assert config_dir == (REPO / "configs").resolve()
    assert "multi30k_de_en" in _run([tmp_path / "venv" / "bin" / "nmt-prepare", "--help"], cwd=work).stdout
