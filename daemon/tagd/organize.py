"""`tagd organize`: files moved into folders by rules, and moved back on demand.

Rules ([[organize.rules]] in config.toml) are tried in order and the first whose
`match` holds files the file under `target`, a folder pattern relative to the
file's library root ("{year}/{month:02}", "Events/{tag}", "People/{person}").
The file keeps its name; its sidecars and its RAW + JPEG partner move with it;
a name already taken gets " (2)". The catalog follows each move (the file keeps
its analysis, tags and people), and every apply has its own journal in the
state dir (tagd.moves), which `tagd organize --undo` reverses.

The date taken comes from EXIF (DateTimeOriginal) for photos, the container's
creation time for videos, else the file's modification time; the camera from
EXIF Make and Model. They are read only when a rule needs them.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.config.models import OrganizeRule
from tagd.moves import (
    Journal,
    Move,
    Report,
    remove_empty_folders,
    with_sidecars,
)
from tagd.paths import root_of
from tagd.raw_pairs import partners
from tagd.records import IndexedFile

log = logging.getLogger(__name__)

FIELDS = ("year", "month", "day", "tag", "person", "camera", "kind")
JOURNALS = "organize"  # folder of the journals, in the state dir
UNDONE = ".undone"


def target_problem(target: str) -> str | None:
    """Why a rule's target pattern cannot be used, or None."""
    if not target.strip():
        return "empty: give a folder pattern such as {year}/{month:02}"
    try:
        names = [f for _, f, _, _ in string.Formatter().parse(target) if f is not None]
    except ValueError as exc:
        return f"not a pattern: {exc}"
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        return f"unknown field {{{unknown[0]}}}; known: " + ", ".join(f"{{{f}}}" for f in FIELDS)
    if target.startswith(("/", "~")) or ".." in Path(target).parts:
        return "must stay inside the library root (no leading / or ..)"
    try:
        _fill(target, _SAMPLE)
    except (ValueError, TypeError) as exc:
        return f"a format that does not fit: {exc}"
    return None


_SAMPLE = {"year": 2024, "month": 5, "day": 7, "tag": "dog", "person": "Alice",
           "camera": "Canon EOS R5", "kind": "image"}  # fmt: skip


def _fill(target: str, values: dict[str, object]) -> str:
    return target.format_map(values)


@dataclass
class Facts:
    """What rules look at for one file, each read on first use: a rule on the
    date costs no catalog query, one on a tag no EXIF read."""

    catalog: Catalog
    file: IndexedFile

    @cached_property
    def kind(self) -> str:
        assert self.file.content_id is not None
        return self.catalog.media(self.file.content_id).kind

    @cached_property
    def tags(self) -> list[str]:
        assert self.file.content_id is not None
        return sorted(t.name for t in self.catalog.tags(self.file.content_id))

    @cached_property
    def people(self) -> list[str]:
        assert self.file.content_id is not None
        found = self.catalog.detections(self.file.content_id, "faces")
        return sorted({d.person for d in found if d.person})

    @cached_property
    def exif(self) -> tuple[dt.datetime | None, str | None]:
        return taken_and_camera(self.file.path, self.kind)

    @property
    def taken(self) -> dt.datetime:
        when = self.exif[0]
        return when or dt.datetime.fromtimestamp(self.file.mtime_ns / 1e9)

    @property
    def camera(self) -> str | None:
        return self.exif[1]


def taken_and_camera(path: str, kind: str) -> tuple[dt.datetime | None, str | None]:
    """(date taken, "Make Model") from the file's metadata; None where it has none."""
    if kind == "video":
        return _video_created(path), None
    from tagd.sinks.xmp.sidecar import exiv2

    try:
        with exiv2() as lib, lib.Image(path) as image:
            exif = image.read_exif()
    except Exception as exc:
        log.debug("%s: no EXIF (%s)", path, exc)
        return None, None
    when = None
    for key in ("Exif.Photo.DateTimeOriginal", "Exif.Image.DateTime"):
        try:
            when = dt.datetime.strptime(exif.get(key, "").strip(), "%Y:%m:%d %H:%M:%S")
            break
        except ValueError:
            continue
    make = exif.get("Exif.Image.Make", "").strip()
    model = exif.get("Exif.Image.Model", "").strip()
    # "Canon" + "Canon EOS 30D": the model often repeats the make.
    camera = model if make and model.lower().startswith(make.lower()) else f"{make} {model}"
    return when, camera.strip() or None


