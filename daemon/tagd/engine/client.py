"""The daemon's side of the analysis process: start it, ask it, end it when idle.

One `Engine` per daemon (or `tagd serve`). Calls come from several threads
(the scan thread, API requests); each waits for its own answer, and a reader
thread hands the answers and progress events out. The child is started on the
first call and closed by the sweeper once it has had nothing to do for
`idle` seconds. A child that dies (a crash, the OOM killer) fails the calls in
flight with EngineGone; the next call starts a new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from tagd.config import Settings
from tagd.exits import describe_exit

log = logging.getLogger("tagd.engine")

CLOSE_WAIT = 5.0  # seconds an idle child gets to exit before it is killed
SWEEP = 1.0  # seconds between looks at whether the child has been idle long enough

Event = dict[str, Any]


class EngineError(Exception):
    """A call the analysis process answered with a failure. `kind`: "model" (a
    model file missing or damaged), "request" (the request cannot be done as
    asked), "disk_full", "error" (anything else; the child logged it)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class EngineGone(EngineError):
    """The analysis process ended (or could not start) before it answered."""

    def __init__(self, message: str) -> None:
        super().__init__("gone", message)


@dataclass(eq=False)
class _Call:
    # Called by the reader thread with what the child sent: ("event", dict),
    # ("result", value) or ("failure", EngineError).
    deliver: Callable[[tuple[str, Any]], None]
    owner: subprocess.Popen[bytes] | None = None  # the child that was asked


