"""User-facing errors: one clear line, a non-zero exit, no traceback; the boundary every console script goes
through (`user_errors`), and the one way to print a warning (`warn`)."""

from __future__ import annotations

import errno
import functools
import io
import os
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any, NoReturn, TextIO


class NMTError(Exception):
    """A problem with the user's input (file, config, checkpoint) that they can fix."""


EXIT_USER_ERROR = 2  # a mistake in the command line, a config or an input file, or a write the machine refused
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as a shell reports a command it interrupted
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (128 + SIGPIPE), as for any Unix filter

# errno values that only a write can give: the message says "cannot write" for these
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EFBIG}


def fail(message: str) -> NoReturn:
    """Print `error: <message>` as one line on stderr and exit with EXIT_USER_ERROR."""
    print(f"error: {message}", file=sys.stderr, flush=True)
    sys.exit(EXIT_USER_ERROR)


def warn(message: str, file: TextIO | None = None) -> None:
    """Print `warning: <message>` as one line on stderr (or `file`): every warning nmt itself gives on the console
    goes through here, never through Python's `warnings` (whose header names a source file and line)."""
    print(f"warning: {message}", file=file or sys.stderr, flush=True)


def describe_os_error(e: OSError) -> str:
    """One line for an OSError that reached a command: `cannot write <path>: <reason>` (the path from the error,
    else the file the failing code had open), or `<path>: <reason>` for an error that is not a write."""
    reason = e.strerror or str(e)
    path = e.filename if e.filename is not None else _open_file_in(e.__traceback__)
    if path is None:
        return f"cannot write: {reason}" if e.errno in _WRITE_ERRNOS else reason
    return f"cannot write {os.fsdecode(path)}: {reason}" if e.errno in _WRITE_ERRNOS or e.filename is None \
        else f"{os.fsdecode(path)}: {reason}"


def _open_file_in(tb: TracebackType | None) -> str | None:
    """The name of the innermost open file object held by a frame of `tb` (an error from `f.write` names no file)."""
    found = None
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
                found = value.name
        tb = tb.tb_next
    return found


def _interrupted() -> NoReturn:
    print("interrupted", file=sys.stderr, flush=True)
    sys.exit(EXIT_INTERRUPTED)


def _interrupted_at_start(signum: int, frame: FrameType | None) -> None:
    _interrupted()


def exit_on_early_interrupt() -> None:
    """While a console script imports its modules (before `user_errors` runs), Ctrl-C prints `interrupted` and
    exits 130 instead of a traceback through the imports. Called by nmt.cli on import, for the nmt-* scripts
    only: a program that imports nmt keeps its own Ctrl-C."""
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupted_at_start)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The boundary of every console script (and of each command's function): NMTError is one line and exit 2;
    an OSError (a full or read-only disk, a missing directory) is one line `cannot write <path>: <reason>` and
    exit 2, as when nmt.io refuses a write itself; Ctrl-C is one line `interrupted` and exit 130 (training
    handles the first Ctrl-C itself: it saves and stops); a closed stdout pipe (`| head`) ends the command quietly
    (exit 141). Whatever the command half-wrote is removed where it was written (nmt.io.undo_on_failure)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if signal.getsignal(signal.SIGINT) is _interrupted_at_start:
            signal.signal(signal.SIGINT, signal.default_int_handler)  # from here on, Ctrl-C unwinds (cleanups run)
        try:
            return fn(*args, **kwargs)
        except NMTError as e:
            fail(str(e))
        except KeyboardInterrupt:
            _interrupted()
        except BrokenPipeError:
            _quiet_broken_pipe()
        except OSError as e:
            fail(describe_os_error(e))

    return wrapper


def _quiet_broken_pipe() -> NoReturn:
    """stdout's reader is gone: point stdout at /dev/null (so the interpreter's final flush cannot fail again)
    and exit quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, AttributeError, ValueError):
        pass
    sys.exit(EXIT_BROKEN_PIPE)
