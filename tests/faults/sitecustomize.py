"""Fault injection for child processes (tests/faults.py puts this directory on PYTHONPATH): Python imports it at
start-up, before the program.

NMT_FAULT_WRITE=<ERRNO>:<path prefix>   opening a file for writing, or making a directory, under the prefix fails
                                        with that errno (ENOSPC: a full disk, EROFS: a read-only file system,
                                        EACCES ...), as the kernel would say it; reads are untouched.
NMT_FAULT_SIGINT_AT=<module>[:<function>]   send SIGINT to this process when <module> is first imported, or when
                                        its <function> (dotted: Class.method) is first called: Ctrl-C at a moment
                                        the test chooses, without timing.

Code that writes through C (torch.save to a path, Arrow, SentencePiece) is not covered.
"""

import builtins
import errno
import importlib.util
import inspect
import io
import os
import signal
import sys

_write_fault = os.environ.get("NMT_FAULT_WRITE")
_sigint_at = os.environ.get("NMT_FAULT_SIGINT_AT")

def write_fault(name: str, prefix: str) -> dict:
    """Replacements for builtins.open, io.open, os.open and os.mkdir that fail with errno `name` (ENOSPC, EROFS,
    ...) for a write under `prefix`: {(module, attribute): replacement}. The in-process fixture (tests/conftest.py,
    fail_writes) installs the same ones with monkeypatch."""
    code = getattr(errno, name)
    prefix = os.path.abspath(prefix)
    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def hit(path):
        if isinstance(path, int):  # a file descriptor
            return False
        p = os.path.abspath(os.fsdecode(path))
        return p == prefix or p.startswith(prefix.rstrip(os.sep) + os.sep)

    def refuse(path):
        raise OSError(code, os.strerror(code), os.fsdecode(path))

    def open_(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+") and hit(file):
            refuse(file)
        return real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and hit(path):
            refuse(path)
        return real_os_open(path, flags, *args, **kwargs)

    def mkdir(path, *args, **kwargs):
        if hit(path) and not os.path.isdir(path):
            refuse(path)
        return real_mkdir(path, *args, **kwargs)

    return {(builtins, "open"): open_, (io, "open"): open_, (os, "open"): os_open, (os, "mkdir"): mkdir}


if _write_fault:
    for (_owner, _attr), _replacement in write_fault(*_write_fault.split(":", 1)).items():
        setattr(_owner, _attr, _replacement)

if _sigint_at:
    _module, _, _function = _sigint_at.partition(":")
    # A shell starts background jobs with SIGINT ignored, and the ignore is inherited (a suite run with `make test &`):
    # Python then installs no KeyboardInterrupt handler. Ctrl-C reaches a user's command with it, so restore it.
    signal.signal(signal.SIGINT, signal.default_int_handler)

    def _interrupt():
        os.kill(os.getpid(), signal.SIGINT)

    def _patch(module):
        owner, parts = module, _function.split(".")
        for part in parts[:-1]:
            owner = getattr(owner, part)
        original = inspect.getattr_static(owner, parts[-1])
        function = original.__func__ if isinstance(original, (staticmethod, classmethod)) else original

        def interrupted(*args, **kwargs):
            _interrupt()
            return function(*args, **kwargs)

        setattr(owner, parts[-1], type(original)(interrupted) if isinstance(original, (staticmethod, classmethod))
                else interrupted)

    class _Finder:
        """Sees <module> imported: interrupts then (no function given), or patches its function once executed."""

        def find_spec(self, name, path=None, target=None):
            if name != _module:
                return None
            sys.meta_path.remove(self)
            spec = importlib.util.find_spec(name)
            if not _function:
                _interrupt()
                return spec
            exec_module = spec.loader.exec_module

            def exec_and_patch(module):
                exec_module(module)
                _patch(module)

            spec.loader.exec_module = exec_and_patch
            return spec

    sys.meta_path.insert(0, _Finder())
