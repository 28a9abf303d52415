"""Moving people's files safely: journalled, never overwriting, undoable.

Used by the duplicates quarantine (tagd.quarantine) and `tagd organize`
(tagd.organize). Each move is written to a journal (JSON lines, flushed to
disk) before it is made, and made as a hard link then an unlink: a crash at
any point leaves the file in its old place, its new one, or both as one inode,
which `finish` (a rerun) and `undo` both resolve, so no file is ever lost or
doubled. Where links are refused (some network shares) a rename is made once
the target is known free; across file systems, a verified copy.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SIDECAR_SUFFIX = ".xmp"
# Test hook: die like a power cut right after the Nth link of this process,
# before its unlink (the file then sits in both places).
KILL_ENV = "TAGD_TEST_KILL_AFTER_LINK"
_links = 0


@dataclass(frozen=True)
class Move:
    source: str
    target: str

    def reverse(self) -> Move:
        return Move(self.target, self.source)


@dataclass
class Report:
    moved: list[Move] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, why)
    deleted: list[str] = field(default_factory=list)


def with_sidecars(source: str, target: str, taken: set[str]) -> list[Move]:
    """The move of a file to `target` (or `name (2).ext`... when that or one of
    its sidecars' targets is taken: never overwrite) and of its sidecars along,
    named after it. `taken` collects the targets of one plan."""
    sidecars = sidecars_of(source)
    base, ext = os.path.splitext(target)
    n = 1
    while True:
        photo = target if n == 1 else f"{base} ({n}){ext}"
        pairs = [(source, photo)] + [(s, _sidecar_target(s, source, photo)) for s in sidecars]
        if all(t not in taken and not os.path.lexists(t) for _, t in pairs):
            break
        n += 1
    taken.update(t for _, t in pairs)
    return [Move(s, t) for s, t in pairs]


def _sidecar_target(sidecar: str, source: str, photo: str) -> str:
    if sidecar == source + SIDECAR_SUFFIX:
        return photo + SIDECAR_SUFFIX
    return str(Path(photo).with_suffix(SIDECAR_SUFFIX))


def sidecars_of(path: str) -> list[str]:
    """The sidecars that belong to `path` and exist: NAME.EXT.xmp, and NAME.xmp
    when it is this file's (a RAW's, or the only file of its name: Lightroom's)."""
    from tagd.sinks.xmp.sidecar import sidecar_for

    media = Path(path)
    found = [str(media) + SIDECAR_SUFFIX] if os.path.lexists(str(media) + SIDECAR_SUFFIX) else []
    stem = media.with_suffix(SIDECAR_SUFFIX)
    if os.path.lexists(stem) and sidecar_for(media, "stem") == stem:
        found.append(str(stem))
    return found


class Journal:
    """An append-only list of intended moves (one JSON object a line). A run whose
    moves and catalog updates are all done is sealed with a last line: only an
    unsealed journal can hold a move a crash left half made."""

    SEAL = '{"sealed": true}'

    def __init__(self, path: Path) -> None:
        self.path = path

    def _lines(self) -> list[str]:
        try:
            return self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return []

    @property
    def sealed(self) -> bool:
        lines = self._lines()
        return not lines or lines[-1] == self.SEAL

    def seal(self) -> None:
        self._append(self.SEAL)

    def _append(self, line: str) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as log:
            log.write(line + "\n")
            log.flush()
            os.fsync(log.fileno())

    def entries(self) -> list[Move]:
        lines = self._lines()
        moves = []
        for line in lines:
            try:
                entry = json.loads(line)
                moves.append(Move(str(entry["from"]), str(entry["to"])))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut short by a crash: its move was never made
        return moves

    def run(self, moves: Iterable[Move], report: Report) -> None:
        """Make the moves, each written here (and to disk) first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._end_cut_line()
        with open(self.path, "a", encoding="utf-8") as log:
            for move in moves:
                if not os.path.lexists(move.source):
                    report.skipped.append((move.source, "gone"))
                    continue
                log.write(json.dumps({"from": move.source, "to": move.target}) + "\n")
                log.flush()
                os.fsync(log.fileno())
                try:
                    move_file(move.source, move.target)
                except OSError as exc:
                    report.skipped.append((move.source, f"cannot move: {exc.strerror or exc}"))
                    continue
                report.moved.append(move)

    def _end_cut_line(self) -> None:
        """A line a crash cut short must not swallow the next one."""
        try:
            with open(self.path, "rb") as fh:
                if fh.seek(0, os.SEEK_END) == 0:
                    return
                fh.seek(-1, os.SEEK_END)
                last = fh.read(1)
        except FileNotFoundError:
            return
        if last != b"\n":
            with open(self.path, "ab") as fh:
                fh.write(b"\n")

    def finish(self) -> list[Move]:
        """Complete the moves a crash left half made (the file in both places, one
        inode): the old name goes. Returns them."""
        if self.sealed:
            return []
        done = []
        for move in self.entries():
            if half_made(move):
                os.unlink(move.source)
                done.append(move)
        return done

    def done(self) -> list[Move]:
        """The journalled moves whose file is at its target (and not back at its source)."""
        return [
            m for m in self.entries() if os.path.lexists(m.target) and not os.path.lexists(m.source)
        ]

    def undo(self, report: Report) -> bool:
        """Put every moved file back, newest first; a file whose old place has
        been taken meanwhile stays, reported. True when all are back."""
        complete = True
        for move in reversed(self.entries()):
            if not os.path.lexists(move.target):
                continue  # never moved (a crash before it), or already back
            if os.path.lexists(move.source):
                if os.path.samefile(move.source, move.target):
                    os.unlink(move.target)  # a crash between link and unlink
                    report.moved.append(move.reverse())
                    continue
                report.skipped.append((move.target, f"{move.source} exists again; left here"))
                complete = False
                continue
            try:
                move_file(move.target, move.source)
            except OSError as exc:
                report.skipped.append((move.target, f"cannot move back: {exc.strerror or exc}"))
                complete = False
                continue
            report.moved.append(move.reverse())
        return complete


def half_made(move: Move) -> bool:
    """A move a crash stopped between link and unlink: one inode, both names."""
    return (
        os.path.lexists(move.source)
        and os.path.lexists(move.target)
        and os.path.samefile(move.source, move.target)
    )


def move_file(source: str, target: str) -> None:
    """Move without ever overwriting (FileExistsError when `target` exists)."""
    global _links
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.link(source, target, follow_symlinks=False)
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
    else:
        _links += 1
        if os.environ.get(KILL_ENV) == str(_links):
            os.kill(os.getpid(), signal.SIGKILL)
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


def remove_empty_folders(folders: Sequence[str | Path], stop: Path) -> None:
    """Remove each folder and its parents while empty, never `stop` or above it."""
    for folder in sorted({Path(f) for f in folders}, key=lambda p: -len(p.parts)):
        current = folder
        while current != stop and stop in current.parents:
            try:
                os.rmdir(current)
            except OSError:
                break
            current = current.parent
