"""MWG face regions (``mwg-rs:Regions``) and ``Iptc4xmpExt:PersonInImage``, merged.

The region tree is read from the parsed packet (:mod:`tagd.sinks.xmp.packet`) as
flat keys in the style of Exiv2 (``/mwg-rs:Area/stArea:x`` below one region):
every region is a tuple of (key, value), sorted, so regions compare by content
however a tool wrote them (``rdf:parseType="Resource"``, a nested
``rdf:Description``, field attributes).  Writing splices: regions of people and
other tools keep their bytes and their place, tagd's are removed or appended
one by one, and ``AppliedToDimensions`` is rewritten only where tagd sets it.

Ownership: regions carry no owner field that all tools would keep, so tagd
records each region it wrote as a signature (``name<TAB>x<TAB>y<TAB>w<TAB>h``)
in the private bag ``tagd:Regions``.  A region is tagd's when a record
matches its name and area (within a rounding tolerance, in case a tool
rewrote the numbers).  A face a person already marked (a foreign face region
overlapping it) is not added again.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tagd.sinks.xmp.packet import (
    MWG_RS,
    OPAQUE,
    PREFIXES,
    RDF,
    TAGD,
    Attr,
    Name,
    Node,
    Packet,
    Prop,
    array_items,
    canonical,
    fields,
    flatten,
    form,
)
from tagd.sinks.xmp.splice import El, Splice, SpliceError, edit_items, from_flat, top_key

REGIONS: Name = (MWG_RS, "Regions")
OWNED_REGIONS: Name = (TAGD, "Regions")
_LIST_NAME: Name = (MWG_RS, "RegionList")
# Keys below Regions.
_LIST = "/" + canonical(_LIST_NAME)
_DIMS = "/" + canonical((MWG_RS, "AppliedToDimensions"))
# Prefixes in keys -> namespace URIs, for writing keys back as XML.
_KNOWN = {prefix: uri for uri, prefix in PREFIXES.items()}

# Areas are written with 6 decimals; a tool that rounds them to 4 still matches.
_TOLERANCE = 5e-4
# A foreign face region covering a tagd face this much is the same face, marked by a person.
_SAME_FACE_IOU = 0.5

# (key below the region, value) pairs, sorted by key; the region itself is "".
Item = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class FaceRegion:
    """One face: its person's name (None: unnamed) and its area, normalised to the
    upright image, as MWG wants it: centre x/y, width/height, all in 0..1."""

    name: str | None
    x: float
    y: float
    w: float
    h: float

    def signature(self) -> str:
        return "\t".join([self.name or "", *(f"{v:.6f}" for _, v in self._values())])

    def item(self) -> Item:
        area = "/mwg-rs:Area"
        fields: list[tuple[str, str]] = [
            ("", "type=Struct"),
            (area, "type=Struct"),
            *((f"{area}/stArea:{k}", f"{v:.6f}") for k, v in self._values()),
            (f"{area}/stArea:unit", "normalized"),
        ]
        if self.name:
            fields.append(("/mwg-rs:Name", self.name))
        fields.append(("/mwg-rs:Type", "Face"))
        return tuple(sorted(fields))

    def _values(self) -> tuple[tuple[str, float], ...]:
        return (("x", self.x), ("y", self.y), ("w", self.w), ("h", self.h))


def face_region(
    name: str | None, box: tuple[float, float, float, float], width: int, height: int
) -> FaceRegion:
    """A box (x0, y0, x1, y1 in upright pixels) as a normalised MWG area, clamped to the image."""
    x0, x1 = (min(max(v / width, 0.0), 1.0) for v in (box[0], box[2]))
    y0, y1 = (min(max(v / height, 0.0), 1.0) for v in (box[1], box[3]))
    return FaceRegion(
        name, round((x0 + x1) / 2, 6), round((y0 + y1) / 2, 6), round(x1 - x0, 6), round(y1 - y0, 6)
    )


@dataclass(frozen=True)
class Regions:
    """The ``Regions`` tree: keys outside RegionList (AppliedToDimensions...), the items,
    and tagd's ownership records."""

    head: tuple[tuple[str, str], ...] = ()
    items: tuple[Item, ...] = ()
    owned: tuple[str, ...] = ()


