"""The web pages with a big catalog: page weight and server time.

How many decisions a person makes a minute cannot be measured here, so this
measures what the server controls: every page's weight before thumbnails
(its HTML plus the CSS and JS it loads) and the time to serve it, p50 and p95,
with --files files in the catalog (default 100,000).

The catalog is made through the catalog's own methods, as a scan would leave
it: each file a content with its size, object detections and the tags the
real tag policy derives from them, a perceptual hash (one file in twenty a
near copy of another), and one in twenty a face with an embedding, in 300
people of whom 100 are named. It is kept in --cache between runs. The server
is a real `tagd serve` process on 127.0.0.1. The near-duplicate pairs are
stored as a scan stores them (tagd.dupe_pairs); the time of that pass over the
whole catalog (once) and for one photo more (each scan) is printed too.

Targets: every page <= 300 KB before thumbnails, served in <= 100 ms p95.

    .venv/bin/python bench/review.py [--files 100000] [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from serving import tagd_serve

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.dupe_pairs import pair_pending
from tagd.media import phash as ph
from tagd.policy.tags import TagPolicy
from tagd.records import Detection, Media

PAGES = ["/", "/people", "/review", "/review?low=0&high=1", "/dupes", "/status"]
WEIGHT_TARGET = 300 * 1024
TIME_TARGET = 0.100
LABELS = ["person", "dog", "cat", "car", "bicycle", "cup", "chair", "boat", "bird", "tv"]
PEOPLE, NAMED = 300, 100
FACE_DIM = 128


def build(path: Path, files: int) -> None:
    """A catalog of `files` photos, as described in the module's docstring."""
    rng = np.random.default_rng(0)
    policy = TagPolicy(Settings().tags)
    catalog = Catalog(path)
    try:
        with catalog.transaction():
            people = [catalog.new_person() for _ in range(PEOPLE)]
            for i, pid in enumerate(people[:NAMED]):
                catalog.rename_person(pid, f"Person {i:03d}")
            centres = rng.normal(0, 1, (PEOPLE, FACE_DIM)).astype(np.float32)
            hashes: list[np.ndarray] = []
            for n in range(files):
                cid = catalog.ensure_content(f"fp{n}", "image")
                catalog.set_media_info(cid, kind="image", width=4000, height=3000)
                catalog.add_file(
                    f"/photos/{n // 1000:03d}/IMG_{n:06d}.jpg",
                    "image",
                    int(rng.integers(1_000_000, 6_000_000)),
                    n,
                    cid,
                    None,
                )
                found = [
                    Detection(
                        str(rng.choice(LABELS)),
                        float(rng.uniform(0.3, 0.99)),
                        (10.0, 10.0, 200.0, 200.0),
                    )
                    for _ in range(int(rng.integers(1, 4)))
                ]
                catalog.save_analysis(cid, "objects", "bench", found)
                catalog.replace_tags(
                    cid, "objects", policy.derive("objects", found, Media("image"))
                )
                own = rng.integers(0, 2**63, ph.HASHES, dtype=np.uint64)
                if hashes and n % 20 == 0:  # a near copy of an earlier photo
                    own = hashes[int(rng.integers(0, len(hashes)))] ^ np.uint64(3)
                hashes.append(own)
                catalog.save_hashes(cid, ph.to_signed(int(own[0])), own.astype("<u8").tobytes())
                if n % 20 == 1:
                    person = int(rng.integers(0, PEOPLE))
                    vector = centres[person] + rng.normal(0, 0.1, FACE_DIM).astype(np.float32)
                    [did] = catalog.save_analysis(
                        cid,
                        "faces",
                        "bench",
                        [Detection("face", 0.95, (5, 5, 90, 90), vector=vector)],
                    )
                    catalog.add_face(did, people[person], people[person])
    finally:
        catalog.close()


def pair(path: Path) -> None:
    """The pairing pass of a scan: the whole catalog once, then one photo."""
    threshold = Settings().duplicates.threshold
    with Catalog(path) as catalog:
        start = time.perf_counter()
        compared = pair_pending(catalog, threshold)
        if compared:
            seconds = time.perf_counter() - start
            print(f"near-duplicate pairs of {compared:,} photos found in {seconds:.1f} s (once)")
        times = []
        for cid in (1, 2, 3):  # as if a scan had hashed it anew
            catalog.con.execute("UPDATE hashes SET paired = 0 WHERE content_id = ?", (cid,))
            start = time.perf_counter()
            pair_pending(catalog, threshold)
            times.append(time.perf_counter() - start)
        print(f"one photo more compared with all: {statistics.median(times) * 1000:.0f} ms")


def fetch(url: str) -> tuple[bytes, float]:
    start = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as answer:
        body = answer.read()
    return body, time.perf_counter() - start


def assets(base: str, html: bytes) -> int:
    """Bytes of the CSS and JS the page loads (thumbnails left out)."""
    found = re.findall(rb'(?:href|src)="(/ui/static/[^"]+)"', html)
    return sum(len(fetch(base + ref.decode())[0]) for ref in set(found))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--pages", default=",".join(PAGES), help="comma-separated, default all")
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "tagd-bench-review"))
    args = parser.parse_args()
    state = Path(args.cache) / str(args.files)
    catalog = state / "catalog.db"
    if not catalog.exists():
        start = time.perf_counter()
        build(catalog.with_suffix(".part"), args.files)
        catalog.with_suffix(".part").rename(catalog)
        print(f"built a catalog of {args.files:,} files in {time.perf_counter() - start:.0f} s")
    pair(catalog)
    base, proc = tagd_serve(state)
    try:
        print(f"tagd's pages, {args.files:,} files in the catalog, {os.cpu_count()} cores")
        print("| page | KB (HTML + CSS + JS) | p50 ms | p95 ms | ok |")
        print("| --- | --- | --- | --- | --- |")
        failed = 0
        for page in args.pages.split(","):
            html, _ = fetch(base + page)  # warm: caches, the first SQL plans
            weight = len(html) + assets(base, html)
            times = sorted(fetch(base + page)[1] for _ in range(args.runs))
            p50 = statistics.median(times)
            p95 = times[max(0, int(len(times) * 0.95) - 1)]
            ok = weight <= WEIGHT_TARGET and p95 <= TIME_TARGET
            failed += not ok
            print(
                f"| {page} | {weight / 1024:.0f} | {p50 * 1000:.0f} | {p95 * 1000:.0f} "
                f"| {'yes' if ok else 'NO'} |"
            )
    finally:
        proc.terminate()
        proc.wait(30)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
