"""Which photos are near-duplicates of which: the pairs, found once and kept.

Two photos pair when the plain hash of one lies within the threshold of any
stored hash of the other (its plain hash, mirror or crop windows; see
tagd.media.phash). Comparing every photo with every other at each look would
cost 10 s or more at 100,000 photos, so the pairs are stored in the catalog
(`dupe_pairs`) and only photos hashed since the last pass are compared, at the
end of each scan: a pass with one new photo costs about 0.2 s at 100,000
photos, most of it reading their hashes (bench/review.py). The duplicate
groups (tagd.dupes) are read from the pairs.

Two ways to compare, chosen by size:

- few new photos: directly, every new hash against every stored one (XOR and
  a bit count over a few million 64-bit words per photo);
- many: multi-index hashing. Every stored hash is split into three bands of
  22/21/21 bits; two hashes within T bits agree within T // 3 bits on at least
  one band (pigeonhole), so each plain hash probes, per band, only the keys
  within that radius (254 keys for T = 8) in a table indexed by the band's
  value, and only the few hashes found there are compared in full.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from tagd.catalog.catalog import Catalog
from tagd.media import phash as ph

BANDS = ((0, 22), (22, 21), (43, 21))  # (first bit, width)
# Below this many hash comparisons a pass compares directly; above, it builds
# the band tables first (about 2 s for 100,000 photos of 52 hashes each).
DIRECT_LIMIT = 2_000_000_000
THRESHOLD_KEY = "dupe_pairs_threshold"


@dataclass(frozen=True)
class Hashes:
    """The stored hashes of n photos, flat: photo i's are
    table[starts[i]:starts[i + 1]], its plain hash first."""

    table: np.ndarray  # uint64[m]
    starts: np.ndarray  # int64[n + 1]

    @classmethod
    def stack(cls, stored: Sequence[np.ndarray]) -> Hashes:
        sizes = np.array([len(s) for s in stored], np.int64)
        table = np.concatenate(list(stored)).astype(np.uint64) if len(stored) else _NONE
        return cls(table, np.concatenate(([0], np.cumsum(sizes))).astype(np.int64))

    def __len__(self) -> int:
        return len(self.starts) - 1

    @property
    def plain(self) -> np.ndarray:
        return self.table[self.starts[:-1]]

    @property
    def owner(self) -> np.ndarray:
        """The photo of each row of `table`."""
        return np.repeat(np.arange(len(self), dtype=np.int64), np.diff(self.starts))

    def of(self, i: int) -> np.ndarray:
        return self.table[self.starts[i] : self.starts[i + 1]]


_NONE = np.zeros(0, np.uint64)


def load_hashed(catalog: Catalog) -> tuple[np.ndarray, np.ndarray, Hashes]:
    """(content ids, kinds, hashes) of every hashed content, read as one block
    (100,000 photos: 0.1 s)."""
    ids, kinds, blobs = [], [], []
    for cid, kind, plain, variants in catalog.hash_rows():
        ids.append(cid)
        kinds.append(kind)
        blobs.append(variants if variants and len(variants) == 8 * ph.HASHES else _fallback(plain))
    sizes = np.array([len(b) // 8 for b in blobs], np.int64)
    table = np.frombuffer(b"".join(blobs), "<u8").astype(np.uint64)
    starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    return np.array(ids, np.int64), np.array(kinds, object), Hashes(table, starts)


def _fallback(plain: int) -> bytes:
    return unpack(plain, None).astype("<u8").tobytes()


def unpack(plain: int, variants: bytes | None) -> np.ndarray:
    """A content's stored hashes (uint64), the plain one first."""
    if variants and len(variants) == 8 * ph.HASHES:
        return np.frombuffer(variants, "<u8").astype(np.uint64)
    # A row from another hash version: the plain hash is all there is.
    return np.array([ph.to_unsigned(plain)] * 2, np.uint64)


def paired_at(catalog: Catalog) -> int | None:
    """The threshold the stored pairs were found with (None: never paired)."""
    value = catalog.get_meta(THRESHOLD_KEY)
    return int(value) if value is not None else None


def pair_pending(catalog: Catalog, threshold: int) -> int:
    """Compare the contents hashed since the last pass with every hashed content,
    and store their pairs; returns how many contents were compared. A changed
    threshold compares everything again."""
    if catalog.get_meta(THRESHOLD_KEY) != str(threshold):
        with catalog.transaction():
            catalog.unpair_all()
            catalog.set_meta(THRESHOLD_KEY, str(threshold))
    pending = catalog.unpaired_contents()
    if not pending:
        return 0
    ids, kinds, hashes = load_hashed(catalog)
    index = {int(cid): i for i, cid in enumerate(ids)}
    fresh = np.array([index[c] for c in pending if c in index], np.int64)
    found: dict[tuple[int, int], int] = {}
    for i, j, d in fresh_pairs(hashes, fresh, threshold):
        if kinds[i] != kinds[j]:
            continue  # a photo never duplicates a video
        a, b = sorted((int(ids[i]), int(ids[j])))
        found[(a, b)] = min(d, found.get((a, b), d))
    with catalog.transaction():
        catalog.replace_dupe_pairs(pending, [(a, b, d) for (a, b), d in found.items()])
    return len(pending)


