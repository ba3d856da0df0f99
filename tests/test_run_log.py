"""RunLogger's console and train.log lines go through `logging`: one logger per run, handlers gone on close."""

from __future__ import annotations

import io
import logging
import re

from nmt.training.run_log import RunLogger, _ConsoleHandler

LINE = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] (.*)$")


def _file_lines(path) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    assert all(LINE.match(line) for line in lines), lines  # "[date time] message", as before
    return [LINE.match(line).group(1) for line in lines]


def _run_loggers() -> list[logging.Logger]:
    """The nmt.run.<k> loggers that have a RunLogger's handlers (pytest adds capture handlers of its own)."""
    return [
        logger
        for name, logger in logging.Logger.manager.loggerDict.items()
        if name.startswith("nmt.run.")
        and isinstance(logger, logging.Logger)
        and any(isinstance(h, (logging.FileHandler, _ConsoleHandler)) for h in logger.handlers)
    ]


def test_console_and_file_lines_once_per_run_and_handlers_removed_on_close(tmp_path):
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    root = logging.getLogger()
    collect = Collect()
    root.addHandler(collect)
    stream = io.StringIO()
    names: set[str] = set()
    try:
        for run in range(3):  # runs one after another in one process, as the tests and the experiment driver do
            log = RunLogger(tmp_path / "run", tensorboard=False, stream=stream)  # the same run dir each time
            logger = log.logger
            log.info(f"run {run} started")
            log.info(f"run {run} file only", console=False)
            log.flush()
            log.close()
            assert log.logger is None
            names.add(logger.name)
            log.info("after close")  # dropped, no error
        assert _run_loggers() == []
        assert len(names) == 1  # a closed run's logger name is reused, not a new logger per run
    finally:
        root.removeHandler(collect)
    assert stream.getvalue().splitlines() == ["run 0 started", "run 1 started", "run 2 started"]
    assert _file_lines(tmp_path / "run" / "train.log") == [
        line for run in range(3) for line in (f"run {run} started", f"run {run} file only")
    ]  # appended, never duplicated
    assert seen == []  # not propagated: an application's own logging set-up does not print the lines again


def test_two_open_runs_keep_their_own_lines(tmp_path):
    streams = io.StringIO(), io.StringIO()
    a, b = (RunLogger(tmp_path / name, tensorboard=False, stream=s) for name, s in zip("ab", streams, strict=True))
    a.info("to a")
    b.info("to b")
    assert len(_run_loggers()) == 2
    a.close()
    b.info("to b again")
    b.close()
    assert [s.getvalue() for s in streams] == ["to a\n", "to b\nto b again\n"]
    assert _file_lines(tmp_path / "a" / "train.log") == ["to a"]
    assert _file_lines(tmp_path / "b" / "train.log") == ["to b", "to b again"]


def test_disabled_logger_writes_nothing(tmp_path):
    stream = io.StringIO()
    for log in (RunLogger(None, stream=stream), RunLogger(tmp_path / "rank1", enabled=False, stream=stream)):
        log.info("dropped")
        log.progress("dropped", force=True)
        log.scalars({"train/loss": 1.0}, 1)
        log.hparams({"a": 1}, {"bleu": 1.0}, 1)
        log.flush()
        log.close()
        assert log.logger is None and log.writer is None
    assert stream.getvalue() == "" and not (tmp_path / "rank1").exists()
