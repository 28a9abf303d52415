"""Near-duplicate groups and similar photos from the catalog. Read-only: nothing
here (or in the commands built on it) deletes, moves or renames a file.

Groups are read from the pairs each scan stores (tagd.dupe_pairs): a look at
100,000 photos joins a few thousand pairs instead of comparing every photo
with every other. A threshold above the one the pairs were found with (or a
catalog never paired) compares everything here, with the same code.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tagd.catalog.catalog import Catalog
from tagd.catalog.hashes import HashedFile
from tagd.dupe_pairs import Hashes, fresh_pairs, paired_at, unpack
from tagd.media import phash as ph
from tagd.paths import shown

# Better formats first: lossless and raw keep more than JPEG, JPEG more than WebP/GIF.
FORMAT_RANK = {
    **dict.fromkeys(
        ("dng", "cr2", "cr3", "nef", "arw", "raf", "orf", "rw2", "pef", "srw"), (0, "RAW")
    ),
    **dict.fromkeys(("tif", "tiff"), (1, "TIFF")),
    "png": (2, "PNG"),
    "bmp": (2, "BMP"),
    **dict.fromkeys(("heic", "heif"), (3, "HEIC")),
    **dict.fromkeys(("jpg", "jpeg"), (4, "JPEG")),
    "webp": (5, "WebP"),
    "gif": (6, "GIF"),
}


@dataclass(frozen=True)
class Photo:
    """One file with the hashes of its content."""

    path: str
    content_id: int
    kind: str
    width: int
    height: int
    size: int
    hashes: np.ndarray  # uint64[phash.HASHES]
    mtime_ns: int = 0  # the file's modification time

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def format(self) -> tuple[int, str]:
        ext = os.path.splitext(self.path)[1].lower().lstrip(".")
        return FORMAT_RANK.get(ext, (7, ext.upper() or "?"))


@dataclass(frozen=True)
class Member:
    photo: Photo
    distance: int  # bits to the suggested keeper
    mirrored: bool


@dataclass(frozen=True)
class Group:
    keep: Photo
    reason: str
    others: tuple[Member, ...]


def load_photos(catalog: Catalog) -> list[Photo]:
    """Every file whose content has hashes (a copy shares its content's hashes)."""
    return _photos(catalog.hashed_files())


def _photos(rows: Iterable[HashedFile]) -> list[Photo]:
    return [
        Photo(path, cid, kind, width, height, size, unpack(plain, variants), mtime)
        for path, cid, kind, width, height, size, plain, variants, mtime in rows
    ]


def groups(
    catalog: Catalog, threshold: int, distinct: Collection[tuple[int, int]] = ()
) -> list[Group]:
    """Near-duplicate groups (2+ files, images and videos apart), largest first.
    `distinct`: pairs of contents (lower id first) a user said are not duplicates,
    never joined directly."""
    components = stored_components(catalog, threshold, distinct)
    if components is None:
        return group(load_photos(catalog), threshold, distinct)
    return _ordered(groups_of(catalog, components))


def stored_components(
    catalog: Catalog, threshold: int, distinct: Collection[tuple[int, int]] = ()
) -> list[list[int]] | None:
    """The contents of each group as the stored pairs join them, most files
    first (then the oldest), without reading a file's row: what a page needs to
    show the first groups of 100,000 photos. None when the pairs cannot answer
    (never paired, or a threshold above theirs)."""
    at = paired_at(catalog)
    if at is None or threshold > at:
        return None
    files = dict(catalog.copied_contents())  # content -> files, where 2 or more
    parent: dict[int, int] = {c: c for c in files}
    for a, b in catalog.dupe_pairs(threshold):
        if (a, b) not in distinct:
            parent[_find_in(parent, a)] = _find_in(parent, b)
    members: dict[int, list[int]] = {}
    for c in parent:
        members.setdefault(_find_in(parent, c), []).append(c)
    found = [sorted(m) for m in members.values() if len(m) > 1 or files.get(m[0], 1) > 1]
    return sorted(found, key=lambda m: (-sum(files.get(c, 1) for c in m), m[0]))


def groups_of(catalog: Catalog, components: Sequence[Sequence[int]]) -> list[Group]:
    """The groups of these components of contents, each with its keep suggestion,
    in their order (one left with fewer than two readable files is dropped)."""
    by_content: dict[int, list[Photo]] = {}
    for photo in _photos(catalog.hashed_files_of([c for m in components for c in m])):
        by_content.setdefault(photo.content_id, []).append(photo)
    out = []
    for contents in components:
        photos = [p for c in contents for p in by_content.get(c, [])]
        if len(photos) > 1:
            out.append(_suggest(photos))
    return out


def _find_in(parent: dict[int, int], i: int) -> int:
    parent.setdefault(i, i)
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def _ordered(found: list[Group]) -> list[Group]:
    return sorted(found, key=lambda g: (-len(g.others), g.keep.path))


def group(
    photos: Sequence[Photo], threshold: int, distinct: Collection[tuple[int, int]] = ()
) -> list[Group]:
    """groups() by comparing every photo here with every other."""
    every = np.arange(len(photos), dtype=np.int64)
    pairs = set()
    for i, j, _ in fresh_pairs(Hashes.stack([p.hashes for p in photos]), every, threshold):
        a, b = sorted((photos[i].content_id, photos[j].content_id))
        if a != b and photos[i].kind == photos[j].kind and (a, b) not in distinct:
            pairs.add((a, b))
    return _join(photos, pairs)


def _join(photos: Sequence[Photo], pairs: Iterable[tuple[int, int]]) -> list[Group]:
    """The groups that the pairs of contents make, the files of one content (exact
    copies) always together."""
    parent = {p.content_id: p.content_id for p in photos}
    for a, b in pairs:
        if a in parent and b in parent:  # both still have a readable file
            parent[_find_in(parent, a)] = _find_in(parent, b)
    members: dict[int, list[Photo]] = {}
    for p in photos:
        members.setdefault(_find_in(parent, p.content_id), []).append(p)
    return _ordered([_suggest(m) for m in members.values() if len(m) > 1])


def _rank(p: Photo) -> tuple[int, int, int, str]:
    return (-p.pixels, -p.size, p.format[0], p.path)


def _suggest(photos: list[Photo]) -> Group:
    """Keep the highest resolution, then the larger file, then the better format."""
    ranked = sorted(photos, key=_rank)
    keep, runner = ranked[0], ranked[1]
    if keep.pixels > runner.pixels:
        reason = f"highest resolution ({keep.width}×{keep.height})"
    elif keep.size > runner.size:
        reason = f"same resolution, largest file ({keep.size:,} bytes)"
    elif keep.format[0] < runner.format[0]:
        reason = f"same resolution and size, better format ({keep.format[1]})"
    else:
        reason = "identical in resolution, size and format; first by path"
    others = []
    for p in ranked[1:]:
        d, mirrored = ph.match_distance(keep.hashes, p.hashes)
        others.append(Member(p, d, mirrored))
    return Group(keep, reason, tuple(others))


@dataclass(frozen=True)
class Similar:
    path: str
    score: float  # bits (hash) or L2 distance (embedding): smaller is closer
    mirrored: bool = False


# Whole-image embedding analyzers, best for "looks like" first; the concepts
# classifier's features (tagd.embedding) are what every photo has. Face and
# per-region vectors are not image similarity and are never used here.
IMAGE_EMBEDDINGS = ("dinov2", "clip", "concepts")


def similar_by_embedding(
    catalog: Catalog, content_id: int, limit: int
) -> tuple[str, list[Similar]] | None:
    """Nearest files by the best image embedding stored for this content, if any."""
    for analyzer in IMAGE_EMBEDDINGS:
        own = catalog.detections(content_id, analyzer, with_vectors=True)
        vectors = [d.vector for d in own if d.vector is not None]
        if not vectors:
            continue
        found: list[Similar] = []
        seen = {content_id}
        # Video frames share a content: ask for more than `limit` and keep the best per file.
        for k in (limit * 4 + 8, limit * 32 + 64):
            hits = catalog.nearest(analyzer, vectors[len(vectors) // 2], k=k)
            found, seen = [], {content_id}
            owners = catalog.detection_contents([det_id for det_id, _ in hits])
            for det_id, dist in hits:
                owner = owners.get(det_id)
                if owner is None or owner in seen:
                    continue
                seen.add(owner)
                found += [Similar(path, round(dist, 4)) for path in catalog.paths_of_content(owner)]
            if len(found) >= limit or len(hits) < k:
                break
        return analyzer, found[:limit]
    return None


def similar_by_hash(
    photos: Sequence[Photo], hashes: np.ndarray, limit: int, skip: str
) -> list[Similar]:
    """The files whose hashes are closest to `hashes` (either direction, mirror too)."""
    scored = []
    for p in photos:
        if p.path == skip:
            continue
        d, mirrored = ph.match_distance(hashes, p.hashes)
        scored.append((d, p.path, mirrored))
    scored.sort()
    return [Similar(path, float(d), mirrored) for d, path, mirrored in scored[:limit]]


def similar_to(
    catalog: Catalog,
    content_id: int | None,
    path: str,
    limit: int,
    own_hashes: Callable[[], np.ndarray] | None = None,
) -> tuple[str, str, list[Similar]]:
    """(signal, unit, the nearest files) for the file at `path`: by its image
    embedding when one is stored, else by perceptual hash (`own_hashes` makes them
    for a file whose hashes the catalog does not hold)."""
    found = similar_by_embedding(catalog, content_id, limit) if content_id else None
    if found:
        signal, hits = found
        return signal, "L2 distance", hits
    photos = load_photos(catalog)
    own = next((p for p in photos if p.content_id == content_id), None) if content_id else None
    hashes = own.hashes if own is not None else own_hashes() if own_hashes else None
    if hashes is None:
        return "phash", "bits", []
    return "phash", "bits", similar_by_hash(photos, hashes, limit, skip=path)


def similar_json(path: str, signal: str, unit: str, hits: Sequence[Similar]) -> dict[str, Any]:
    """`tagd similar --json`'s document (the API answers the same)."""
    return {
        "file": shown(path),
        "signal": signal,
        "unit": unit,
        "similar": [
            {"path": shown(h.path), "distance": h.score}
            | ({"mirrored": True} if h.mirrored else {})
            for h in hits
        ],
    }