def read_regions(packet: Packet, owned: Sequence[str]) -> Regions:
    """The first ``mwg-rs:Regions`` of the packet (a second one would be invalid XMP;
    it is neither read nor touched)."""
    prop = next(packet.props(REGIONS), None)
    if prop is None:
        return Regions(owned=tuple(owned))
    node = prop.item
    if isinstance(node, Attr) or form(node) != "struct":
        # Not a structure: carried as one value that tagd refuses to edit.
        return Regions(tuple(flatten(packet, node)), (), tuple(owned))
    head: list[tuple[str, str]] = []
    region_list = _region_list(node)
    for member in fields(node):
        if member is not region_list:
            head.extend(flatten(packet, member, "/" + canonical(member.name)))
    items = (
        ()
        if region_list is None
        else tuple(tuple(sorted(flatten(packet, li))) for li in array_items(region_list))
    )
    return Regions(tuple(sorted(head)), items, tuple(owned))


def _region_list(node: Node) -> Node | None:
    return next(
        (
            m for m in fields(node)
            if isinstance(m, Node) and m.name == _LIST_NAME and form(m) == "array"
        ),
        None,
    )  # fmt: skip


def _area(item: Item) -> tuple[str | None, tuple[float, ...]] | None:
    fields = dict(item)
    try:
        area = tuple(float(fields[f"/mwg-rs:Area/stArea:{k}"]) for k in "xywh")
    except (KeyError, ValueError):
        return None
    return fields.get("/mwg-rs:Name") or None, area


def _parse_signature(sig: str) -> tuple[str | None, tuple[float, ...]] | None:
    parts = sig.split("\t")
    try:
        return (parts[0] or None), tuple(float(p) for p in parts[1:5])
    except ValueError:
        return None


def _matches(item: Item, sig: str) -> bool:
    got, want = _area(item), _parse_signature(sig)
    if got is None or want is None or got[0] != want[0] or len(want[1]) != 4:
        return False
    return all(math.isclose(a, b, abs_tol=_TOLERANCE) for a, b in zip(got[1], want[1], strict=True))


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    inter = max(0.0, min(ax1, bx1) - max(ax0, bx0)) * max(0.0, min(ay1, by1) - max(ay0, by0))
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _is_face(item: Item) -> bool:
    return dict(item).get("/mwg-rs:Type", "Face") == "Face"


def plan_regions(
    current: Regions, wanted: Sequence[FaceRegion], dims: tuple[int, int] | None
) -> Regions:
    """People's regions stay verbatim and in place, tagd's still-wanted regions too;
    tagd's stale ones go and new ones are appended."""
    wanted_sigs = {face.signature(): face for face in wanted}
    kept: list[Item] = []
    kept_ours: set[str] = set()
    foreign: list[Item] = []
    for item in current.items:
        sig = next((s for s in current.owned if _matches(item, s)), None)
        if sig is None:
            foreign.append(item)
            kept.append(item)
        elif sig in wanted_sigs and sig not in kept_ours:
            kept_ours.add(sig)
            kept.append(item)
    marked = [a[1] for a in map(_area, filter(_is_face, foreign)) if a is not None]
    new = [
        face
        for sig, face in sorted(wanted_sigs.items())
        if sig not in kept_ours
        and not any(_iou((face.x, face.y, face.w, face.h), m) >= _SAME_FACE_IOU for m in marked)
    ]
    items = (*kept, *(face.item() for face in new))
    owned = tuple(sorted(kept_ours | {face.signature() for face in new}))
    return Regions(_head(current, bool(foreign), bool(items), dims), items, owned)


def _head(
    current: Regions, has_foreign: bool, has_items: bool, dims: tuple[int, int] | None
) -> tuple[tuple[str, str], ...]:
    if not has_items:
        # A tree someone else left without regions is theirs and stays.  When tagd's
        # regions were the last, the dimensions measured for them go; any other field
        # stays (with none, the whole tree goes).
        if not current.items:
            return current.head
        return tuple(kv for kv in current.head if not kv[0].startswith(_DIMS))
    has_dims = any(k.startswith(_DIMS) for k, _ in current.head)
    if dims is None or (has_dims and has_foreign):
        # Someone else's regions were measured against their dimensions; leave them.
        return current.head
    others = tuple(kv for kv in current.head if not kv[0].startswith(_DIMS))
    ours = (
        (_DIMS, "type=Struct"),
        (_DIMS + "/stDim:w", str(dims[0])),
        (_DIMS + "/stDim:h", str(dims[1])),
        (_DIMS + "/stDim:unit", "pixel"),
    )
    return tuple(sorted(others + ours))


