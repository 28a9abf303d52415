"""Memory of `tagd run`: idle RSS after the models are released, peak RSS while scanning.

Starts the real daemon (`python -m tagd run`, its HTTP API on) on a temporary
library, with the default profile and model, and samples the RSS of it and its
children (the analysis process) every 20 ms:

1. idle after start, before any model is loaded (the analysis process that
   checked the model files is still there, until runtime.idle_unload);
2. peak while it scans the library (SIGUSR1): 12 MP grainy JPEGs like a
   phone's (see bench/pipeline.py), 12 MP PNGs (no reduced decode possible,
   the worst case for decode memory), the 640-px COCO photos and the sample
   videos;
3. just after the scan, the model still loaded;
4. idle after runtime.idle_unload: the analysis process has ended, models,
   onnxruntime, OpenCV and decode buffers with it; the daemon alone is left.

Targets: idle <= 150 MB after unload, peak <= 1.2 GB.
Usage: python bench/memory.py [--photos 32] [--pngs 2] [--idle-unload 5]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil

from tagd.config import Settings
from tagd.paths import models_dir

SHARED = Path(__file__).resolve().parents[2] / "shared" / "eval"
COCO = SHARED / "objects-coco128-train" / "images"
VIDEOS = SHARED / "video"
IDLE_TARGET_MB = 150.0
PEAK_TARGET_MB = 1200.0
GRAIN = 6.0


def make_big(dest: Path, count: int, ext: str) -> list[Path]:
    """12 MP photos made from the dev photos (cached between runs)."""
    dest.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    out = []
    for src in sorted(COCO.glob("*.jpg"))[:count]:
        path = dest / f"{src.stem}.{ext}"
        if not path.exists():
            big = cv2.resize(cv2.imread(str(src)), (4000, 3000), interpolation=cv2.INTER_CUBIC)
            big = np.clip(big + rng.normal(0.0, GRAIN, big.shape), 0, 255).astype(np.uint8)
            params = [cv2.IMWRITE_JPEG_QUALITY, 90] if ext == "jpg" else []
            cv2.imwrite(str(path), big, params)
        out.append(path)
    return out


class Sampler(threading.Thread):
    """RSS of a process and its children (the analysis process, the sidecar
    writer) every `every` seconds; `peak` since the last reset."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.every = every
        self.peak = 0
        self.last = 0
        self.done = False

    def run(self) -> None:
        while not self.done:
            try:
                self.last = self.rss()
            except psutil.Error:
                return
            self.peak = max(self.peak, self.last)
            time.sleep(self.every)

    def rss(self) -> int:
        total = self.process.memory_info().rss
        for child in self.process.children(recursive=True):
            with contextlib.suppress(psutil.Error):  # ended meanwhile
                total += child.memory_info().rss
        return total

    def processes(self) -> int:
        return 1 + len(self.process.children(recursive=True))

    def settle(self, seconds: float = 1.0) -> float:
        """Median RSS in MB over `seconds`."""
        values = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            values.append(self.rss())
            time.sleep(0.05)
        return statistics.median(values) / 2**20


