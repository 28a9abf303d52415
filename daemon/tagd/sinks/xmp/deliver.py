"""The XMP sink's writes: each queued file's tags into its sidecar or embedded XMP.

A write that fails (read-only share, full disk, a sidecar that cannot be
parsed) stays queued with exponential backoff and its reason visible in
`tagd status`; nothing is dropped (see outbox.py).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.paths import library_roots
from tagd.policy.rules import rating_for
from tagd.records import IndexedFile
from tagd.sinks.confined import OutsideLibrary, anchors_for, confined_target
from tagd.sinks.outbox import Deadline, DeliveryReport, Progress, backoff, past
from tagd.sinks.writer import Abandoned, WriterDied, WriterProcess
from tagd.sinks.xmp.embed import embedded_format, sync_embedded
from tagd.sinks.xmp.regions import face_region
from tagd.sinks.xmp.sidecar import (
    FaceRegion,
    XmpChange,
    XmpWriteError,
    sidecar_for,
    sidecar_path,
    sync_sidecar,
)

log = logging.getLogger(__name__)

SINK = "xmp"


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


def _wanted(catalog: Catalog, content_id: int, root: str) -> set[str]:
    return {t.name for t in catalog.tags(content_id) if t.name.startswith(root + "|")}


def sharing_sidecar(catalog: Catalog, path: Path, settings: Settings) -> list[IndexedFile]:
    """The analysed files whose XMP goes to the same sidecar as `path`'s.

    With ``xmp.sidecar = "stem"``, IMG_0001.jpg and IMG_0001.mov (RAW + JPEG, HEIC +
    JPEG) both name IMG_0001.xmp; that sidecar holds the tags of all of them, as
    Lightroom does for RAW + JPEG, instead of the last writer's only. A member whose
    XMP is embedded in the file itself does not use the sidecar.
    """
    naming = settings.xmp.sidecar
    sidecar = sidecar_path(path, naming)
    if naming != "stem":
        return []
    members = []
    for sibling in catalog.files_starting_with(str(path.with_suffix("")) + "."):
        other = Path(sibling.path)
        if sibling.content_id is None or sidecar_path(other, naming) != sidecar:
            continue
        if embedded_format(other, settings.xmp.embed):
            continue
        members.append(sibling)
    return members


def queue_sharing(catalog: Catalog, settings: Settings, gone: Sequence[str]) -> None:
    """IMG_1.jpg deleted, IMG_1.mov still there: with stem sidecars both wrote
    IMG_1.xmp, which must now lose the photo's tags, so the files left queue again."""
    ids = {f.id for path in gone for f in sharing_sidecar(catalog, Path(path), settings)}
    catalog.enqueue(ids, "xmp")


def _sync(
    catalog: Catalog,
    path: Path,
    content_id: int,
    settings: Settings,
    dry_run: bool,
    roots: list[str],
) -> tuple[XmpChange, bool]:
    """Embedded XMP for the formats in xmp.embed (the sidecar, if any, is then left
    alone), a sidecar for everything else; the flag says which (True: embedded)."""
    root = settings.tags.root
    mode = settings.xmp.faces
    if embedded_format(path, settings.xmp.embed):
        faces, dims = _faces(catalog, content_id, mode)
        wanted = _wanted(catalog, content_id, root)
        change = sync_embedded(
            path,
            sorted(wanted),
            root=root,
            rating=rating_for(settings.tags, wanted),
            dry_run=dry_run,
            faces=faces,
            dims=dims,
            preserve_mtime=settings.xmp.preserve_mtime,
            roots=roots,
        )
        return change, True
    members = [m.content_id for m in sharing_sidecar(catalog, path, settings) if m.content_id]
    members = members or [content_id]
    wanted = set().union(*(_wanted(catalog, c, root) for c in members))
    # Face areas are relative to one picture: the largest image of the group gives
    # them (RAW + JPEG show the same scene; a video has none).
    faces, dims = max(
        (_faces(catalog, c, mode) for c in members),
        key=lambda found: found[1][0] * found[1][1] if found[1] else -1,
    )
    change = sync_sidecar(
        path,
        sorted(wanted),
        root=root,
        rating=rating_for(settings.tags, wanted),
        naming=settings.xmp.sidecar,
        dry_run=dry_run,
        faces=faces,
        dims=dims,
        roots=roots,
    )
    return change, False


