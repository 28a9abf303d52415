"""XMP sidecar writing: tagd's keywords merged into sidecars that people also edit.

Every tag is a hierarchical path such as ``AI|Objects|dog`` (all under one root,
``AI`` by default) and is written three ways, so that digiKam, darktable,
Lightroom and plain keyword readers all see it:

* the leaf ``dog`` into ``Xmp.dc.subject`` (bag),
* ``AI|Objects|dog`` into ``Xmp.lr.hierarchicalSubject`` (bag),
* ``AI/Objects/dog`` into ``Xmp.digiKam.TagsList`` (seq).

Ownership rules (merge, never clobber):

* tagd owns every ``hierarchicalSubject`` entry that starts with ``root|`` and
  every ``TagsList`` entry that starts with ``root/``; the root is tagd's
  namespace, so entries under it are replaced freely.
* Flat ``dc:subject`` keywords have no namespace, so tagd owns only those it
  added itself.  Those are recorded in the private bag ``Xmp.tagd.Keywords``
  (namespace ``http://ns.tagd.local/1.0/``).  A keyword that was already there
  when tagd first wanted it belongs to a person (or another tool) and is never
  recorded, hence never removed.  Matching is exact (case-sensitive).
* An ownership record whose keyword is no longer in ``dc:subject`` is
  dropped, so a person typing the same word later is not mistaken for tagd.
* Faces (optional, ``faces=``): MWG regions in ``mwg-rs:Regions`` and names in
  ``Iptc4xmpExt:PersonInImage``; see :mod:`tagd.sinks.xmp_regions`.  tagd owns
  the regions recorded in ``Xmp.tagd.Regions`` and the names recorded in
  ``Xmp.tagd.People`` (names already there are a person's, as for keywords).
* Everything else in the sidecar (ratings, labels, descriptions, other
  regions, other namespaces, people's keywords and their order) is kept as is.

Writes are skipped when nothing differs (so re-runs leave bytes and mtime
alone), and otherwise atomic: temp file in the same directory, fsync, re-read
and verified with pyexiv2, then ``os.replace``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyexiv2

from tagd.sinks.confined import (
    Folder,
    OutsideLibrary,
    anchors_for,
    confined_target,
    new_file_owner,
)
from tagd.sinks.xmp_regions import (
    OWNED_REGIONS,
    REGIONS,
    FaceRegion,
    Regions,
    plan_regions,
    read_regions,
)

__all__ = [
    "TAGD_NS_PREFIX",
    "TAGD_NS_URI",
    "FaceRegion",
    "PacketUpdate",
    "XmpChange",
    "XmpWriteError",
    "plan_packet",
    "sidecar_path",
    "sync_sidecar",
]

TAGD_NS_URI = "http://ns.tagd.local/1.0/"
TAGD_NS_PREFIX = "tagd"

_SUBJECT = "Xmp.dc.subject"
_HIER = "Xmp.lr.hierarchicalSubject"
_TAGSLIST = "Xmp.digiKam.TagsList"
_OWNED = "Xmp.tagd.Keywords"
_PERSONS = "Xmp.iptcExt.PersonInImage"
_OWNED_PEOPLE = "Xmp.tagd.People"
_OUR_KEYS = (_SUBJECT, _HIER, _TAGSLIST, _OWNED, _PERSONS, _OWNED_PEOPLE)

# pyexiv2's modify_xmp always creates rdf:Seq arrays; these must be rdf:Bag, so the
# serialised packet is patched (element names as Exiv2 writes them).
# Element names are regex fragments: Exiv2 keeps the prefix a packet already uses for
# the IPTC extension namespace (exiftool writes Iptc4xmpExt, Exiv2 alone iptcExt).
_PERSON_ELEMENT = b"(?:iptcExt|Iptc4xmpExt):PersonInImage"
_BAG_ELEMENTS = (
    b"dc:subject",
    b"lr:hierarchicalSubject",
    b"tagd:Keywords",
    _PERSON_ELEMENT,
    b"tagd:People",
    b"tagd:Regions",
)
_ELEMENTS = {
    _SUBJECT: b"dc:subject",
    _HIER: b"lr:hierarchicalSubject",
    _TAGSLIST: b"digiKam:TagsList",
    _OWNED: b"tagd:Keywords",
    _PERSONS: _PERSON_ELEMENT,
    _OWNED_PEOPLE: b"tagd:People",
}

# digiKam's TagsList separates levels with '/', so a '/' inside a tag name would
# invent a level; DIVISION SLASH looks the same to people and is not a separator.
_TAGSLIST_SLASH = "\u2215"

_XMP_MIME = "application/rdf+xml"

# Exiv2 only recognises a sidecar by its packet header, so a new one starts from this.
_EMPTY_PACKET = (
    b"<?xpacket begin='\xef\xbb\xbf' id='W5M0MpCehiHzreSzNTczkc9d'?>\n"
    b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>\n"
    b"<rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>\n"
    b"</rdf:RDF>\n"
    b"</x:xmpmeta>\n"
    b"<?xpacket end='w'?>\n"
)

# Exiv2 keeps global state (namespace registry, XMP toolkit) and pyexiv2 makes no
# thread-safety promise, so every pyexiv2 call goes through this lock.
_PYEXIV2_LOCK = threading.Lock()

with _PYEXIV2_LOCK:
    pyexiv2.registerNs(TAGD_NS_URI, TAGD_NS_PREFIX)


class XmpWriteError(Exception):
    """A sidecar could not be read, parsed, written or verified; the message names
    the file and the cause.  The previous sidecar, if any, is left untouched."""


@dataclass(frozen=True)
class XmpChange:
    """What sync_sidecar did (or, with dry_run, would do) to one sidecar.

    ``added``/``removed`` are hierarchical tags.  ``repaired`` is True when the
    hierarchical set was already right but another representation (flat keyword,
    TagsList entry, ownership record) was out of step and had to be rewritten.
    """

    sidecar: Path  # the file written: the sidecar, or the media file for embedded XMP
    added: tuple[str, ...]
    removed: tuple[str, ...]
    repaired: bool = False
    # Face regions tagd added / removed (MWG signatures, see xmp_regions).
    regions_added: tuple[str, ...] = ()
    regions_removed: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(
            self.added or self.removed or self.repaired or self.regions_added
            or self.regions_removed
        )


@dataclass(frozen=True)
class _Keywords:
    """The array properties tagd reads and writes, in file order."""

    subject: tuple[str, ...] = ()
    hier: tuple[str, ...] = ()
    tagslist: tuple[str, ...] = ()
    owned: tuple[str, ...] = ()
    persons: tuple[str, ...] = ()
    owned_people: tuple[str, ...] = ()

    def as_xmp(self) -> dict[str, list[str] | None]:
        # None makes pyexiv2 delete the property instead of writing an empty array.
        values = (
            self.subject, self.hier, self.tagslist, self.owned, self.persons, self.owned_people
        )
        return {key: (list(v) if v else None) for key, v in zip(_OUR_KEYS, values, strict=True)}


def sidecar_path(media: Path, naming: str = "ext") -> Path:
    """naming "ext": photo.jpg -> photo.jpg.xmp (default, digiKam/darktable style);
    "stem": photo.jpg -> photo.xmp"""
    media = Path(media)
    if naming == "ext":
        return media.with_name(media.name + ".xmp")
    if naming == "stem":
        return media.with_suffix(".xmp")
    raise ValueError(f"unknown sidecar naming {naming!r} (expected 'ext' or 'stem')")


def sync_sidecar(
    media: Path,
    tags: Sequence[str],
    *,
    root: str = "AI",
    naming: str = "ext",
    dry_run: bool = False,
    faces: Sequence[FaceRegion] | None = None,
    dims: tuple[int, int] | None = None,
    roots: Sequence[str | os.PathLike[str]] | None = None,
) -> XmpChange:
    """Make the sidecar's tagd-owned keywords equal `tags` (hierarchical paths with '|',
    every one starting with root + '|').

    With `faces` (None: leave regions and PersonInImage alone), tagd's face regions
    become exactly these and PersonInImage names their named people; `dims` is the
    upright image's (width, height) for ``mwg-rs:AppliedToDimensions``.

    The sidecar is read and written only inside `roots` (the library roots; None:
    the media file's folder): see :mod:`tagd.sinks.confined`.
    """
    sidecar = sidecar_path(Path(media), naming)
    with _open_sidecar(sidecar, anchors_for(Path(media), roots)) as (folder, name):
        original = _read_existing(sidecar, folder, name)
        update = plan_packet(sidecar, original, tags, root=root, faces=faces, dims=dims)
        if update.data is None or dry_run:
            return update.change
        _write(sidecar, Path(media), folder, name, original, update)
    return update.change


@dataclass(frozen=True)
class PacketUpdate:
    """A planned change of one XMP packet: `data` is the new packet (None: nothing to
    write) and `verify` raises XmpWriteError unless a packet read back is that change."""

    change: XmpChange
    data: bytes | None
    verify: Callable[[bytes], None]


def plan_packet(
    label: Path,
    packet: bytes | None,
    tags: Sequence[str],
    *,
    root: str = "AI",
    faces: Sequence[FaceRegion] | None = None,
    dims: tuple[int, int] | None = None,
) -> PacketUpdate:
    """Plan tagd's part of an XMP packet (None: there is none yet); `label` names the
    file in messages.  Shared by sidecars and embedded XMP."""
    wanted = _validate_tags(tags, root)
    if packet is None and not wanted and not faces:
        return PacketUpdate(XmpChange(label, (), ()), None, lambda data: None)
    props = _parse(label, _EMPTY_PACKET if packet is None else packet)
    current = _keywords_from(props)
    regions = read_regions(props, _as_list(props.get(OWNED_REGIONS)))
    names = None if faces is None else frozenset(f.name for f in faces if f.name)
    target = _plan(current, wanted, root, names)
    target_regions = regions if faces is None else plan_regions(regions, faces, dims)
    change = _describe(label, current, target, wanted, root, regions, target_regions)
    if target == current and target_regions == regions:
        return PacketUpdate(change, None, lambda data: None)
    base = _EMPTY_PACKET if packet is None else packet
    data = _render(label, base, current, target, regions, target_regions)

    def verify(written: bytes) -> None:
        _verify(label, written, props, target, target_regions)

    return PacketUpdate(change, data, verify)


# --- planning -------------------------------------------------------------------------


def _validate_tags(tags: Sequence[str], root: str) -> frozenset[str]:
    if isinstance(tags, str):
        # A bare string would be iterated character by character.
        raise TypeError("tags must be a sequence of strings, not a string")
    if not root or "|" in root or "/" in root:
        raise ValueError(f"invalid tag root {root!r}")
    for tag in tags:
        parts = tag.split("|")
        if parts[0] != root or len(parts) < 2 or not all(parts):
            raise ValueError(f"tag {tag!r} is not a path under {root + '|'!r}")
        if any(ord(ch) < 32 for ch in tag):
            raise ValueError(f"tag {tag!r} contains control characters")
    return frozenset(tags)


def _as_list(value: object) -> tuple[str, ...]:
    # A tool may have written a single keyword as plain text instead of an array.
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, dict):
        return tuple(str(v) for v in value.values())
    return ()


def _keywords_from(props: dict[str, object]) -> _Keywords:
    return _Keywords(*(_as_list(props.get(key)) for key in _OUR_KEYS))


def _tagslist_entry(tag: str) -> str:
    return "/".join(part.replace("/", _TAGSLIST_SLASH) for part in tag.split("|"))


def _merge(existing: Sequence[str], drop: set[str], add: Iterable[str]) -> tuple[str, ...]:
    """Existing entries keep their order (minus `drop`); new ones are appended sorted."""
    kept = [entry for entry in existing if entry not in drop]
    present = set(existing)
    return (*kept, *sorted(set(add) - present))


def _plan(
    current: _Keywords, wanted: frozenset[str], root: str, names: frozenset[str] | None
) -> _Keywords:
    own_hier = {h for h in current.hier if h.startswith(root + "|")}
    want_tl = {_tagslist_entry(t) for t in wanted}
    own_tl = {t for t in current.tagslist if t.startswith(root + "/")}
    leaves = {t.rsplit("|", 1)[1] for t in wanted}
    # Records for keywords no longer in dc:subject are stale: forget them.
    owned_before = set(current.owned) & set(current.subject)
    people = set(current.subject) - owned_before
    owned_now = leaves - people
    persons, owned_people = _plan_names(current, names)
    return _Keywords(
        subject=_merge(current.subject, owned_before - leaves, leaves),
        hier=_merge(current.hier, own_hier - wanted, wanted),
        tagslist=_merge(current.tagslist, own_tl - want_tl, want_tl),
        owned=_merge(current.owned, set(current.owned) - owned_now, owned_now),
        persons=persons,
        owned_people=owned_people,
    )


def _plan_names(
    current: _Keywords, names: frozenset[str] | None
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """PersonInImage follows the dc:subject rules: a name already there is a person's."""
    if names is None:
        return current.persons, current.owned_people
    owned_before = set(current.owned_people) & set(current.persons)
    theirs = set(current.persons) - owned_before
    owned_now = names - theirs
    return (
        _merge(current.persons, owned_before - names, names),
        _merge(current.owned_people, set(current.owned_people) - owned_now, owned_now),
    )


def _describe(
    sidecar: Path,
    current: _Keywords,
    target: _Keywords,
    wanted: frozenset[str],
    root: str,
    regions: Regions,
    target_regions: Regions,
) -> XmpChange:
    own_hier = {h for h in current.hier if h.startswith(root + "|")}
    added = tuple(sorted(wanted - own_hier))
    removed = tuple(sorted(own_hier - wanted))
    regions_added = tuple(sorted(set(target_regions.owned) - set(regions.owned)))
    regions_removed = tuple(sorted(set(regions.owned) - set(target_regions.owned)))
    differs = target != current or target_regions != regions
    repaired = differs and not (added or removed or regions_added or regions_removed)
    return XmpChange(sidecar, added, removed, repaired, regions_added, regions_removed)


# --- pyexiv2 --------------------------------------------------------------------------


def _parse(sidecar: Path, data: bytes) -> dict[str, object]:
    try:
        with _PYEXIV2_LOCK:
            img = pyexiv2.ImageData(data)
            try:
                mime = img.get_mime_type()
                props = img.read_xmp()
            finally:
                img.close()
    except (RuntimeError, ValueError) as exc:  # pyexiv2 reports Exiv2 errors as RuntimeError
        raise XmpWriteError(f"cannot parse XMP sidecar {sidecar}: {exc}") from exc
    if mime != _XMP_MIME:
        # Exiv2 happily opens a JPEG too; writing it back would not be a sidecar.
        raise XmpWriteError(f"{sidecar} is not an XMP sidecar (detected {mime})")
    return props


def _render(
    sidecar: Path,
    base: bytes,
    current: _Keywords,
    target: _Keywords,
    regions: Regions,
    target_regions: Regions,
) -> bytes:
    old, new = current.as_xmp(), target.as_xmp()
    # Only touch what differs: pyexiv2 re-creates modified properties at the end.
    changes: dict[str, object] = {key: value for key, value in new.items() if value != old[key]}
    if target_regions.owned != regions.owned:
        changes[OWNED_REGIONS] = list(target_regions.owned) or None
    rewrite_regions = (target_regions.head, target_regions.items) != (regions.head, regions.items)
    try:
        with _PYEXIV2_LOCK:
            img = pyexiv2.ImageData(base)
            try:
                if rewrite_regions:
                    # Deleting a struct key leaves its fields, so every key goes, deepest
                    # first, before the new tree is written parent before child.
                    img.modify_xmp({key: None for key, _ in reversed(regions.keys())})
                    img.modify_xmp(dict(target_regions.keys()))
                img.modify_xmp(changes)
                data = img.get_bytes()
            finally:
                img.close()
    except (RuntimeError, ValueError) as exc:
        raise XmpWriteError(f"cannot encode XMP sidecar {sidecar}: {exc}") from exc
    emptied = [_ELEMENTS[k] for k, value in changes.items() if value is None and k in _ELEMENTS]
    return _drop_elements(_bagify(data), emptied)


def _drop_elements(data: bytes, names: Sequence[bytes]) -> bytes:
    """Remove array properties that must go away.

    pyexiv2 2.16 ignores a deletion of dc:subject (other keys delete fine), so
    the leftover element is cut from the packet; _verify re-reads the result.
    """
    for name in names:
        pattern = re.compile(rb"\n?[ \t]*<" + name + rb">.*?</" + name + rb">", re.DOTALL)
        data = pattern.sub(b"", data)
    return data


def _ours(key: str) -> bool:
    return key in _OUR_KEYS or key == OWNED_REGIONS or key.startswith(REGIONS)


def _bagify(data: bytes) -> bytes:
    for name in _BAG_ELEMENTS:
        pattern = re.compile(
            rb"(<" + name + rb">\s*<rdf:)Seq(>.*?</rdf:)Seq(>\s*</" + name + rb">)", re.DOTALL
        )
        data = pattern.sub(rb"\1Bag\2Bag\3", data)
    return data


def _verify(
    sidecar: Path,
    data: bytes,
    props_before: dict[str, object],
    target: _Keywords,
    target_regions: Regions,
) -> None:
    props = _parse(sidecar, data)
    if _keywords_from(props) != target:
        raise XmpWriteError(f"verification of {sidecar} failed: keywords did not round-trip")
    regions = read_regions(props, _as_list(props.get(OWNED_REGIONS)))
    if regions != target_regions:
        raise XmpWriteError(f"verification of {sidecar} failed: face regions did not round-trip")
    others_before = {k: v for k, v in props_before.items() if not _ours(k)}
    others_after = {k: v for k, v in props.items() if not _ours(k)}
    if others_after != others_before:
        raise XmpWriteError(f"verification of {sidecar} failed: other XMP properties changed")
    bags = (
        target.subject, target.hier, target.owned, target.persons, target.owned_people,
        target_regions.owned,
    )
    for name, values in zip(_BAG_ELEMENTS, bags, strict=True):
        if values and not re.search(rb"<" + name + rb">\s*<rdf:Bag>", data):
            what = name.decode().rsplit(":", 1)[-1]
            raise XmpWriteError(f"verification of {sidecar} failed: {what} is no bag")


# --- file handling --------------------------------------------------------------------


def _cause(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full ({exc.strerror})"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return f"not writable ({exc.strerror})"
    return exc.strerror or str(exc)


@contextlib.contextmanager
def _open_sidecar(sidecar: Path, anchors: Sequence[Path]) -> Iterator[tuple[Folder, str]]:
    try:
        with confined_target(sidecar, anchors) as target:
            yield target
    except OutsideLibrary as exc:
        raise XmpWriteError(f"refusing to write XMP sidecar: {exc}") from exc
    except OSError as exc:
        raise XmpWriteError(f"cannot open the folder of {sidecar}: {_cause(exc)}") from exc


def _read_existing(sidecar: Path, folder: Folder, name: str) -> bytes | None:
    try:
        return folder.read(name)
    except OutsideLibrary as exc:
        raise XmpWriteError(f"refusing to read XMP sidecar: {exc}") from exc
    except OSError as exc:
        raise XmpWriteError(f"cannot read XMP sidecar {sidecar}: {_cause(exc)}") from exc


def _write(
    sidecar: Path,
    media: Path,
    folder: Folder,
    name: str,
    original: bytes | None,
    update: PacketUpdate,
) -> None:
    data = update.data
    assert data is not None
    action = f"cannot write XMP sidecar {sidecar}"
    try:
        folder_st = folder.stat()
        existing = folder.lstat(name) if original is not None else None
    except OSError as exc:
        raise XmpWriteError(f"{action}: {_cause(exc)}") from exc
    targets: list[tuple[str, Path | os.stat_result]] = [("folder", folder_st)]
    refuse_read_only(action, targets + ([("sidecar", existing)] if existing else []))
    if existing is not None:
        # The sidecar was theirs already: it keeps its owner and mode.
        owner, mode = (existing.st_uid, existing.st_gid), stat.S_IMODE(existing.st_mode)
    else:
        owner, mode = new_file_owner(_stat_or_none(media), folder_st), None
    try:
        _atomic_replace(folder, name, data, owner, mode, update.verify)
    except OSError as exc:
        raise XmpWriteError(f"{action}: {_cause(exc)}") from exc


def _stat_or_none(path: Path) -> os.stat_result | None:
    try:
        return os.stat(path)
    except OSError:
        return None


def refuse_read_only(action: str, targets: Sequence[tuple[str, Path | os.stat_result]]) -> None:
    """Honour write bits even when running as root, which the kernel would not.

    A folder or file with no write bit for anyone was made read-only on purpose
    (an archive, a shared library); root bypassing that is damage. The folder
    counts even for an existing file: an atomic write creates a temporary file
    in it. `action` starts the error ("cannot write XMP sidecar X"); a target is a
    path or what stat() said of it.
    """
    for what, target in targets:
        try:
            mode = target.st_mode if isinstance(target, os.stat_result) else os.stat(target).st_mode
        except OSError as exc:
            raise XmpWriteError(f"{action}: {_cause(exc)}") from exc
        if not mode & 0o222:
            raise XmpWriteError(f"{action}: {what} is read-only (mode {stat.S_IMODE(mode):o})")


def temp_name(name: str) -> str:
    """The one temporary name tagd writes `name` through: fixed, so a write killed
    half-way leaves a file the next write of the same sidecar finds and removes."""
    return f".{name}.tagd-tmp"


def _atomic_replace(
    folder: Folder,
    name: str,
    data: bytes,
    owner: tuple[int, int],
    mode: int | None,
    verify: Callable[[bytes], None],
) -> None:
    tmp = temp_name(name)
    # A leftover of a killed write (unlink never follows a link; a folder fails here
    # and again in create, which then reports it).
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError):
        folder.unlink(tmp)
    # O_EXCL | O_NOFOLLOW: never follow or reuse someone else's file; 0o666 lets the
    # umask decide the mode of new sidecars like any other file the user creates.
    fd = folder.create(tmp, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            _set_owner(fh.fileno(), owner, mode)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        # Verify what is on disk, not what is in memory.
        written = folder.read(tmp)
        verify(written or b"")
        folder.replace(tmp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            folder.unlink(tmp)
        raise
    folder.fsync()


def _set_owner(fd: int, owner: tuple[int, int], mode: int | None) -> None:
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != owner:
        # Only root (or a group member for gid) may do this; best effort otherwise.
        with contextlib.suppress(PermissionError):
            os.fchown(fd, *owner)
    # After chown, which may clear set-id bits. Filesystems without Unix modes
    # (vfat, some SMB mounts) refuse this; a sidecar there is still worth writing.
    if mode is not None:
        with contextlib.suppress(PermissionError):
            os.fchmod(fd, mode)


def _copy_metadata(fd: int, ref: os.stat_result | None, keep_mode: bool) -> None:
    """Owner (and with keep_mode, mode) of `ref` onto the open file `fd`."""
    if ref is not None:
        _set_owner(fd, (ref.st_uid, ref.st_gid), stat.S_IMODE(ref.st_mode) if keep_mode else None)


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable; some filesystems refuse fsync on directories.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
