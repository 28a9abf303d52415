"""RAW + JPEG pairs: one photo, two files, analysed once.

Cameras set to RAW + JPEG write IMG_0001.CR2 and IMG_0001.JPG side by side.
The JPEG is the faster read of the same picture, so it is analysed and the
RAW takes a copy of its findings (boxes and landmarks scaled to the RAW's
size); each file then gets its tags, its sidecar and its Stash entry as usual.
A RAW whose partner cannot be read, or is not analysed with today's models,
is analysed on its own.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import PurePath
from typing import TYPE_CHECKING

from tagd.media.sniff import RAW_EXTENSIONS
from tagd.records import Detection, IndexedFile, WorkItem

if TYPE_CHECKING:
    from tagd.analyzers.base import Analyzer
    from tagd.catalog.catalog import Catalog

log = logging.getLogger(__name__)

# What a camera writes beside its RAW, lower case.
PARTNER_EXTENSIONS = ("jpg", "jpeg", "heic", "heif")


def _ext(path: str) -> str:
    return PurePath(path).suffix.lower().lstrip(".")


def is_raw_name(path: str) -> bool:
    return _ext(path) in RAW_EXTENSIONS


def partners(a: str, b: str) -> bool:
    """RAW + JPEG (or HEIC) of one shot: same folder and name, one a RAW. The one
    rule the pipeline, `tagd organize` and the quarantine share."""
    pa, pb = PurePath(a), PurePath(b)
    if pa == pb or pa.with_suffix("") != pb.with_suffix(""):
        return False
    exts = {_ext(a), _ext(b)}
    return bool(exts & set(RAW_EXTENSIONS)) and bool(exts & set(PARTNER_EXTENSIONS))


def partner_of(catalog: Catalog, path: str) -> IndexedFile | None:
    """The readable JPEG (or HEIC) of the same name in the same folder as a RAW file."""
    stem = str(PurePath(path).with_suffix(""))
    for sibling in catalog.files_starting_with(stem + "."):
        if (
            partners(path, sibling.path)
            and not is_raw_name(sibling.path)
            and sibling.content_id is not None
            and sibling.error is None
        ):
            return sibling
    return None


def raw_size(path: str) -> tuple[int, int] | None:
    """The RAW's upright size from its header (LibRaw reads no pixel data)."""
    import rawpy

    from tagd.media.raw import upright_size

    try:
        with rawpy.imread(path) as raw:
            return upright_size(raw)
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        log.debug("%s: no size from LibRaw (%s); analysed on its own", path, exc)
        return None


def copy_findings(
    catalog: Catalog, analyzers: Sequence[Analyzer], item: WorkItem, partner: int
) -> bool:
    """Give the RAW `item` the findings of its analysed partner content; False
    (nothing written) when the partner lacks a current analysis or the RAW's
    size cannot be read. Call inside a transaction."""
    done = catalog.done_analyses([partner])
    if any(done.get((partner, a.name)) != a.model_sha256 for a in analyzers):
        return False
    media = catalog.media(partner)
    size = raw_size(item.path)
    if size is None or not media.width or not media.height:
        return False
    sx, sy = size[0] / media.width, size[1] / media.height
    catalog.set_media_info(item.content_id, kind="image", width=size[0], height=size[1])
    for analyzer in analyzers:
        found = catalog.detections(partner, analyzer.name, with_vectors=True)
        analyzer.save(catalog, item.content_id, [_scaled(d, sx, sy) for d in found], [])
    return True


def _scaled(d: Detection, sx: float, sy: float) -> Detection:
    box = None
    if d.box is not None:
        x0, y0, x1, y1 = d.box
        box = (round(x0 * sx, 1), round(y0 * sy, 1), round(x1 * sx, 1), round(y1 * sy, 1))
    points = tuple(round(v * (sx if i % 2 == 0 else sy), 1) for i, v in enumerate(d.points))
    return dataclasses.replace(d, box=box, points=points, id=None, person_id=None, person=None)
