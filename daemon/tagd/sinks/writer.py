"""File writes in a child process, so that a hung filesystem cannot hold up a stop.

A write to a share that stopped answering (NFS, SMB), to a filesystem frozen
for a snapshot (fsfreeze) or to a failing disk can block in open, write, fsync
or rename for minutes, often in an uninterruptible sleep. A thread stuck there
keeps its whole process alive, even past SIGKILL, until the kernel lets go, so
`tagd run` could not exit within daemon.stop_timeout. The daemon therefore
writes sidecars and embedded XMP in a child process and waits for each write
with the stop deadline in view. Once it passes, the child is killed and the
write stays queued (its outbox row untouched, still due): the daemon exits on
time and the next start writes it again. A child stuck in the kernel dies as
soon as its system call returns; a killed write leaves at most a temp file,
which the sidecar writer removes before it next writes that sidecar (embedded
writes recover from their backup).

The child runs one function at a time, named by reference, with its own
catalog connection as the first argument (reads only: the daemon's scan thread
keeps every catalog write), and sends back the result or the exception. It
ignores SIGINT and SIGTERM: Ctrl-C and `systemctl stop` reach every process of
the group, and only the daemon decides when a write is given up.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from tagd.exits import describe_exit

__all__ = ["Abandoned", "WriterDied", "WriterProcess"]

log = logging.getLogger(__name__)

POLL = 0.1  # seconds between looks at the stop deadline while a write runs
CLOSE_WAIT = 5.0  # seconds an idle child gets to exit before it is killed

# When to give up (a time.monotonic() value, None: not yet), asked while a write runs.
Deadline = Callable[[], float | None]


class Abandoned(Exception):
    """The stop deadline passed while a write was in flight: the child was killed
    and the write stays queued, due at once."""


class WriterDied(Exception):
    """The child ended in the middle of a write (a crash, the OOM killer)."""


class WriterProcess:
    """A child process that runs `fn(catalog, *args)` for the daemon; started at
    the first call, ended by close()."""

    def __init__(self, catalog_path: os.PathLike[str] | str) -> None:
        self.catalog_path = os.fspath(catalog_path)
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None

    def __enter__(self) -> WriterProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, fn: Callable[..., Any], *args: Any, deadline: Deadline | None = None) -> Any:
        """fn's result, or the exception it raised, from the child; Abandoned once
        `deadline` passes, WriterDied when the child cannot start or ends without
        an answer."""
        conn = self._start()
        try:
            conn.send((fn, args))
            while not conn.poll(POLL):
                until = deadline() if deadline is not None else None
                if until is not None and time.monotonic() >= until:
                    self._kill()
                    raise Abandoned(f"stopped waiting for {getattr(fn, '__name__', fn)}")
            ok, value = conn.recv()
        except (EOFError, OSError):
            code = self._reap()
            raise WriterDied(f"the writing process ended ({describe_exit(code)})") from None
        if ok:
            return value
        raise value

    def close(self) -> None:
        """End an idle child (it exits when its socket closes); kill one that lingers."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is not None:
            try:
                proc.wait(timeout=CLOSE_WAIT)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _start(self) -> Connection:
        if self._conn is not None:
            return self._conn
        ours, theirs = socket.socketpair()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno()), self.catalog_path],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        except OSError as exc:  # out of memory or processes: a retry later may do
            ours.close()
            raise WriterDied(f"cannot start the writing process: {exc.strerror or exc}") from exc
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        log.debug("writer process %d started", self._proc.pid)
        return self._conn

    def _kill(self) -> None:
        """SIGKILL, not waited for: a child asleep in the kernel dies only when its
        system call returns, and nobody must wait for that."""
        proc = self._drop()
        if proc is not None:
            log.info("writer process %d killed: its write stays queued", proc.pid)

    def _reap(self) -> int | None:
        """The exit status of a child that ended by itself (None: it did not)."""
        code = None
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = self._proc.wait(timeout=CLOSE_WAIT)
        self._drop()
        return code

    def _drop(self) -> subprocess.Popen[bytes] | None:
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None:
            conn.close()
        if proc is not None and proc.poll() is None:
            proc.kill()
        return proc


# ---------------------------------------------------------------- the child


def _serve(conn: Connection, catalog_path: str) -> int:
    from tagd.catalog.catalog import Catalog

    with Catalog(catalog_path) as catalog:
        while True:
            try:
                job = conn.recv()
            except EOFError:
                return 0  # the daemon closed the socket, or is gone
            fn, args = job
            try:
                answer: tuple[bool, Any] = (True, fn(catalog, *args))
            except Exception as exc:  # the daemon decides what it means
                answer = (False, exc)
            try:
                conn.send(answer)
            except OSError:
                return 0  # the daemon is gone
            except Exception as exc:  # an answer that does not pickle
                conn.send((False, RuntimeError(f"{fn.__name__}: {answer[1]!r} ({exc})")))


def main(argv: list[str]) -> int:
    # Only the daemon ends a write: a stop signal for the group must not cut it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    from tagd.service import logs

    logs.configure("warning", timestamps=True)
    return _serve(Connection(int(argv[1])), argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
