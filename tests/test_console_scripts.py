"""Every console script answers a config mistake (unknown key, wrong type, unknown group option or choice) with
one stderr line naming the key (and the valid choices), exit code 2, and writes nothing: run as a user runs
them, through the installed nmt-* scripts."""

from __future__ import annotations

import pytest
from console import finish, one_error_line, start_script

# script -> [(arguments, words the error line must contain)]
MISTAKES: dict[str, list[tuple[list[str], list[str]]]] = {
    "nmt-prepare": [
        (["data.batch_tokenz=1"], ["data.batch_tokenz", "did you mean train.batch_tokens"]),
        (["train.max_steps=abc"], ["train.max_steps", "abc"]),
        (["model=nope"], ["model=nope", "rnn_attention", "rnn_fixed", "transformer"]),
    ],
    "nmt-train": [
        (["train.max_stepz=1"], ["train.max_stepz", "train.max_steps"]),
        (["train.lr=fast"], ["train.lr", "fast"]),
        (["data=nope"], ["data=nope", "multi30k_de_en", "wmt_news_de_en"]),
        (["-m", "model=rnn_fixed,nope"], ["model=nope", "rnn_attention"]),  # every job of a sweep is checked
    ],
    "nmt-evaluate": [
        (["average_lastt=3"], ["average_lastt", "average_last"]),
        (["average_last=abc"], ["average_last", "abc"]),
        (["decode=nope"], ["decode=nope", "beam5", "greedy"]),
    ],
    "nmt-translate": [
        (["model=exports/ct2"], ["unknown key model", "export_dir"]),
        (["threads=abc"], ["threads", "abc"]),
        (["decode=beam7"], ["decode=beam7", "beam5", "greedy"]),
    ],
    "nmt-export": [
        (["outt=exports/x"], ["outt", "did you mean out"]),
        (["checkpoint=[a,b]"], ["checkpoint"]),
        (["decode=greedy"], ["unknown key decode", "quantization"]),
    ],
    "nmt-score": [
        (["batch_tokenz=1"], ["batch_tokenz", "did you mean batch_tokens"]),
        (["batch_tokens=abc"], ["batch_tokens", "abc"]),
    ],
    "nmt-average": [
        (["--lastt", "3", "run"], ["--lastt", "nmt-average --help"]),
        (["--last", "abc", "run"], ["--last", "abc"]),
    ],
    "nmt-bench": [
        (["--stepz", "3"], ["--stepz"]),
        (["--steps", "abc"], ["--steps", "abc"]),
        (["--compare", "nope"], ["nope", "adamw", "compile"]),
    ],
    "nmt-gpu-check": [
        (["--stepz", "3"], ["--stepz"]),
        (["--steps", "abc"], ["--steps", "abc"]),
    ],
    "nmt-bottleneck": [
        (["seedz=[1]"], ["seedz"]),
        (["seeds=abc"], ["seeds", "abc"]),
        (["preset=nope"], ["preset=nope", "default", "quick", "gpu"]),
    ],
    "nmt-claims": [
        (["claimz=[hard]"], ["claimz"]),
        (["seeds=abc"], ["seeds", "abc"]),
        (["preset=nope"], ["preset=nope", "default", "full"]),
    ],
}


# Each case starts the installed script in a subprocess (2-8 s): the whole suite runs them, the fast tier not.


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(MISTAKES))
def test_config_mistakes_are_one_line_exit_2_and_write_nothing(script, tmp_path):
    started = [(args, words, start_script(script, args, cwd=tmp_path)) for args, words in MISTAKES[script]]
    for args, words, proc in started:  # side by side: most of each run is the interpreter starting
        line = one_error_line(finish(proc, timeout=120))
        missing = [w for w in words if w not in line]
        assert not missing, f"{script} {' '.join(args)}: {line!r} lacks {missing}"
    assert list(tmp_path.iterdir()) == [], "a refused command writes nothing (no outputs/, no run directory)"


@pytest.mark.slow
@pytest.mark.parametrize("script, args", [("nmt-bottleneck", ["model_fixed=nope"]), ("nmt-claims", ["data=nope"])])
def test_experiment_run_options_name_their_choices_before_writing(script, args, tmp_path):
    line = one_error_line(finish(start_script(script, args, cwd=tmp_path), timeout=120))
    assert "valid choices" in line and "rnn" in line or "multi30k_de_en" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_help_lists_only_what_the_command_reads(tmp_path):
    """`--help` of a command that writes no run directory shows its own options, not the training groups."""
    started = {s: start_script(s, ["--help"], cwd=tmp_path) for s in ("nmt-export", "nmt-translate", "nmt-score")}
    for script, proc in started.items():
        out = finish(proc, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "Options (key=value" in out.stdout and "checkpoint:" in out.stdout
        assert "rnn_attention" not in out.stdout and "transformer_cpu20" not in out.stdout, script
    assert "decode=<a preset in configs/decode/" in finish(start_script("nmt-translate", ["--help"], tmp_path)).stdout
