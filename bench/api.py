"""POST /api/v1/analyze: latency and throughput over HTTP, next to the in-process
pipeline on the same files.

A real `tagd serve` (its own process, uvicorn, its analysis process) on
127.0.0.1; the clients, in this process, upload each photo (multipart) at
concurrency 1 and 4. The reference is
`tagd scan`'s Pipeline over the same files in this process (a catalog, batches
of runtime.batch_size): what the daemon does with a folder. Two sets: the 640 px
COCO photos and 12 MP JPEGs made from them; two analyzer choices: objects only
(the latency target) and every default analyzer, the latter also sent as one
request per analyzer (how a client of Immich's ML server works). The server
hands each upload to its analysis process (tagd.engine), as `tagd run` does.
Median of --runs.

Targets: p50 <= 40 ms for a 640 px photo with objects only; throughput at
concurrency 4 >= 0.8x the in-process pipeline.

    .venv/bin/python bench/api.py [--photos 64] [--big 4] [--runs 3]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import shutil
import statistics
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from serving import tagd_serve

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.paths import models_dir
from tagd.pipeline import Pipeline, build_analyzers
from tagd.scan.index import index_roots, make_walker

COCO = Path(__file__).resolve().parents[2] / "shared" / "eval" / "objects-coco128-train" / "images"
BOUNDARY = "tagd-bench-boundary"


def form(data: bytes, analyzers: str) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="analyzers"\r\n\r\n'
        f"{analyzers}\r\n"
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


_local = threading.local()


def _connection(url: str) -> http.client.HTTPConnection:
    """This thread's connection to the server, kept open between requests as an
    HTTP client library keeps it (requests.Session, httpx, a browser)."""
    conn = getattr(_local, "conn", None)
    if conn is None:
        parts = urllib.parse.urlsplit(url)
        conn = _local.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=600)
    return conn


def post(url: str, body: bytes) -> float:
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    path = urllib.parse.urlsplit(url).path
    start = time.perf_counter()
    conn = _connection(url)
    conn.request("POST", path, body=body, headers=headers)
    answer = conn.getresponse()
    answer.read()
    assert answer.status == 200, answer.status
    return time.perf_counter() - start


def over_http(url: str, photos: list[bytes], analyzers: str, clients: int) -> tuple[list, float]:
    """(latencies, photos per second) for every photo sent once by `clients`."""
    bodies = [form(p, analyzers) for p in photos]
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        latencies = list(pool.map(lambda b: post(url, b), bodies))
    return latencies, len(photos) / (time.perf_counter() - start)


def per_model(url: str, photos: list[bytes], names: list[str], clients: int) -> float:
    """Photos per second when each photo is sent once per analyzer (what a client
    of Immich's ML server does: one request per model)."""

    def one(photo: bytes) -> None:
        for name in names:
            post(url, form(photo, name))

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, photos))
    return len(photos) / (time.perf_counter() - start)


def in_process(settings: Settings, folder: Path, names: list[str], work: Path) -> float:
    """Photos per second of tagd scan's pipeline over `folder` (a fresh catalog)."""
    analyzers = [a for a in build_analyzers(settings, models_dir(settings)) if a.name in names]
    catalog = Catalog(work / f"ref-{time.monotonic_ns()}.db")
    try:
        index_roots(catalog, make_walker(settings), [str(folder)])
        start = time.perf_counter()
        report = Pipeline(catalog, settings, analyzers).run()
        return report.done / (time.perf_counter() - start)
    finally:
        catalog.close()


def big_photos(dest: Path, count: int) -> list[Path]:
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for src in sorted(COCO.glob("*.jpg"))[:count]:
        big = cv2.resize(cv2.imread(str(src)), (4000, 3000), interpolation=cv2.INTER_CUBIC)
        big = np.clip(big + rng.normal(0.0, 6.0, big.shape), 0, 255).astype(np.uint8)
        path = dest / src.name
        cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 90])
        out.append(path)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=64)
    parser.add_argument("--big", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not COCO.is_dir():
        print(f"skipped: {COCO} not found")
        return 0
    work = Path(tempfile.mkdtemp(prefix="tagd-bench-api-"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        small = work / "small"
        small.mkdir()
        for src in sorted(COCO.glob("*.jpg"))[: args.photos]:
            shutil.copyfile(src, small / src.name)
        sets = {"640 px": small, "12 MP": big_photos(work / "big", args.big)[0].parent}
        settings = Settings()
        # `tagd serve` in a process of its own, as clients meet it (their requests
        # are built and read in this process, not in the server's).
        base, server = tagd_serve(work / "state", TAGD_MODELS_DIR=str(models_dir(settings)))
        url = base + "/api/v1/analyze"
        stack.callback(server.wait, 30)
        stack.callback(server.terminate)
        every = [a.name for a in build_analyzers(settings, models_dir(settings))]
        print(f"POST /analyze vs the in-process pipeline, {os.cpu_count()} cores")
        print("| photos | analyzers | clients | p50 ms | p95 ms | photos/s | in-process | ratio |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for label, folder in sets.items():
            photos = [p.read_bytes() for p in sorted(folder.glob("*.jpg"))]
            for names in (["objects"], every):
                chosen = ",".join(names)
                over_http(url, photos[:2], chosen, 1)  # models loaded, caches warm
                # Interleaved, so that a slower minute of a shared machine weighs on
                # both sides of each ratio alike.
                references, measured = [], {1: [], 4: []}
                for _ in range(args.runs):
                    references.append(in_process(settings, folder, names, work))
                    for clients, runs in measured.items():
                        runs.append(over_http(url, photos, chosen, clients))
                reference = statistics.median(references)
                for clients, runs in measured.items():
                    latencies = sorted(x for lat, _ in runs for x in lat)
                    rate = statistics.median(r for _, r in runs)
                    p50 = latencies[len(latencies) // 2] * 1000
                    p95 = latencies[int(len(latencies) * 0.95) - 1] * 1000
                    what = "objects" if names == ["objects"] else "defaults"
                    print(
                        f"| {label} | {what} | {clients} | {p50:.0f} | {p95:.0f} | {rate:.1f} "
                        f"| {reference:.1f} | {rate / reference:.2f}x |"
                    )
                if names is every and len(every) > 1:
                    rate = statistics.median(
                        per_model(url, photos, every, 4) for _ in range(args.runs)
                    )
                    print(
                        f"| {label} | defaults, a request per analyzer | 4 | | | {rate:.1f} "
                        f"| {reference:.1f} | {rate / reference:.2f}x |"
                    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