class Notifications:
    """A NOTIFY_SOCKET like systemd's: collects what the daemon sends."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.path = path
        self.messages: list[str] = []

    def wait_for(self, predicate, timeout: float) -> str:
        self.sock.settimeout(0.2)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.append(message)
            if predicate(message):
                return message
        raise SystemExit(f"timed out; last notifications: {self.messages[-5:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=32, help="12 MP JPEGs")
    parser.add_argument("--pngs", type=int, default=2, help="12 MP PNGs")
    parser.add_argument("--idle-unload", type=float, default=5.0)
    parser.add_argument(
        "--cache", default=os.path.join(tempfile.gettempdir(), "tagd-bench-12mp-grain")
    )
    args = parser.parse_args()
    if not COCO.is_dir():
        print(f"skipped: {COCO} not found (the shared eval set is needed)")
        return 0
    cache = Path(args.cache)
    work = Path(tempfile.mkdtemp(prefix="tagd-bench-memory-"))
    try:
        lib = work / "library"
        lib.mkdir()
        files = make_big(cache, args.photos, "jpg") + make_big(cache, args.pngs, "png")
        for p in files:
            os.symlink(p, lib / p.name)
        for p in sorted(COCO.glob("*.jpg"))[:64]:
            os.symlink(p, lib / f"coco-{p.name}")
        videos = [v for v in sorted(VIDEOS.glob("*")) if v.stat().st_size > 0]
        for v in videos:
            os.symlink(v, lib / v.name)
        count = len(list(lib.iterdir()))
        rows, exit_s = measure(work, lib, args.idle_unload)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, count, args, exit_s)
    idle, peak = rows[-1][1], max(r[1] for r in rows)
    return 0 if idle <= IDLE_TARGET_MB and peak <= PEAK_TARGET_MB else 1


def measure(work: Path, lib: Path, idle_unload: float) -> tuple[list[tuple[str, float]], float]:
    config = work / "config.toml"
    config.write_text(
        f'[library]\nroots = ["{lib}"]\n'
        f"[runtime]\nidle_unload = {idle_unload}\n"
        "[xmp]\nenabled = false\n"
        '[daemon]\nschedule = ""\nwatch = false\nscan_on_start = false\n'
        # The HTTP API on, as `tagd run` has it by default, on a free port.
        '[api]\nenabled = true\nlisten = "127.0.0.1:0"\n'
    )
    notes = Notifications(work / "notify.sock")
    env = dict(
        os.environ,
        TAGD_STATE_DIR=str(work / "state"),
        TAGD_MODELS_DIR=str(models_dir(Settings())),
        NOTIFY_SOCKET=str(notes.path),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "tagd", "--config", str(config), "run"],
        env=env,
        stderr=open(work / "stderr.log", "w"),  # noqa: SIM115 - closed with the process
    )
    sampler = Sampler(proc.pid)
    sampler.start()
    rows = []
    try:
        notes.wait_for(lambda m: "READY=1" in m, 60)
        rows.append(("idle after start (no model loaded yet)", sampler.settle()))
        sampler.peak = 0
        proc.send_signal(signal.SIGUSR1)
        notes.wait_for(lambda m: "STATUS=analysing" in m, 60)
        notes.wait_for(lambda m: "STATUS=idle" in m, 600)
        rows.append(("peak while scanning", sampler.peak / 2**20))
        rows.append(("just after the scan (model loaded)", sampler.settle(0.5)))
        log = work / "stderr.log"
        deadline = time.monotonic() + idle_unload + 10
        while sampler.processes() > 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        if sampler.processes() > 1:
            raise SystemExit(f"the analysis process did not end:\n{log.read_text()}")
        time.sleep(2)  # what the daemon frees after the child is gone
        rows.append(
            (f"idle after unload (runtime.idle_unload = {idle_unload:g} s)", sampler.settle())
        )
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        exit_s = time.monotonic() - start
        if code != 0:
            raise SystemExit(f"tagd run exited {code}:\n{log.read_text()}")
    finally:
        sampler.done = True
        if proc.poll() is None:
            proc.kill()
    return rows, exit_s


def print_table(
    rows: list[tuple[str, float]], count: int, args: argparse.Namespace, exit_s: float
) -> None:
    targets = {0: "", 1: f"<= {PEAK_TARGET_MB:.0f}", 2: "", 3: f"<= {IDLE_TARGET_MB:.0f}"}
    print(
        f"tagd run, profile balanced (default analyzers and models), "
        f"{len(os.sched_getaffinity(0))} cores; library: "
        f"{count} files ({args.photos} JPEG + {args.pngs} PNG at 12 MP, 64 COCO photos, videos)"
    )
    print(f"| {'state':<48} | {'RSS MB':>7} | {'target':>7} | ok |")
    print(f"| {'-' * 48} | {'-' * 7} | {'-' * 7} | -- |")
    for i, (name, mb) in enumerate(rows):
        target = targets.get(i, "")
        limit = float(target[3:]) if target else None
        ok = "" if limit is None else ("yes" if mb <= limit else "NO")
        print(f"| {name:<48} | {mb:>7.0f} | {target:>7} | {ok:<2} |")
    print(f"SIGTERM to exit: {exit_s:.2f} s")


if __name__ == "__main__":
    sys.exit(main())
