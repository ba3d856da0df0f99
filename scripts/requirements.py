"""What `make install TORCH=system` and `make wheels` need to know of pyproject.toml, with the standard library only
(it runs before anything is installed).

    python scripts/requirements.py check-torch   # the interpreter's own torch is one nmt supports, else one line
    python scripts/requirements.py list          # nmt's requirements (with the dev, fast and mlflow extras) but torch
"""

from __future__ import annotations

import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
# What `make install` and `make test` / `make test-fast` install (the comet extra has a venv of its own).
EXTRAS = ("dev", "fast", "mlflow")


def requirements() -> list[str]:
    """The dependencies of pyproject.toml and of its EXTRAS, as written there."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return project["dependencies"] + [r for extra in EXTRAS for r in project["optional-dependencies"][extra]]


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower()


def release(version: str) -> tuple[int, ...]:
    """(2, 11, 0) of "2.11.0+cu130" or "2.4.0a0"."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def lowest_torch() -> str:
    """The version after `torch>=` in pyproject.toml."""
    (torch,) = [r for r in requirements() if name_of(r) == "torch"]
    found = re.search(r">=\s*([\d.]+)", torch)
    if found is None:
        raise SystemExit(f"error: pyproject.toml's torch requirement {torch!r} has no lower bound")
    return found.group(1)


def check_torch() -> None:
    lowest = lowest_torch()
    try:
        have = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"error: TORCH=system, but {sys.executable} has no torch: install torch>={lowest} into "
                         "that interpreter first, or leave TORCH out to install torch into .venv") from None
    if release(have) < release(lowest):
        raise SystemExit(f"error: {sys.executable} has torch {have}, older than {lowest}, the oldest nmt supports")
    print(f"torch {have} of {sys.executable} (nmt needs >= {lowest})")


def main(argv: list[str]) -> None:
    if argv == ["check-torch"]:
        check_torch()
    elif argv == ["list"]:
        print("\n".join(r for r in requirements() if name_of(r) != "torch"))
    else:
        raise SystemExit("usage: python scripts/requirements.py check-torch | list")


if __name__ == "__main__":
    main(sys.argv[1:])
