"""Drain the outbox: write each queued file's tags to its sink, retry failures.

A write that fails (read-only share, full disk, a sidecar that cannot be
parsed) stays queued with exponential backoff and its reason visible in
`tagd status`; nothing is dropped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.sinks.xmp import FaceRegion, XmpChange, XmpWriteError, sync_sidecar
from tagd.sinks.xmp_regions import face_region

MAX_BACKOFF = 6 * 3600.0


@dataclass
class DeliveryReport:
    written: int = 0
    unchanged: int = 0
    failed: int = 0
    left: int = 0  # still queued because the deadline passed
    changes: list[XmpChange] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


def backoff(attempts: int) -> float:
    return min(MAX_BACKOFF, 30.0 * 2**attempts)


def _faces(
    catalog: Catalog, content_id: int, mode: str
) -> tuple[list[FaceRegion], tuple[int, int] | None]:
    """The face regions the config asks for; [] removes tagd's (mode "none", videos,
    no faces left), so a renamed or split-away person's region goes too."""
    media = catalog.media(content_id)
    if mode == "none" or media.kind != "image" or not media.width or not media.height:
        return [], None
    regions = [
        face_region(d.person, d.box, media.width, media.height)
        for d in catalog.detections(content_id, "faces")
        if d.box is not None and d.t is None and (d.person or mode == "all")
    ]
    return regions, (media.width, media.height)


def deliver_xmp(
    catalog: Catalog,
    settings: Settings,
    *,
    dry_run: bool = False,
    on_change: Callable[[XmpChange], None] | None = None,
    now: float | None = None,
    deadline: float | None = None,
) -> DeliveryReport:
    """Write due sidecars. With dry_run, report the changes and keep them queued.

    With a `deadline` (time.monotonic()), stop between files once it passed;
    what is left stays queued (`report.left`) for the next run.
    """
    report = DeliveryReport()
    root = settings.tags.root
    due = catalog.due("xmp", time.time() if now is None else now, limit=10**9)
    for index, (file_id, path, content_id) in enumerate(due):
        if deadline is not None and time.monotonic() >= deadline:
            report.left = len(due) - index
            break
        if content_id is None:
            # Unreadable right now: what it holds is unknown, so its sidecar is left alone.
            if not dry_run:
                catalog.outbox_done(file_id, "xmp")
            continue
        names = [t.name for t in catalog.tags(content_id)]
        wanted = [n for n in names if n.startswith(root + "|")]
        try:
            faces, dims = _faces(catalog, content_id, settings.xmp.faces)
            change = sync_sidecar(
                Path(path),
                wanted,
                root=root,
                naming=settings.xmp.sidecar,
                dry_run=dry_run,
                faces=faces,
                dims=dims,
            )
        except XmpWriteError as exc:
            report.failed += 1
            report.errors.append((path, str(exc)))
            if not dry_run:
                attempts = catalog.outbox_attempts(file_id, "xmp")
                catalog.outbox_failed(file_id, "xmp", str(exc), backoff(attempts))
            continue
        if change.changed:
            report.changes.append(change)
            if on_change:
                on_change(change)
        if dry_run:
            continue
        catalog.outbox_done(file_id, "xmp")
        if change.changed:
            report.written += 1
        else:
            report.unchanged += 1
    return report
