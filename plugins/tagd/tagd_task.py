"""Stash plugin task for tagd (raw interface: JSON on stdin, JSON on stdout).

Stdlib only: Stash runs it with its own Python, where tagd is not installed.
A running `tagd run` is asked over its control socket ($TAGD_SOCKET, the path
the daemon notes in its state-dir lock, /run/tagd/tagd.sock, or
<state dir>/tagd.sock) and the task ends when the daemon has done the work;
without a daemon, tagd runs as a subprocess (`tagd` from PATH, or $TAGD_BIN).

What the task did shows in Stash's log and task list: Stash only logs a raw
plugin's JSON output at debug level (and an `error` at error level), so the
summary, warnings and errors also go to stderr in Stash's plugin log protocol
(one line each, prefixed \x01 LEVEL \x02), and progress as \x01p\x02 FRACTION
while a daemon scans. Cancelling the task in Stash kills this process: a
`tagd scan` child dies with it (PR_SET_PDEATHSIG), and a daemon sees the socket
close and stops the scan it was asked for.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# Each mode's `tagd scan` arguments when no daemon runs; None: only a daemon can.
MODES: dict[str, list[str] | None] = {
    "scan": [],
    "tagme": ["--tagme-only"],
    "pause": None,
    "resume": None,
}
# What each mode asks a running daemon (its control socket) to do.
COMMANDS = {"scan": "stash", "tagme": "tagme", "pause": "pause", "resume": "resume"}
TIMEOUT = 6 * 3600  # a first scan of a large library takes hours, not days
CONNECT_TIMEOUT = 5.0
PROGRESS_EVERY = 5.0  # seconds between progress reports while a daemon scans
# Stash's plugin log protocol (pkg/logger/plugin.go): a line on stderr starting
# with \x01, a level character and \x02 is logged at that level.
LEVELS = {"debug": "d", "info": "i", "warning": "w", "error": "e", "progress": "p"}


def log(level: str, message: str) -> None:
    """One message to Stash's log at `level` (each line of it prefixed)."""
    for line in str(message).splitlines() or [""]:
        sys.stderr.write(f"\x01{LEVELS[level]}\x02{line}\n")
    sys.stderr.flush()


def state_dir() -> Path:
    """Where tagd keeps its catalog and lock (same rules as tagd's paths.py)."""
    for var in ("TAGD_STATE_DIR", "STATE_DIRECTORY"):
        if os.environ.get(var):
            return Path(os.environ[var].split(":")[0])
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "tagd"


def lock_text(state: Path) -> str | None:
    """The state-dir lock's text while a tagd holds it, else None.

    The lock file holds "<pid> <command>" and then "key=value" lines (the
    daemon's control socket); it only counts while its flock is held (the
    kernel drops it when tagd ends, so stale content is ignored)."""
    try:
        fd = os.open(state / "tagd.lock", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return os.pread(fd, 4096, 0).decode("utf-8", "replace")
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def daemon_pid(text: str | None) -> int | None:
    """The pid of a `tagd run` from the lock's text (None: no daemon)."""
    if not text:
        return None
    pid, _, what = text.partition("\n")[0].partition(" ")
    return int(pid) if pid.strip().isdigit() and "run" in what else None


def socket_candidates(text: str | None, state: Path) -> list[Path]:
    """Where a running daemon's control socket may be, most specific first."""
    found = [Path(os.environ["TAGD_SOCKET"])] if os.environ.get("TAGD_SOCKET") else []
    for line in (text or "").splitlines()[1:]:
        key, _, value = line.partition("=")
        if key == "socket" and value:
            found.append(Path(value))
    found += [Path("/run/tagd/tagd.sock"), state / "tagd.sock"]
    return list(dict.fromkeys(found))


class Unreachable(Exception):
    """A daemon's socket exists at that path, but this user may not connect."""


def ask_daemon(path: Path, command: str) -> dict[str, Any] | None:
    """The daemon's answer to `command` (waiting until the work is done, reporting
    its progress meanwhile), or None when nothing listens at `path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(str(path))
            sock.sendall(json.dumps({"command": command, "wait": True}).encode() + b"\n")
            line = _await_answer(sock, path)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except PermissionError as exc:
        raise Unreachable(
            f"tagd daemon at {path}: {exc.strerror}: Stash's user may not connect; run "
            "tagd with a group Stash's user is in (systemd: Group= in `systemctl edit "
            "tagd`, see daemon.control_socket_mode in tagd's config.toml), or set "
            "TAGD_SOCKET to a socket it may use"
        ) from None
    except OSError as exc:
        return {"error": f"tagd daemon at {path}: {exc}"}
    try:
        reply = json.loads(line)
    except ValueError:
        return {"error": f"tagd daemon at {path} answered {line[:80]!r}"}
    if not isinstance(reply, dict):
        return {"error": f"tagd daemon at {path} answered {line[:80]!r}"}
    if reply.get("ok"):
        return {"output": f"tagd daemon: {reply.get('message', 'done')}"}
    return {"error": f"tagd daemon: {reply.get('error', 'failed')}"}


def _await_answer(sock: socket.socket, path: Path) -> bytes:
    """The daemon's answer line; its progress goes to Stash every few seconds."""
    sock.settimeout(PROGRESS_EVERY)
    data = b""
    end = time.monotonic() + TIMEOUT
    while b"\n" not in data:
        if time.monotonic() > end:
            raise OSError(f"no answer within {TIMEOUT} s")
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            _report_progress(path)
            continue
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0]


