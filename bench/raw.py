"""Camera RAW photos/s next to the same photos as camera JPEGs, in one run.

    .venv/bin/python bench/raw.py [--copies 8] [--runs 3]

The real RAW files of the tests (a Canon CR2, a Sony ARW, a DNG from a Nikon;
tests/media/fetch_raw.py fetches them) and, for each, the JPEG a camera set to
RAW + JPEG would write (LibRaw's full development, quality 92). Each file is
copied --copies times with a few bytes appended (a new content each, which
LibRaw and libjpeg ignore), into a RAW library and a JPEG library.

| variant | what is timed |
| --- | --- |
| pipeline, RAW / JPEG | every default analyzer, fresh catalog (indexing not timed) |
| decode, RAW preview | tagd's decode at the pipeline's size: the embedded preview |
| decode, RAW half-size | LibRaw's half-size demosaic (a RAW whose preview is too small) |
| decode, JPEG | tagd's decode of the camera JPEGs at the same size |

Median of --runs, interleaved; the ratio is against the JPEG row of its kind.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import rawpy
from pipeline import loaded, run_tagd  # bench/pipeline.py: the same timed scan

from tagd.config import parse_settings
from tagd.media.image import decode_image
from tagd.runtime.backends import cpu_threads

REPO = Path(__file__).resolve().parents[1]


def raw_files() -> list[Path]:
    spec = importlib.util.spec_from_file_location("fetch_raw", REPO / "tests/media/fetch_raw.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = REPO / "build" / "test-media" / "raw"
    problems = module.fetch(folder)
    if problems:
        raise SystemExit("; ".join(problems))
    return [folder / name for name in module.FILES]


def libraries(root: Path, copies: int) -> tuple[list[Path], list[Path]]:
    raws, jpegs = [], []
    (root / "raw").mkdir()
    (root / "jpeg").mkdir()
    for source in raw_files():
        with rawpy.imread(str(source)) as r:
            rgb = r.postprocess(use_camera_wb=True)
        ok, jpeg = cv2.imencode(".jpg", rgb[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        assert ok
        data = source.read_bytes()
        for i in range(copies):
            raw = root / "raw" / f"{source.stem}_{i}{source.suffix}"
            raw.write_bytes(data + b"\0" * (i + 1))
            raws.append(raw)
            photo = root / "jpeg" / f"{source.stem}_{i}.jpg"
            photo.write_bytes(jpeg.tobytes() + b"\0" * (i + 1))
            jpegs.append(photo)
    return raws, jpegs


def run_decode(files: list[Path], need: int, workers: int) -> float:
    def one(path: Path) -> None:
        decode_image(path.read_bytes(), min_long_side=need, name=path.name)

    start = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, files))
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    settings = parse_settings({"xmp": {"enabled": False}}, "bench")
    analyzers = loaded(settings)  # models loaded before anything is timed
    need = max(a.min_long_side for a in analyzers)
    workers = cpu_threads(settings.decode.workers)
    root = Path(tempfile.mkdtemp(prefix="tagd-bench-raw-"))
    try:
        raws, jpegs = libraries(root, args.copies)
        jobs: dict[str, Callable[[], float]] = {
            "pipeline, RAW": lambda: run_tagd(root / "raw", settings, analyzers),
            "pipeline, JPEG": lambda: run_tagd(root / "jpeg", settings, analyzers),
            "decode, RAW preview": lambda: run_decode(raws, need, workers),
            "decode, RAW half-size": lambda: run_decode(raws, 99_999, workers),
            "decode, JPEG": lambda: run_decode(jpegs, need, workers),
        }
        for job in jobs.values():
            job()  # warm
        times: dict[str, list[float]] = {name: [] for name in jobs}
        for _ in range(args.runs):
            for name, job in jobs.items():
                times[name].append(job())
    finally:
        shutil.rmtree(root)
    count = len(raws)
    rates = {name: count / statistics.median(t) for name, t in times.items()}
    print(f"{count} files of each kind ({args.copies} copies of 3 RAWs), median of {args.runs}")
    print(f"pipeline decode size: {need} px long side, {workers} decode workers\n")
    print("| variant | files/s | vs JPEG |")
    print("| --- | --- | --- |")
    for name, rate in rates.items():
        ref = rates["pipeline, JPEG" if name.startswith("pipeline") else "decode, JPEG"]
        print(f"| {name} | {rate:.1f} | {rate / ref:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