def _video_created(path: str) -> dt.datetime | None:
    import av

    try:
        with av.open(path) as container:
            text = container.metadata.get("creation_time", "")
    except (av.FFmpegError, OSError, ValueError):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
    except ValueError:
        return None


def match(rule: OrganizeRule, facts: Facts) -> dict[str, object] | None:
    """The pattern's values when `rule` holds for the file, else None."""
    m = rule.match
    values: dict[str, object] = {}
    if m.kind is not None and facts.kind != m.kind:
        return None
    if m.tag is not None:
        hit = next((t for t in facts.tags if _names(t, m.tag)), None)
        if hit is None:
            return None
        values["tag"] = hit.rsplit("|", 1)[-1]
    if m.person is not None:
        if m.person.lower() not in (p.lower() for p in facts.people):
            return None
        values["person"] = m.person
    if m.camera is not None and m.camera.lower() not in (facts.camera or "").lower():
        return None
    if m.after is not None and facts.taken.date() < dt.date.fromisoformat(m.after):
        return None
    if m.before is not None and facts.taken.date() >= dt.date.fromisoformat(m.before):
        return None
    return values


def _names(tag: str, wanted: str) -> bool:
    """`wanted` is the tag's full path or its last part (any case)."""
    tag, wanted = tag.lower(), wanted.lower()
    return tag == wanted or tag.rsplit("|", 1)[-1] == wanted


def _complete(rule: OrganizeRule, facts: Facts, values: dict[str, object]) -> str | None:
    """The target folder (relative), or None when the pattern names a value the
    file does not have (a {person} for a photo of nobody)."""
    names = {f for _, f, _, _ in string.Formatter().parse(rule.target) if f}
    if names & {"year", "month", "day"}:
        taken = facts.taken
        values |= {"year": taken.year, "month": taken.month, "day": taken.day}
    if "camera" in names:
        values["camera"] = facts.camera
    if "kind" in names:
        values["kind"] = facts.kind
    if "person" in names and "person" not in values:
        values["person"] = facts.people[0] if facts.people else None  # the first by name
    if any(values.get(n) is None for n in names):
        return None
    safe = {k: _safe(v) for k, v in values.items()}
    return os.path.normpath(_fill(rule.target, safe))


def _safe(value: object) -> object:
    """A value as one folder name: no separators, no hidden or parent folder."""
    if not isinstance(value, str):
        return value
    cleaned = value.replace("/", "_").replace("\\", "_").replace("\0", "").strip()
    return cleaned.lstrip(".") or "_"


@dataclass
class Planned:
    moves: list[Move] = field(default_factory=list)
    rule_of: dict[str, int] = field(default_factory=dict)  # file -> rule index (files only)
    unmatched: int = 0
    waiting: int = 0  # not analysed with today's models yet: left for later


def plan(
    catalog: Catalog, settings: Settings, prefixes: Sequence[str], shas: dict[str, str]
) -> Planned:
    """The moves the rules make of the catalog's files under `prefixes`: readable
    files analysed by every analyzer of `shas` (name -> model sha256), in path order."""
    roots = settings.library.roots
    rules = settings.organize.rules
    out = Planned()
    taken: set[str] = set()
    files = sorted(
        {f.path: f for p in prefixes for f in catalog.files_under(p).values()}.values(),
        key=lambda f: f.path,
    )
    # Files by folder and name without extension: a RAW finds its JPEG at once.
    by_stem: dict[str, list[str]] = {}
    for f in files:
        by_stem.setdefault(str(Path(f.path).with_suffix("")), []).append(f.path)
    done = catalog.done_analyses([f.content_id for f in files if f.content_id is not None])
    handled: set[str] = set()
    for file in files:
        if file.path in handled or file.content_id is None or file.error:
            continue
        if any(done.get((file.content_id, name)) != sha for name, sha in shas.items()):
            out.waiting += 1
            continue
        root = root_of(file.path, roots)
        if root is None:
            continue
        facts = Facts(catalog, file)
        found = None
        for index, rule in enumerate(rules):
            values = match(rule, facts)
            if values is not None and (folder := _complete(rule, facts, values)) is not None:
                found = (index, folder)
                break
        if found is None:
            out.unmatched += 1
            continue
        index, folder = found
        destination = Path(root) / folder
        siblings = by_stem.get(str(Path(file.path).with_suffix("")), [])
        group = [file.path, *(p for p in siblings if partners(file.path, p))]
        handled.update(group)
        for path in group:
            if Path(path).parent == destination:
                continue  # already filed
            out.moves += with_sidecars(path, str(destination / Path(path).name), taken)
            out.rule_of[path] = index
    return out


