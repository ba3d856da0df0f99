"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mirror() -> Path:
    """The read-only corpus mirror ($NMT_DATA_MIRROR, e.g. ../shared/data); skips the test when it is absent."""
    value = os.environ.get("NMT_DATA_MIRROR")
    if not value:
        pytest.skip("NMT_DATA_MIRROR is not set (point it at ../shared/data to run the real-corpus tests)")
    path = Path(value)
    if not (path / "multi30k").is_dir():
        pytest.skip(f"NMT_DATA_MIRROR={value} has no multi30k/ folder")
    return path
