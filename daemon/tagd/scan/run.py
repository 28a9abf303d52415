"""One scan, the same for `tagd scan` and `tagd run`: index, queue, re-derive,
analyse, cluster faces, write to the sinks, record.

What differs between the two is around it: the CLI prints what happens (its
`ScanEvents`) and retries every queued write; the daemon shows its activity,
can be stopped halfway and writes files in a child process. Stopping ends the
scan between two steps (indexing a root, an analysed batch, a written file);
what is left is picked up by the next scan.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.media import thumbnail
from tagd.scan.index import IndexReport, index_root, make_walker
from tagd.service.stats import ScanStats, record_scan
from tagd.sinks.outbox import Deadline, DeliveryReport, Sink, deliver_all, enabled
from tagd.sinks.select import enabled_sinks

log = logging.getLogger("tagd.scan")

if TYPE_CHECKING:
    from tagd.analyzers.base import Analyzer
    from tagd.people.cluster import ClusterReport
    from tagd.pipeline import AnalyzeReport
    from tagd.sinks.writer import WriterProcess
    from tagd.vlm.ask import VlmReport


def checked_analyzers(settings: Settings, models_dir: Path) -> list[Analyzer]:
    """The analyzers a config asks for, their model files checked (not loaded), so
    a missing or damaged model fails before anything is touched. One whose model
    fetch could not make here is left out, with a warning that says why."""
    # Imported here: an index-only scan needs neither OpenCV nor onnxruntime.
    from tagd.pipeline import usable_analyzers

    analyzers, off = usable_analyzers(settings, models_dir)
    for name, why in off.items():
        log.warning("%s: %s", name, why)
    for analyzer in analyzers:
        for model in analyzer.models:
            model.check()
    return analyzers


@dataclass(frozen=True)
class ScanOptions:
    trigger: str  # schedule | watch | start | reload | signal | tagd scan | ...
    dry_run: bool = False  # sinks that can preview show their changes; nothing is written
    # The roots are the files Stash listed: they are written to Stash again even
    # when unchanged (a TagMe file tagd already knew still needs its tags there).
    from_stash: bool = False
    # Every queued write now, backing off or not (someone asked, and may just have
    # fixed what made them fail); otherwise only those due.
    retry_all: bool = False
    write_roots: Sequence[str] = ()  # where writes may go besides the library
    root_problems: Sequence[str] = ()  # roots skipped as missing, for `tagd status`


class ScanEvents:
    """What a scan tells its runner as it goes; each does nothing unless overridden."""

    def indexing(self) -> None: ...

    def indexed_root(self, root: str) -> None: ...

    def indexed(self, report: IndexReport) -> None: ...

    def analysing(self, done: int, total: int) -> None:
        """Files analysed so far: (0, total) first, then after every batch."""

    def analysed(self, report: AnalyzeReport) -> None: ...

    def clustered(self, report: ClusterReport | None) -> None: ...

    def asking(self, done: int, total: int) -> None:
        """Files the VLM pass has answers for: (0, total) first, then after each."""

    def delivering(self, sink: Sink) -> None: ...

    def writing(self, done: int, total: int) -> None: ...


@dataclass
class ScanReport:
    stats: ScanStats
    index: IndexReport
    analysis: AnalyzeReport | None = None  # None: index only
    deliveries: list[tuple[Sink, DeliveryReport]] = field(default_factory=list)
    shas: dict[str, str] = field(default_factory=dict)  # the analyzers' models
    vlm: VlmReport | None = None  # the VLM pass, when [vlm] is on

    @property
    def queued(self) -> int:
        """Writes that failed or were cut short and stay queued."""
        return sum(report.queued for _, report in self.deliveries)

    @property
    def unsettled(self) -> list[str]:
        return self.analysis.unsettled if self.analysis is not None else []


def run_scan(
    catalog: Catalog,
    settings: Settings,
    roots: Sequence[str],
    analyzers: Sequence[Analyzer] | None,
    *,
    options: ScanOptions,
    usable: Sequence[str] | None = None,
    events: ScanEvents | None = None,
    stop: threading.Event | None = None,
    stop_by: Deadline | None = None,
    writer: WriterProcess | None = None,
    turn: Callable[[], AbstractContextManager[None]] = nullcontext,
) -> ScanReport:
    """Scan `roots` (indexing only those in `usable`, default all) and record it.

    `analyzers`: None indexes only (no model runs, nothing is written). `stop`
    ends the scan early; local sinks then write until `stop_by` (outbox.Sink).
    `turn()` is held around each analysed batch (Pipeline.run).
    """
    events = events or ScanEvents()
    stats = ScanStats(options.trigger, list(roots))
    stats.root_problems = list(options.root_problems)
    index = _index(catalog, settings, roots if usable is None else usable, events, stop)
    if options.from_stash and settings.stash.enabled:
        from tagd.scan.stash_source import queue_listed

        queue_listed(catalog, list(roots))
    for name in ("new", "changed", "moved", "deleted"):
        setattr(stats, name, getattr(index, name))
    stats.indexed = index.seen
    report = ScanReport(stats, index)
    if analyzers is not None:
        _analyse(report, catalog, settings, roots, analyzers, events, stop, turn)
        report.deliveries = deliver_all(
            catalog,
            settings,
            now=math.inf if options.retry_all else None,
            dry_run=options.dry_run,
            roots=options.write_roots,
            writer=writer,
            stop=stop,
            stop_by=stop_by,
            progress=events.writing,
            starting=events.delivering,
        )
        if not options.dry_run:
            local = [r for sink, r in report.deliveries if sink.local]
            stats.written = sum(r.written for r in local)
            stats.write_failed = sum(r.failed for r in local)
    stats.stopped = stop is not None and stop.is_set()
    stats.end = time.time()
    record_scan(catalog, stats)
    return report


def _index(
    catalog: Catalog,
    settings: Settings,
    roots: Sequence[str],
    events: ScanEvents,
    stop: threading.Event | None,
) -> IndexReport:
    """Bring the catalog in line with the disk; changes are queued for the sinks."""
    sinks = enabled_sinks(settings)
    walker = make_walker(settings)
    events.indexing()
    index = IndexReport()
    for root in roots:
        if stop is not None and stop.is_set():
            break
        index.merge(index_root(catalog, walker, os.path.abspath(root), sinks))
        events.indexed_root(root)
    if index.gone:
        with catalog.transaction():
            for sink in enabled(settings):
                sink.forget(catalog, settings, index.gone)
    events.indexed(index)
    return index


def _analyse(
    report: ScanReport,
    catalog: Catalog,
    settings: Settings,
    roots: Sequence[str],
    analyzers: Sequence[Analyzer],
    events: ScanEvents,
    stop: threading.Event | None,
    turn: Callable[[], AbstractContextManager[None]],
) -> None:
    """Re-derive tags if the policy changed, analyse what is pending, cluster faces."""
    from tagd.people.cluster import after_scan
    from tagd.pipeline import Pipeline

    previews = thumbnail.folder_for(catalog.path) if settings.api.thumbnails else None
    pipeline = Pipeline(catalog, settings, analyzers, prefixes=list(roots), thumbnails=previews)
    report.shas = dict(pipeline.shas)
    pipeline.rederive_if_policy_changed()
    if stop is not None and stop.is_set():
        return
    total = pipeline.pending_count()
    done = 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        events.analysing(done, total)

    events.analysing(0, total)
    analysis = pipeline.run(progress=progress, stop=stop, turn=turn)
    report.analysis = analysis
    stats = report.stats
    stats.analysed, stats.failed, stats.frames = analysis.done, analysis.failed, analysis.frames
    stats.analyse_seconds = analysis.seconds
    events.analysed(analysis)
    if stop is None or not stop.is_set():
        events.clustered(after_scan(catalog, settings))  # people: cluster the new faces
    if "phash" in pipeline.shas and (stop is None or not stop.is_set()):
        from tagd.dupe_pairs import pair_pending

        # Near-duplicates: the photos hashed in this scan against the library.
        pair_pending(catalog, settings.duplicates.threshold)
    if settings.vlm.enabled and (stop is None or not stop.is_set()):
        from tagd.vlm.ask import ask_pending

        # The VLM last: it takes seconds a file, and held up nothing above.
        report.vlm = ask_pending(catalog, settings, list(roots), stop, events.asking)
    if settings.organize.import_folder and (stop is None or not stop.is_set()):
        from tagd.organize import file_imports

        # The import folder's new files, tagged by now, filed by the rules.
        file_imports(catalog, settings, catalog.path.parent, pipeline.shas)
    if "concepts" in pipeline.shas and analysis.done and (stop is None or not stop.is_set()):
        from tagd.teach import apply_all

        # Taught tags: the new photos' embeddings scored (no model runs).
        if catalog.taught_tags():
            apply_all(catalog, settings)
