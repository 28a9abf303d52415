"""Duplicate clean-up that can be undone: copies are moved aside, not deleted.

`tagd dupes --quarantine` moves every copy but the kept one of each
near-duplicate group into `<root>/.tagd-quarantine/<date>/`, under the same
path relative to its library root, with its sidecars. `--restore [DATE]` puts
them back; the daemon deletes quarantined copies older than
`duplicates.retention_days` only when `duplicates.purge` is on.

Moves are journalled, never overwrite and survive a crash (tagd.moves); each
day folder has its own journal. Groups a user marked "kept" (looked at, all
kept) are left alone, and so are the partner of the kept file in a RAW + JPEG
pair and any file outside the library roots.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from tagd.catalog.catalog import Catalog
from tagd.dupes import Group
from tagd.moves import (
    SIDECAR_SUFFIX,
    Journal,
    Move,
    Report,
    half_made,
    remove_empty_folders,
    with_sidecars,
)
from tagd.paths import root_of
from tagd.raw_pairs import partners

FOLDER = ".tagd-quarantine"
JOURNAL = "journal.jsonl"

__all__ = ["FOLDER", "JOURNAL", "Move", "Report", "days", "plan", "purge", "quarantine", "restore"]


def day_folder(root: str, day: dt.date) -> Path:
    return Path(root) / FOLDER / day.isoformat()


def plan(
    groups: Iterable[Group],
    roots: Sequence[str],
    day: dt.date,
    kept: Iterable[tuple[int, int]] = (),
) -> tuple[list[Move], list[tuple[str, str]]]:
    """The moves that quarantine the groups' copies, and what is left and why.
    `kept`: content pairs a user looked at and kept."""
    looked_at = set(kept)
    moves: list[Move] = []
    skipped: list[tuple[str, str]] = []
    taken: set[str] = set()
    for group in groups:
        keeper = group.keep
        for member in group.others:
            photo = member.photo
            a, b = sorted((keeper.content_id, photo.content_id))
            if (a, b) in looked_at:
                skipped.append((photo.path, "you kept this group"))
            elif partners(photo.path, keeper.path):
                skipped.append((photo.path, f"the RAW + JPEG partner of {keeper.path}"))
            elif (root := root_of(photo.path, roots)) is None:
                skipped.append((photo.path, "not under a library root"))
            else:
                target = str(day_folder(root, day) / os.path.relpath(photo.path, root))
                moves += with_sidecars(photo.path, target, taken)
    return moves, skipped


def _journals(roots: Sequence[str]) -> list[tuple[str, dt.date, Journal]]:
    return [(root, day, Journal(day_folder(root, day) / JOURNAL)) for root, day in days(roots)]


def finish_interrupted(catalog: Catalog, roots: Sequence[str]) -> int:
    """Complete what a crash cut short (unsealed journals): half-made moves, and
    the moved files' leaving the catalog. Returns how many moves were finished."""
    finished = 0
    for _, _, journal in _journals(roots):
        if journal.sealed:
            continue
        finished += len(journal.finish())
        _forget(catalog, journal.done())
        journal.seal()
    return finished


def quarantine(catalog: Catalog, moves: Sequence[Move], report: Report) -> None:
    """Make the moves, each journalled first; the moved files leave the catalog
    (restored, they are indexed again by the next scan)."""
    by_journal: dict[Path, list[Move]] = {}
    for move in moves:
        by_journal.setdefault(_journal_for(move.target), []).append(move)
    for path, batch in by_journal.items():
        journal = Journal(path)
        done = len(report.moved)
        journal.run(batch, report)
        _forget(catalog, report.moved[done:])
        journal.seal()


def _forget(catalog: Catalog, moved: Sequence[Move]) -> None:
    """Moved files leave the catalog (sidecars are not in it)."""
    gone = [catalog.file_by_path(m.source) for m in moved if not m.source.endswith(SIDECAR_SUFFIX)]
    with catalog.transaction():
        catalog.delete_files(f.id for f in gone if f is not None)


def _journal_for(target: str) -> Path:
    """The journal of the day folder `target` lies in."""
    for parent in Path(target).parents:
        if parent.parent.name == FOLDER:
            return parent / JOURNAL
    raise ValueError(f"{target} is not in a quarantine folder")


def days(roots: Sequence[str]) -> list[tuple[str, dt.date]]:
    """(root, day) of every quarantine day folder with a journal, oldest first."""
    out = []
    for root in roots:
        folder = Path(root) / FOLDER
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            try:
                day = dt.date.fromisoformat(name)
            except ValueError:
                continue
            if (folder / name / JOURNAL).is_file():
                out.append((root, day))
    return sorted(out, key=lambda d: (d[1], d[0]))


def count_moved(root: str, day: dt.date) -> int:
    """How many files (sidecars not counted) a day's journal put in quarantine
    that are still there."""
    done = Journal(day_folder(root, day) / JOURNAL).done()
    return sum(not m.target.endswith(SIDECAR_SUFFIX) for m in done)


def restore(roots: Sequence[str], day: dt.date | None, report: Report) -> None:
    """Put quarantined files back (one day's, or every day's when None). A file
    whose place has been taken meanwhile stays in quarantine, reported."""
    for root, when, journal in _journals(roots):
        if day is not None and when != day:
            continue
        if journal.undo(report):
            journal.path.unlink()
            _tidy(root, when)


def purge(roots: Sequence[str], retention_days: int, today: dt.date, report: Report) -> None:
    """Delete the quarantined copies of the days more than retention_days ago:
    only files their journal moved there, nothing else in the folder."""
    for root, when, journal in _journals(roots):
        if (today - when).days <= retention_days:
            continue
        folder = day_folder(root, when)
        for move in journal.entries():
            if half_made(move):
                os.unlink(move.target)  # the library keeps it
        for move in journal.done():
            if folder in Path(move.target).parents:
                os.unlink(move.target)
                report.deleted.append(move.target)
        journal.path.unlink()
        _tidy(root, when)


def purge_expired(roots: Sequence[str], retention_days: int) -> Report:
    """What the daemon runs after its scans when duplicates.purge is on."""
    report = Report()
    purge(roots, retention_days, dt.date.today(), report)
    return report


def _tidy(root: str, day: dt.date) -> None:
    """Remove the day's folders left empty, and the quarantine folder if empty."""
    folder = day_folder(root, day)
    remove_empty_folders([d for d, _, _ in os.walk(folder)], Path(root))