def _report_progress(path: Path) -> None:
    """Ask the daemon what it is doing (a second connection) and tell Stash."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(CONNECT_TIMEOUT)
            sock.connect(str(path))
            sock.sendall(b'{"command": "status"}\n')
            with sock.makefile("rb") as answer:
                status = json.loads(answer.readline())
    except (OSError, ValueError):
        return
    progress = status.get("progress") if isinstance(status, dict) else None
    if isinstance(progress, list) and len(progress) == 2 and progress[1]:
        log("progress", f"{min(1.0, progress[0] / progress[1]):.3f}")


def tagd_bin() -> str | None:
    return os.environ.get("TAGD_BIN") or shutil.which("tagd")


def run_task(mode: str) -> dict[str, Any]:
    if mode not in MODES:
        return {"error": f"unknown mode {mode!r} (expected one of {sorted(MODES)})"}
    state = state_dir()
    text = lock_text(state)
    # A running daemon owns the catalog: it does the work (a second tagd could
    # not take the state-dir lock anyway).
    refused: list[str] = []
    for path in socket_candidates(text, state):
        try:
            answer = ask_daemon(path, COMMANDS[mode])
        except Unreachable as exc:  # maybe another candidate lets us in
            refused.append(str(exc))
            continue
        if answer is not None:
            return answer
    if refused:
        # A daemon listens, but not for Stash's user: running a second tagd
        # would only compete with it for the state directory.
        return {"error": refused[0]}
    pid = daemon_pid(text)
    if pid is not None:
        return {
            "error": f"the tagd daemon (pid {pid}) runs but its control socket cannot be "
            "reached from here: set TAGD_SOCKET to its path (daemon.control_socket)"
        }
    arguments = MODES[mode]
    if arguments is None:
        return {"error": f"no tagd daemon runs: there is no scanning to {mode}"}
    exe = tagd_bin()
    if exe is None:
        return {"error": "tagd not found: put it on Stash's PATH or set TAGD_BIN"}
    return run_tagd([exe, "scan", "--from-stash", *arguments])


def _die_with_parent() -> None:
    """In the child: SIGTERM when this task's process dies (Stash kills it on cancel)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def run_tagd(cmd: list[str]) -> dict[str, Any]:
    """`tagd scan` as a child that dies with this task; what it prints goes to
    Stash's log as it comes (its summary at info, its warnings at warning)."""
    try:
        child = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    except OSError as exc:
        return {"error": f"{' '.join(cmd)}: {exc}"}
    assert child.stdout is not None and child.stderr is not None
    problems: list[str] = []
    reader = threading.Thread(target=_relay, args=(child.stderr, "warning", problems), daemon=True)
    reader.start()
    summary: list[str] = []
    _relay(child.stdout, "info", summary)
    try:
        code = child.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        return {"error": f"{' '.join(cmd)}: no end within {TIMEOUT} s"}
    reader.join(timeout=5)
    if code not in (0, 1):  # 1: some files failed (listed above); 2: it could not run
        said = "\n".join(problems or summary).strip() or "no output"
        return {"error": f"tagd exited {code}: {said}"}
    return {"output": "\n".join(summary).strip()}


def _relay(stream: Any, level: str, lines: list[str]) -> None:
    """Each line of `stream` to Stash's log at `level`, and kept in `lines`."""
    for line in stream:
        line = line.rstrip("\n")
        lines.append(line)
        log(level, line)


def main() -> int:
    try:
        payload = json.loads(sys.stdin.read() or "{}")
    except json.JSONDecodeError as exc:
        print(json.dumps({"error": f"plugin input is not JSON: {exc}"}))
        return 0
    # server_connection is not needed: tagd reaches Stash through its own [stash] config.
    mode = str((payload.get("args") or {}).get("mode") or "scan")
    result = run_task(mode)
    # Stash logs the JSON output at debug level only: say the outcome in its log.
    if "error" in result:
        log("error", f"tagd: {result['error']}")
    else:
        log("info", f"tagd: {result.get('output') or 'done'}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
