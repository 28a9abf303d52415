"""What every sink shares: the outbox's backoff, deadlines, the delivery report,
the `Sink` protocol and the registry of sinks.

The index queues each new, changed or moved file for every enabled sink (the
catalog's outbox); a sink then writes what is due and marks it done, or leaves
it queued with a backoff and a reason that `tagd status` shows. Nothing is
dropped.

A sink is one module under tagd.sinks whose name is `sink` or ends in `_sink`
(so that neither `tagd scan --index-only` nor a disabled sink imports a sink's
writers) and that defines PLUGIN, an object with the `Sink` protocol. Scans and
the daemon loop over the registered sinks: adding a sink is adding one module.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Protocol

from tagd.config import Settings

if TYPE_CHECKING:
    from tagd.catalog.catalog import Catalog
    from tagd.sinks.writer import WriterProcess

MAX_BACKOFF = 6 * 3600.0

# When a delivery must stop (time.monotonic()), asked between files; None: no limit yet.
Deadline = Callable[[], float | None]
# Told (files handled, files due) between files: a long delivery shows it is alive.
Progress = Callable[[int, int], None]


@dataclass
class DeliveryReport:
    written: int = 0
    unchanged: int = 0
    failed: int = 0
    left: int = 0  # still queued because the deadline passed
    vanished: int = 0  # the file was deleted since it was queued: nothing written
    changes: list[Any] = field(default_factory=list)  # a dry run's changes, sink's own type
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def queued(self) -> int:
        """Writes that did not happen and stay queued: the asker's failure count."""
        return self.failed + self.left


@dataclass(frozen=True)
class Delivery:
    """How one round of writes runs.

    `now`: what is due (None: the clock; math.inf: every queued write, backing off
    or not). `roots`: where writes may go besides the library (the paths a `tagd
    scan PATH` was given). `writer`: the daemon's child process for file writes.
    """

    now: float | None = None
    deadline: Deadline | None = None
    progress: Progress | None = None
    dry_run: bool = False
    roots: Sequence[str] = ()
    writer: WriterProcess | None = None


class Sink(Protocol):
    """Where tags go. `order`: delivery order. `local`: it writes files in the
    library (sidecars, embedded XMP): its writes are a scan's "sidecars written",
    run in the daemon's writer process, and go on until the daemon's stop deadline
    (the next start would otherwise redo them); a remote sink's queue waits for
    the next start instead, as a slow server must not hold up a shutdown.
    `previews`: it can show a dry run instead of writing."""

    name: str
    order: int
    local: bool
    previews: bool

    def enabled(self, settings: Settings) -> bool: ...

    def deliver(
        self, catalog: Catalog, settings: Settings, delivery: Delivery
    ) -> DeliveryReport: ...

    def forget(self, catalog: Catalog, settings: Settings, gone: Sequence[str]) -> None:
        """Files that left the library (`gone`: their paths): queue what shared
        output with them."""
        ...

    def summary(self, report: DeliveryReport) -> str:
        """One line for the daemon's log and the control socket's reply."""
        ...

    def explain(self, report: DeliveryReport, dry_run: bool) -> tuple[list[str], list[str]]:
        """What `tagd scan` prints: (lines for stdout, lines for stderr)."""
        ...


def past(deadline: Deadline | None) -> bool:
    if deadline is None:
        return False
    until = deadline()
    return until is not None and time.monotonic() >= until


def backoff(attempts: int) -> float:
    return min(MAX_BACKOFF, 30.0 * 2**attempts)


def _is_sink_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return last == "sink" or last.endswith("_sink")


@cache
def all_sinks() -> tuple[Sink, ...]:
    """Every sink module's PLUGIN, in delivery order."""
    from tagd import sinks

    found: dict[str, Sink] = {}
    for info in pkgutil.walk_packages(sinks.__path__, f"{sinks.__name__}."):
        if info.ispkg or not _is_sink_module(info.name):
            continue
        sink = getattr(importlib.import_module(info.name), "PLUGIN", None)
        if sink is not None:
            found[sink.name] = sink
    return tuple(sorted(found.values(), key=lambda s: (s.order, s.name)))


def enabled(settings: Settings) -> list[Sink]:
    return [sink for sink in all_sinks() if sink.enabled(settings)]


def deliver_all(
    catalog: Catalog,
    settings: Settings,
    *,
    now: float | None = None,
    dry_run: bool = False,
    roots: Sequence[str] = (),
    writer: WriterProcess | None = None,
    stop: threading.Event | None = None,
    stop_by: Deadline | None = None,
    progress: Progress | None = None,
    starting: Callable[[Sink], None] | None = None,
) -> list[tuple[Sink, DeliveryReport]]:
    """Write what is due for every enabled sink, in order; a report per sink.

    A dry run skips the sinks that cannot preview. Once `stop` is set, local sinks
    write until `stop_by` (the daemon's stop deadline) and remote ones are left
    queued for the next start (see `Sink`).
    """
    delivered = []
    for sink in enabled(settings):
        if dry_run and not sink.previews:
            continue
        if stop is not None and stop.is_set() and not sink.local:
            continue
        if starting is not None:
            starting(sink)
        delivery = Delivery(
            now=now,
            deadline=_deadline(sink, stop, stop_by),
            progress=progress,
            dry_run=dry_run,
            roots=roots,
            writer=writer if sink.local else None,
        )
        delivered.append((sink, sink.deliver(catalog, settings, delivery)))
    return delivered


def _deadline(
    sink: Sink, stop: threading.Event | None, stop_by: Deadline | None
) -> Deadline | None:
    """When `sink` must stop writing: never before a stop; then at `stop_by` for
    a local sink, at once (between two files) for a remote one."""
    if stop is None:
        return None
    event = stop

    def deadline() -> float | None:
        if not event.is_set():
            return None
        if sink.local:
            return stop_by() if stop_by is not None else None
        return time.monotonic()

    return deadline
