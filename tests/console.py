"""The installed console scripts (nmt-*) as child processes, each with a timeout: how a user runs them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent  # the virtualenv's bin/, where `pip install -e .` put the nmt-* scripts
TIMEOUT = 300  # seconds: a command that hangs fails its test instead of blocking the suite


def script_env() -> dict[str, str]:
    """The nmt-* scripts first on PATH, one torch thread per child (the cores are shared), Hydra's short errors."""
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1",
                HYDRA_FULL_ERROR="0")


FAULTS = Path(__file__).resolve().parent / "faults"  # sitecustomize.py: fault injection for child processes


def fault_env(write: str | None = None, sigint_at: str | None = None) -> dict[str, str]:
    """Environment for a child that fails writes (`write`="ENOSPC:<path prefix>", EROFS, EACCES ...) or gets Ctrl-C
    at a chosen moment (`sigint_at`="<module>[:<function>]"); see tests/faults/sitecustomize.py."""
    env = {"PYTHONPATH": os.pathsep.join([str(FAULTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    if write:
        env["NMT_FAULT_WRITE"] = write
    if sigint_at:
        env["NMT_FAULT_SIGINT_AT"] = sigint_at
    return env


def start_script(name: str, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`<name> <args>` (an installed script, or a program on PATH) started in `cwd`, all three streams piped;
    `env` adds to the environment (fault_env)."""
    program = BIN / name if (BIN / name).exists() else name
    return subprocess.Popen([str(program), *args], cwd=cwd, env={**script_env(), **(env or {})},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen, stdin: bytes = b"", timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Wait for `proc` (killed after `timeout` seconds); its result with text output."""
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out.decode(errors="replace"),
                                       err.decode(errors="replace"))


def run_script(name: str, args: list[str], cwd: Path, stdin: bytes = b"", timeout: float = TIMEOUT,
               env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`<name> <args>` run to the end in `cwd`."""
    return finish(start_script(name, args, cwd, env), stdin, timeout)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The single `error: ...` line a user mistake gives (exit 2, nothing else on stderr)."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    return lines[0]