def file_imports(catalog: Catalog, settings: Settings, state: Path, shas: dict[str, str]) -> Report:
    """What every scan (`tagd run`'s and `tagd scan`) does after its analysis with
    [organize] import set: the files there that are analysed are filed by the
    rules (one journal, undoable by `tagd organize --undo`)."""
    report = Report()
    folder = settings.organize.import_folder
    if not folder or not settings.organize.rules:
        return report
    recover(catalog, state)
    planned = plan(catalog, settings, [os.path.abspath(folder)], shas)
    if planned.moves:
        apply(catalog, state, planned.moves, report)
    filed = [m for m in report.moved if m.source in planned.rule_of]
    if filed:
        log.info("filed %d new files from %s by the organize rules", len(filed), folder)
    for path, why in report.skipped:
        log.warning("%s: not filed: %s", path, why)
    return report


def journal_folder(state: Path) -> Path:
    return state / JOURNALS


def apply(catalog: Catalog, state: Path, moves: Sequence[Move], report: Report) -> Path:
    """Make the moves under a new journal; the catalog follows. Returns the journal."""
    folder = journal_folder(state)
    name = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    path = folder / f"{name}.jsonl"
    n = 1
    while path.exists() or path.with_name(path.name + UNDONE).exists():
        n += 1
        path = folder / f"{name}-{n}.jsonl"
    journal = Journal(path)
    journal.run(moves, report)
    follow(catalog, report.moved)
    journal.seal()
    return path


def recover(catalog: Catalog, state: Path) -> int:
    """After a crash: the applies it cut short (unsealed journals) finish their
    half-made moves and bring the catalog up to date. Returns how many moves
    were finished."""
    finished = 0
    for journal in journals(state):
        if journal.sealed:
            continue
        finished += len(journal.finish())
        follow(catalog, journal.done())
        journal.seal()
    return finished


def follow(catalog: Catalog, moves: Sequence[Move]) -> None:
    """Moved files keep their catalog rows (analysis, tags, people) at the new path."""
    with catalog.transaction():
        for move in moves:
            row = catalog.file_by_path(move.source)
            if row is None or os.path.lexists(move.source) or not os.path.lexists(move.target):
                continue
            catalog.update_file(
                row.id,
                path=move.target,
                size=row.size,
                mtime_ns=row.mtime_ns,
                content_id=row.content_id,
                error=row.error,
            )


def journals(state: Path) -> list[Journal]:
    """The applies not undone yet, oldest first."""
    folder = journal_folder(state)
    if not folder.is_dir():
        return []
    return [Journal(p) for p in sorted(folder.glob("*.jsonl"))]


def undo(catalog: Catalog, state: Path, report: Report, roots: Sequence[str]) -> Path | None:
    """Reverse the newest apply not undone yet; its journal, or None when none.
    Folders the apply made and that are empty again go too."""
    pending = journals(state)
    if not pending:
        return None
    journal = pending[-1]
    complete = journal.undo(report)
    follow(catalog, report.moved)
    for move in report.moved:
        root = root_of(move.source, roots)
        if root is not None:
            remove_empty_folders([os.path.dirname(move.source)], Path(root))
    if complete:
        journal.path.rename(journal.path.with_name(journal.path.name + UNDONE))
    return journal.path
