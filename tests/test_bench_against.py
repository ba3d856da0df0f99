"""scripts/bench_against.py: training tokens/s of this tree against a git revision (the timing child
scripts/revision_probe.py run A B A B) and against an earlier `nmt-bench` JSON."""

from __future__ import annotations

import pytest

from nmt.bench import benchmark
from nmt.cli import bench as bench_cli
from nmt.config import DataConfig, TokenizerConfig
from nmt.errors import NMTError

import bench_against


@pytest.mark.slow
def test_against_a_revision_and_an_earlier_json(tiny_corpus_files, tmp_path, one_thread):
    """The side-by-side comparison with a git revision (here HEAD itself) and with a saved report."""
    data = DataConfig(name="bench_tiny", source="files", files=tiny_corpus_files, root=str(tmp_path / "data"),
                      tokenizer=TokenizerConfig(vocab_size=250))
    args = bench_cli.parse_args(["--small", "--models", "rnn_fixed", "--device", "cpu", "--threads", "1", "--steps",
                                 "2", "--warmup", "1", "--batch-tokens", "600", "--decode-sentences", "0", "--out",
                                 str(tmp_path / "bench.json")])
    run = benchmark.run_benchmark(args, data)
    cmp = bench_against.against_revision("HEAD", ["rnn_fixed_small"], run.batches, run.vocab, warmup=1, rounds=2,
                                         threads=1)
    row = cmp["models"]["rnn_fixed_small"]
    assert len(row["all"]["this"]) == len(row["all"]["revision"]) == 2 and row["this"] > 0 and row["revision"] > 0
    assert row["ratio"] == pytest.approx(row["this"] / row["revision"]) and len(cmp["commit"]) == 40
    assert "| rnn_fixed_small |" in bench_against.markdown(cmp)
    saved = bench_against.against_json(tmp_path / "bench.json", run.report)
    assert saved["models"]["rnn_fixed_small"]["ratio"] == pytest.approx(1.0)
    with pytest.raises(NMTError, match="not a JSON report of nmt-bench"):
        bench_against.against_json(tmp_path / "nothing.json", run.report)
    with pytest.raises(NMTError, match="not a git revision"):
        bench_against.against_revision("no-such-rev", ["rnn_fixed_small"], run.batches, run.vocab, 1, 1, 1)


def test_the_script_needs_a_revision_or_a_json_first(capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench_against.main(["--models", "transformer"])
    assert exit_info.value.code != 0 and "usage: scripts/bench_against.py REV|FILE.json" in capsys.readouterr().err
