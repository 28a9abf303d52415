"""Photos per second on KServe v2 inference servers next to local inference, in one run.

    .venv/bin/python bench/remote.py [--photos 48] [--runs 3]

The servers are real KServe v2 servers on this machine: MLServer (from PyPI,
in build/mlserver; `make mlserver`) serving `tagd models repository`'s ONNX
files through tests/kserve/onnx_runtime.py. They share this machine's cores
with the client, so two are throttled (extra seconds per input row, no CPU
used) to stand for slower machines on the network: then the servers, not the
client, set the pace, which is the case scheduling is for.

| variant | what is timed |
| --- | --- |
| local | objects only, onnxruntime here |
| server A alone / server B alone | objects only, one throttled endpoint |
| A + B | both endpoints: target >= 0.9 of A's and B's own photos/s summed |
| defaults, local / defaults, one server | every default analyzer, unthrottled server |

Also printed: how the A + B run shared the photos out, and the bytes sent per
photo for each model (the input tensors, float32).

Each variant on a fresh catalog (indexing not timed, sessions open), median of
--runs, interleaved.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from pipeline import COCO, loaded, run_tagd  # bench/pipeline.py: the same timed scan

from tagd.config import Settings, parse_settings
from tagd.runtime.endpoints import pool_for

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from kserve_server import KServeServer, onnx_models  # noqa: E402  (test support)

TARGET = 0.9
THROTTLE_A, THROTTLE_B = 0.06, 0.15  # extra seconds per photo (per input row)
OBJECTS_ONLY = {s: {"enabled": False} for s in ("ocr", "concepts", "faces", "duplicates")}


def config(runtime: dict[str, Any], **sections: Any) -> Settings:
    return parse_settings(
        {"xmp": {"enabled": False}, "quality": {"enabled": False}, "runtime": runtime, **sections},
        "bench",
    )


def remote(*servers: KServeServer) -> dict[str, Any]:
    endpoints = [{"url": s.url, "max_concurrent": 2} for s in servers]
    return {"backend": "remote", "batch_size": 1, "endpoints": endpoints}


def repository(folder: Path) -> dict[str, Path]:
    from tagd.cli.main import main

    if main(["models", "repository", str(folder)]) != 0:
        raise SystemExit("tagd models repository failed")
    return onnx_models(folder)


def sent_by_model(settings: Settings) -> Counter[str]:
    total: Counter[str] = Counter()
    if settings.runtime.backend == "remote":
        for endpoint in pool_for(settings.runtime).endpoints:
            total += endpoint.sent
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=48)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if not COCO.is_dir():
        print(f"skipped: {COCO} not found (the shared eval set is needed)")
        return 0
    photos = sorted(COCO.glob("*.jpg"))[: args.photos]
    work = Path(tempfile.mkdtemp(prefix="tagd-bench-remote-"))
    servers: list[KServeServer] = []
    try:
        (work / "lib").mkdir()
        for photo in photos:
            (work / "lib" / photo.name).symlink_to(photo)
        models = repository(work / "repo")
        a = KServeServer(work / "a", models, delay=THROTTLE_A).start()
        servers.append(a)
        b = KServeServer(work / "b", models, delay=THROTTLE_B).start()
        servers.append(b)
        plain = KServeServer(work / "plain", models).start()
        servers.append(plain)
        variants = {
            "local": config({"backend": "cpu"}, **OBJECTS_ONLY),
            "server A alone": config(remote(a), **OBJECTS_ONLY),
            "server B alone": config(remote(b), **OBJECTS_ONLY),
            "A + B": config(remote(a, b), **OBJECTS_ONLY),
            "defaults, local": config({"backend": "cpu"}),
            "defaults, one server": config(remote(plain)),
        }
        built = {name: loaded(s) for name, s in variants.items()}
        lib = work / "lib"
        for name, settings in variants.items():  # warm: shapes, connections, measures
            run_tagd(lib, settings, built[name])
        times: dict[str, list[float]] = {name: [] for name in variants}
        sent: dict[str, Counter[str]] = {name: Counter() for name in variants}
        split = {"A": Counter[str](), "B": Counter[str]()}
        for _ in range(args.runs):
            for name, settings in variants.items():
                before = sent_by_model(settings)
                served = (a.served(), b.served())
                times[name].append(run_tagd(lib, settings, built[name]))
                sent[name] += sent_by_model(settings) - before
                if name == "A + B":  # how the photos were shared out
                    split["A"] += a.served() - served[0]
                    split["B"] += b.served() - served[1]
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)

    rates = {name: len(photos) / statistics.median(t) for name, t in times.items()}
    print(f"\ntagd on KServe v2 servers: {len(photos)} 640 px COCO photos, median of {args.runs}")
    print(f"throttles: A +{THROTTLE_A * 1000:.0f} ms, B +{THROTTLE_B * 1000:.0f} ms per photo\n")
    print("| variant | photos/s | vs local | runs (s) |")
    print("| --- | --- | --- | --- |")
    for name, t in times.items():
        reference = rates["defaults, local" if name.startswith("defaults") else "local"]
        spread = " ".join(f"{x:.2f}" for x in t)
        print(f"| {name} | {rates[name]:.1f} | {rates[name] / reference:.2f}x | {spread} |")
    total = rates["server A alone"] + rates["server B alone"]
    share = rates["A + B"] / total
    detector = max(split["A"], key=lambda m: split["A"][m] + split["B"][m], default="")
    rows_a, rows_b = split["A"][detector], split["B"][detector]
    print(
        f"\nA + B: {rates['A + B']:.1f} photos/s = {share:.2f} of A's and B's own rates summed "
        f"({total:.1f}; target {TARGET}); {detector} rows served: A {rows_a}, B {rows_b} "
        f"({rows_a / max(1, rows_a + rows_b):.0%} to A; A's own share of the summed rates: "
        f"{rates['server A alone'] / total:.0%})"
    )
    per_photo = {m: n / len(photos) / args.runs for m, n in sent["defaults, one server"].items()}
    print("\nbytes sent per photo, every default analyzer (input tensors):")
    print(json.dumps({m: round(v) for m, v in sorted(per_photo.items())}, indent=1))
    print(f"total: {sum(per_photo.values()) / 1e6:.2f} MB per photo")
    return 0 if share >= TARGET else 1


if __name__ == "__main__":
    started = time.perf_counter()
    code = main()
    print(f"({time.perf_counter() - started:.0f} s)")
    sys.exit(code)
