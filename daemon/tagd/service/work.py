"""The scan thread: the daemon's requests, one job at a time, done by the
analysis process (tagd.engine).

Requests come from the schedule, the watcher, signals, the control socket and
the API; those that pile up while a job runs are merged into one. The thread
hands each job to the analysis process and follows its progress (activity for
`tagd status` and systemd, a heartbeat for the watchdog, events for GET
/events). Files that changed while they were analysed (still being copied)
are scanned again a little later. Paused, it lets the job in flight finish its
batch and starts nothing new until resumed. On stop the job in flight finishes
its batch (each batch is one transaction), the sidecars already due are
written until the stop deadline, and the thread ends.
"""

from __future__ import annotations

import itertools
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.engine.client import Engine, EngineError
from tagd.engine.protocol import Job
from tagd.service.events import EventBus
from tagd.service.notify import Notifier
from tagd.service.stats import ACTIVITY, put_json
from tagd.sinks.select import enabled_sinks

log = logging.getLogger("tagd.scan")

RECHECK_MAX = 60.0  # seconds: the longest wait before a file still being written is seen again
RECENT = 200  # requests kept for GET /scans/{id} once done


@dataclass(frozen=True)
class Generation:
    """One loaded config; replaced whole on reload. `number` tells the analysis
    process when to build its analyzers again."""

    settings: Settings
    number: int = 0
    # analyzer name -> model sha256, as the analysis process checked them
    shas: dict[str, str] = field(default_factory=dict)


# What a request asks for: a library scan, a scan of the files Stash lists (all
# or only TagMe ones), or only the queued writes (the retry timer, `deliver`).
SOURCES = ("library", "stash", "tagme", "deliver")


