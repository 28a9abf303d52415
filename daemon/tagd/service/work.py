"""The scan thread: index, analyse, write sidecars; one request at a time.

It owns the daemon's catalog connection (SQLite connections stay in the
thread that made them) and the analyzers' models, which stay loaded between
scans until the main loop's idle sweep releases them. Requests that pile up
while a scan runs are merged into one. Files that changed while they were
analysed (still being copied) are scanned again a little later. On stop it
finishes the batch in flight (each batch is one transaction), then writes the
sidecars already due until the stop deadline, then ends.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tagd.analyzers.base import Analyzer
from tagd.catalog.catalog import Catalog
from tagd.catalog.connect import DiskFullError, disk_full
from tagd.config import Settings
from tagd.scan.index import IndexReport
from tagd.scan.roots import SKIPPED, usable_roots
from tagd.scan.run import ScanEvents, ScanOptions, run_scan
from tagd.service.notify import Notifier
from tagd.service.stats import ACTIVITY, ScanStats, put_json
from tagd.sinks.outbox import DeliveryReport, Sink, deliver_all
from tagd.sinks.writer import WriterProcess

if TYPE_CHECKING:
    from tagd.pipeline import AnalyzeReport

log = logging.getLogger("tagd.scan")

PROGRESS_EVERY = 2.0  # seconds between progress updates (STATUS=, meta)
MAX_LOGGED = 20
RECHECK_MAX = 60.0  # seconds: the longest wait before a file still being written is seen again


@dataclass(frozen=True)
class Generation:
    """One loaded config and the analyzers built from it; replaced whole on reload."""

    settings: Settings
    analyzers: Sequence[Analyzer]


# What a request asks for: a library scan, a scan of the files Stash lists (all
# or only TagMe ones), or only the queued writes (the retry timer, `deliver`).
SOURCES = ("library", "stash", "tagme", "deliver")


@dataclass
class ScanRequest:
    trigger: str
    roots: set[str] | None = None  # library: None = every library root
    source: str = "library"
    force: bool = False  # deliver: every queued write now, backoff or not
    # Set when the work is done, with a one-line summary, for whoever waits on it.
    done: list[threading.Event] = field(default_factory=list)
    summary: list[str] = field(default_factory=list)
    failed: int = 0  # writes that failed and stay queued: the asker's exit code
    # The asker went away (a Stash task cancelled): see ScanWorker.cancel.
    cancelled: bool = False
    # A job made by `merge`: the requests it answers.
    parts: list[ScanRequest] = field(default_factory=list)

    @property
    def abandoned(self) -> bool:
        """Every asker of this job went away (a schedule or a signal never does)."""
        return bool(self.parts) and all(p.cancelled for p in self.parts)


@dataclass
class Activity:
    state: str = "starting"
    progress: list[int] | None = None
    since: float = field(default_factory=time.time)
    last_error: dict[str, object] | None = None


def merge(requests: list[ScanRequest]) -> list[ScanRequest]:
    """Waiting requests as few jobs: library scans become one (every root if any
    asks for every root); "stash" covers "tagme"; a delivery is left out when a
    scan runs anyway (every scan ends by writing what is queued)."""
    by_source: dict[str, list[ScanRequest]] = {}
    for r in requests:
        by_source.setdefault(r.source, []).append(r)
    if "stash" in by_source and "tagme" in by_source:
        by_source["stash"] += by_source.pop("tagme")
    if len(by_source) > 1 and "deliver" in by_source:
        # Its waiters ride on the first scan.
        first = next(s for s in SOURCES if s in by_source and s != "deliver")
        by_source[first] += by_source.pop("deliver")
    jobs = []
    for source in SOURCES:
        group = by_source.get(source)
        if not group:
            continue
        triggers = "+".join(sorted({r.trigger for r in group}))
        scans = [r for r in group if r.source == "library"]
        roots: set[str] | None = None
        if scans and all(r.roots is not None for r in scans):
            roots = set().union(*(r.roots or set() for r in scans))
        job = ScanRequest(triggers, roots, source, force=any(r.force for r in group))
        job.done = [e for r in group for e in r.done]
        job.parts = list(group)
        jobs.append(job)
    return jobs


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
        # The running job's stop: set with `stop`, or when its askers all went away.
        self._job_stop = threading.Event()
        self._job: ScanRequest | None = None
        self._job_lock = threading.Lock()
        self.requests: queue.Queue[ScanRequest | None] = queue.Queue()
        self.activity = Activity()
        self.busy = False
        self.heartbeat = time.monotonic()  # last sign of progress, for the watchdog
        self.idle_status = "idle"
        self.scans = 0
        self._catalog: Catalog | None = None
        self._last_progress = 0.0
        self.disk_full_since: float | None = None  # the state dir's disk was full then
        # Files that changed while analysed (still being copied), and how many scans
        # in a row found them so; scanned again by one timer (see _recheck_later).
        self._unsettled: dict[str, int] = {}
        self._recheck_roots: set[str] = set()
        self._recheck_timer: threading.Timer | None = None
        self._recheck_lock = threading.Lock()

    # ------------------------------------------------------------ main thread side

    def request(
        self,
        trigger: str,
        roots: set[str] | None = None,
        source: str = "library",
        force: bool = False,
    ) -> ScanRequest:
        """Queue work; the request's `done` events are set when it is finished."""
        request = ScanRequest(trigger, roots, source, force, done=[threading.Event()])
        self.requests.put(request)
        return request

    @property
    def pending(self) -> bool:
        return self.busy or not self.requests.empty()

    def finish(self, deadline: float) -> None:
        """Stop after the batch in flight; write sidecars until `deadline` (monotonic)."""
        self.stop_deadline = deadline
        self.stop.set()
        self._job_stop.set()
        self.requests.put(None)

    def cancel(self, request: ScanRequest) -> None:
        """The asker of `request` went away (Stash killed its task): the job stops
        after the batch in flight, unless someone else (or the schedule) wants it
        too; a job not started yet is skipped."""
        with self._job_lock:
            request.cancelled = True
            if self._job is not None and self._job.abandoned:
                log.info("scan (%s): whoever asked for it went away: stopping", self._job.trigger)
                self._job_stop.set()

    # ------------------------------------------------------------ scan thread

    def run(self) -> None:
        self._catalog = Catalog(self.catalog_path)
        taken: list[ScanRequest] = []
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
                taken = [r for r in batch if r is not None]
                if self.stop.is_set() or not taken:
                    break
                for job in merge(taken):
                    if self.stop.is_set():
                        break
                    with self._job_lock:
                        self._job, self._job_stop = job, threading.Event()
                        skip = job.abandoned
                    if skip:
                        job.summary[:] = ["not done: whoever asked went away"]
                    else:
                        self._guarded(job)
                    with self._job_lock:
                        self._job = None
                    self._answer(taken, job)
                taken = []
            try:
                self._flush()
            except Exception as exc:
                if not disk_full(exc, Path(self.catalog_path).parent):
                    raise
                # The due sidecars stay queued; the next start writes them.
                log.warning(
                    "stopping: %s; queued sidecars are written at the next start",
                    DiskFullError(Path(self.catalog_path).parent),
                )
            self._set_activity("stopped")
        finally:
            self._catalog.close()
            # Whoever still waits (the control socket) hears that the daemon stopped.
            while True:
                try:
                    left = self.requests.get_nowait()
                except queue.Empty:
                    break
                if left is not None:
                    taken.append(left)
            for r in taken:
                if not all(e.is_set() for e in r.done):
                    r.summary[:] = r.summary or ["not done: tagd is stopping"]
                    for event in r.done:
                        event.set()

    @staticmethod
    def _answer(requests: list[ScanRequest], job: ScanRequest) -> None:
        """Give the job's summary to the requests it covered, and wake their waiters."""
        for r in requests:
            if any(e in job.done for e in r.done):
                r.summary[:] = job.summary
                r.failed = job.failed
        for event in job.done:
            event.set()

    def _guarded(self, request: ScanRequest) -> None:
        self.busy = True
        self.heartbeat = time.monotonic()
        generation = self.generation
        try:
            if request.source == "deliver":
                request.summary[:] = self.deliver(generation.settings, request)
            elif request.source in ("stash", "tagme"):
                self.scan_from_stash(request, generation)
            else:
                self.scan(request, generation)
        except Exception as exc:  # one failed scan must not end the daemon
            if disk_full(exc, Path(self.catalog_path).parent):
                self._disk_full(request)
            else:
                log.exception("scan (%s) failed", request.trigger)
                self.activity.last_error = {"time": time.time(), "message": f"{exc!r}"}
                request.summary[:] = [f"failed: {exc!r}"]
        else:
            if self.disk_full_since is not None and request.source != "deliver":
                self.disk_full_since = None
                log.info("the catalog takes writes again: scans go on where they stopped")
        finally:
            self.busy = False
            if generation is not self.generation:
                # A reload replaced the analyzers while this scan used the old ones.
                for analyzer in generation.analyzers:
                    for model in analyzer.models:
                        model.unload()
            self._set_activity("idle")

    def _disk_full(self, request: ScanRequest) -> None:
        """The state directory's disk is full. SQLite rolled back what was not
        committed, so the catalog is intact; the daemon keeps running (on a NAS
        space comes back when a backup or download is cleaned up, and a stopped
        service would stay stopped) and goes on at the next scan or retry. Said
        once per episode, not at every retry round, and without a traceback."""
        message = (
            f"{DiskFullError(Path(self.catalog_path).parent)}; free some space there: "
            "tagd keeps running and tries again at the next scan"
        )
        if self.disk_full_since is None:
            self.disk_full_since = time.time()
            log.error("scan (%s) stopped: %s", request.trigger, message)
        else:
            log.debug("scan (%s) stopped: %s", request.trigger, message)
        self.activity.last_error = {"time": time.time(), "message": message}
        request.summary[:] = [f"failed: {message}"]

    def scan_from_stash(self, request: ScanRequest, generation: Generation) -> None:
        """Scan the files Stash lists (`tagme`: only those tagged <prefix>_TagMe)."""
        from tagd.scan.stash_source import files_from_stash
        from tagd.sinks.stash.client import StashError
        from tagd.sinks.stash.deliver import make_client

        settings = generation.settings
        if not settings.stash.enabled:
            request.summary[:] = ["nothing done: [stash] enabled = false"]
            log.warning("stash scan (%s): [stash] enabled = false", request.trigger)
            return
        self._set_activity("listing")
        try:
            listed = files_from_stash(make_client(settings), settings, request.source == "tagme")
        except StashError as exc:
            request.summary[:] = [f"cannot list files from Stash: {exc}"]
            log.warning("stash scan (%s): cannot list files from Stash: %s", request.trigger, exc)
            return
        for path in listed.missing[:MAX_LOGGED]:
            log.warning("%s: in Stash, missing here (path_mappings?)", path)
        head = listed.summary()
        # The TagMe schedule asks every few minutes: "nothing marked" is not news.
        quiet = not listed.local and not listed.missing
        log.log(logging.DEBUG if quiet else logging.INFO, "%s", head)
        request.summary[:] = [head]
        if listed.local:
            job = ScanRequest(request.trigger, set(listed.local), request.source, request.force)
            self.scan(job, generation, from_stash=listed.local)
            request.summary += job.summary
            request.failed = job.failed

    def scan(
        self, request: ScanRequest, generation: Generation, from_stash: list[str] | None = None
    ) -> ScanStats:
        catalog = self._catalog
        assert catalog is not None
        settings = generation.settings
        all_roots = [os.path.abspath(r) for r in settings.library.roots]
        roots = sorted(request.roots) if request.roots is not None else all_roots
        usable, problems = roots, []
        if from_stash is None and request.roots is None:
            # An unmounted share is skipped (nothing forgotten), logged at every
            # library scan and shown by `tagd status` until it is back.
            usable, problems = usable_roots(roots)
            for problem in problems:
                log.warning("%s; %s", problem, SKIPPED)
        if not roots:
            log.warning("library.roots is empty: nothing to scan")
            request.summary[:] = ["nothing to scan: library.roots is empty"]
            return ScanStats(request.trigger, roots)
        options = ScanOptions(
            request.trigger,
            from_stash=from_stash is not None,
            retry_all=request.force,
            root_problems=problems,
        )
        # File writes run in a child process: a write hung on a dead share or a
        # frozen disk must not keep the daemon from stopping (see sinks/writer.py).
        with WriterProcess(self.catalog_path) as writer:
            report = run_scan(
                catalog,
                settings,
                roots,
                generation.analyzers,
                options=options,
                usable=usable,
                events=_Activity(self),
                stop=self._job_stop,
                stop_by=self._stop_by,
                writer=writer,
            )
        stats = report.stats
        if report.analysis is not None:
            self._recheck_later(report.unsettled, settings.library.settle_seconds)
        written = self._delivered(report.deliveries, request, retry=False)
        self.scans += 1
        self._log(stats)
        unsettled = report.unsettled
        request.summary[:] = [
            f"{stats.indexed} files indexed ({stats.new} new, {stats.changed} changed), "
            f"{stats.analysed} analysed ({stats.failed} failed)"
            + (f", {len(unsettled)} still being written (seen again soon)" if unsettled else ""),
            *written,
            *(f"{problem}; {SKIPPED}" for problem in stats.root_problems),
        ]
        return stats

    def _recheck_later(self, unsettled: list[str], settle: float) -> None:
        """Scan the files that changed while they were analysed again soon. The
        watcher sees a local copy end, but not one written to a share from another
        machine; a copy that goes on for long is looked at less and less often."""
        self._unsettled = {p: self._unsettled.get(p, 0) + 1 for p in unsettled}
        if not unsettled:
            return
        rounds = max(self._unsettled.values())
        delay = min(RECHECK_MAX, max(settle, 1.0) * 2 ** (rounds - 1))
        log.info(
            "%d files changed while analysed (still being copied?), e.g. %s: "
            "looking again in %.0f s",
            len(unsettled),
            unsettled[0],
            delay,
        )
        # A file gone meanwhile (renamed at the end of a copy): its folder says where.
        roots = {p if os.path.lexists(p) else os.path.dirname(p) for p in unsettled}
        with self._recheck_lock:
            self._recheck_roots |= roots
            if self._recheck_timer is not None:
                return  # one is pending: it takes these along
            self._recheck_timer = threading.Timer(delay, self._recheck_now)
            self._recheck_timer.daemon = True
            self._recheck_timer.start()

    def _recheck_now(self) -> None:
        with self._recheck_lock:
            roots, self._recheck_roots = self._recheck_roots, set()
            self._recheck_timer = None
        if roots and not self.stop.is_set():
            self.request("settle", roots)

    def deliver(self, settings: Settings, request: ScanRequest) -> list[str]:
        """A round of only writes (the retry timer's, or someone asked: a request
        that forces also writes what still backs off); one summary line per sink."""
        catalog = self._catalog
        assert catalog is not None
        with WriterProcess(self.catalog_path) as writer:
            delivered = deliver_all(
                catalog,
                settings,
                now=math.inf if request.force else None,
                writer=writer,
                stop=self.stop,
                stop_by=self._stop_by,
                progress=self._writing,
                starting=self._delivering,
            )
        return self._delivered(delivered, request, retry=True)

    def _delivered(
        self, delivered: list[tuple[Sink, DeliveryReport]], request: ScanRequest, retry: bool
    ) -> list[str]:
        """Log each sink's outcome; its summary lines, and what stays queued as the
        request's failure count. A retry round that did nothing stays quiet."""
        lines = []
        for sink, report in delivered:
            line = sink.summary(report)
            lines.append(line)
            level = logging.INFO if report.written or report.queued else logging.DEBUG
            log.log(level, "%s%s", "retry: " if retry else "", line)
            for path, reason in report.errors[:MAX_LOGGED]:
                log.warning("%s %s: %s", sink.name, path, reason)
        request.failed = sum(report.queued for _, report in delivered)
        return lines

    def _delivering(self, sink: Sink) -> None:
        self._set_activity("writing")

    def _writing(self, done: int, total: int) -> None:
        """Delivery progress: the watchdog sees a long delivery (a first one to Stash,
        100,000 sidecars) is alive, and `tagd status` how far it is."""
        now = time.monotonic()
        self.heartbeat = now
        if now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            self._set_activity("writing", [done, total])

    def _stop_by(self) -> float | None:
        """The stop deadline (monotonic): local writes go on until then."""
        return self.stop_deadline

    def _flush(self) -> None:
        """On stop: write the files that are due, within the stop deadline."""
        if self._catalog is None:
            return
        with WriterProcess(self.catalog_path) as writer:
            delivered = deliver_all(
                self._catalog,
                self.generation.settings,
                writer=writer,
                stop=self.stop,
                stop_by=self._stop_by,
                starting=self._delivering,
            )
        written = sum(report.written for _, report in delivered)
        left = sum(report.left for _, report in delivered)
        if written or left:
            log.info(
                "stopping: %d sidecars written, %d left queued for the next start", written, left
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
        elif state == "writing" and progress:
            self.notifier.status(f"writing: {progress[0]}/{progress[1]} files")
        elif state in ("indexing", "writing", "listing"):
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


class _Activity(ScanEvents):
    """A daemon scan's progress: the worker's activity (`tagd status`, systemd's
    STATUS=), its heartbeat for the watchdog, and the problems logged."""

    def __init__(self, worker: ScanWorker) -> None:
        self.worker = worker
        self.last = 0.0

    def indexing(self) -> None:
        self.worker._set_activity("indexing")

    def indexed_root(self, root: str) -> None:
        self.worker.heartbeat = time.monotonic()

    def indexed(self, report: IndexReport) -> None:
        for problem in report.problems[:MAX_LOGGED]:
            log.warning("%s", problem)

    def analysing(self, done: int, total: int) -> None:
        if not done:
            if total:
                self.worker._set_activity("analysing", [0, total])
            return
        self.worker.heartbeat = now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY or done >= total:
            self.last = now
            self.worker._set_activity("analysing", [done, total])

    def analysed(self, report: AnalyzeReport) -> None:
        for path, reason in report.errors[:MAX_LOGGED]:
            log.warning("%s: %s", path, reason)

    def delivering(self, sink: Sink) -> None:
        self.worker._delivering(sink)

    def writing(self, done: int, total: int) -> None:
        self.worker._writing(done, total)
