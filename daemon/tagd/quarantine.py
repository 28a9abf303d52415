"""Duplicate clean-up that can be undone: copies are moved aside, not deleted.

`tagd dupes --quarantine` moves every copy but the kept one of each
near-duplicate group into `<root>/.tagd-quarantine/<date>/`, under the same
path relative to its library root, with its sidecars. `--restore [DATE]` puts
them back; the daemon deletes quarantined copies older than
`duplicates.retention_days` only when `duplicates.purge` is on.

Every move is written to the day's journal (`journal.jsonl`, flushed to disk)
before it is made, and a move is a hard link then an unlink (or a rename where
links are not allowed), so nothing is ever overwritten and a crash at any point
leaves each file in one of its two places, or in both as the same inode, which
restore and a rerun both resolve. Groups a user marked "kept" (looked at, all
kept) are left alone, and so are the partner of the kept file in a RAW + JPEG
pair and any file outside the library roots.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import json
import os
import shutil
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tagd.catalog.catalog import Catalog
from tagd.dupes import Group
from tagd.media.sniff import RAW_EXTENSIONS

FOLDER = ".tagd-quarantine"
# Test hook: die like a power cut right after the Nth move's link, before its
# unlink (the file then sits in both places).
KILL_ENV = "TAGD_TEST_KILL_AFTER_LINK"
JOURNAL = "journal.jsonl"
SIDECAR_SUFFIX = ".xmp"


@dataclass(frozen=True)
class Move:
    source: str
    target: str


@dataclass
class Report:
    moved: list[Move] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    deleted: list[str] = field(default_factory=list)


def root_of(path: str, roots: Sequence[str]) -> str | None:
    """The deepest library root holding `path` (None: outside them all)."""
    real = os.path.abspath(path)
    inside = [os.path.abspath(r) for r in roots if _under(real, os.path.abspath(r))]
    return max(inside, key=len) if inside else None


def _under(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip(os.sep) + os.sep)


def day_folder(root: str, day: dt.date) -> Path:
    return Path(root) / FOLDER / day.isoformat()


def sidecars_of(path: str) -> list[str]:
    """The sidecars that belong to `path` and exist: NAME.EXT.xmp, and NAME.xmp
    when the file is a RAW or the only file of its name (Lightroom's)."""
    media = Path(path)
    found = [str(media) + SIDECAR_SUFFIX] if os.path.lexists(str(media) + SIDECAR_SUFFIX) else []
    stem = media.with_suffix(SIDECAR_SUFFIX)
    if os.path.lexists(stem) and _owns_stem(media):
        found.append(str(stem))
    return found


def _owns_stem(media: Path) -> bool:
    from tagd.sinks.xmp.sidecar import sidecar_for

    return sidecar_for(media, "stem") == media.with_suffix(SIDECAR_SUFFIX)


def _partners(a: str, b: str) -> bool:
    """RAW + JPEG of one shot: same folder and name, one of them a RAW."""
    pa, pb = Path(a), Path(b)
    if pa.parent != pb.parent or pa.stem != pb.stem:
        return False
    exts = {pa.suffix.lower().lstrip("."), pb.suffix.lower().lstrip(".")}
    return bool(exts & set(RAW_EXTENSIONS)) and bool(exts & {"jpg", "jpeg", "heic", "heif"})


def plan(
    groups: Iterable[Group],
    roots: Sequence[str],
    day: dt.date,
    kept: set[tuple[int, int]] = frozenset(),  # type: ignore[assignment]
) -> tuple[list[Move], list[tuple[str, str]]]:
    """The moves that quarantine the groups' copies, and what is left and why.
    `kept`: content pairs a user looked at and kept."""
    moves: list[Move] = []
    skipped: list[tuple[str, str]] = []
    taken: set[str] = set()
    for group in groups:
        keeper = group.keep
        for member in group.others:
            photo = member.photo
            pair = tuple(sorted((keeper.content_id, photo.content_id)))
            if pair in kept:
                skipped.append((photo.path, "you kept this group"))
                continue
            if photo.content_id != keeper.content_id and _partners(photo.path, keeper.path):
                skipped.append((photo.path, f"the RAW + JPEG partner of {keeper.path}"))
                continue
            root = root_of(photo.path, roots)
            if root is None:
                skipped.append((photo.path, "not under a library root"))
                continue
            for source in [photo.path, *sidecars_of(photo.path)]:
                rel = os.path.relpath(source, root)
                target = _free(str(day_folder(root, day) / rel), taken)
                taken.add(target)
                moves.append(Move(source, target))
    return moves, skipped


def _free(target: str, taken: set[str]) -> str:
    """`target`, or `name (2).ext`... when that is already used: never overwrite."""
    base, ext = os.path.splitext(target)
    candidate, n = target, 1
    while candidate in taken or os.path.lexists(candidate):
        n += 1
        candidate = f"{base} ({n}){ext}"
    return candidate


def finish_interrupted(roots: Sequence[str]) -> int:
    """Complete the moves a crash left half made (the file in both places as one
    inode): the library's name goes. Returns how many."""
    done = 0
    for root, when in days(roots):
        for move in _entries(day_folder(root, when) / JOURNAL):
            both = os.path.lexists(move.source) and os.path.lexists(move.target)
            if both and os.path.samefile(move.source, move.target):
                os.unlink(move.source)
                done += 1
    return done


def quarantine(catalog: Catalog, moves: Sequence[Move], report: Report) -> None:
    """Make the moves, each journalled first; the moved files leave the catalog
    (restored, they are indexed again by the next scan)."""
    by_journal: dict[Path, list[Move]] = {}
    for move in moves:
        by_journal.setdefault(_journal_for(move.target), []).append(move)
    for journal, batch in by_journal.items():
        journal.parent.mkdir(parents=True, exist_ok=True)
        with open(journal, "a", encoding="utf-8") as log:
            for move in batch:
                if not os.path.lexists(move.source):
                    report.skipped.append((move.source, "gone"))
                    continue
                log.write(json.dumps({"from": move.source, "to": move.target}) + "\n")
                log.flush()
                os.fsync(log.fileno())
                try:
                    _move(move.source, move.target)
                except OSError as exc:
                    report.skipped.append((move.source, f"cannot move: {exc.strerror or exc}"))
                    continue
                report.moved.append(move)
    gone = [catalog.file_by_path(m.source) for m in report.moved]
    with catalog.transaction():
        catalog.delete_files(f.id for f in gone if f is not None)


def _journal_for(target: str) -> Path:
    """The journal of the day folder `target` lies in."""
    path = Path(target)
    for parent in path.parents:
        if parent.parent.name == FOLDER:
            return parent / JOURNAL
    raise ValueError(f"{target} is not in a quarantine folder")


_links = 0


def _move(source: str, target: str) -> None:
    """Move without ever overwriting: a hard link, then the unlink; where links are
    refused (some network shares), a rename once the target is known free; across
    file systems, a verified copy."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    global _links
    try:
        os.link(source, target, follow_symlinks=False)
        _links += 1
        if os.environ.get(KILL_ENV) == str(_links):
            os.kill(os.getpid(), signal.SIGKILL)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise
        if exc.errno == errno.EXDEV:
            _copy_verified(source, target)
        else:
            if os.path.lexists(target):
                raise FileExistsError(errno.EEXIST, "target exists", target) from None
            os.rename(source, target)
            return
    os.unlink(source)


def _copy_verified(source: str, target: str) -> None:
    part = target + ".part"
    shutil.copy2(source, part, follow_symlinks=False)
    with open(part, "rb") as fh:
        os.fsync(fh.fileno())
    if not _same_bytes(source, part):
        os.unlink(part)
        raise OSError(errno.EIO, "the copy differs from the original")
    if os.path.lexists(target):
        os.unlink(part)
        raise FileExistsError(errno.EEXIST, "target exists", target)
    os.rename(part, target)


def _same_bytes(a: str, b: str) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


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
    """How many of a day's journalled moves are still in quarantine."""
    entries = _entries(day_folder(root, day) / JOURNAL)
    return sum(os.path.lexists(m.target) for m in entries)


def _entries(journal: Path) -> list[Move]:
    moves = []
    for line in journal.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
            moves.append(Move(str(entry["from"]), str(entry["to"])))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a crash: its move was never made
    return moves


def restore(roots: Sequence[str], day: dt.date | None, report: Report) -> None:
    """Put quarantined files back (one day's, or every day's when None). A file
    whose place has been taken meanwhile stays in quarantine, reported."""
    for root, when in days(roots):
        if day is not None and when != day:
            continue
        folder = day_folder(root, when)
        journal = folder / JOURNAL
        left = False
        for move in reversed(_entries(journal)):
            back = Move(move.target, move.source)
            if not os.path.lexists(move.target):
                continue  # never moved (a crash before it), or already back
            if os.path.lexists(move.source):
                if os.path.samefile(move.source, move.target):
                    os.unlink(move.target)  # a crash between link and unlink
                    continue
                report.skipped.append((move.target, f"{move.source} exists again; left here"))
                left = True
                continue
            try:
                _move(move.target, move.source)
            except OSError as exc:
                report.skipped.append((move.target, f"cannot move back: {exc.strerror or exc}"))
                left = True
                continue
            report.moved.append(back)
        if not left:
            journal.unlink()
            _remove_empty(folder, Path(root))


def purge(roots: Sequence[str], retention_days: int, today: dt.date, report: Report) -> None:
    """Delete the quarantined copies of the days more than retention_days ago:
    only files their journal moved there, nothing else in the folder."""
    for root, when in days(roots):
        if (today - when).days <= retention_days:
            continue
        folder = day_folder(root, when)
        for move in _entries(folder / JOURNAL):
            target = Path(move.target)
            if folder not in target.parents or not os.path.lexists(target):
                continue
            if os.path.lexists(move.source) and os.path.samefile(move.source, target):
                os.unlink(target)  # half-made move: the file is still in the library
                continue
            os.unlink(target)
            report.deleted.append(str(target))
        (folder / JOURNAL).unlink()
        _remove_empty(folder, Path(root))


def purge_expired(roots: Sequence[str], retention_days: int) -> Report:
    """What the daemon runs after its scans when duplicates.purge is on."""
    report = Report()
    purge(roots, retention_days, dt.date.today(), report)
    return report


def _remove_empty(folder: Path, root: Path) -> None:
    """Remove the empty folders under and up from `folder`, never `root` itself."""
    for current, _, _ in sorted(os.walk(folder), key=lambda w: -len(w[0])):
        with contextlib.suppress(OSError):  # not empty: something else is there
            os.rmdir(current)
    parent = folder.parent
    while parent != root and root in parent.parents:
        try:
            os.rmdir(parent)
        except OSError:
            break
        parent = parent.parent
