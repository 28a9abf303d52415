"""Delivering tags to Stash: requests and time for a library of N images.

Stash finds a scene or image by path with a LIKE over every file it knows, so
one lookup per file costs a scan of the library each time; tagd lists Stash's
objects page by page instead when more files are due than that takes pages.
And objects that get the same change share one bulk update. Three ways, against
the real-schema Stash stand-in the tests use (tests/stash_server.py:
graphql-core, each path lookup a linear scan like Stash's), in one process: one
file at a time (a lookup and an update per file: the reference), per-file
lookups with shared updates, and tagd's default (listing + shared updates); a
first delivery and an unchanged re-run, each the median of --runs. Request
counts are exact; times are the stand-in's, so compare the ratios. The catalog
is built directly (tags as the tag policy stores them), no model runs.

    .venv/bin/python bench/stash.py [--images 2000] [--runs 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from stash_server import StashServer  # noqa: E402

from tagd.catalog.catalog import Catalog  # noqa: E402
from tagd.config import PathMapping, Settings, StashSettings  # noqa: E402
from tagd.records import Tag  # noqa: E402
from tagd.sinks.stash import deliver as stash  # noqa: E402
from tagd.sinks.stash.deliver import SINK, deliver_stash  # noqa: E402

LABELS = ("person", "dog", "cat", "car", "bicycle", "boat", "bird", "cup")


def make_catalog(path: Path, images: int) -> Catalog:
    catalog = Catalog(path)
    with catalog.transaction():
        for i in range(images):
            cid = catalog.ensure_content(f"fp-{i}", "image")
            tags = [
                Tag(f"AI|Objects|{LABELS[(i + k) % len(LABELS)]}", 0.9, "objects")
                for k in range(1 + i % 3)
            ]
            catalog.replace_tags(cid, "objects", tags)
            catalog.add_file(f"/srv/lib/{i:06d}.jpg", "image", 1, 1, cid, None)
    return catalog


def queue_all(catalog: Catalog) -> None:
    with catalog.transaction():
        catalog.enqueue([r[0] for r in catalog.con.execute("SELECT id FROM files")], SINK)


def one_run(images: int, page_size: int, batch: int, work: Path) -> tuple[float, int, float, int]:
    """(first delivery s, its requests, re-run s, its requests)."""
    stash.BATCH = batch
    server = StashServer().start()
    try:
        for i in range(images):
            server.state.add_image(f"/data/{i:06d}.jpg")
        catalog = make_catalog(work / f"c-{page_size}-{time.monotonic_ns()}.db", images)
        s = StashSettings(
            enabled=True,
            url=server.url,
            timeout=60.0,
            retries=0,
            page_size=page_size,
            path_mappings=[PathMapping(stash="/data", local="/srv/lib")],
        )
        settings = dataclasses.replace(Settings(), stash=s)
        timings = []
        for _ in range(2):
            queue_all(catalog)
            before = len(server.requests)
            start = time.perf_counter()
            report = deliver_stash(catalog, settings)
            timings.append((time.perf_counter() - start, len(server.requests) - before))
            if report.failed:
                raise SystemExit(f"delivery failed: {report.errors[:3]}")
        catalog.close()
        assert server.invalid == [], server.invalid[:3]
        return timings[0][0], timings[0][1], timings[1][0], timings[1][1]
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rows = {}
    default_batch = stash.BATCH
    with tempfile.TemporaryDirectory(prefix="tagd-bench-stash-") as tmp:
        modes = (
            ("one file at a time (reference)", 1, 1),
            ("per-file lookups, shared updates", 1, default_batch),
            ("listing + shared updates (tagd)", 500, default_batch),
        )
        for name, page_size, batch in modes:
            runs = [one_run(args.images, page_size, batch, Path(tmp)) for _ in range(args.runs)]
            rows[name] = [statistics.median(r[i] for r in runs) for i in range(4)]
    ref = rows["one file at a time (reference)"]
    print(f"Stash delivery of {args.images} images (median of {args.runs} runs)")
    print("| mode | first: s | requests | images/s | vs ref | re-run: s | requests | vs ref |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, (first, first_req, again, again_req) in rows.items():
        print(
            f"| {name} | {first:.2f} | {first_req:.0f} | {args.images / first:.0f} | "
            f"{ref[0] / first:.2f}x | {again:.2f} | {again_req:.0f} | {ref[2] / again:.2f}x |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