class Engine:
    def __init__(
        self,
        catalog_path: os.PathLike[str] | str,
        *,
        log_level: str = "info",
        idle: float = 300.0,
        timestamps: bool = True,
    ) -> None:
        self.catalog_path = os.fspath(catalog_path)
        self.log_level = log_level
        self.idle = idle
        self.timestamps = timestamps
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._calls: dict[int, _Call] = {}
        self._ids = itertools.count(1)
        self._last_used = time.monotonic()
        self._paused = False
        self._closed = False
        self._sweeper: threading.Thread | None = None
        self.started = 0  # processes started, for /metrics and the tests
        # The generation and settings the child has last had.
        self._sent: tuple[int, Settings] | None = None

    # ------------------------------------------------------------ calls

    def call(
        self,
        kind: str,
        settings: Settings,
        generation: int,
        *args: Any,
        on_event: Callable[[Event], None] | None = None,
    ) -> Any:
        """Ask the child to do `kind` (see child.py) with these settings; its answer,
        or EngineError. `generation` names the settings: the child rebuilds its
        analyzers only when it changes. `on_event` gets the progress events, in
        the calling thread (which may then use its own catalog connection)."""
        inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        rid = self._ask(kind, settings, generation, args, inbox.put)
        try:
            while True:
                what, value = inbox.get()
                if what == "event":
                    if on_event is not None:
                        on_event(value)
                    continue
                if what == "failure":
                    raise value
                return value
        finally:
            self._done(rid)

    async def acall(self, kind: str, settings: Settings, generation: int, *args: Any) -> Any:
        """`call` for a coroutine (an API route): waits on its event loop, not in a
        thread of its own. Progress events are not kept."""
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[tuple[str, Any]] = loop.create_future()

        def settle(item: tuple[str, Any]) -> None:
            # Cancelled when the client went away: nobody waits for it.
            if not answer.done():
                answer.set_result(item)

        def deliver(item: tuple[str, Any]) -> None:
            if item[0] == "event":
                return
            # A loop closed meanwhile (the API stopped) must not end the reader thread.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, item)

        rid = self._ask(kind, settings, generation, args, deliver)
        try:
            what, value = await answer
        finally:
            self._done(rid)
        if what == "failure":
            raise value
        return value

    def _ask(
        self,
        kind: str,
        settings: Settings,
        generation: int,
        args: tuple[Any, ...],
        deliver: Callable[[tuple[str, Any]], None],
    ) -> int:
        """Send the request; its id. What the child answers goes to `deliver`."""
        call = _Call(deliver)
        with self._lock:
            if self._closed:
                raise EngineGone("tagd is stopping")
            rid = next(self._ids)
            self._calls[rid] = call
            try:
                call.owner = self._send_locked(kind, rid, generation, settings, args)
            except EngineGone as exc:
                del self._calls[rid]
                raise exc from None
        return rid

    def _done(self, rid: int) -> None:
        with self._lock:
            self._calls.pop(rid, None)
            self._last_used = time.monotonic()

    def stop_job(self, deadline: float | None, everything: bool = False) -> None:
        """The running job stops after the batch in flight (`everything`: so does
        every later one, the daemon is stopping); writes go on until `deadline`
        (time.monotonic(), shared by every process of the machine)."""
        self._tell(("stop", deadline, everything))

    def pause(self, paused: bool) -> None:
        """Paused: a scan in flight finishes its batch and waits (POST /analyze goes on)."""
        with self._lock:
            self._paused = paused
        self._tell(("pause", paused))

    @property
    def running(self) -> bool:
        return self._proc is not None

    def _tell(self, message: tuple[Any, ...]) -> None:
        """A message to a running child; nothing to do when none runs."""
        with self._lock:
            if self._conn is None:
                return
            with contextlib.suppress(OSError):
                self._conn.send(message)

    # ------------------------------------------------------------ the process

    def _send_locked(
        self, kind: str, rid: int, generation: int, settings: Settings, args: tuple[Any, ...]
    ) -> subprocess.Popen[bytes]:
        """Send to the child (started if none runs); the child that got it."""
        conn = self._conn or self._start_locked()
        try:
            conn.send(self._message(kind, rid, generation, settings, args))
        except OSError:
            # It died between two calls: the reader fails what was in flight.
            self._drop_locked()
            conn = self._start_locked()
            try:
                conn.send(self._message(kind, rid, generation, settings, args))
            except OSError as exc:
                self._drop_locked()
                raise EngineGone(f"the analysis process ended at once: {exc}") from None
        assert self._proc is not None
        return self._proc

    def _message(
        self, kind: str, rid: int, generation: int, settings: Settings, args: tuple[Any, ...]
    ) -> tuple[Any, ...]:
        """The request as sent: the settings only when this child has not had this
        generation's last (the child keeps them; a third of an analysis request's
        cost in the child was reading them again)."""
        last = self._sent
        self._sent = (generation, settings)  # held: its id is not reused meanwhile
        if last is not None and last[0] == generation and last[1] is settings:
            return (kind, rid, generation, None, *args)
        return (kind, rid, generation, settings, *args)

    def _start_locked(self) -> Connection:
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tagd.engine.child", str(theirs.fileno())],
                stdin=subprocess.DEVNULL,
                pass_fds=(theirs.fileno(),),
            )
        except OSError as exc:  # out of memory or processes: a later call may do
            ours.close()
            raise EngineGone(f"cannot start the analysis process: {exc.strerror or exc}") from exc
        finally:
            theirs.close()
        conn = Connection(ours.detach())
        # Sent before the reader starts, so a failed send is this thread's to report.
        try:
            conn.send(
                {
                    "catalog": self.catalog_path,
                    "log_level": self.log_level,
                    "timestamps": self.timestamps,
                    "paused": self._paused,
                }
            )
        except OSError as exc:
            conn.close()
            proc.kill()
            raise EngineGone(f"the analysis process ended at once: {exc}") from None
        self._proc, self._conn = proc, conn
        self._sent = None
        self.started += 1
        self._last_used = time.monotonic()
        threading.Thread(
            target=self._read, args=(proc, conn), name="engine-reader", daemon=True
        ).start()
        if self._sweeper is None:
            self._sweeper = threading.Thread(target=self._sweep, name="engine-idle", daemon=True)
            self._sweeper.start()
        log.debug("analysis process %d started", proc.pid)
        return conn

    def _read(self, proc: subprocess.Popen[bytes], conn: Connection) -> None:
        """Hand out what the child sends until it ends; then fail what is left."""
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            what, rid = message[0], message[1]
            call = self._calls.get(rid)
            if call is None:
                continue
            if what == "failure":
                call.deliver(("failure", EngineError(message[2], message[3])))
            else:
                call.deliver((what, message[2]))
        code = _wait(proc)
        with self._lock:
            if self._proc is proc:
                self._proc = self._conn = None
            conn.close()
            # Calls made after this child was let go went to a new one.
            left = [(r, c) for r, c in self._calls.items() if c.owner is proc]
        if left:
            log.error(
                "the analysis process ended (%s) in the middle of its work", describe_exit(code)
            )
        for _, call in left:
            call.deliver(
                ("failure", EngineGone(f"the analysis process ended ({describe_exit(code)})"))
            )

    def _sweep(self) -> None:
        while not self._closed:
            time.sleep(SWEEP)
            with self._lock:
                idle = time.monotonic() - self._last_used
                if self._proc is None or self._calls or idle < self.idle:
                    continue
                proc = self._proc
                self._drop_locked(kill=False)
            log.info(
                "analysis process %d ended after %.0f s idle: its models are released",
                proc.pid,
                idle,
            )

    def _drop_locked(self, kill: bool = True) -> None:
        """Let go of the child: asked to quit (it ends once its queued work is done),
        or killed (`kill`: it must not finish what it does). New calls start a new
        one. The reader thread keeps the old connection until the child has gone:
        closing it under a blocked read could hand its number to another file."""
        proc, conn = self._proc, self._conn
        self._proc = self._conn = None
        if conn is not None and not kill:
            with contextlib.suppress(OSError):
                conn.send(("quit",))
        if proc is not None and kill and proc.poll() is None:
            proc.kill()

    def close(self, timeout: float = CLOSE_WAIT) -> None:
        """End the child: it finishes nothing more (stop_job first for that); one
        still busy after `timeout` seconds is killed."""
        with self._lock:
            self._closed = True
            proc = self._proc
            self._drop_locked(kill=False)
        if proc is not None:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                log.warning("analysis process %d killed: it did not end in time", proc.pid)

    def kill(self) -> None:
        """End the child now, whatever it does (the stop deadline passed)."""
        with self._lock:
            self._closed = True
            self._drop_locked(kill=True)


def _wait(proc: subprocess.Popen[bytes]) -> int | None:
    with contextlib.suppress(subprocess.TimeoutExpired):
        return proc.wait(timeout=CLOSE_WAIT)
    proc.kill()
    return None
