"""User-facing errors: one clear line, a non-zero exit, no traceback."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn


class NMTError(Exception):
    """A problem with the user's input (file, config, checkpoint) that they can fix."""


EXIT_USER_ERROR = 2


def fail(message: str) -> NoReturn:
    """Print `error: <message>` as one line on stderr and exit with EXIT_USER_ERROR."""
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn NMTError (and Ctrl-C outside training) into one line on stderr and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except NMTError as e:
            fail(str(e))

    return wrapper