_ids = itertools.count(1)


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
    id: int = field(default_factory=lambda: next(_ids))
    state: str = "queued"  # queued | running | done | cancelled
    queued_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    progress: list[int] | None = None  # files done, files to do (while analysing)

    @property
    def abandoned(self) -> bool:
        """Every asker of this job went away (a schedule or a signal never does)."""
        return bool(self.parts) and all(p.cancelled for p in self.parts)

    def view(self) -> dict[str, Any]:
        """What GET /scans/{id} shows of it."""
        return {
            "id": self.id,
            "source": self.source,
            "trigger": self.trigger,
            "roots": sorted(self.roots) if self.roots is not None else None,
            "state": self.state,
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "progress": self.progress,
            "summary": list(self.summary),
            "failed_writes": self.failed,
        }


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
        engine: Engine | None = None,
        events: EventBus | None = None,
    ) -> None:
        super().__init__(name="scan", daemon=True)
        self.catalog_path = catalog_path
        self.generation = generation
        self.notifier = notifier
        self.stop = stop
        settings = generation.settings
        self.engine = engine or Engine(
            catalog_path, log_level=settings.daemon.log_level, idle=settings.runtime.idle_unload
        )
        self.events = events or EventBus()
        self.stop_deadline: float | None = None  # monotonic; set with `stop`
        self._job: ScanRequest | None = None
        self._job_lock = threading.Lock()
        self.requests: queue.Queue[ScanRequest | None] = queue.Queue()
        self.recent: OrderedDict[int, ScanRequest] = OrderedDict()
        self.activity = Activity()
        self.busy = False
        self.paused = False
        self._resumed = threading.Event()
        self._resumed.set()
        self.heartbeat = time.monotonic()  # last sign of progress, for the watchdog
        self.idle_status = "idle"
        self.scans = 0
        self._catalog: Catalog | None = None
        self.disk_full_since: float | None = None  # the state dir's disk was full then
        # Files that changed while analysed (still being copied), and how many scans
        # in a row found them so; scanned again by one timer (see _recheck_later).
        self._unsettled: dict[str, int] = {}
        self._recheck_roots: set[str] = set()
        self._recheck_timer: threading.Timer | None = None
        self._recheck_lock = threading.Lock()

    # ------------------------------------------------------------ other threads' side

    def request(
        self,
        trigger: str,
        roots: set[str] | None = None,
        source: str = "library",
        force: bool = False,
    ) -> ScanRequest:
        """Queue work; the request's `done` events are set when it is finished."""
        request = ScanRequest(trigger, roots, source, force, done=[threading.Event()])
        with self._job_lock:
            self.recent[request.id] = request
            while len(self.recent) > RECENT:
                self.recent.popitem(last=False)
        self.requests.put(request)
        self.events.publish("scan", **request.view())
        return request

    def find(self, request_id: int) -> ScanRequest | None:
        with self._job_lock:
            return self.recent.get(request_id)

    @property
    def pending(self) -> bool:
        return self.busy or not self.requests.empty()

    def pause(self, paused: bool) -> None:
        """Paused: the job in flight finishes its batch and waits, and no new job
        starts until resumed (requests still queue). POST /analyze is served."""
        if paused == self.paused:
            return
        self.paused = paused
        self.engine.pause(paused)
        if paused:
            self._resumed.clear()
        else:
            self._resumed.set()
        log.info("%s", "paused: scans wait for resume" if paused else "resumed")
        if not self.busy:
            self.activity.state = "paused" if paused else "idle"
            self.notifier.status("paused" if paused else self.idle_status)
        self.events.publish("paused" if paused else "resumed", state=self.activity.state)

    def finish(self, deadline: float) -> None:
        """Stop after the batch in flight; write sidecars until `deadline` (monotonic)."""
        self.stop_deadline = deadline
        self.stop.set()
        self.engine.stop_job(deadline, everything=True)
        self._resumed.set()
        self.requests.put(None)

    def cancel(self, request: ScanRequest) -> None:
        """The asker of `request` went away (Stash killed its task): the job stops
        after the batch in flight, unless someone else (or the schedule) wants it
        too; a job not started yet is skipped."""
        with self._job_lock:
            request.cancelled = True
            if self._job is not None and self._job.abandoned:
                log.info("scan (%s): whoever asked for it went away: stopping", self._job.trigger)
                self.engine.stop_job(None)

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
                    self._wait_while_paused()
                    if self.stop.is_set():
                        break
                    with self._job_lock:
                        self._job = job
                        skip = job.abandoned
                    if skip:
                        job.summary[:] = ["not done: whoever asked went away"]
                    else:
                        self._guarded(job)
                    with self._job_lock:
                        self._job = None
                    self._answer(taken, job)
                taken = []
            self._flush()
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
                    r.state = "cancelled"
                    for event in r.done:
                        event.set()

    def _wait_while_paused(self) -> None:
        if self._resumed.is_set():
            return
        self._set_activity("paused")
        while not self._resumed.wait(1.0):
            self.heartbeat = time.monotonic()  # waiting on purpose is no stall
        self._set_activity("idle")

    def _answer(self, requests: list[ScanRequest], job: ScanRequest) -> None:
        """Give the job's summary to the requests it covered, and wake their waiters."""
        now = time.time()
        for r in requests:
            if any(e in job.done for e in r.done):
                r.summary[:] = job.summary
                r.failed = job.failed
                r.state = "done" if job.state != "queued" else "cancelled"
                r.started_at = r.started_at or job.started_at
                r.finished_at = now
                self.events.publish("scan", **r.view())
        for event in job.done:
            event.set()

    def _guarded(self, request: ScanRequest) -> None:
        self.busy = True
        self.heartbeat = time.monotonic()
        request.state, request.started_at = "running", time.time()
        for part in request.parts:
            part.state, part.started_at = "running", request.started_at
            self.events.publish("scan", **part.view())
        generation = self.generation
        job = Job(
            request.source,
            request.trigger,
            sorted(request.roots) if request.roots is not None else None,
            request.force,
        )
        try:
            result = self.engine.call(
                "job",
                generation.settings,
                generation.number,
                job,
                on_event=lambda event: self._progress(request, event),
            )
        except EngineError as exc:
            if exc.kind == "disk_full":
                self._disk_full(request, str(exc))
            else:
                log.error("scan (%s) failed: %s", request.trigger, exc)
                self.activity.last_error = {"time": time.time(), "message": str(exc)}
                request.summary[:] = [f"failed: {exc}"]
                self.events.publish("error", message=f"scan ({request.trigger}) failed: {exc}")
        else:
            request.summary[:] = result["summary"]
            request.failed = result["failed"]
            if result["scanned"]:
                self.scans += 1
                self._recheck_later(result["unsettled"], result["settle"])
                self._purge_quarantine(generation.settings)
            if self.disk_full_since is not None and request.source != "deliver":
                self.disk_full_since = None
                log.info("the catalog takes writes again: scans go on where they stopped")
        finally:
            self.busy = False
            request.state = "done"
            self._set_activity("paused" if self.paused else "idle")

    def _purge_quarantine(self, settings: Settings) -> None:
        """Quarantined duplicates past their retention, deleted when asked for."""
        dupes = settings.duplicates
        if not dupes.purge:
            return
        from tagd.quarantine import purge_expired

        try:
            report = purge_expired(settings.library.roots, dupes.retention_days)
        except OSError as exc:
            log.warning("quarantined duplicates not purged: %s", exc)
            return
        if report.deleted:
            log.info(
                "deleted %d quarantined duplicates older than %d days",
                len(report.deleted),
                dupes.retention_days,
            )

    def _progress(self, request: ScanRequest, event: dict[str, Any]) -> None:
        """A progress event of the job in flight (in this thread)."""
        self.heartbeat = time.monotonic()
        ids = [r.id for r in request.parts] or [request.id]  # the scans asked for
        if "state" in event:
            progress = event["progress"]
            self._set_activity(event["state"], progress)
            if event["state"] in ("analysing", "paused"):
                for r in (request, *request.parts):
                    r.progress = progress
            self.events.publish("progress", scans=ids, state=event["state"], progress=progress)
        if "errors" in event:
            self.events.publish("errors", scans=ids, files=event["errors"])

    def _disk_full(self, request: ScanRequest, message: str) -> None:
        """The state directory's disk is full. SQLite rolled back what was not
        committed, so the catalog is intact; the daemon keeps running (on a NAS
        space comes back when a backup or download is cleaned up, and a stopped
        service would stay stopped) and goes on at the next scan or retry. Said
        once per episode, not at every retry round, and without a traceback."""
        message = (
            f"{message}; free some space there: tagd keeps running and tries again at the next scan"
        )
        if self.disk_full_since is None:
            self.disk_full_since = time.time()
            log.error("scan (%s) stopped: %s", request.trigger, message)
        else:
            log.debug("scan (%s) stopped: %s", request.trigger, message)
        self.activity.last_error = {"time": time.time(), "message": message}
        request.summary[:] = [f"failed: {message}"]
        self.events.publish("error", message=message)

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

    def _flush(self) -> None:
        """On stop: have the sidecars that are due written, within the stop deadline.
        The analysis process is started for it only when some are due."""
        if self._catalog is None:
            return
        settings = self.generation.settings
        try:
            due = self._catalog.next_due(enabled_sinks(settings))
        except Exception as exc:  # a busy catalog: the next start writes them
            log.debug("cannot read the outbox: %s", exc)
            return
        if due is None or (due > time.time() and not self.engine.running):
            return
        try:
            self.engine.call(
                "job",
                settings,
                self.generation.number,
                Job("flush", "stop"),
                on_event=lambda event: None,
            )
        except EngineError as exc:
            if exc.kind == "disk_full":
                # The due sidecars stay queued; the next start writes them.
                log.warning("stopping: %s; queued sidecars are written at the next start", exc)
            else:
                log.warning("stopping: the due sidecars stay queued: %s", exc)

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
        elif state in ("indexing", "writing", "listing", "paused"):
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
                        "paused": self.paused,
                    },
                )
            except Exception as exc:  # a status row is not worth a failed scan
                log.debug("cannot record activity: %s", exc)
