"""Benchmark tagd.media.video.sample_frames against decoding every frame.

Usage: python bench/video_sampling.py [VIDEO_DIR] [--interval S] [--runs N]

For each clip (empty.mp4 skipped) prints the duration, the frames sampled, the
median wall time of ``sample_frames``, its real-time factor (duration / wall), the
same for a naive reference measured in the same run (decode every frame with the
same threading, keep the first frame at or after each multiple of the interval) and
the speed-up of the sampler over the reference.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import av

from tagd.media.video import VideoError, probe_video, sample_frames

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "shared" / "eval" / "video"
SKIP = {"empty.mp4"}


def naive_sample(path: Path, interval_s: float, threads: int = 2) -> int:
    """Decode every frame and keep one per interval: the baseline to beat."""
    kept = 0
    target = 0.0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        stream.codec_context.thread_count = threads
        start = stream.start_time or 0
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.FFmpegError:
                continue
            for frame in frames:
                if frame.pts is None:
                    continue
                t = float((frame.pts - start) * stream.time_base)
                if t >= target - 1e-3:
                    frame.to_ndarray(format="bgr24")  # same conversion cost as ours
                    kept += 1
                    target = (math.floor((t + 1e-3) / interval_s) + 1) * interval_s
    return kept


def median_time(fn: Callable[[], int], runs: int) -> tuple[float, int]:
    times = []
    result = 0
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_clip(path: Path, interval_s: float, runs: int) -> str:
    try:
        info = probe_video(path)
    except VideoError as exc:
        return f"{path.name:<30} error: {exc}"
    ours, n_ours = median_time(lambda: sum(1 for _ in sample_frames(path, interval_s)), runs)
    ref, n_ref = median_time(lambda: naive_sample(path, interval_s), runs)
    # Without a duration header the factor uses the last sampled time as a lower bound.
    duration = info.duration
    dur_txt = f"{duration:7.2f}" if duration else "    n/a"
    if duration is None:
        frames = list(sample_frames(path, interval_s))
        duration = frames[-1].t if frames else 0.0
    return (
        f"{path.name:<30} {dur_txt} {n_ours:>6} {ours * 1000:>9.1f} {duration / ours:>7.1f}x "
        f"{n_ref:>6} {ref * 1000:>9.1f} {duration / ref:>7.1f}x {ref / ours:>6.2f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("video_dir", nargs="?", type=Path, default=DEFAULT_DIR)
    parser.add_argument("--interval", type=float, default=2.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if not args.video_dir.is_dir():
        print(f"no test videos at {args.video_dir}; nothing to benchmark")
        return 0
    clips = sorted(p for p in args.video_dir.iterdir() if p.is_file() and p.name not in SKIP)
    print(f"interval {args.interval:g}s, median of {args.runs} runs, times in ms")
    print(
        f"{'clip':<30} {'dur s':>7} {'frames':>6} {'ours ms':>9} {'ours RT':>8} "
        f"{'ref n':>6} {'ref ms':>9} {'ref RT':>8} {'speedup':>6}"
    )
    for path in clips:
        print(bench_clip(path, args.interval, args.runs), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
