"""JoeyNMT 2.3.0's command line on torch 2.13, run by the peer's own Python (not ours; it imports nothing of nmt):

    .peer-venv/bin/python scripts/peer/joeynmt_launch.py train <config.yaml> --skip-test

JoeyNMT 2.3.0 builds its plateau scheduler as ReduceLROnPlateau(..., verbose=False); torch 2.13 no longer takes
`verbose` (it only printed each rate change). The launcher drops that argument and changes nothing else.
"""

from __future__ import annotations

import runpy
import sys
from typing import Any

from torch.optim import lr_scheduler

_plateau_init = lr_scheduler.ReduceLROnPlateau.__init__


def _plateau_init_without_verbose(self: Any, *args: Any, verbose: Any = None, **kwargs: Any) -> None:
    _plateau_init(self, *args, **kwargs)


def patch_plateau() -> None:
    lr_scheduler.ReduceLROnPlateau.__init__ = _plateau_init_without_verbose  # type: ignore[method-assign]


if __name__ == "__main__":
    patch_plateau()
    sys.argv[0] = "joeynmt"
    runpy.run_module("joeynmt", run_name="__main__", alter_sys=True)
