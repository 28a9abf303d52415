"""XMP sidecar writing: tagd's keywords merged into sidecars that people also edit.

Every tag is a hierarchical path such as ``AI|Objects|dog`` (all under one root,
``AI`` by default) and is written three ways, so that digiKam, darktable,
Lightroom and plain keyword readers all see it:

* the leaf ``dog`` into ``dc:subject`` (bag),
* ``AI|Objects|dog`` into ``lr:hierarchicalSubject`` (bag),
* ``AI/Objects/dog`` into ``digiKam:TagsList`` (seq).

Ownership rules (merge, never clobber):

* tagd owns every ``hierarchicalSubject`` entry that starts with ``root|`` and
  every ``TagsList`` entry that starts with ``root/``; the root is tagd's
  namespace, so entries under it are replaced freely.
* Flat ``dc:subject`` keywords have no namespace, so tagd owns only those it
  added itself.  Those are recorded in the private bag ``tagd:Keywords``
  (namespace ``http://ns.tagd.local/1.0/``).  A keyword that was already there
  when tagd first wanted it belongs to a person (or another tool) and is never
  recorded, hence never removed.  Matching is exact (case-sensitive).
* An ownership record whose keyword is no longer in ``dc:subject`` is
  dropped, so a person typing the same word later is not mistaken for tagd.
* Faces (optional, ``faces=``): MWG regions in ``mwg-rs:Regions`` and names in
  ``Iptc4xmpExt:PersonInImage``; see :mod:`tagd.sinks.xmp.regions`.  tagd owns
  the regions recorded in ``tagd:Regions`` and the names recorded in
  ``tagd:People`` (names already there are a person's, as for keywords).
* Everything else in the sidecar (ratings, labels, descriptions, other
  regions, other namespaces, people's keywords and their order) is kept byte
  for byte: the packet is never re-serialised, only tagd's properties are
  spliced (:mod:`tagd.sinks.xmp.packet`, :mod:`tagd.sinks.xmp.splice`).  Any
  well-formed XMP is accepted; malformed XML is refused and left alone.

Writes are skipped when nothing differs (so re-runs leave bytes and mtime
alone), and otherwise atomic: temp file in the same directory, fsync, re-read
and verified (tagd's properties hold the target; every byte outside them is
unchanged; Exiv2, where it can read the packet, sees the same other
properties), then ``os.replace``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import functools
import os
import stat
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from tagd.media.sniff import RAW_EXTENSIONS
from tagd.sinks.confined import (
    Folder,
    OutsideLibrary,
    anchors_for,
    confined_target,
    new_file_owner,
)
from tagd.sinks.xmp.packet import (
    TAGD,
    Name,
    Packet,
    PacketError,
    canonical,
    parse,
    text_value,
    texts,
)
from tagd.sinks.xmp.regions import (
    OWNED_REGIONS,
    REGIONS,
    FaceRegion,
    Regions,
    plan_regions,
    read_regions,
    region_item_bytes,
    write_regions,
)
from tagd.sinks.xmp.splice import El, Splice, SpliceError, set_array, skeleton

__all__ = [
    "TAGD_NS_PREFIX",
    "TAGD_NS_URI",
    "FaceRegion",
    "PacketUpdate",
    "XmpChange",
    "XmpWriteError",
    "plan_packet",
    "sidecar_for",
    "sidecar_path",
    "sync_sidecar",
]

TAGD_NS_URI = TAGD
TAGD_NS_PREFIX = "tagd"

_SUBJECT: Name = ("http://purl.org/dc/elements/1.1/", "subject")
_HIER: Name = ("http://ns.adobe.com/lightroom/1.0/", "hierarchicalSubject")
_TAGSLIST: Name = ("http://www.digikam.org/ns/1.0/", "TagsList")
_OWNED: Name = (TAGD, "Keywords")
_PERSONS: Name = ("http://iptc.org/std/Iptc4xmpExt/2008-02-29/", "PersonInImage")
_OWNED_PEOPLE: Name = (TAGD, "People")
# In _Keywords field order, each with the array type a new property gets.
_ARRAYS: tuple[tuple[Name, str], ...] = (
    (_SUBJECT, "Bag"),
    (_HIER, "Bag"),
    (_TAGSLIST, "Seq"),
    (_OWNED, "Bag"),
    (_PERSONS, "Bag"),
    (_OWNED_PEOPLE, "Bag"),
)
# xmp:Rating is the user's: tagd sets it only for an opt-in rating rule, and then
# only while the value there is the one it recorded in tagd:Rating.
_RATING: Name = ("http://ns.adobe.com/xap/1.0/", "Rating")
_OWNED_RATING: Name = (TAGD, "Rating")
_OURS = frozenset({name for name, _ in _ARRAYS} | {REGIONS, OWNED_REGIONS, _OWNED_RATING})

# The same properties as Exiv2 names them, for its independent reading.
_EXIV2_OURS = (
    "Xmp.dc.subject",
    "Xmp.lr.hierarchicalSubject",
    "Xmp.digiKam.TagsList",
    "Xmp.iptcExt.PersonInImage",
    "Xmp.tagd.",
    "Xmp.mwg-rs.Regions",
)

# digiKam's TagsList separates levels with '/', so a '/' inside a tag name would
# invent a level; DIVISION SLASH looks the same to people and is not a separator.
_TAGSLIST_SLASH = "\u2215"

_XMP_MIME = "application/rdf+xml"

# Exiv2 only recognises a sidecar by its packet header, so a new one starts from this.
_EMPTY_PACKET = (
    b"<?xpacket begin='\xef\xbb\xbf' id='W5M0MpCehiHzreSzNTczkc9d'?>\n"
    b"<x:xmpmeta xmlns:x='adobe:ns:meta/'>\n"
    b" <rdf:RDF xmlns:rdf='http://www.w3.org/1999/02/22-rdf-syntax-ns#'>\n"
    b" </rdf:RDF>\n"
    b"</x:xmpmeta>\n"
    b"<?xpacket end='w'?>\n"
)

# Exiv2 keeps global state (namespace registry, XMP toolkit) and pyexiv2 makes no
# thread-safety promise, so every pyexiv2 call goes through this lock.
_PYEXIV2_LOCK = threading.Lock()


@functools.cache
def _pyexiv2() -> ModuleType:
    """pyexiv2, loaded at the first verification (call with _PYEXIV2_LOCK held).

    Exiv2 costs about 6 MB of resident memory, and the daemon writes in a child
    process (tagd.sinks.writer): loaded lazily, it never sits in the daemon itself."""
    import pyexiv2

    pyexiv2.registerNs(TAGD_NS_URI, TAGD_NS_PREFIX)
    # Exiv2 only gives a second opinion (see _compare_exiv2); a packet it cannot read
    # is handled there, so its warnings on stderr would be noise in the log.
    pyexiv2.set_log_level(4)
    return pyexiv2


@contextlib.contextmanager
def exiv2() -> Iterator[ModuleType]:
    """pyexiv2, for reading other metadata too (EXIF), under the one lock every
    Exiv2 call takes."""
    with _PYEXIV2_LOCK:
        yield _pyexiv2()


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
    # Face regions tagd added / removed (MWG signatures, see regions.py).
    regions_added: tuple[str, ...] = ()
    regions_removed: tuple[str, ...] = ()
    # xmp:Rating as tagd set it ("1"), or "" where tagd took its own away; None: untouched.
    rating: str | None = None

    @property
    def changed(self) -> bool:
        return bool(
            self.added
            or self.removed
            or self.repaired
            or self.regions_added
            or self.regions_removed
            or self.rating is not None
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

    def arrays(self) -> tuple[tuple[str, ...], ...]:
        """The values in _ARRAYS order."""
        return (self.subject, self.hier, self.tagslist, self.owned, self.persons, self.owned_people)


def sidecar_path(media: Path, naming: str = "ext") -> Path:
    """naming "ext": photo.jpg -> photo.jpg.xmp (default, digiKam/darktable style);
    "stem": photo.jpg -> photo.xmp"""
    media = Path(media)
    if naming == "ext":
        return media.with_name(media.name + ".xmp")
    if naming == "stem":
        return media.with_suffix(".xmp")
    raise ValueError(f"unknown sidecar naming {naming!r} (expected 'ext' or 'stem')")


def sidecar_for(media: Path, naming: str = "ext") -> Path:
    """The sidecar tagd reads and writes for `media`: the `naming` style's, unless
    only the other style's exists. darktable and digiKam write photo.nef.xmp,
    Lightroom photo.xmp: tagd adds to the one that is there, never a second one.

    Lightroom's photo.xmp is taken for a RAW file, or for a file that is the only
    one of its name in the folder: beside photo.jpg + photo.nef it is the RAW's."""
    media = Path(media)
    preferred = sidecar_path(media, naming)
    if os.path.lexists(preferred):
        return preferred
    other = sidecar_path(media, "stem" if naming == "ext" else "ext")
    if not os.path.lexists(other):
        return preferred
    if naming == "stem" or _owns_stem_sidecar(media):
        return other
    return preferred


