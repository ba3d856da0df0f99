"""The TensorBoard picture of docs/guide.md: a real TensorBoard server on a run directory, its Images tab
rendered by headless Chromium (Debian: `apt-get install chromium`).

    .venv/bin/python scripts/tensorboard_screenshot.py <run dir> docs/tensorboard.png
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from nmt.errors import NMTError, user_errors


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise NMTError(f"TensorBoard did not answer {url} within {seconds:g} s")


@user_errors
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a run directory with TensorBoard event files")
    parser.add_argument("out", type=Path, help="the PNG to write")
    parser.add_argument("--size", default="1400,900", help="window width,height in pixels (default 1400,900)")
    args = parser.parse_args()
    if not any(args.run_dir.glob("events.out.tfevents.*")):
        raise NMTError(f"{args.run_dir} has no TensorBoard event files")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        raise NMTError("chromium not found on PATH (Debian: apt-get install chromium)")
    port = free_port()
    tensorboard = Path(sys.executable).with_name("tensorboard")
    server = subprocess.Popen([str(tensorboard), "--logdir", str(args.run_dir), "--port", str(port),
                               "--samples_per_plugin", "images=1000"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(f"http://localhost:{port}/data/plugin/images/tags", 60)
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--window-size={args.size}", "--virtual-time-budget=15000", f"--screenshot={args.out}",
                        f"http://localhost:{port}/?darkMode=false#images"],
                       check=True, timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
