"""Photos per second of the objects pipeline on 12 MP JPEGs.

Upscales the 128 COCO dev photos to 4000x3000 JPEGs (quality 90) with sensor-
like grain added, so files are about 3 MB and cost libjpeg what a phone photo
does (an upscale alone is too smooth and decodes twice as fast). Then it
measures in one process, median of several runs:

- tagd's pipeline with reduced (DCT-scaled) decoding, decode threads
  overlapping inference;
- the same pipeline with reduced decoding off;
- a naive loop: full cv2.imread, letterbox, inference, one file at a time.

Target: >= 25 photos/s for objects only on 2 cores.
Usage: python bench/pipeline.py [--runs 3] [--photos 128]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from tagd.analyzers.objects import ObjectDetector
from tagd.catalog.catalog import Catalog
from tagd.config import Settings, parse_settings
from tagd.paths import models_dir
from tagd.pipeline import Pipeline, build_analyzers
from tagd.scan.index import index_roots
from tagd.scan.walk import Walker

SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"
COCO = SHARED / "objects-coco128-train" / "images"
TARGET = 25.0
GRAIN = 6.0  # standard deviation of the added noise, in 8-bit levels


def make_photos(dest: Path, count: int) -> list[Path]:
    """12 MP JPEGs made from the dev photos (cached between runs)."""
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for src in sorted(COCO.glob("*.jpg"))[:count]:
        path = dest / src.name
        if not path.exists():
            image = cv2.imread(str(src))
            big = cv2.resize(image, (4000, 3000), interpolation=cv2.INTER_CUBIC)
            grain = rng.normal(0.0, GRAIN, big.shape).astype(np.float32)
            big = np.clip(big + grain, 0, 255).astype(np.uint8)
            cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(path)
    return out


# Objects only: the target is for the object pipeline; other analyzers are off.
OBJECTS_ONLY = {
    section: {"enabled": False} for section in ("ocr", "concepts", "clip", "faces", "duplicates")
}


def settings(reduced: bool) -> Settings:
    return parse_settings(
        OBJECTS_ONLY | {"decode": {"reduced": reduced}, "xmp": {"enabled": False}}, "bench"
    )


def run_tagd(folder: Path, reduced: bool, previews: bool = False) -> float:
    """Seconds for tagd to analyse every photo of a freshly indexed folder (with
    `previews`, keeping a WebP preview of each, as tagd scan does by default)."""
    cfg = settings(reduced)
    with tempfile.TemporaryDirectory() as state, Catalog(Path(state) / "c.db") as catalog:
        lib = cfg.library
        walker = Walker(lib.image_extensions, lib.video_extensions, lib.exclude)
        index_roots(catalog, walker, [str(folder)])
        thumbs = Path(state) / "thumbs" if previews else None
        pipeline = Pipeline(catalog, cfg, build_analyzers(cfg, models_dir(cfg)), thumbnails=thumbs)
        pipeline.analyzers[0].model.session()  # load outside the timed part
        start = time.perf_counter()
        report = pipeline.run()
        elapsed = time.perf_counter() - start
        if report.failed:
            raise SystemExit(f"{report.failed} photos failed: {report.errors[:3]}")
        return elapsed


def run_naive(photos: list[Path]) -> float:
    """Full decode and inference, one file at a time, nothing overlapped."""
    cfg = settings(False)
    detector = build_analyzers(cfg, models_dir(cfg))[0]
    assert isinstance(detector, ObjectDetector)
    detector.model.session()
    start = time.perf_counter()
    for path in photos:
        image = cv2.imread(str(path))
        detector.analyze([image])
    return time.perf_counter() - start


def median_rate(fn: Callable[[], float], count: int, runs: int) -> tuple[float, list[float]]:
    times = [fn() for _ in range(runs)]
    return count / statistics.median(times), times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--photos", type=int, default=128)
    parser.add_argument(
        "--cache", default=os.path.join(tempfile.gettempdir(), "tagd-bench-12mp-grain")
    )
    args = parser.parse_args()
    if not COCO.is_dir():
        print(f"skipped: {COCO} not found (the shared eval set is needed)")
        return 0
    photos = make_photos(Path(args.cache), args.photos)
    folder = Path(tempfile.mkdtemp(prefix="tagd-bench-"))
    try:
        for p in photos:
            os.symlink(p, folder / p.name)
        n = len(photos)
        rows = [
            ("tagd, reduced decode", *median_rate(lambda: run_tagd(folder, True), n, args.runs)),
            (
                "tagd, reduced decode, previews kept",
                *median_rate(lambda: run_tagd(folder, True, previews=True), n, args.runs),
            ),
            ("tagd, full decode", *median_rate(lambda: run_tagd(folder, False), n, args.runs)),
            ("naive loop, full decode", *median_rate(lambda: run_naive(photos), n, args.runs)),
        ]
    finally:
        shutil.rmtree(folder)
    print_table(rows, photos, args.runs)
    return 0 if rows[0][1] >= TARGET else 1


def print_table(rows: list[tuple[str, float, list[float]]], photos: list[Path], runs: int) -> None:
    count = len(photos)
    naive = rows[-1][1]
    cores = len(os.sched_getaffinity(0))
    size = statistics.mean(p.stat().st_size for p in photos) / 1e6
    print(
        f"\n{count} photos, 4000x3000 JPEG q90 with grain ({size:.1f} MB), objects only, "
        f"{cores} cores, median of {runs} runs"
    )
    print(f"{'variant':<36} {'photos/s':>9} {'vs naive':>9}  runs (s)")
    for name, rate, times in rows:
        spread = " ".join(f"{t:.2f}" for t in times)
        print(f"{name:<36} {rate:>9.1f} {rate / naive:>8.2f}x  {spread}")
    full = next(rate for name, rate, _ in rows if name == "tagd, full decode")
    print(
        f"reduced vs full decode: {rows[0][1] / full:.2f}x; "
        f"previews cost: {1 - rows[1][1] / rows[0][1]:.1%} of the rate; "
        f"target >= {TARGET:.0f} photos/s: {'PASS' if rows[0][1] >= TARGET else 'FAIL'}"
    )


if __name__ == "__main__":
    sys.exit(main())
