"""The scan thread: index, analyse, write sidecars; one request at a time.

It owns the daemon's catalog connection (SQLite connections stay in the
thread that made them) and the analyzers' models, which stay loaded between
scans until the main loop's idle sweep releases them. Requests that pile up
while a scan runs are merged into one. On stop it finishes the batch in
flight (each batch is one transaction), then writes the sidecars already due
until the stop deadline, then ends.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from tagd.analyzers.base import Analyzer
from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.people.cluster import after_scan
from tagd.pipeline import Pipeline
from tagd.scan.index import IndexReport, index_root
from tagd.scan.walk import Walker
from tagd.service.notify import Notifier
from tagd.service.stats import ACTIVITY, ScanStats, put_json, record_scan
from tagd.sinks.deliver import deliver_xmp
from tagd.sinks.select import enabled_sinks

log = logging.getLogger("tagd.scan")

PROGRESS_EVERY = 2.0  # seconds between progress updates (STATUS=, meta)
MAX_LOGGED = 20


@dataclass(frozen=True)
class Generation:
    """One loaded config and the analyzers built from it; replaced whole on reload."""

    settings: Settings
    analyzers: Sequence[Analyzer]


@dataclass
class ScanRequest:
    trigger: str
    roots: set[str] | None = None  # None: every library root


@dataclass
class Activity:
    state: str = "starting"
    progress: list[int] | None = None
    since: float = field(default_factory=time.time)
    last_error: dict[str, object] | None = None


def make_walker(settings: Settings) -> Walker:
    lib = settings.library
    return Walker(
        lib.image_extensions,
        lib.video_extensions,
        lib.exclude,
        include_hidden=lib.include_hidden,
        follow_symlinks=lib.follow_symlinks,
    )


def merge(requests: list[ScanRequest]) -> ScanRequest:
    """Several waiting requests as one: every root if any asks for every root."""
    triggers = sorted({r.trigger for r in requests})
    if any(r.roots is None for r in requests):
        return ScanRequest("+".join(triggers), None)
    roots = set().union(*(r.roots or set() for r in requests))
    return ScanRequest("+".join(triggers), roots)


class ScanWorker(threading.Thread):
    def __init__(
        self,
        catalog_path: os.PathLike[str] | str,
        generation: Generation,
        notifier: Notifier,
        stop: threading.Event,
    ) -> None:
        super().__init__(name="scan", daemon=True)
        self.catalog_path = catalog_path
        self.generation = generation
        self.notifier = notifier
        self.stop = stop
        self.stop_deadline: float | None = None  # monotonic; set with `stop`
        self.requests: queue.Queue[ScanRequest | None] = queue.Queue()
        self.activity = Activity()
        self.busy = False
        self.heartbeat = time.monotonic()  # last sign of progress, for the watchdog
        self.idle_status = "idle"
        self.scans = 0
        self._catalog: Catalog | None = None

    # ------------------------------------------------------------ main thread side

    def request(self, trigger: str, roots: set[str] | None = None) -> None:
        self.requests.put(ScanRequest(trigger, roots))

    def finish(self, deadline: float) -> None:
        """Stop after the batch in flight; write sidecars until `deadline` (monotonic)."""
        self.stop_deadline = deadline
        self.stop.set()
        self.requests.put(None)

    # ------------------------------------------------------------ scan thread

    def run(self) -> None:
        self._catalog = Catalog(self.catalog_path)
        try:
            self._set_activity("idle")
            while not self.stop.is_set():
                first = self.requests.get()
                batch = [first]
                while True:  # merge whatever else is waiting
                    try:
                        batch.append(self.requests.get_nowait())
                    except queue.Empty:
                        break
                wanted = [r for r in batch if r is not None]
                if self.stop.is_set() or not wanted:
                    break
                self._guarded(merge(wanted))
            self._flush()
            self._set_activity("stopped")
        finally:
            self._catalog.close()

    def _guarded(self, request: ScanRequest) -> None:
        self.busy = True
        self.heartbeat = time.monotonic()
        generation = self.generation
        try:
            self.scan(request, generation)
        except Exception as exc:  # one failed scan must not end the daemon
            log.exception("scan (%s) failed", request.trigger)
            self.activity.last_error = {"time": time.time(), "message": f"{exc!r}"}
        finally:
            self.busy = False
            if generation is not self.generation:
                # A reload replaced the analyzers while this scan used the old ones.
                for analyzer in generation.analyzers:
                    for model in analyzer.models:
                        model.unload()
            self._set_activity("idle")

    def scan(self, request: ScanRequest, generation: Generation) -> ScanStats:
        catalog = self._catalog
        assert catalog is not None
        settings = generation.settings
        all_roots = [os.path.abspath(r) for r in settings.library.roots]
        roots = sorted(request.roots) if request.roots is not None else all_roots
        stats = ScanStats(request.trigger, roots)
        if not roots:
            log.warning("library.roots is empty: nothing to scan")
            return stats
        sinks = enabled_sinks(settings)
        self._set_activity("indexing")
        walker = make_walker(settings)
        index = IndexReport()
        for root in roots:
            if self.stop.is_set():
                break
            index.merge(index_root(catalog, walker, root, sinks))
            self.heartbeat = time.monotonic()
        for problem in index.problems[:MAX_LOGGED]:
            log.warning("%s", problem)
        for name in ("new", "changed", "moved", "deleted"):
            setattr(stats, name, getattr(index, name))
        stats.indexed = index.seen

        pipeline = Pipeline(catalog, settings, generation.analyzers, prefixes=roots)
        pipeline.rederive_if_policy_changed()
        if not self.stop.is_set() and generation.analyzers:
            total = pipeline.pending_count()
            done = [0]
            last = [0.0]

            def progress(n: int) -> None:
                done[0] += n
                self.heartbeat = now = time.monotonic()
                if now - last[0] >= PROGRESS_EVERY or done[0] >= total:
                    last[0] = now
                    self._set_activity("analysing", [done[0], total])

            if total:
                self._set_activity("analysing", [0, total])
            report = pipeline.run(progress=progress, stop=self.stop)
            stats.analysed, stats.failed, stats.frames = report.done, report.failed, report.frames
            stats.analyse_seconds = report.seconds
            for path, reason in report.errors[:MAX_LOGGED]:
                log.warning("%s: %s", path, reason)
            if not self.stop.is_set():
                after_scan(catalog, settings)  # people: cluster the new faces
        if settings.xmp.enabled:
            self._set_activity("writing")
            delivered = deliver_xmp(catalog, settings, deadline=self._write_deadline())
            stats.written, stats.write_failed = delivered.written, delivered.failed
            for path, reason in delivered.errors[:MAX_LOGGED]:
                log.warning("sidecar %s: %s", path, reason)
        if settings.stash.enabled and not self.stop.is_set():
            # Not on stop: a slow Stash must not hold up a shutdown; the outbox keeps it.
            from tagd.sinks import stash

            self._set_activity("writing")
            delivered_stash = stash.deliver_stash(catalog, settings)
            log.info("%s", stash.summary(delivered_stash))
            for path, reason in delivered_stash.errors[:MAX_LOGGED]:
                log.warning("stash %s: %s", path, reason)
        stats.stopped = self.stop.is_set()
        stats.end = time.time()
        record_scan(catalog, stats)
        self.scans += 1
        self._log(stats)
        return stats

    def _write_deadline(self) -> float | None:
        return self.stop_deadline if self.stop.is_set() else None

    def _flush(self) -> None:
        """On stop: write the sidecars that are due, within the stop deadline."""
        settings = self.generation.settings
        if not settings.xmp.enabled or self._catalog is None:
            return
        self._set_activity("writing")
        report = deliver_xmp(self._catalog, settings, deadline=self._write_deadline())
        if report.written or report.left:
            log.info(
                "stopping: %d sidecars written, %d left queued for the next start",
                report.written,
                report.left,
            )

    def _log(self, s: ScanStats) -> None:
        quiet = not (s.new or s.changed or s.moved or s.deleted or s.analysed or s.written)
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "scan (%s)%s: %d files indexed (%d new, %d changed, %d moved, %d deleted); "
            "%d analysed (%d failed) in %.1f s, %.1f files/s; %d sidecars written%s",
            s.trigger,
            " stopped early" if s.stopped else "",
            s.indexed,
            s.new,
            s.changed,
            s.moved,
            s.deleted,
            s.analysed,
            s.failed,
            s.analyse_seconds,
            s.rate,
            s.written,
            f", {s.write_failed} failed" if s.write_failed else "",
        )

    def _set_activity(self, state: str, progress: list[int] | None = None) -> None:
        self.activity.state = state
        self.activity.progress = progress
        self.activity.since = time.time()
        if state == "analysing" and progress:
            self.notifier.status(f"analysing: {progress[0]}/{progress[1]} files")
        elif state == "idle":
            self.notifier.status(self.idle_status)
        elif state in ("indexing", "writing"):
            self.notifier.status(f"{state}…")
        if self._catalog is not None:
            try:
                put_json(
                    self._catalog,
                    ACTIVITY,
                    {
                        "state": state,
                        "progress": progress,
                        "since": self.activity.since,
                        "last_error": self.activity.last_error,
                    },
                )
            except Exception as exc:  # a status row is not worth a failed scan
                log.debug("cannot record activity: %s", exc)
