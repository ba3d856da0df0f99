"""The test tiers and the corpus-mirror guard of tests/conftest.py, run on a throwaway test file."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
USES_MIRROR = """
import pytest

def test_reads_the_corpus(mirror):
    assert mirror.is_dir()

def test_needs_nothing():
    pass

@pytest.mark.slow
def test_long():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(test_sample=USES_MIRROR)
    markers = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]["markers"]
    pytester.makeini("[pytest]\nmarkers =\n" + "".join(f"    {marker}\n" for marker in markers))
    monkeypatch.delenv("NMT_DATA_MIRROR", raising=False)
    monkeypatch.delenv("NMT_REQUIRE_MIRROR", raising=False)
    return pytester


def test_without_the_mirror_the_run_says_how_many_skip_and_why(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess("--strict-markers")  # `slow` is registered in pyproject.toml
    result.assert_outcomes(passed=2, skipped=1)
    result.stdout.fnmatch_lines(["*1 tests skipped, by reason*", "*1  NMT_DATA_MIRROR is not set*"])


def test_a_promised_mirror_that_is_missing_fails(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMT_REQUIRE_MIRROR", "1")
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*NMT_REQUIRE_MIRROR=1 promises the corpus mirror*"])


def test_the_fast_tier_leaves_out_slow_tests(suite: pytest.Pytester) -> None:
    suite.runpytest_inprocess("-m", "not slow").assert_outcomes(passed=1, skipped=1, deselected=1)
