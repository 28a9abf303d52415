"""Bring the catalog in line with what is on disk.

An unchanged file costs one `stat` (from the walk) and a dict lookup: no
read, no write. New and changed files (size or mtime_ns differ) are
fingerprinted; a new path whose fingerprint belongs to a file that vanished
in the same scan is a move, and the file row (with its results and sink
state) follows it. A root that is missing, empty or cannot be listed is
reported and left alone, so an unmounted NAS share never looks like a library
deleted.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.records import IndexedFile
from tagd.scan.fingerprint import fingerprint
from tagd.scan.walk import FoundFile, Walker

BATCH = 2000  # rows per transaction: bounded work lost on a kill, few fsyncs


@dataclass
class IndexReport:
    seen: int = 0
    new: int = 0
    changed: int = 0
    moved: int = 0
    deleted: int = 0
    unreadable: int = 0
    problems: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # paths of the deleted files

    def merge(self, other: IndexReport) -> None:
        for name in ("seen", "new", "changed", "moved", "deleted", "unreadable"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.problems += other.problems
        self.gone += other.gone


@dataclass(frozen=True)
class _Fingerprinted:
    found: FoundFile
    fingerprint: str | None
    error: str | None


def make_walker(settings: Settings) -> Walker:
    """The walker for the library as configured (scans and the watcher agree on it)."""
    lib = settings.library
    return Walker(
        lib.image_extensions,
        lib.video_extensions,
        lib.exclude,
        include_hidden=lib.include_hidden,
        follow_symlinks=lib.follow_symlinks,
    )


def index_roots(
    catalog: Catalog, walker: Walker, roots: Sequence[str], sinks: Sequence[str] = ()
) -> IndexReport:
    """Index every root; new, changed and moved files are queued for `sinks`."""
    report = IndexReport()
    for root in roots:
        report.merge(index_root(catalog, walker, os.path.abspath(root), sinks))
    return report


def index_root(
    catalog: Catalog, walker: Walker, root: str, sinks: Sequence[str] = ()
) -> IndexReport:
    report = IndexReport()
    if not os.path.exists(root):
        report.problems.append(f"{root}: does not exist (not mounted?); nothing removed")
        return report
    known = catalog.files_under(root)
    before = len(walker.problems.messages)
    todo: list[FoundFile] = []
    seen: set[str] = set()
    for found in walker.walk(root):
        seen.add(found.path)
        old = known.get(found.path)
        # A file that could not be read is tried again: a chmod fixes it without
        # touching size or mtime.
        if (
            old is None
            or old.error is not None
            or old.size != found.size
            or old.mtime_ns != found.mtime_ns
        ):
            todo.append(found)
    report.seen = len(seen)
    report.problems += walker.problems.messages[before:]
    if os.path.isdir(root) and not seen and known:
        # An empty or unlistable root that held files is far more likely an
        # unmounted share than a library deleted at once: forget nothing.
        why = "is empty" if _listable(root) else "cannot be listed"
        report.problems.append(
            f"{root}: {why} but the catalog knows {len(known)} files there "
            "(unmounted?); nothing removed"
        )
        return report
    vanished = {p: f for p, f in known.items() if p not in seen}
    _apply(catalog, known, vanished, todo, report, sinks)
    return report


def _listable(root: str) -> bool:
    try:
        with os.scandir(root):
            return True
    except OSError:
        return False


def _fingerprint_one(found: FoundFile) -> _Fingerprinted:
    try:
        value, _ = fingerprint(found.path)
        return _Fingerprinted(found, value, None)
    except OSError as exc:
        return _Fingerprinted(found, None, f"cannot read: {exc.strerror or exc}")


def _fingerprint_chunk(todo: list[FoundFile]) -> list[_Fingerprinted]:
    return [_fingerprint_one(f) for f in todo]


def _fingerprint_all(pool: ThreadPoolExecutor, todo: list[FoundFile]) -> list[_Fingerprinted]:
    """Fingerprints in order; reads release the GIL, so threads hide NAS latency."""
    if len(todo) < 64:
        return _fingerprint_chunk(todo)
    chunks = [todo[i : i + 64] for i in range(0, len(todo), 64)]
    return [f for chunk in pool.map(_fingerprint_chunk, chunks) for f in chunk]


def _apply(
    catalog: Catalog,
    known: dict[str, IndexedFile],
    vanished: dict[str, IndexedFile],
    todo: list[FoundFile],
    report: IndexReport,
    sinks: Sequence[str],
) -> None:
    by_content: dict[int, IndexedFile] = {
        f.content_id: f for f in vanished.values() if f.content_id is not None
    }
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="fingerprint") as pool:
        for start in range(0, len(todo), BATCH):
            # Fingerprint and commit chunk by chunk: a kill loses one chunk's reads.
            items = _fingerprint_all(pool, todo[start : start + BATCH])
            # Still unreadable, as recorded: nothing to write.
            items = [i for i in items if not _same_error(known.get(i.found.path), i)]
            with catalog.transaction():
                touched = [
                    _apply_one(catalog, known, vanished, by_content, item, report) for item in items
                ]
                # A copy or a moved file of already analysed content needs its sidecar too.
                for sink in sinks:
                    catalog.enqueue(touched, sink)
    with catalog.transaction():
        catalog.delete_files(f.id for f in vanished.values())
        report.deleted = len(vanished)
        catalog.drop_orphan_contents()
        report.gone = [f.path for f in vanished.values()]


def _same_error(old: IndexedFile | None, item: _Fingerprinted) -> bool:
    return (
        old is not None
        and item.error is not None
        and item.error == old.error
        and (old.size, old.mtime_ns) == (item.found.size, item.found.mtime_ns)
    )


def _apply_one(
    catalog: Catalog,
    known: dict[str, IndexedFile],
    vanished: dict[str, IndexedFile],
    by_content: dict[int, IndexedFile],
    item: _Fingerprinted,
    report: IndexReport,
) -> int:
    """Record one new or changed file; returns its file id."""
    found = item.found
    content_id = catalog.ensure_content(item.fingerprint, found.kind) if item.fingerprint else None
    report.unreadable += item.error is not None
    old = known.get(found.path)
    if old is not None:
        catalog.update_file(
            old.id,
            path=found.path,
            size=found.size,
            mtime_ns=found.mtime_ns,
            content_id=content_id,
            error=item.error,
        )
        report.changed += 1
        return old.id
    moved = by_content.pop(content_id, None) if content_id is not None else None
    if moved is not None:
        del vanished[moved.path]
        catalog.update_file(
            moved.id,
            path=found.path,
            size=found.size,
            mtime_ns=found.mtime_ns,
            content_id=content_id,
            error=item.error,
        )
        report.moved += 1
        return moved.id
    report.new += 1
    return catalog.add_file(
        found.path, found.kind, found.size, found.mtime_ns, content_id, item.error
    )
