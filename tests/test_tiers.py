"""The test tiers and the corpus-mirror guard of tests/conftest.py, run on a throwaway test file."""

from __future__ import annotations

import gzip
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
USES_MIRROR = """
import pytest

def test_reads_the_corpus(mirror):
    assert (mirror / "multi30k" / "train.de.gz").is_file()

def test_needs_the_real_corpus(real_mirror):
    pass

def test_needs_nothing():
    pass

@pytest.mark.slow
def test_long():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    (pytester.path / "fixtures").mkdir()
    (pytester.path / "fixtures" / "sample_mirror").symlink_to(CONFTEST.parent / "fixtures" / "sample_mirror")
    pytester.makepyfile(test_sample=USES_MIRROR)
    markers = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["pytest"]["ini_options"]["markers"]
    pytester.makeini("[pytest]\nmarkers =\n" + "".join(f"    {marker}\n" for marker in markers))
    monkeypatch.delenv("NMT_DATA_MIRROR", raising=False)
    monkeypatch.delenv("NMT_REQUIRE_MIRROR", raising=False)
    return pytester


def test_without_the_mirror_the_sample_stands_in_and_the_run_says_what_skipped(suite: pytest.Pytester) -> None:
    result = suite.runpytest_inprocess("--strict-markers")  # `slow` is registered in pyproject.toml
    result.assert_outcomes(passed=3, skipped=1)  # only the test that needs the real corpora skips
    result.stdout.fnmatch_lines(["*1 tests skipped, by reason*", "*1  NMT_DATA_MIRROR is not set*cannot stand in*",
                                 "*tests that read a corpus use the constructed sample*"])


def test_a_promised_mirror_that_is_missing_fails(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NMT_REQUIRE_MIRROR", "1")
    result = suite.runpytest_inprocess()
    result.assert_outcomes(passed=2, errors=2)
    result.stdout.fnmatch_lines(["*NMT_REQUIRE_MIRROR=1 promises the corpus mirror*"])


def test_the_fast_tier_leaves_out_slow_tests(suite: pytest.Pytester) -> None:
    suite.runpytest_inprocess("-m", "not slow").assert_outcomes(passed=2, skipped=1, deselected=1)


def test_the_committed_sample_corpus_is_what_its_script_writes(tmp_path: Path) -> None:
    sample = CONFTEST.parent / "fixtures" / "sample_mirror" / "multi30k"
    script = CONFTEST.parents[1] / "scripts" / "make_sample_corpus.py"
    subprocess.run([sys.executable, str(script), str(tmp_path)], check=True, capture_output=True, timeout=120)
    committed = sorted(p.name for p in sample.iterdir())
    assert committed == sorted(p.name for p in (tmp_path / "multi30k").iterdir())
    assert all((tmp_path / "multi30k" / name).read_bytes() == (sample / name).read_bytes() for name in committed)
    for split in ("train", "val", "test_2016_flickr"):  # line-aligned pairs, as in the mirror
        de, en = (gzip.decompress((sample / f"{split}.{lang}.gz").read_bytes()).decode().splitlines()
                  for lang in ("de", "en"))
        assert len(de) == len(en) > 0
