"""What the daemon tells whoever listens (GET /events): scans queued, started,
progressing and finished, files that failed, pause and resume.

Publishers are threads (the scan thread, the engine's reader); listeners are
the API's event loop, one queue each. A listener that does not keep up loses
its oldest events rather than holding anyone back.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from typing import Any

BACKLOG = 256  # events a slow listener may fall behind before old ones are dropped


class Listener:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(BACKLOG)

    def put(self, event: dict[str, Any]) -> None:
        """Runs on the listener's event loop."""
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)

    async def next(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or None after `timeout` seconds without one."""
        try:
            return dict(await asyncio.wait_for(self.queue.get(), timeout))
        except TimeoutError:
            return None


class EventBus:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._ids = itertools.count(1)

    def publish(self, kind: str, **data: Any) -> None:
        event = {"id": next(self._ids), "event": kind, "time": time.time(), **data}
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener.loop.call_soon_threadsafe(listener.put, event)
            except RuntimeError:  # its loop is closed: the server is stopping
                self.unsubscribe(listener)

    def subscribe(self) -> Listener:
        """A listener on the running event loop."""
        listener = Listener(asyncio.get_running_loop())
        with self._lock:
            self._listeners.append(listener)
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
