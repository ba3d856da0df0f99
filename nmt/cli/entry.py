"""What every console script shares: Hydra entry points whose config mistakes are one line, and an argparse
parser whose usage errors are one line.

Hydra itself reports a bad override (unknown key, wrong type, unknown group option) in several lines and exits 1.
`hydra_command` composes the configuration first, as Hydra is about to (every job of a `-m` sweep), with
`nmt.config.compose_config`, which turns any composition error into one line naming the key (and, for a config
group, its valid choices): `error: <line>`, exit 2.
Hydra's own settings (run directory, logging) are not here but in configs/hydra/: `run` for nmt-train, `quiet`
for the commands that write no run directory.

Every console script's `main` goes through `nmt.errors.user_errors`, the one boundary that turns a user mistake,
a refused write (full or read-only disk), Ctrl-C and a closed stdout pipe into one line and an exit code. Hydra
itself would print an error raised inside it (its own file writes, the task) as a trimmed traceback; with
HYDRA_FULL_ERROR=1 it passes the error on, to that boundary.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import hydra
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # Hydra's own split of a -m sweep into jobs
from hydra._internal.utils import get_args_parser  # the command-line grammar @hydra.main parses
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig

from nmt.config import CONFIG_DIR, compose_config, describe_config_error
from nmt.errors import NMTError, fail, user_errors


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line usage errors (`error: nmt-bench: ... (see nmt-bench --help)`, exit 2)."""

    def error(self, message: str) -> NoReturn:
        fail(f"{self.prog}: {message} (see {self.prog} --help)")


def hydra_command(config_name: str, before: Callable[[list[str]], None] | None = None
                  ) -> Callable[[Callable[[DictConfig], Any]], Callable[[], None]]:
    """Decorator replacing `@hydra.main` for configs/<config_name>.yaml: the returned `main()` checks the
    command line's overrides (one line and exit 2 on a mistake), calls `before(argv)` (a check that must not
    run on a bad config), then hands over to Hydra."""

    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], None]:
        hydra_main = hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name=config_name)(task)

        @functools.wraps(task)
        @user_errors
        def main() -> None:
            os.environ["HYDRA_FULL_ERROR"] = "1"  # errors reach user_errors, not Hydra's traceback printer
            argv = sys.argv[1:]
            check_command_line(config_name, argv)
            if before is not None:
                before(argv)
            hydra_main()

        return main

    return decorate


@user_errors
def check_command_line(config_name: str, argv: Sequence[str]) -> None:
    """Compose configs/<config_name>.yaml with the overrides in `argv`, every job of a `-m` sweep; NMTError (one
    line) on the first mistake. Hydra's informational flags (--help, --info, ...) are left to Hydra."""
    parser = get_args_parser()
    parser.error = _argparse_error(parser.prog)  # type: ignore[method-assign]
    args = parser.parse_args(list(argv))
    if args.help or args.hydra_help or args.info or args.shell_completion or args.config_path or args.config_dir:
        return
    name = args.config_name or config_name
    try:
        overrides = OverridesParser.create().parse_overrides(args.overrides)
    except Exception as e:  # OverrideParseException: the grammar's message
        raise NMTError(f"cannot parse the overrides: {describe_config_error(e, name)}") from e
    jobs = [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch] if args.multirun \
        else [list(args.overrides)]
    for job in jobs:
        compose_config(name, job)


def _argparse_error(prog: str) -> Callable[[str], NoReturn]:
    def error(message: str) -> NoReturn:
        raise NMTError(f"{prog}: {message} (see {prog} --help)")

    return error
