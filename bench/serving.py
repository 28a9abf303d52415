"""A real `tagd serve` process for the benchmarks that talk to it over HTTP."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def tagd_serve(state: Path, **env: str) -> tuple[str, subprocess.Popen[bytes]]:
    """(base URL, process) of `tagd serve` on a free port of 127.0.0.1 with its
    state in `state`, once it answers /healthz."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    environ = dict(os.environ, TAGD_STATE_DIR=str(state), **env)
    environ.pop("TAGD_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tagd", "serve", "--listen", f"127.0.0.1:{port}"],
        env=environ,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            urllib.request.urlopen(base + "/api/v1/healthz", timeout=2).read()
            return base, proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("tagd serve did not start")
