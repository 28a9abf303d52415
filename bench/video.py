"""Real-time factor of tagd on one video: the analyse step, as `tagd scan` runs it.

Usage: python bench/video.py [CLIP] [--runs N] [--sections objects,ocr,...]

For the clip alone (default: the 1080p ``smpte-2997.mp4`` of ../shared/eval/video)
it prints, per set of analyzers, the median wall time of the analyse step
(``Pipeline.run``: probe, sampling, every analyzer on every frame, the catalog
transaction, tag and time-range derivation) and the real-time factor, duration /
that time. Nothing is subtracted:

- ``cold``: a fresh Python process, so model loading (lazy, on first use) counts,
  as it does for a `tagd scan` of a folder holding just this file;
- ``warm``: the same analyzers again on a fresh catalog in that process (models
  loaded), which is what each video of a larger library costs.

Rows: ``sampling`` (probe + ``sample_frames`` at the pipeline's decode size, no
model), each enabled analyzer alone, then all of them (the default config). The
library is a temporary copy; XMP is off, so nothing is written next to the clip.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # tagd is imported lazily: the parent process runs no model
    from tagd.analyzers.base import Analyzer
    from tagd.config import Settings

DEFAULT_CLIP = Path(__file__).resolve().parents[2] / "shared" / "eval" / "video" / "smpte-2997.mp4"


def _settings(sections: list[str] | None) -> Settings:
    from tagd.config import Settings

    settings = Settings()
    settings = dataclasses.replace(settings, xmp=dataclasses.replace(settings.xmp, enabled=False))
    if sections is None:
        return settings
    changes = {}
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        if f.name != "xmp" and dataclasses.is_dataclass(value) and hasattr(value, "enabled"):
            changes[f.name] = dataclasses.replace(value, enabled=f.name in sections)
    return dataclasses.replace(settings, **changes)


def _analyse_once(
    clip: Path, work: Path, settings: Settings, analyzers: list[Analyzer]
) -> tuple[float, int]:
    from tagd.catalog.catalog import Catalog
    from tagd.pipeline import Pipeline
    from tagd.scan.index import index_roots
    from tagd.scan.walk import Walker

    lib = work / "lib"
    lib.mkdir(parents=True)
    # copy2 keeps the clip's time: a file just written would wait library.settle_seconds
    # (it may still be being copied), which is not analysis time.
    shutil.copy2(clip, lib / clip.name)
    lib_settings = settings.library
    walker = Walker(lib_settings.image_extensions, lib_settings.video_extensions, [])
    with Catalog(work / "catalog.db") as catalog:
        index_roots(catalog, walker, [str(lib)])
        pipeline = Pipeline(catalog, settings, analyzers, prefixes=[str(lib)])
        start = time.perf_counter()
        report = pipeline.run()
        seconds = time.perf_counter() - start
    if report.failed:
        raise SystemExit(f"analysis failed: {report.errors}")
    # An analyzer may not take videos at all (0 frames): its row says so.
    return seconds, report.frames


def child(clip: Path, sections: list[str] | None) -> None:
    """One fresh process: cold run, then warm run; prints JSON."""
    from tagd.paths import models_dir
    from tagd.pipeline import build_analyzers

    settings = _settings(sections)
    analyzers = build_analyzers(settings, models_dir(settings))
    with tempfile.TemporaryDirectory() as tmp:
        cold, frames = _analyse_once(clip, Path(tmp) / "cold", settings, analyzers)
        warm, _ = _analyse_once(clip, Path(tmp) / "warm", settings, analyzers)
    names = [a.name for a in analyzers]
    print(json.dumps({"cold": cold, "warm": warm, "frames": frames, "analyzers": names}))


def sampling_only(clip: Path, runs: int) -> tuple[float, int]:
    from tagd.config import Settings
    from tagd.media.video import probe_video, sample_frames
    from tagd.paths import models_dir
    from tagd.pipeline import build_analyzers, video_interval

    settings = Settings()
    side = max(
        (a.min_long_side for a in build_analyzers(settings, models_dir(settings))), default=0
    )
    times, frames = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        info = probe_video(clip)
        dec = settings.decode
        interval = video_interval(info.duration, dec.video_interval, dec.video_max_frames)
        frames = sum(1 for _ in sample_frames(clip, interval, min_long_side=side))
        times.append(time.perf_counter() - start)
    return statistics.median(times), frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sections", help="comma-separated analyzer sections (child mode)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.clip.is_file():
        print(f"no clip at {args.clip}; nothing to benchmark")
        return 0
    sections = args.sections.split(",") if args.sections else None
    if args.child:
        child(args.clip, sections)
        return 0

    from tagd.media.video import probe_video

    duration = probe_video(args.clip).duration
    if not duration:
        print(f"{args.clip.name}: no duration header; the real-time factor needs one")
        return 0
    print(f"{args.clip.name}: {duration:.2f} s; median of {args.runs} runs; RT = duration / time")
    print(
        f"{'analyzers':<40} {'frames':>6} {'cold s':>8} {'cold RT':>8} {'warm s':>8} {'warm RT':>8}"
    )
    seconds, frames = sampling_only(args.clip, args.runs)
    print(
        f"{'sampling (no model)':<40} {frames:>6} {'':>8} {'':>8} "
        f"{seconds:>8.3f} {duration / seconds:>7.1f}x"
    )
    rows: list[list[str] | None] = [[name] for name in _default_sections()]
    rows.append(None)  # every default analyzer together
    for row in rows:
        results = [json.loads(_run_child(args.clip, row)) for _ in range(args.runs)]
        if not results[0]["frames"]:
            print(f"{'+'.join(row or ['default']):<40} no analyzer of this section takes videos")
            continue
        cold = statistics.median(r["cold"] for r in results)
        warm = statistics.median(r["warm"] for r in results)
        label = "+".join(results[0]["analyzers"]) + (" (default)" if row is None else "")
        print(
            f"{label:<40} {results[0]['frames']:>6} {cold:>8.3f} {duration / cold:>7.1f}x "
            f"{warm:>8.3f} {duration / warm:>7.1f}x",
            flush=True,
        )
    return 0


def _default_sections() -> list[str]:
    """Config sections of the analyzers the default config runs."""
    from tagd.config import Settings

    defaults = Settings()
    return [
        f.name
        for f in dataclasses.fields(defaults)
        if f.name != "xmp" and getattr(getattr(defaults, f.name), "enabled", False) is True
    ]


def _run_child(clip: Path, sections: list[str] | None) -> str:
    cmd = [sys.executable, __file__, str(clip), "--child"]
    if sections:
        cmd += ["--sections", ",".join(sections)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


if __name__ == "__main__":
    sys.exit(main())