def _owns_stem_sidecar(media: Path) -> bool:
    if media.suffix.lower().lstrip(".") in RAW_EXTENSIONS:
        return True
    try:
        names = os.listdir(media.parent)
    except OSError:
        return False
    stem = media.stem + "."
    return not any(
        n != media.name and n.startswith(stem) and not n.lower().endswith(".xmp") for n in names
    )


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
    rating: int | None = None,
) -> XmpChange:
    """Make the sidecar's tagd-owned keywords equal `tags` (hierarchical paths with '|',
    every one starting with root + '|'), and its rating tagd's `rating` where the
    rating is not someone else's (see plan_packet).

    With `faces` (None: leave regions and PersonInImage alone), tagd's face regions
    become exactly these and PersonInImage names their named people; `dims` is the
    upright image's (width, height) for ``mwg-rs:AppliedToDimensions``.

    The sidecar is read and written only inside `roots` (the library roots; None:
    the media file's folder): see :mod:`tagd.sinks.confined`.
    """
    sidecar = sidecar_for(Path(media), naming)
    with _open_sidecar(sidecar, anchors_for(Path(media), roots)) as (folder, name):
        original = _read_existing(sidecar, folder, name)
        update = plan_packet(
            sidecar, original, tags, root=root, faces=faces, dims=dims, rating=rating
        )
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
    rating: int | None = None,
) -> PacketUpdate:
    """Plan tagd's part of an XMP packet (None: there is none yet); `label` names the
    file in messages.  Shared by sidecars and embedded XMP. `rating`: the xmp:Rating
    an opt-in rule gives the file (None: none, and tagd's own one, if any, goes)."""
    wanted = _validate_tags(tags, root)
    if packet is None and not wanted and not faces and rating is None:
        return PacketUpdate(XmpChange(label, (), ()), None, _nothing)
    parsed = _parse(label, _EMPTY_PACKET if packet is None else packet)
    current = _keywords_from(parsed)
    regions = read_regions(parsed, _texts(parsed, OWNED_REGIONS))
    names = None if faces is None else frozenset(f.name for f in faces if f.name)
    target = _plan(current, wanted, root, names)
    target_regions = regions if faces is None else plan_regions(regions, faces, dims)
    ratings = _ratings_from(parsed)
    target_ratings = _plan_rating(ratings, rating)
    change = _describe(label, current, target, wanted, root, regions, target_regions)
    if target_ratings[0] != ratings[0]:
        change = dataclasses.replace(change, rating=target_ratings[0] or "")
    if target == current and target_regions == regions and target_ratings == ratings:
        return PacketUpdate(change, None, _nothing)
    data, kept = _render(
        label, parsed, current, target, regions, target_regions, ratings, target_ratings
    )
    # While tagd changes its own rating, xmp:Rating is one of its properties.
    ours = _OURS | {_RATING} if target_ratings[0] != ratings[0] else _OURS

    def verify(written: bytes) -> None:
        _verify(label, written, parsed, data, kept, target, target_regions, target_ratings, ours)

    return PacketUpdate(change, data, verify)


