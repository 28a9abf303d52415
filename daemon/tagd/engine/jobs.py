"""The daemon's jobs as the analysis process runs them: a library scan, a scan of
what Stash lists, a round of queued writes, and the writes due at a stop.

Each job gets the settings and analyzers of the daemon's current config, a
`Progress` that tells the daemon how far it is (and holds the job while it is
paused), and the stop event and deadline. Its answer is a `JobResult`; the
daemon logs nothing twice, so what is logged about the files is logged here.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from tagd.analyzers.base import Analyzer
from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.engine.protocol import Job, JobResult
from tagd.scan.index import IndexReport
from tagd.scan.roots import SKIPPED, usable_roots
from tagd.scan.run import ScanEvents, ScanOptions, run_scan
from tagd.service.stats import ScanStats
from tagd.sinks.outbox import DeliveryReport, Sink, deliver_all
from tagd.sinks.writer import WriterProcess

if TYPE_CHECKING:
    from tagd.pipeline import AnalyzeReport

log = logging.getLogger("tagd.scan")

MAX_LOGGED = 20
PROGRESS_EVERY = 2.0  # seconds between progress events (STATUS=, `tagd status`, /events)


class Progress(ScanEvents):
    """A job's progress, sent to the daemon as events: its activity, a heartbeat
    for the watchdog, per-file errors for /events. Between two steps it waits
    while the daemon is paused."""

    def __init__(self, send: Callable[[dict[str, Any]], None], resume: threading.Event):
        self.send = send
        self.resume = resume  # set while not paused
        self.last = 0.0
        self.now: tuple[str, list[int] | None] = ("starting", None)

    def state(self, state: str, progress: list[int] | None = None) -> None:
        self.now = (state, progress)
        self.send({"state": state, "progress": progress})

    def wait_if_paused(self) -> None:
        """Between two steps: wait while the daemon is paused (a stop wakes it)."""
        if self.resume.is_set():
            return
        state, progress = self.now
        log.info("paused: the batch in flight is done; waiting for resume")
        self.send({"state": "paused", "progress": progress})
        self.resume.wait()
        log.info("going on")
        self.state(state, progress)

    def beat(self) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.send({"beat": True})

    def indexing(self) -> None:
        self.state("indexing")

    def indexed_root(self, root: str) -> None:
        self.beat()
        self.wait_if_paused()

    def indexed(self, report: IndexReport) -> None:
        for problem in report.problems[:MAX_LOGGED]:
            log.warning("%s", problem)

    def analysing(self, done: int, total: int) -> None:
        self._counted("analysing", done, total)

    def analysed(self, report: AnalyzeReport) -> None:
        for path, reason in report.errors[:MAX_LOGGED]:
            log.warning("%s: %s", path, reason)
        if report.errors:
            self.send({"errors": [list(e) for e in report.errors[:MAX_LOGGED]]})

    def asking(self, done: int, total: int) -> None:
        self._counted("asking", done, total)

    def _counted(self, state: str, done: int, total: int) -> None:
        """Files done of a step that counts them (analysis, the VLM): said at the
        start, every PROGRESS_EVERY seconds and at the end; paused between files."""
        if not done:
            if total:
                self.state(state, [0, total])
            return
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY or done >= total:
            self.last = now
            self.state(state, [done, total])
        self.wait_if_paused()

    def delivering(self, sink: Sink) -> None:
        self.state("writing")

    def writing(self, done: int, total: int) -> None:
        """Delivery progress: the watchdog sees a long delivery (a first one to Stash,
        100,000 sidecars) is alive, and `tagd status` how far it is."""
        now = time.monotonic()
        if now - self.last >= PROGRESS_EVERY:
            self.last = now
            self.state("writing", [done, total])
        self.wait_if_paused()


class Jobs:
    """Runs jobs on the analysis process's catalog connection."""

    def __init__(
        self,
        catalog: Catalog,
        stop: threading.Event,
        stop_by: Callable[[], float | None],
        turn: Callable[[], AbstractContextManager[None]],
    ) -> None:
        self.catalog = catalog
        self.stop = stop  # this job's stop (the daemon stops, or its askers went away)
        self.stop_by = stop_by  # the stop deadline (monotonic): local writes go on until then
        self.turn = turn

    def run(
        self, job: Job, settings: Settings, analyzers: Sequence[Analyzer], progress: Progress
    ) -> JobResult:
        result = JobResult()
        if job.source == "deliver":
            result.summary = self.deliver(settings, job, result, progress)
        elif job.source == "flush":
            self.flush(settings, progress)
        elif job.source in ("stash", "tagme"):
            self.scan_from_stash(job, settings, analyzers, result, progress)
        else:
            self.scan(job, settings, analyzers, result, progress)
        return result

    def scan_from_stash(
        self,
        job: Job,
        settings: Settings,
        analyzers: Sequence[Analyzer],
        result: JobResult,
        progress: Progress,
    ) -> None:
        """Scan the files Stash lists (`tagme`: only those tagged <prefix>_TagMe)."""
        from tagd.scan.stash_source import files_from_stash
        from tagd.sinks.stash.client import StashError
        from tagd.sinks.stash.deliver import make_client

        if not settings.stash.enabled:
            result.summary = ["nothing done: [stash] enabled = false"]
            log.warning("stash scan (%s): [stash] enabled = false", job.trigger)
            return
        progress.state("listing")
        try:
            listed = files_from_stash(make_client(settings), settings, job.source == "tagme")
        except StashError as exc:
            result.summary = [f"cannot list files from Stash: {exc}"]
            log.warning("stash scan (%s): cannot list files from Stash: %s", job.trigger, exc)
            return
        for path in listed.missing[:MAX_LOGGED]:
            log.warning("%s: in Stash, missing here (path_mappings?)", path)
        head = listed.summary()
        # The TagMe schedule asks every few minutes: "nothing marked" is not news.
        quiet = not listed.local and not listed.missing
        log.log(logging.DEBUG if quiet else logging.INFO, "%s", head)
        result.summary = [head]
        if listed.local:
            scan = Job(job.source, job.trigger, list(listed.local), job.force)
            self.scan(scan, settings, analyzers, result, progress, from_stash=listed.local)
            result.summary.insert(0, head)

    def scan(
        self,
        job: Job,
        settings: Settings,
        analyzers: Sequence[Analyzer],
        result: JobResult,
        progress: Progress,
        from_stash: list[str] | None = None,
    ) -> None:
        all_roots = [os.path.abspath(r) for r in settings.library.roots]
        roots = sorted(job.roots) if job.roots is not None else all_roots
        usable, problems = roots, []
        if from_stash is None and job.roots is None:
            # An unmounted share is skipped (nothing forgotten), logged at every
            # library scan and shown by `tagd status` until it is back.
            usable, problems = usable_roots(roots)
            for problem in problems:
                log.warning("%s; %s", problem, SKIPPED)
        if not roots:
            log.warning("library.roots is empty: nothing to scan")
            result.summary = ["nothing to scan: library.roots is empty"]
            return
        options = ScanOptions(
            job.trigger,
            from_stash=from_stash is not None,
            retry_all=job.force,
            root_problems=problems,
        )
        # File writes run in a child process: a write hung on a dead share or a
        # frozen disk must not keep the daemon from stopping (see sinks/writer.py).
        with WriterProcess(self.catalog.path) as writer:
            report = run_scan(
                self.catalog,
                settings,
                roots,
                analyzers,
                options=options,
                usable=usable,
                events=progress,
                stop=self.stop,
                stop_by=self.stop_by,
                writer=writer,
                turn=self.turn,
            )
        stats = report.stats
        result.scanned = True
        result.unsettled = report.unsettled
        result.settle = settings.library.settle_seconds
        written = self._delivered(report.deliveries, result, retry=False)
        _log(stats)
        unsettled = report.unsettled
        result.summary = [
            f"{stats.indexed} files indexed ({stats.new} new, {stats.changed} changed), "
            f"{stats.analysed} analysed ({stats.failed} failed)"
            + (f", {len(unsettled)} still being written (seen again soon)" if unsettled else ""),
            *written,
            *(f"{problem}; {SKIPPED}" for problem in stats.root_problems),
        ]

    def deliver(
        self, settings: Settings, job: Job, result: JobResult, progress: Progress
    ) -> list[str]:
        """A round of only writes (the retry timer's, or someone asked: a request
        that forces also writes what still backs off); one summary line per sink."""
        with WriterProcess(self.catalog.path) as writer:
            delivered = deliver_all(
                self.catalog,
                settings,
                now=math.inf if job.force else None,
                writer=writer,
                stop=self.stop,
                stop_by=self.stop_by,
                progress=progress.writing,
                starting=progress.delivering,
            )
        return self._delivered(delivered, result, retry=True)

    def flush(self, settings: Settings, progress: Progress) -> None:
        """On stop: write the files that are due, within the stop deadline."""
        with WriterProcess(self.catalog.path) as writer:
            delivered = deliver_all(
                self.catalog,
                settings,
                writer=writer,
                stop=self.stop,
                stop_by=self.stop_by,
                starting=progress.delivering,
            )
        written = sum(report.written for _, report in delivered)
        left = sum(report.left for _, report in delivered)
        if written or left:
            log.info(
                "stopping: %d sidecars written, %d left queued for the next start", written, left
            )

    @staticmethod
    def _delivered(
        delivered: list[tuple[Sink, DeliveryReport]], result: JobResult, retry: bool
    ) -> list[str]:
        """Log each sink's outcome; its summary lines, and what stays queued as the
        job's failure count. A retry round that did nothing stays quiet."""
        lines = []
        for sink, report in delivered:
            line = sink.summary(report)
            lines.append(line)
            level = logging.INFO if report.written or report.queued else logging.DEBUG
            log.log(level, "%s%s", "retry: " if retry else "", line)
            for path, reason in report.errors[:MAX_LOGGED]:
                log.warning("%s %s: %s", sink.name, path, reason)
        result.failed = sum(report.queued for _, report in delivered)
        return lines


def _log(s: ScanStats) -> None:
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
