"""Stash plugin task for tagd (raw interface: JSON on stdin, JSON on stdout).

Stdlib only: Stash runs it with its own Python, where tagd is not installed;
tagd itself runs as a subprocess (`tagd` from PATH, or $TAGD_BIN).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

MODES = {"scan": [], "tagme": ["--tagme-only"]}
TIMEOUT = 6 * 3600  # a first scan of a large library takes hours, not days


def state_dir() -> Path:
    """Where tagd keeps its catalog and lock (same rules as tagd's paths.py)."""
    for var in ("TAGD_STATE_DIR", "STATE_DIRECTORY"):
        if os.environ.get(var):
            return Path(os.environ[var].split(":")[0])
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "tagd"


def daemon_pid(state: Path) -> int | None:
    """The pid of a `tagd run` holding the state-dir lock, else None.

    The lock file holds "<pid> <command>"; it only counts while its flock is
    held (the kernel drops it when tagd ends, so stale content is ignored)."""
    try:
        fd = os.open(state / "tagd.lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            pid, _, what = os.pread(fd, 200, 0).decode("utf-8", "replace").partition(" ")
            return int(pid) if pid.strip().isdigit() and "run" in what else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def tagd_bin() -> str | None:
    return os.environ.get("TAGD_BIN") or shutil.which("tagd")


def run_task(mode: str) -> dict[str, Any]:
    if mode not in MODES:
        return {"error": f"unknown mode {mode!r} (expected one of {sorted(MODES)})"}
    pid = daemon_pid(state_dir())
    if pid is not None and mode == "scan":
        # The daemon owns the catalog; SIGUSR1 makes it scan now (a second tagd
        # could not take the state-dir lock anyway).
        os.kill(pid, signal.SIGUSR1)
        return {"output": f"asked the tagd daemon (pid {pid}) to scan now"}
    exe = tagd_bin()
    if exe is None:
        return {"error": "tagd not found: put it on Stash's PATH or set TAGD_BIN"}
    cmd = [exe, "scan", "--from-stash", *MODES[mode]]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": f"{' '.join(cmd)}: {exc}"}
    if done.returncode != 0:
        return {"error": f"tagd exited {done.returncode}: {(done.stderr or done.stdout).strip()}"}
    return {"output": done.stdout.strip()}


def main() -> int:
    try:
        payload = json.loads(sys.stdin.read() or "{}")
    except json.JSONDecodeError as exc:
        print(json.dumps({"error": f"plugin input is not JSON: {exc}"}))
        return 0
    # server_connection is not needed: tagd reaches Stash through its own [stash] config.
    mode = str((payload.get("args") or {}).get("mode") or "scan")
    print(json.dumps(run_task(mode)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