def _ratings_from(packet: Packet) -> tuple[str | None, str | None]:
    """(xmp:Rating, tagd's record of the rating it wrote)."""
    return _simple(packet, _RATING), _simple(packet, _OWNED_RATING)


def _simple(packet: Packet, name: Name) -> str | None:
    for prop in packet.props(name):
        return text_value(packet, prop.item).strip()
    return None


def _plan_rating(
    current: tuple[str | None, str | None], wanted: int | None
) -> tuple[str | None, str | None]:
    """The rating is tagd's while it holds the value tagd recorded; a rating someone
    else wrote (or changed) is never touched, and tagd's record of it is dropped."""
    rating, record = current
    owned = record is not None and rating == record
    if wanted is not None and (rating is None or owned):
        return str(wanted), str(wanted)
    if owned:
        return None, None  # no rule gives one now: tagd takes its own away
    return rating, None


def _nothing(_written: bytes) -> None:
    """The verification of a plan that writes nothing."""


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


def _texts(packet: Packet, name: Name) -> tuple[str, ...]:
    return tuple(value for value, _ in texts(packet, name))


def _keywords_from(packet: Packet) -> _Keywords:
    return _Keywords(*(_texts(packet, name) for name, _ in _ARRAYS))


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


# --- writing and verifying ------------------------------------------------------------


def _parse(label: Path, data: bytes) -> Packet:
    try:
        return parse(data)
    except PacketError as exc:
        raise XmpWriteError(
            f"cannot parse the XMP of {label}: {exc}; tagd needs well-formed UTF-8 XML"
            " with an rdf:RDF element and leaves the file as it is"
        ) from exc