# --- writing --------------------------------------------------------------------------


def write_regions(splice: Splice, current: Regions, target: Regions) -> list[bytes]:
    """Splice the Regions tree from `current` to `target` (ownership records aside).
    Returns the bytes of the region items kept verbatim, for verification."""
    packet = splice.packet
    prop = next(packet.props(REGIONS), None)
    if (current.head, current.items) == (target.head, target.items):
        return [packet.raw(li) for li in _items_of(prop)]
    if not target.head and not target.items:
        if prop is not None:
            splice.remove(prop.item)
        return []
    if prop is None:
        splice.add(_tree(target))
        return []
    if any(not key for key, _ in current.head):
        raise SpliceError(f"{prop.item.qname} is not a structure tagd can edit")
    node = prop.item
    assert isinstance(node, Node)  # an attribute is never a structure
    container = _container(node)
    if container is None:
        # Written as field attributes only, so it holds no RegionList: nothing foreign
        # is lost by writing the whole tree anew.
        splice.replace(node, _tree(target))
        return []
    new = _edit_head(splice, node, current, target)
    kept = _edit_list(splice, node, current, target, new)
    if new:
        splice.append(container, new)
    return kept


def region_item_bytes(packet: Packet) -> list[bytes]:
    """The bytes of every region item, in order."""
    return [packet.raw(li) for li in _items_of(next(packet.props(REGIONS), None))]


def _items_of(prop: Prop | None) -> list[Node]:
    node = None if prop is None else prop.item
    if not isinstance(node, Node) or form(node) != "struct":
        return []
    region_list = _region_list(node)
    return [] if region_list is None else array_items(region_list)


def _container(node: Node) -> Node | None:
    """The element new fields go into, or None where that would need a start tag
    rewritten (a structure written as attributes of an empty element)."""
    if node.attr((RDF, "parseType")) == "Resource":
        return None if node.empty else node
    if node.children and not node.children[0].empty:
        return node.children[0]
    return None


def _edit_head(splice: Splice, node: Node, current: Regions, target: Regions) -> list[El]:
    """Rewrite the fields outside RegionList that differ, in place where they are
    elements; returns the fields still to be added."""
    cur, tgt = _by_field(current.head), _by_field(target.head)
    changed = {key for key in (*cur, *tgt) if cur.get(key) != tgt.get(key)}
    todo = [key for key in tgt if key in changed]
    region_list = _region_list(node)
    for member in fields(node):
        key = "/" + canonical(member.name)
        if member is region_list or key not in changed:
            continue
        if isinstance(member, Node) and key in todo:
            splice.replace(member, _field(tgt[key]))
            todo.remove(key)
        else:
            splice.remove(member)
    return [_field(tgt[key]) for key in todo]


def _field(entries: Sequence[tuple[str, str]]) -> El:
    """One field of Regions from its flat keys (relative to Regions)."""
    return from_flat(REGIONS, [("", "type=Struct"), *entries], _KNOWN).children[0]


def _by_field(head: Sequence[tuple[str, str]]) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for key, value in head:
        out.setdefault(top_key(key), []).append((key, value))
    return out


def _edit_list(
    splice: Splice, node: Node, current: Regions, target: Regions, new: list[El]
) -> list[bytes]:
    region_list = _region_list(node)
    if region_list is None:
        if target.items and _LIST in _by_field(current.head):
            raise SpliceError(f"{node.qname} has a RegionList that is not a list of regions")
        if target.items:
            new.append(_tree(Regions(items=target.items)).children[0])
        return []
    if target.items == current.items:
        return [splice.packet.raw(li) for li in array_items(region_list)]
    found = [(region_list, list(zip(current.items, array_items(region_list), strict=True)))]
    return edit_items(splice, found, target.items, _render_item)


def _render_item(item: Item) -> El:
    if any(value.startswith(OPAQUE) for _, value in item):
        raise SpliceError("a face region holds XML tagd cannot rewrite")
    return from_flat((RDF, "li"), item, _KNOWN)


def _tree(regions: Regions) -> El:
    """The whole ``mwg-rs:Regions`` element for `regions`."""
    entries = [("", "type=Struct"), *regions.head]
    if regions.items:
        entries.append((_LIST, "type=Bag"))
        for i, item in enumerate(regions.items, 1):
            entries.extend((f"{_LIST}[{i}]{key}", value) for key, value in item)
    return from_flat(REGIONS, entries, _KNOWN)
