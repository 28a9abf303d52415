"""Near-duplicate groups and similar photos from the catalog. Read-only: nothing
here (or in the commands built on it) deletes, moves or renames a file.

Grouping scales by multi-index hashing: every stored hash (plain, mirror,
crop windows) is split into three bands of 22/21/21 bits. Two hashes within
T bits agree within T // 3 bits on at least one band (pigeonhole), so each
photo's plain hash probes, per band, only the keys within that radius
(254 keys for T = 8) in a sorted array, and only the few hashes found there
are compared in full. 100,000 photos need about 10⁸ cheap comparisons
instead of 5·10⁹ × 52 hash pairs. Matches are joined with union-find.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from tagd.catalog.catalog import Catalog
from tagd.media import phash as ph
from tagd.paths import shown

BANDS = ((0, 22), (22, 21), (43, 21))  # (first bit, width)
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
    photos = []
    for path, cid, kind, width, height, size, plain, variants in catalog.hashed_files():
        if variants and len(variants) == 8 * ph.HASHES:
            hashes = np.frombuffer(variants, "<u8").astype(np.uint64)
        else:  # a row from another hash version: the plain hash is all there is
            hashes = np.array([ph.to_unsigned(plain)] * 2, np.uint64)
        photos.append(Photo(path, cid, kind, width, height, size, hashes))
    return photos


def _masks(width: int, radius: int) -> np.ndarray:
    """Every width-bit mask with at most `radius` bits set."""
    out = [0]
    for r in range(1, radius + 1):
        out += [sum(1 << b for b in bits) for bits in combinations(range(width), r)]
    return np.array(out, np.uint64)


def matching_pairs(
    plain: np.ndarray, stored: Sequence[np.ndarray], threshold: int, chunk: int = 4096
) -> Iterator[tuple[int, int, int]]:
    """(i, j, distance) with i != j and plain[i] within `threshold` bits of a stored
    hash of j, found by multi-index hashing (each pair at least once)."""
    owner = np.concatenate([np.full(len(s), j, np.int64) for j, s in enumerate(stored)])
    table = np.concatenate(list(stored)).astype(np.uint64)
    radius = threshold // len(BANDS)
    for first, width in BANDS:
        mask = np.uint64((1 << width) - 1)
        keys = (table >> np.uint64(first)) & mask
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        probes_of = _masks(width, radius)
        for start in range(0, len(plain), chunk):
            queries = plain[start : start + chunk]
            base = (queries >> np.uint64(first)) & mask
            probes = (base[:, None] ^ probes_of[None, :]).ravel()
            lo = np.searchsorted(sorted_keys, probes, "left")
            counts = np.searchsorted(sorted_keys, probes, "right") - lo
            total = int(counts.sum())
            if not total:
                continue
            query = np.repeat(np.arange(len(probes)) // len(probes_of), counts) + start
            within = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            hit = order[np.repeat(lo, counts) + within]
            dist = np.bitwise_count(plain[query] ^ table[hit])
            other = owner[hit]
            keep = (dist <= threshold) & (other != query)
            yield from zip(
                query[keep].tolist(), other[keep].tolist(), dist[keep].tolist(), strict=True
            )


def _find(parent: list[int], i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]
        i = parent[i]
    return i


def group(
    photos: Sequence[Photo], threshold: int, distinct: Collection[tuple[int, int]] = ()
) -> list[Group]:
    """Near-duplicate groups (2+ files, images and videos apart), largest first.
    `distinct`: pairs of contents (lower id first) a user said are not duplicates,
    never joined directly."""
    parent = list(range(len(photos)))
    plain = np.array([p.hashes[0] for p in photos], np.uint64)
    # Files of one content are exact copies: join them without looking.
    first_of: dict[int, int] = {}
    for i, p in enumerate(photos):
        j = first_of.setdefault(p.content_id, i)
        parent[_find(parent, i)] = _find(parent, j)
    if photos:
        for i, j, _ in matching_pairs(plain, [p.hashes for p in photos], threshold):
            a, b = sorted((photos[i].content_id, photos[j].content_id))
            if photos[i].kind == photos[j].kind and (a, b) not in distinct:
                parent[_find(parent, i)] = _find(parent, j)
    members: dict[int, list[Photo]] = {}
    for i, p in enumerate(photos):
        members.setdefault(_find(parent, i), []).append(p)
    groups = [_suggest(m) for m in members.values() if len(m) > 1]
    return sorted(groups, key=lambda g: (-len(g.others), g.keep.path))


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


# Whole-image embedding analyzers, best for "looks like" first. Face and
# per-region vectors are not image similarity and are never used here.
IMAGE_EMBEDDINGS = ("dinov2", "clip")


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