def _render(
    label: Path,
    packet: Packet,
    current: _Keywords,
    target: _Keywords,
    regions: Regions,
    target_regions: Regions,
    ratings: tuple[str | None, str | None],
    target_ratings: tuple[str | None, str | None],
) -> tuple[bytes, dict[Name, list[bytes]]]:
    """The new packet, and for each property edited the bytes of the entries it kept."""
    splice = Splice(packet)
    kept: dict[Name, list[bytes]] = {}
    try:
        for (name, kind), old, new in zip(_ARRAYS, current.arrays(), target.arrays(), strict=True):
            if old != new:
                kept[name] = set_array(splice, name, kind, new)
        for name, old, new in zip((_RATING, _OWNED_RATING), ratings, target_ratings, strict=True):
            if old != new:  # simple values: the old one goes, the new one is added
                for prop in packet.props(name):
                    splice.remove(prop.item)
                if new is not None:
                    splice.add(El(name, new))
                kept[name] = []
        if target_regions.owned != regions.owned:
            kept[OWNED_REGIONS] = set_array(splice, OWNED_REGIONS, "Bag", target_regions.owned)
        if (target_regions.head, target_regions.items) != (regions.head, regions.items):
            kept[REGIONS] = write_regions(splice, regions, target_regions)
        return splice.result(), kept
    except SpliceError as exc:
        raise XmpWriteError(
            f"cannot update the XMP of {label}: {exc}; the file is left as it is"
        ) from exc


def _verify(
    label: Path,
    written: bytes,
    before: Packet,
    data: bytes,
    kept: dict[Name, list[bytes]],
    target: _Keywords,
    target_regions: Regions,
    target_ratings: tuple[str | None, str | None],
    ours: frozenset[Name] = _OURS,
) -> None:
    # Sidecars and containers alike store the packet as given, so it must come back
    # byte for byte; the checks below then prove that what was planned is right.
    if written != data:
        raise XmpWriteError(f"verification of {label} failed: the XMP read back differs")
    after = _parse(label, written)
    if _keywords_from(after) != target:
        raise XmpWriteError(f"verification of {label} failed: keywords did not round-trip")
    if read_regions(after, _texts(after, OWNED_REGIONS)) != target_regions:
        raise XmpWriteError(f"verification of {label} failed: face regions did not round-trip")
    if _ratings_from(after) != target_ratings:
        raise XmpWriteError(f"verification of {label} failed: the rating did not round-trip")
    _verify_bytes(label, before, after, kept, ours)
    _compare_exiv2(label, before.data, written, rating=_RATING in ours)


def _verify_bytes(
    label: Path,
    before: Packet,
    after: Packet,
    kept: dict[Name, list[bytes]],
    ours: frozenset[Name] = _OURS,
) -> None:
    """Every byte outside tagd's properties is as it was, and so is every entry tagd
    kept inside them."""
    if skeleton(after, ours) != skeleton(before, ours):
        raise XmpWriteError(
            f"verification of {label} failed: bytes outside tagd's properties changed"
        )
    for name in sorted(ours):
        if name in kept:
            same = _item_bytes(after, name)[: len(kept[name])] == kept[name]
        else:
            same = _prop_bytes(after, name) == _prop_bytes(before, name)
        if not same:
            raise XmpWriteError(
                f"verification of {label} failed: {canonical(name)} entries tagd keeps changed"
            )


def _item_bytes(packet: Packet, name: Name) -> list[bytes]:
    if name == REGIONS:
        return region_item_bytes(packet)
    return [packet.raw(li) for _, li in texts(packet, name) if li is not None]


def _prop_bytes(packet: Packet, name: Name) -> list[bytes]:
    return [packet.raw(prop.item) for prop in packet.props(name)]


def _compare_exiv2(label: Path, before: bytes, after: bytes, rating: bool = False) -> None:
    """Exiv2, an independent reader, must see the other properties unchanged.  It
    fails on some valid XMP (and its global namespace registry can make it fail on a
    packet it read before), so only two readings that disagree count. `rating`:
    tagd changed its own xmp:Rating."""
    old = _exiv2_others(before, rating)
    new = None if old is None else _exiv2_others(after, rating)
    if new is not None and new != old:
        raise XmpWriteError(f"verification of {label} failed: other XMP properties changed")


def _exiv2_others(data: bytes, rating: bool = False) -> dict[str, object] | None:
    """The properties that are not tagd's, as Exiv2 reads them (None: it cannot)."""
    try:
        with _PYEXIV2_LOCK:
            img = _pyexiv2().ImageData(data)
            try:
                if img.get_mime_type() != _XMP_MIME:
                    return None
                props = img.read_xmp()
            finally:
                img.close()
    except (RuntimeError, ValueError):  # pyexiv2 reports Exiv2 errors as RuntimeError
        return None
    ours = (*_EXIV2_OURS, "Xmp.xmp.Rating") if rating else _EXIV2_OURS
    return {k: v for k, v in props.items() if not k.startswith(ours)}


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
        media_st = _stat_or_none(media)
        owner = new_file_owner(media_st, folder_st)
        # As readable and writable as its photo: a service's umask (0027 under
        # systemd) must not hide the sidecar from the programs that read the photo.
        mode = None if media_st is None else stat.S_IMODE(media_st.st_mode) & 0o666
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
