"""The VLM pass of a scan: ask the [vlm] model about every file it has not seen.

It runs after the other analyzers (tagd.scan.run), through the same pipeline
(decode once at [vlm] image_size, video frames at [vlm] video_interval, store,
derive tags, queue XMP and Stash), with as many files in flight as the
servers take at once. Answers that cannot be read, and files in flight when
every server is down, are left for the next scan; the pass then stops (with
every server down, the rest would fail too).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from tagd.analyzers.vlm import VlmAnalyzer
from tagd.config import Settings, VlmSettings
from tagd.runtime.endpoints import EndpointPool, lanes_for, shared_pool
from tagd.vlm.chat import ChatClient

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tagd.catalog.catalog import Catalog

log = logging.getLogger(__name__)


@dataclass
class VlmReport:
    asked: int = 0  # files with their answers stored
    deferred: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    failed: int = 0  # files that could not be read or decoded
    seconds: float = 0.0
    stopped: str = ""  # why the pass ended early ("" when it did not)


def pool_for(vlm: VlmSettings) -> EndpointPool[ChatClient]:
    """The pool of [[vlm.endpoints]]: OpenAI-compatible chat servers."""
    return shared_pool(
        vlm.endpoints, vlm.timeout, lambda e: ChatClient(e.url, e.api_key, vlm.timeout)
    )


def ask_pending(
    catalog: Catalog,
    settings: Settings,
    prefixes: Sequence[str] = (),
    stop: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> VlmReport:
    """Ask about the files under `prefixes` (all when empty) that have no answers
    for today's [vlm] settings. `progress(done, total)` after each file (the
    daemon waits there while paused)."""
    from tagd.pipeline import Pipeline

    vlm = settings.vlm
    # The pipeline's stop: set by the scan's stop (seen after each file), or by
    # the analyzer when no server is up (the files left would all wait anyway).
    halt = threading.Event()
    analyzer = VlmAnalyzer(vlm, pool_for(vlm), halt)
    # One frame per call, each lane waiting on a server: as many lanes as they take.
    lanes = lanes_for(vlm.endpoints)
    ask_settings = replace(
        settings,
        runtime=replace(settings.runtime, batch_size=1, lanes=lanes),
        decode=replace(settings.decode, video_interval=vlm.video_interval),
    )
    pipeline = Pipeline(catalog, ask_settings, [analyzer], prefixes=list(prefixes))
    total = pipeline.pending_count()
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if stop is not None and stop.is_set():
            halt.set()
        if progress is not None:
            progress(done, total)

    if progress is not None and total:
        progress(0, total)
    analysis = pipeline.run(stop=halt, lanes=lanes, progress=step)
    report = VlmReport(
        asked=analysis.done,
        deferred=analysis.deferred,
        failed=analysis.failed,
        seconds=analysis.seconds,
    )
    if halt.is_set() and not (stop is not None and stop.is_set()):
        report.stopped = "no VLM server is up"
    for path, why in report.deferred:
        log.warning("%s: %s", path, why)
    if report.asked or report.deferred:
        log.info(
            "vlm: %d files asked in %.1f s; %d left for the next scan%s",
            report.asked,
            report.seconds,
            len(report.deferred),
            f" ({report.stopped})" if report.stopped else "",
        )
    return report
