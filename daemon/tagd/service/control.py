"""The daemon's control socket: other programs ask a running `tagd run` for work.

The Stash plugin (and `tagd scan` while the daemon holds the state directory)
cannot scan themselves: one process owns the catalog. They connect to an
AF_UNIX stream socket and send one JSON line, `{"command": "...", "wait": bool}`,
and read one JSON line back, `{"ok": true, "message": "..."}` or
`{"ok": false, "error": "..."}`.

Commands are a fixed set with no arguments (no paths, no config), so the worst
a local user with access can do is ask for work the daemon would do anyway,
or retry queued writes early. The socket's mode (`daemon.control_socket_mode`,
0o660: tagd's user and group) says who may connect, and requests are
rate-limited (a burst of BURST, then one every REFILL seconds; the excess is
refused and logged at most once per LOG_REFUSED seconds), so a client in a
loop can neither hammer Stash nor flood the log:
- `scan`: scan library.roots now;
- `stash`, `tagme`: scan the files Stash lists (all, or those tagged
  `<prefix>_TagMe`), as `tagd scan --from-stash [--tagme-only]`;
- `deliver`: retry the queued sidecar and Stash writes now;
- `status`: what the daemon is doing;
- `pause`, `resume`: hold scanning (the batch in flight finishes, nothing new
  starts; kept across restarts) and let it go on.
With `"wait": true` the answer comes when that work is done, with its summary;
an asker that hangs up meanwhile (Stash kills a cancelled task) stops the work
it asked for after the batch in flight, unless others want it too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import select
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tagd.config import Settings

log = logging.getLogger("tagd.service")

SOCKET_NAME = "tagd.sock"
COMMANDS = ("scan", "stash", "tagme", "deliver", "status", "pause", "resume")
MAX_REQUEST = 4096  # bytes: one short JSON line
READ_TIMEOUT = 5.0  # seconds a client gets to send its line
# AF_UNIX paths are limited by sockaddr_un.sun_path (108 bytes on Linux, incl. NUL).
MAX_PATH = 107
# Rate limit: the Stash plugin and `tagd scan` send one request per task; a
# few at once pass, a loop does not.
BURST = 5
REFILL = 1.0  # seconds per request after a burst
LOG_REFUSED = 60.0  # seconds between log lines about refused requests

# (command, wait, gone): `gone()` says whether the asker hung up meanwhile.
Handler = Callable[[str, bool, Callable[[], bool]], dict[str, Any]]


def socket_path(settings: Settings, state_dir: Path) -> Path | None:
    """Where the control socket lives: None when daemon.control_socket is ""."""
    value = settings.daemon.control_socket
    if not value:
        return None
    if value != "auto":
        return Path(value)
    # systemd's RuntimeDirectory= (/run/tagd) is reachable by other users, unlike
    # the private StateDirectory of a DynamicUser service.
    runtime = os.environ.get("RUNTIME_DIRECTORY")
    if runtime:
        return Path(runtime.split(":")[0]) / SOCKET_NAME
    return state_dir / SOCKET_NAME


class ControlError(RuntimeError):
    """The control socket could not be opened or reached."""


class RateLimit:
    """A token bucket: `burst` requests at once, then one every `refill` seconds."""

    def __init__(self, burst: int = BURST, refill: float = REFILL) -> None:
        self.burst = burst
        self.refill = refill
        self._tokens = float(burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()
        self._refused = 0  # since the last log line about it
        self._logged = -math.inf

    def take(self) -> float:
        """0.0 when a request may go ahead, else the seconds until one may."""
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._last) / self.refill)
            self._last = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            self._note_refused(now)
            return (1.0 - self._tokens) * self.refill

    def _note_refused(self, now: float) -> None:
        self._refused += 1
        if now - self._logged < LOG_REFUSED:
            return
        log.warning(
            "control socket: %d request(s) refused: more than %d at once, or more than "
            "one every %g s (this is logged once every %g s at most)",
            self._refused,
            self.burst,
            self.refill,
            LOG_REFUSED,
        )
        self._logged, self._refused = now, 0


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    handler: Handler
    limit: RateLimit


class _Request(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        self.connection.settimeout(READ_TIMEOUT)
        try:
            line = self.rfile.readline(MAX_REQUEST)
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not a JSON object")
            command = request.get("command")
            wait = bool(request.get("wait", False))
        except (OSError, ValueError) as exc:
            self._answer({"ok": False, "error": f"bad request: {exc}"})
            return
        # After reading the line, so the client gets the answer rather than a reset.
        # Unknown commands count too: they are what a loop gone wrong sends. (Lines
        # that are not JSON were answered above; they cost nothing and log nothing.)
        wait_s = self.server.limit.take()
        if wait_s:
            error = f"too many requests, try again in {math.ceil(wait_s)} s"
            self._answer({"ok": False, "error": error})
            return
        if command not in COMMANDS:
            self._answer(
                {"ok": False, "error": f"unknown command {command!r}; one of {list(COMMANDS)}"}
            )
            return
        # A waiting client may wait for hours (a first scan): no timeout on the answer.
        self.connection.settimeout(None)
        try:
            answer = self.server.handler(command, wait, self._gone)
        except Exception as exc:  # a bug here must not end the daemon
            log.exception("control: %s failed", command)
            answer = {"ok": False, "error": f"{command} failed: {exc!r}"}
        self._answer(answer)

    def _gone(self) -> bool:
        """Whether the client closed its end (a killed Stash task): its socket
        reads as ready with nothing left to read."""
        try:
            ready, _, _ = select.select([self.connection], [], [], 0)
            return bool(ready) and not self.connection.recv(1, socket.MSG_PEEK)
        except OSError:
            return True

    def _answer(self, answer: dict[str, Any]) -> None:
        # A client that went away misses the answer; the work it asked for goes on.
        with contextlib.suppress(OSError):
            self.wfile.write(json.dumps(answer).encode() + b"\n")


class ControlSocket:
    """Serves the control socket on a thread until close()."""

    def __init__(self, path: Path, mode: int, handler: Handler) -> None:
        if len(os.fsencode(path)) > MAX_PATH:
            raise ControlError(
                f"control socket path {path} is longer than {MAX_PATH} bytes: "
                "set daemon.control_socket to a shorter path"
            )
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        # Whoever left it there no longer runs: this process holds the instance lock.
        path.unlink(missing_ok=True)
        try:
            self._server = _Server(str(path), _Request)
        except OSError as exc:
            raise ControlError(f"cannot open the control socket {path}: {exc}") from None
        self._server.handler = handler
        self._server.limit = RateLimit()
        os.chmod(path, mode)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.5},
            name="control",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)


def ask(path: Path, command: str, wait: bool = False, timeout: float | None = 10.0) -> dict:
    """Send one command to a running daemon; raises ControlError when none answers."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(json.dumps({"command": command, "wait": wait}).encode() + b"\n")
            with sock.makefile("rb") as answer:
                line = answer.readline()
    except PermissionError as exc:
        raise ControlError(
            f"may not connect to the tagd daemon's socket {path}: {exc.strerror}: "
            "run as tagd's user or a member of its group (daemon.control_socket_mode)"
        ) from None
    except OSError as exc:
        raise ControlError(f"no tagd daemon answers on {path}: {exc}") from None
    try:
        reply = json.loads(line)
    except ValueError:
        raise ControlError(f"the daemon on {path} answered {line[:80]!r}") from None
    if not isinstance(reply, dict):
        raise ControlError(f"the daemon on {path} answered {line[:80]!r}")
    return reply
