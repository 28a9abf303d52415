"""Perceptual hashes, near-duplicate groups and `tagd dupes` / `tagd similar` on real
photos from ../shared/eval, in a real catalog. Nothing may ever be deleted or moved."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED

from tagd import dupe_pairs
from tagd.catalog.catalog import Catalog
from tagd.dupe_pairs import Hashes, fresh_pairs, matching_pairs, pair_pending
from tagd.dupes import Photo, group, groups, load_photos
from tagd.media import phash as ph
from tagd.media.image import decode_image

EVAL = SHARED / "eval"
THRESHOLD = 8
ONLY_HASHES = "".join(
    f"[{s}]\nenabled = false\n"
    for s in ("xmp", "objects", "ocr", "faces", "concepts", "clip", "nsfw", "quality")
)


def _photos(n: int) -> list[Path]:
    if not EVAL.is_dir():
        pytest.skip(f"{EVAL} is absent (real photos needed)")
    coco = sorted((EVAL / "objects-coco128-train" / "images").iterdir())
    return coco[:: max(1, len(coco) // n)][:n]


def _encode(image: np.ndarray, ext: str, params: list[int] | None = None) -> bytes:
    ok, data = cv2.imencode(ext, image, params or [])
    assert ok
    return data.tobytes()


def _variants(image: np.ndarray) -> dict[str, bytes]:
    h, w = image.shape[:2]
    return {
        "resize50": _encode(
            cv2.resize(image, (w // 2, h // 2), interpolation=cv2.INTER_AREA), ".jpg"
        ),
        "jpeg40": _encode(image, ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 40]),
        "crop10_corner": _encode(image[int(h * 0.1) :, int(w * 0.1) :], ".jpg"),
        "crop10_centre": _encode(
            image[int(h * 0.05) : int(h * 0.95), int(w * 0.05) : int(w * 0.95)], ".jpg"
        ),
        "png": _encode(image, ".png"),
        "mirror": _encode(image[:, ::-1], ".jpg"),
    }


def _hashes(data: bytes) -> np.ndarray:
    # As the pipeline does: one DCT-reduced, upright decode (416 = objects' input).
    return ph.hash_set(decode_image(data, min_long_side=416).image)


def test_every_variant_kind_stays_within_threshold_and_distinct_photos_far() -> None:
    photos = _photos(12)
    sets = []
    for path in photos:
        data = path.read_bytes()
        original = _hashes(data)
        sets.append(original)
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        for kind, variant in _variants(image).items():
            d, mirrored = ph.match_distance(original, _hashes(variant))
            assert d <= THRESHOLD, (path.name, kind, d)
            assert mirrored == (kind == "mirror") or d == 0, (path.name, kind)
    # A plain hash alone does not survive the mirror: that is why it is stored.
    image = cv2.imread(str(photos[0]))
    plain = ph.phash(image)
    assert bin(plain ^ ph.phash(image[:, ::-1].copy())).count("1") > 2 * THRESHOLD
    closest = min(ph.match_distance(a, b)[0] for a, b in combinations(sets, 2))
    assert closest > THRESHOLD + 2, closest


def _photo(path: str, hashes: np.ndarray, w: int, h: int, size: int, cid: int) -> Photo:
    return Photo(path, cid, "image", w, h, size, hashes)


def test_grouping_multi_index_matches_brute_force_and_keeps_the_best() -> None:
    photos = _photos(6)
    items: list[Photo] = []
    for cid, path in enumerate(photos):
        data = path.read_bytes()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        h, w = image.shape[:2]
        items.append(_photo(f"/l/{path.stem}.jpg", _hashes(data), w, h, len(data), 100 + cid))
        half = _variants(image)["resize50"]
        items.append(
            _photo(f"/l/{path.stem}_half.jpg", _hashes(half), w // 2, h // 2, len(half), 200 + cid)
        )
        png = _encode(image, ".png")
        items.append(_photo(f"/l/{path.stem}.png", _hashes(png), w, h, len(data), 300 + cid))
    plain = np.array([p.hashes[0] for p in items], np.uint64)
    stored = Hashes.stack([p.hashes for p in items])
    banded = {
        (i, j) for i, j, _ in matching_pairs(plain, stored.table, stored.owner, THRESHOLD) if i != j
    }
    every = np.arange(len(items))
    direct = {(i, j) for i, j, _ in fresh_pairs(stored, every, THRESHOLD)}
    brute = {
        (i, j)
        for i in range(len(items))
        for j in range(len(items))
        if i != j and ph.distance(plain[i], items[j].hashes) <= THRESHOLD
    }
    assert banded == direct == brute and brute
    # A few fresh ones against the rest, both ways, by either method.
    fresh = np.array([1, 4])
    wanted = {(i, j) for i, j in brute if i in fresh or j in fresh}
    assert {(i, j) for i, j, _ in fresh_pairs(stored, fresh, THRESHOLD)} == wanted
    old_limit = dupe_pairs.DIRECT_LIMIT
    try:
        dupe_pairs.DIRECT_LIMIT = 0
        assert {(i, j) for i, j, _ in fresh_pairs(stored, fresh, THRESHOLD)} == wanted
    finally:
        dupe_pairs.DIRECT_LIMIT = old_limit
    groups = group(items, THRESHOLD)
    assert len(groups) == len(photos)
    for g in groups:
        stem = Path(g.keep.path).stem
        assert {m.photo.path for m in g.others} == {f"/l/{stem}_half.jpg", f"/l/{stem}.jpg"}
        # Same resolution and (here) same size: the PNG wins on format.
        assert g.keep.path.endswith(".png") and "better format (PNG)" in g.reason


def _hashed_catalog(path: Path, sources: list[Path]) -> tuple[Catalog, dict[str, int]]:
    """A catalog holding the real hashes of each source and of its half-size copy."""
    catalog = Catalog(path)
    ids: dict[str, int] = {}
    with catalog.transaction():
        for n, source in enumerate(sources):
            data = source.read_bytes()
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            for name, blob in (
                (source.stem, data),
                (source.stem + "_half", _variants(image)["resize50"]),
            ):
                _add(catalog, ids, name, blob, n)
    return catalog, ids


def _add(catalog: Catalog, ids: dict[str, int], name: str, blob: bytes, n: int) -> None:
    cid = catalog.ensure_content(f"fp-{name}", "image")
    catalog.set_media_info(cid, kind="image", width=640 - n, height=480)
    catalog.add_file(f"/l/{name}.jpg", "image", len(blob), n, cid, None)
    hashes = _hashes(blob)
    catalog.save_hashes(cid, ph.to_signed(int(hashes[0])), hashes.astype("<u8").tobytes())
    ids[name] = cid


def _summary(found: list) -> list[tuple[str, tuple[str, ...]]]:
    return [(g.keep.path, tuple(m.photo.path for m in g.others)) for g in found]


def test_stored_pairs_give_the_groups_a_full_comparison_gives(tmp_path: Path) -> None:
    sources = _photos(5)
    catalog, ids = _hashed_catalog(tmp_path / "c.db", sources[:4])
    try:
        # Never paired: everything is compared on the spot.
        assert dupe_pairs.paired_at(catalog) is None
        full = _summary(group(load_photos(catalog), THRESHOLD))
        assert len(full) == 4 and _summary(groups(catalog, THRESHOLD)) == full
        assert pair_pending(catalog, THRESHOLD) == 8
        assert pair_pending(catalog, THRESHOLD) == 0  # nothing new: nothing compared
        assert _summary(groups(catalog, THRESHOLD)) == full
        # A new photo and its copy: only they are compared, and they join.
        data = sources[4].read_bytes()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        with catalog.transaction():
            _add(catalog, ids, sources[4].stem, data, 4)
            _add(catalog, ids, "late_copy", _variants(image)["jpeg40"], 5)
        assert pair_pending(catalog, THRESHOLD) == 2
        now = _summary(groups(catalog, THRESHOLD))
        assert now == _summary(group(load_photos(catalog), THRESHOLD)) and len(now) == 5
        assert any(set(others) == {"/l/late_copy.jpg"} for _, others in now)
        # The same pairs by the band tables, after a threshold change compares all again.
        old_limit = dupe_pairs.DIRECT_LIMIT
        try:
            dupe_pairs.DIRECT_LIMIT = 0
            assert pair_pending(catalog, THRESHOLD + 1) == 10
            assert pair_pending(catalog, THRESHOLD) == 10
        finally:
            dupe_pairs.DIRECT_LIMIT = old_limit
        assert _summary(groups(catalog, THRESHOLD)) == now
        # "Not duplicates" splits that group and no other.
        pair = tuple(sorted((ids[sources[0].stem], ids[sources[0].stem + "_half"])))
        split = _summary(groups(catalog, THRESHOLD, {pair}))
        assert len(split) == 4 and all(sources[0].stem not in keep for keep, _ in split)
        # A threshold above the stored one is compared on the spot.
        assert _summary(groups(catalog, THRESHOLD + 2)) == _summary(
            group(load_photos(catalog), THRESHOLD + 2)
        )
    finally:
        catalog.close()


def _library(tmp_path: Path) -> tuple[Path, Path]:
    photos = _photos(4)
    lib = tmp_path / "lib"
    lib.mkdir()
    for path in photos:
        (lib / path.name).write_bytes(path.read_bytes())
    image = cv2.imread(str(photos[0]))
    variant = lib / "copy_mirrored_smaller.jpg"
    h, w = image.shape[:2]
    variant.write_bytes(
        _encode(
            cv2.resize(image[:, ::-1], (w // 2, h // 2)), ".jpg", [cv2.IMWRITE_JPEG_QUALITY, 40]
        )
    )
    return lib, lib / photos[0].name


def _listing(root: Path) -> list[tuple[str, int, int]]:
    return sorted((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_dupes_and_similar_end_to_end_never_touch_files(
    tmp_path: Path, state_dir: Path, cli
) -> None:
    lib, original = _library(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text(ONLY_HASHES)
    code, out, err = cli("--config", config, "scan", lib)
    assert code == 0, err
    before = _listing(lib)
    code, out, err = cli("--config", config, "dupes", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["hashed"] == 5
    assert len(doc["groups"]) == 1
    g = doc["groups"][0]
    assert g["keep"]["path"] == str(original) and "highest resolution" in g["reason"]
    assert [(o["path"], o["mirrored"]) for o in g["others"]] == [
        (str(lib / "copy_mirrored_smaller.jpg"), True)
    ]
    code, out, _ = cli("--config", config, "dupes")
    assert code == 0 and "keep" in out and "Nothing was deleted" in out
    code, out, err = cli("--config", config, "similar", lib / "copy_mirrored_smaller.jpg", "--json")
    assert code == 0, err
    sim = json.loads(out)
    assert sim["signal"] == "phash" and sim["similar"][0]["path"] == str(original)
    assert sim["similar"][0]["distance"] <= THRESHOLD < sim["similar"][1]["distance"]
    # A photo that is not in the catalog is hashed on the spot.
    outside = tmp_path / "outside.png"
    outside.write_bytes(_encode(cv2.imread(str(original)), ".png"))
    code, out, err = cli("--config", config, "similar", outside, "--limit", "2")
    assert code == 0 and out.splitlines()[1].split()[-1] == str(original), out + err
    code, out, _ = cli("--config", config, "export")
    rows = [json.loads(line) for line in out.splitlines()]
    assert all(len(r["phash"]) == 16 for r in rows)
    assert _listing(lib) == before  # nothing deleted, moved or rewritten
    code, _, err = cli("--config", config, "dupes", "--threshold", "40")
    assert code == 2 and "threshold" in err
