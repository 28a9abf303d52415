"""Watch the library roots with inotify (watchdog) and ask for debounced scans.

A photo copied into the library produces a burst of events (create, many
modifies, close); a folder of 500 photos produces thousands. Events are
filtered to media files (by extension, not hidden, not excluded) and folder
creations and moves, and the root they belong to is remembered; once no event
came for `debounce` seconds (or `max_wait` after the first one, so a
never-ending stream still gets scanned) the callback gets the set of roots to
re-index. Re-indexing a root `stat`s unchanged files only, so this costs a
fraction of a second even on a large library and keeps move detection,
deletions and excludes exactly as `tagd scan` does them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from tagd.scan.walk import Walker

log = logging.getLogger(__name__)

# File events that can mean new or changed content (not opened / read-only closes).
FILE_EVENTS = {"created", "modified", "closed", "moved", "deleted"}
DIR_EVENTS = {"created", "moved", "deleted"}


class Debouncer:
    """Collects keys; calls fire(keys) after `delay` s of quiet (at most `max_wait`)."""

    def __init__(
        self, delay: float, fire: Callable[[set[str]], None], max_wait: float = 30.0
    ) -> None:
        self.delay = delay
        self.max_wait = max(max_wait, delay)
        self._fire = fire
        self._keys: set[str] = set()
        self._first = self._last = 0.0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="debounce", daemon=True)
        self._thread.start()

    def add(self, key: str) -> None:
        with self._cond:
            now = time.monotonic()
            if not self._keys:
                self._first = now
            self._keys.add(key)
            self._last = now
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=2)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._keys and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                now = time.monotonic()
                due = min(self._last + self.delay, self._first + self.max_wait)
                if now < due:
                    self._cond.wait(due - now)
                    continue
                keys, self._keys = self._keys, set()
            try:
                self._fire(keys)
            except Exception:
                log.exception("watch callback failed")


class _Handler(FileSystemEventHandler):
    def __init__(self, root: str, walker: Walker, debouncer: Debouncer) -> None:
        self.root = root.rstrip("/") or "/"
        self.walker = walker
        self.debouncer = debouncer

    def on_any_event(self, event: FileSystemEvent) -> None:
        kinds = DIR_EVENTS if event.is_directory else FILE_EVENTS
        if event.event_type not in kinds:
            return
        paths = [event.src_path]
        if event.event_type == "moved":
            paths.append(event.dest_path)
        for path in paths:
            path = os.fsdecode(path)
            if self.relevant(path, event.is_directory):
                log.debug("%s %s", event.event_type, path)
                self.debouncer.add(self.root)
                return

    def relevant(self, path: str, is_dir: bool) -> bool:
        rel = os.path.relpath(path, self.root)
        if rel.startswith(".."):
            return False
        parts = rel.split(os.sep)
        if not self.walker.include_hidden and any(p.startswith(".") for p in parts):
            return False  # hidden, or a temp file (rsync, tagd's own sidecar writes)
        if is_dir:
            return not self.walker.excluder.folder(rel)
        return self.walker.kind_of(parts[-1]) is not None and not self.walker.excluder.file(rel)


class Watcher:
    """inotify watches on every root; `on_change(roots)` after a debounced burst."""

    def __init__(
        self,
        roots: Sequence[str],
        walker: Walker,
        debounce: float,
        on_change: Callable[[set[str]], None],
    ) -> None:
        self.debouncer = Debouncer(debounce, on_change)
        self.observer = Observer()
        self.observer.daemon = True
        self.watched: list[str] = []
        self.problems: list[str] = []
        for root in roots:
            root = os.path.abspath(root)
            if not os.path.isdir(root):
                self.problems.append(f"{root}: not a folder (not mounted?); not watched")
                continue
            try:
                self.observer.schedule(_Handler(root, walker, self.debouncer), root, recursive=True)
                self.watched.append(root)
            except OSError as exc:
                # ENOSPC here means fs.inotify.max_user_watches is too low.
                self.problems.append(f"{root}: cannot watch: {exc}")

    def start(self) -> None:
        try:
            self.observer.start()
        except OSError as exc:
            self.problems.append(
                f"cannot watch the library: {exc} (raise fs.inotify.max_user_watches); "
                "scheduled scans go on"
            )
            self.watched = []

    def stop(self) -> None:
        try:
            self.observer.stop()
            if self.observer.is_alive():
                self.observer.join(timeout=2)
        finally:
            self.debouncer.close()
