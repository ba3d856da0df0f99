"""The console scripts (nmt-prepare, nmt-train, ...): each parses its command line and calls the library.

Importing this package from an nmt-* console script makes Ctrl-C during the imports that follow one line
(`interrupted`, exit 130) instead of a traceback; `nmt.errors.user_errors` takes over once `main` runs.
"""

import sys
from pathlib import Path

from nmt.errors import exit_on_early_interrupt

if Path(sys.argv[0] if sys.argv and sys.argv[0] else "").name.startswith("nmt-"):
    exit_on_early_interrupt()
