"""MWG face regions (``mwg-rs:Regions``) and ``Iptc4xmpExt:PersonInImage``, merged.

pyexiv2 exposes a structure as flat keys
(``Xmp.mwg-rs.Regions/mwg-rs:RegionList[2]/mwg-rs:Area/stArea:x``) and cannot
delete one item from the middle of an array, so the region list is planned as
a whole: every region is a tuple of (key below ``RegionList[i]``, value), the
regions of people and other tools are carried over verbatim and in place, and
the whole ``Regions`` tree is rewritten only when something differs.

Ownership: regions carry no owner field that all tools would keep, so tagd
records each region it wrote as a signature (``name<TAB>x<TAB>y<TAB>w<TAB>h``)
in the private bag ``Xmp.tagd.Regions``.  A region is tagd's when a record
matches its name and area (within a rounding tolerance, in case a tool
rewrote the numbers).  A face a person already marked (a foreign face region
overlapping it) is not added again.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

REGIONS = "Xmp.mwg-rs.Regions"
_LIST = REGIONS + "/mwg-rs:RegionList"
_DIMS = REGIONS + "/mwg-rs:AppliedToDimensions"
OWNED_REGIONS = "Xmp.tagd.Regions"

# Areas are written with 6 decimals; a tool that rounds them to 4 still matches.
_TOLERANCE = 5e-4
# A foreign face region covering a tagd face this much is the same face, marked by a person.
_SAME_FACE_IOU = 0.5

# Fields are kept sorted by key: Exiv2 serialises simple fields before structures, so
# document order changes on a round trip, and a sorted key puts a structure before its
# fields, which is the order pyexiv2 needs to create them.
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
    return FaceRegion(name, round((x0 + x1) / 2, 6), round((y0 + y1) / 2, 6),
                      round(x1 - x0, 6), round(y1 - y0, 6))


@dataclass(frozen=True)
class Regions:
    """The ``Regions`` tree: keys outside RegionList (AppliedToDimensions...), the items,
    and tagd's ownership records."""

    head: tuple[tuple[str, str], ...] = ()
    items: tuple[Item, ...] = ()
    owned: tuple[str, ...] = ()

    def keys(self) -> list[tuple[str, str]]:
        """Flat pyexiv2 keys in document order (containers before their fields)."""
        if not self.items and not self.head:
            return []
        out = [(REGIONS, "type=Struct"), *self.head]
        if self.items:
            out.append((_LIST, "type=Bag"))
        for i, item in enumerate(self.items, 1):
            out.extend((f"{_LIST}[{i}]{sub}", value) for sub, value in item)
        return out


def _norm(value: object) -> str:
    # pyexiv2 reads containers as 'type="Struct"' but wants 'type=Struct' when writing.
    return str(value).replace('"', "") if str(value).startswith("type=") else str(value)


def read_regions(props: Mapping[str, object], owned: Sequence[str]) -> Regions:
    head: list[tuple[str, str]] = []
    items: dict[int, list[tuple[str, str]]] = {}
    for key, value in props.items():
        if not key.startswith(REGIONS + "/"):
            continue
        if key.startswith(_LIST + "["):
            index, _, sub = key[len(_LIST) + 1 :].partition("]")
            items.setdefault(int(index), []).append((sub, _norm(value)))
        elif key != _LIST:
            head.append((key, _norm(value)))
    return Regions(
        tuple(sorted(head)), tuple(tuple(sorted(items[i])) for i in sorted(items)), tuple(owned)
    )


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
        # No region left: the tree goes if tagd's regions were all it held; a tree
        # someone else left without regions is theirs and stays.
        return () if current.items else current.head
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