def fresh_pairs(
    hashes: Hashes, fresh: np.ndarray, threshold: int
) -> Iterator[tuple[int, int, int]]:
    """(i, j, distance), i != j, one of them in `fresh`, where photo i's plain hash
    lies within `threshold` bits of a stored hash of photo j."""
    if not len(fresh):
        return
    plain, table, owner = hashes.plain, hashes.table, hashes.owner
    if len(fresh) * len(table) * 2 <= DIRECT_LIMIT:
        yield from _direct(hashes, fresh, threshold)
        return
    is_fresh = np.zeros(len(plain), bool)
    is_fresh[fresh] = True
    # Fresh plain hashes against every stored hash...
    for q, j, d in matching_pairs(plain[fresh], table, owner, threshold):
        if j != fresh[q]:
            yield int(fresh[q]), j, d
    if is_fresh.all():
        return
    # ...and every other plain hash against the fresh ones' stored hashes, probing
    # from the side with fewer hashes (the condition is symmetric).
    mine = is_fresh[owner]
    theirs, their_owner = table[mine], owner[mine]
    if len(theirs) < len(plain):
        everyone = np.arange(len(plain), dtype=np.int64)
        for q, i, d in matching_pairs(theirs, plain, everyone, threshold):
            if not is_fresh[i]:
                yield i, int(their_owner[q]), d
    else:
        for i, j, d in matching_pairs(plain, theirs, their_owner, threshold):
            if not is_fresh[i]:
                yield i, j, d


def _direct(hashes: Hashes, fresh: np.ndarray, threshold: int) -> Iterator[tuple[int, int, int]]:
    plain, table, owner = hashes.plain, hashes.table, hashes.owner
    for i in fresh.tolist():
        near = np.bitwise_count(table ^ plain[i]) <= threshold
        for j in np.unique(owner[near]).tolist():
            if j != i:
                yield i, j, int(np.bitwise_count(hashes.of(j) ^ plain[i]).min())
        # The other way: whose plain hash is near one of i's stored hashes.
        dist = np.bitwise_count(plain[:, None] ^ hashes.of(i)[None, :]).min(axis=1)
        for j in np.flatnonzero(dist <= threshold).tolist():
            if j != i:
                yield j, i, int(dist[j])


def _masks(width: int, radius: int) -> np.ndarray:
    """Every width-bit mask with at most `radius` bits set."""
    out = [0]
    for r in range(1, radius + 1):
        out += [sum(1 << b for b in bits) for bits in combinations(range(width), r)]
    return np.array(out, np.int64)


def matching_pairs(
    queries: np.ndarray, table: np.ndarray, owner: np.ndarray, threshold: int, chunk: int = 8192
) -> Iterator[tuple[int, int, int]]:
    """(query index, owner of a table hash, distance) for every table hash within
    `threshold` bits of a query (a pair may come once per band)."""
    radius = threshold // len(BANDS)
    for first, width in BANDS:
        mask = np.uint64((1 << width) - 1)
        keys = ((table >> np.uint64(first)) & mask).astype(np.int64)
        # A table by the band's value: starts[k]..starts[k+1] in `order` hold the
        # hashes whose band is k (two array reads per probe, no search).
        starts = np.zeros((1 << width) + 1, np.int64)
        np.cumsum(np.bincount(keys, minlength=1 << width), out=starts[1:])
        order = np.argsort(keys, kind="stable")
        probes_of = _masks(width, radius)
        for start in range(0, len(queries), chunk):
            base = ((queries[start : start + chunk] >> np.uint64(first)) & mask).astype(np.int64)
            probes = (base[:, None] ^ probes_of[None, :]).ravel()
            lo = starts[probes]
            counts = starts[probes + 1] - lo
            hits = counts.nonzero()[0]
            if not len(hits):
                continue
            lo, counts = lo[hits], counts[hits]
            query = np.repeat(hits // len(probes_of), counts) + start
            within = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
            hit = order[np.repeat(lo, counts) + within]
            dist = np.bitwise_count(queries[query] ^ table[hit])
            keep = dist <= threshold
            yield from zip(
                query[keep].tolist(), owner[hit][keep].tolist(), dist[keep].tolist(), strict=True
            )