def _remember_rewrite(catalog: Catalog, path: str) -> None:
    """tagd's own rewrite of a photo must not look like a new photo to the next scan
    (the fingerprint covers the file's head, where the XMP sits, and a new fingerprint
    means a new content, analysed again): the file keeps its content and takes the new
    size and mtime."""
    known = catalog.file_by_path(path)
    try:
        st = os.stat(path)
    except OSError:
        return  # Gone already: the next scan deals with it.
    if known is not None:
        catalog.update_file(
            known.id,
            path=path,
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            content_id=known.content_id,
            error=known.error,
        )


def _exists(media: Path) -> bool:
    """False only when `media` is gone (a file that cannot be looked at for another
    reason is written as before, and fails with its own message if it must)."""
    try:
        os.stat(media)
    except OSError as exc:
        return exc.errno not in (errno.ENOENT, errno.ENOTDIR)
    return True


def _undo_if_gone(
    catalog: Catalog, media: Path, sidecar: Path, settings: Settings, anchors: Sequence[str]
) -> bool:
    """When `media` was deleted while tagd created its sidecar, remove that sidecar
    again (True): it would be left behind for good. A stem sidecar that another file
    present still uses stays."""
    if _exists(media):
        return False
    sharing = (Path(f.path) for f in sharing_sidecar(catalog, media, settings))
    if any(p != media and _exists(p) for p in sharing):
        return False
    try:
        with confined_target(sidecar, anchors_for(media, anchors)) as (folder, name):
            st = folder.lstat(name)
            if st is not None and stat.S_ISREG(st.st_mode):
                folder.unlink(name)
    except (OSError, OutsideLibrary) as exc:
        log.warning("%s: its photo was deleted while tagd wrote it; not removed: %s", sidecar, exc)
        return False
    log.info("%s: removed again, its photo was deleted while tagd wrote it", sidecar)
    return True


def deliver_xmp(
    catalog: Catalog,
    settings: Settings,
    *,
    dry_run: bool = False,
    on_change: Callable[[XmpChange], None] | None = None,
    now: float | None = None,
    deadline: Deadline | None = None,
    progress: Progress | None = None,
    roots: Sequence[str] = (),
    writer: WriterProcess | None = None,
) -> DeliveryReport:
    """Write due sidecars. With dry_run, report the changes and keep them queued.

    Writes stay inside the library (:func:`library_roots`, plus `roots`: the paths
    a `tagd scan PATH` was given); a file leading outside is reported, not written.

    With a `deadline` (asked between files: the time.monotonic() to stop by, or
    None for no limit yet, so a stop requested mid-run is seen), stop once it passed;
    what is left stays queued (`report.left`) for the next run. With a `writer`
    (the daemon's), each write runs in that child process and the deadline also
    ends a write that hangs: it stays queued, due at once.
    """
    report = DeliveryReport()
    anchors = library_roots(settings, roots)

    def write(fn: Callable[..., Any], *args: Any) -> Any:
        if writer is None:
            return fn(catalog, *args)
        return writer.call(fn, *args, deadline=deadline)

    due = catalog.due(SINK, time.time() if now is None else now, limit=10**9)
    for index, (file_id, path, content_id) in enumerate(due):
        if progress is not None:
            progress(index, len(due))
        if past(deadline):
            report.left = len(due) - index
            break
        if content_id is None:
            # Unreadable right now: what it holds is unknown, so its sidecar is left alone.
            if not dry_run:
                catalog.outbox_done(file_id, SINK)
            continue
        media = Path(path)
        if not _exists(media):
            # Deleted since it was queued: no sidecar for a photo that is gone. The
            # next scan records the deletion.
            if not dry_run:
                catalog.outbox_done(file_id, SINK)
            report.vanished += 1
            continue
        new_sidecar = not os.path.lexists(sidecar_for(media, settings.xmp.sidecar))
        try:
            change, embedded = write(_sync, media, content_id, settings, dry_run, anchors)
        except Abandoned:
            report.left = len(due) - index
            break
        except (XmpWriteError, WriterDied) as exc:
            reason = str(exc) if isinstance(exc, XmpWriteError) else f"{path}: {exc}"
            report.failed += 1
            report.errors.append((path, reason))
            if not dry_run:
                attempts = catalog.outbox_attempts(file_id, SINK)
                catalog.outbox_failed(file_id, SINK, reason, backoff(attempts))
            continue
        if change.changed:
            report.changes.append(change)
            if on_change:
                on_change(change)
        if dry_run:
            continue
        catalog.outbox_done(file_id, SINK)
        created = change.changed and new_sidecar and not embedded
        if created and _undo_if_gone(catalog, media, change.sidecar, settings, anchors):
            report.vanished += 1
            continue
        if change.changed and embedded:
            _remember_rewrite(catalog, path)
        if change.changed:
            report.written += 1
        else:
            report.unchanged += 1
    return report
