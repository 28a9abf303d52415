"""Time `tagd scan --index-only` on a synthetic library of 100,000 files, then a rescan.

Usage: python bench/rescan.py [--folders N] [--per-folder N] [--runs N] [--profile]

Builds FOLDERS x PER_FOLDER tiny, distinct .jpg files in a temp dir (plus
non-media files, hidden files and `@eaDir` thumbnail folders that must be
skipped), indexes them once with the CLI (fresh state dir, default settings)
and times an unchanged rescan (median of --runs). The same two steps are timed
in-process through tagd.scan.index.index_roots, so process start-up is visible,
next to a plain reference measured here: a recursive os.scandir + stat of every
file, the least any rescan has to do. --profile prints a cProfile of the
in-process first index. The temp tree is removed at the end.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.paths import models_dir
from tagd.scan.index import IndexReport, index_roots, make_walker

EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
TARGET_S = 10.0
JUNK_EVERY = 10  # every 10th folder gets non-media files and an @eaDir tree
T = TypeVar("T")
INDEXED = re.compile(r"indexed (\d+) files: (\d+) new, (\d+) changed")


@dataclass
class Row:
    what: str
    seconds: float
    detail: str = ""


# ---------------------------------------------------------------- the library


def tiny_jpeg(n: int) -> bytes:
    """A few bytes that look like a JPEG, distinct per file (distinct fingerprints)."""
    return b"\xff\xd8\xff\xe0" + n.to_bytes(4, "little") + b"\xff\xd9"


def build_library(root: Path, folders: int, per_folder: int) -> int:
    """Create the tree; returns the number of media files a scan must find."""
    n = 0
    for f in range(folders):
        folder = root / f"{f // 100:02d}" / f"album{f:04d}"
        folder.mkdir(parents=True)
        for _ in range(per_folder):
            (folder / f"IMG_{n:06d}.jpg").write_bytes(tiny_jpeg(n))
            n += 1
        if f % JUNK_EVERY == 0:
            add_junk(folder)
    return n


def add_junk(folder: Path) -> None:
    """Files a scan must skip: non-media, hidden, and a Synology @eaDir thumbnail tree."""
    (folder / "notes.txt").write_text("not media\n")
    (folder / "Thumbs.db").write_bytes(b"\0" * 16)
    (folder / ".hidden.jpg").write_bytes(tiny_jpeg(0))
    thumbs = folder / "@eaDir" / "IMG_000000.jpg"
    thumbs.mkdir(parents=True)
    for size in ("SYNOPHOTO_THUMB_M.jpg", "SYNOPHOTO_THUMB_XL.jpg"):
        (thumbs / size).write_bytes(tiny_jpeg(1))


# ---------------------------------------------------------------- measurements


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def median_of(runs: int, fn: Callable[[], T]) -> tuple[float, T]:
    results = [timed(fn) for _ in range(runs)]
    return statistics.median(r[0] for r in results), results[-1][1]


def cli(args: list[str], state: Path, config: Path) -> str:
    models = str(models_dir(Settings()))
    env = os.environ | {"TAGD_STATE_DIR": str(state), "TAGD_MODELS_DIR": models}
    cmd = [sys.executable, "-m", "tagd", "--config", str(config), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"`tagd {' '.join(args)}` failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def cli_scan(library: Path, state: Path, config: Path) -> tuple[int, int, int]:
    """(seen, new, changed) from the scan's summary line."""
    out = cli(["scan", "--index-only", str(library)], state, config)
    found = INDEXED.search(out)
    if not found:
        sys.exit(f"unexpected scan output:\n{out}")
    seen, new, changed = (int(g) for g in found.groups())
    return seen, new, changed


def api_index(catalog: Catalog, library: Path) -> IndexReport:
    """What `tagd scan --index-only` does in-process (default settings, xmp sink on)."""
    settings = Settings()
    sinks = ["xmp"] if settings.xmp.enabled else []
    return index_roots(catalog, make_walker(settings), [str(library)], sinks)


def plain_walk(root: str) -> int:
    """Reference: recursive scandir + stat of every file, nothing else."""
    count, stack = 0, [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir():
                    stack.append(entry.path)
                else:
                    entry.stat()
                    count += 1
    return count


def check(report: tuple[int, int, int], expected: int, new: int, label: str) -> None:
    seen, got_new, changed = report
    if seen != expected or got_new != new or changed:
        sys.exit(
            f"{label}: indexed {seen} files ({got_new} new, {changed} changed); "
            f"expected {expected} ({new} new, 0 changed): @eaDir/hidden/non-media not skipped?"
        )


# ---------------------------------------------------------------- the bench


def bench_cli(library: Path, work: Path, config: Path, expected: int, runs: int) -> list[Row]:
    state = work / "state-cli"
    first, report = timed(lambda: cli_scan(library, state, config))
    check(report, expected, expected, "CLI first index")
    again, report = median_of(runs, lambda: cli_scan(library, state, config))
    check(report, expected, 0, "CLI rescan")
    startup, _ = median_of(runs, lambda: cli(["--version"], state, config))
    return [
        Row("CLI first index", first, f"{expected / first:,.0f} files/s"),
        Row("CLI unchanged rescan", again, f"median of {runs}"),
        Row("CLI start-up (tagd --version)", startup, f"median of {runs}"),
    ]


def bench_api(library: Path, work: Path, expected: int, runs: int, profile: bool) -> list[Row]:
    catalog = Catalog(work / "state-api" / "catalog.db")
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    first, report = timed(lambda: api_index(catalog, library))
    if profiler:
        profiler.disable()
    check(_counts(report), expected, expected, "in-process first index")
    again, report = median_of(runs, lambda: api_index(catalog, library))
    check(_counts(report), expected, 0, "in-process rescan")
    walk, _ = median_of(runs, lambda: sum(1 for _ in make_walker(Settings()).walk(str(library))))
    load, _ = median_of(runs, lambda: catalog.files_under(str(library)))
    catalog.close()
    if profiler:
        print_profile(profiler)
    return [
        Row("in-process first index", first, f"{expected / first:,.0f} files/s"),
        Row("in-process unchanged rescan", again, f"median of {runs}"),
        Row("  of which: Walker.walk", walk, "walk + stat + excludes"),
        Row("  of which: catalog.files_under", load, "load the known files"),
    ]


def _counts(report: IndexReport) -> tuple[int, int, int]:
    return report.seen, report.new, report.changed


def print_profile(profiler: cProfile.Profile) -> None:
    print("\ncProfile of the in-process first index (top 15 by own time):")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(15)


def print_table(files: int, rows: list[Row], reference: float, build: float) -> bool:
    print(f"\n{files:,} media files (+ skipped junk); tree built in {build:.1f} s")
    print(f"reference: plain scandir + stat of the tree, median {reference:.2f} s\n")
    head = f"{'step':<32} {'seconds':>8} {'x ref':>7}  note"
    print(head)
    print("-" * (len(head) + 20))
    for row in rows:
        print(f"{row.what:<32} {row.seconds:8.2f} {row.seconds / reference:7.1f}  {row.detail}")
    rescan = next(r.seconds for r in rows if r.what == "CLI unchanged rescan")
    ok = rescan <= TARGET_S
    print(
        f"\nunchanged rescan (CLI) {rescan:.2f} s, target <= {TARGET_S:.0f} s: "
        f"{'PASS' if ok else 'FAIL'}"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folders", type=int, default=1000)
    parser.add_argument("--per-folder", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3, help="timed rescans (default 3)")
    parser.add_argument("--profile", action="store_true", help="cProfile the first index")
    args = parser.parse_args(argv)
    if not EVAL.is_dir():
        print(f"no evaluation data at {EVAL} (../shared/eval); not running the bench")
        return 0
    work = Path(tempfile.mkdtemp(prefix="tagd-rescan-"))
    try:
        library = work / "library"
        config = work / "config.toml"
        config.write_text("# built-in defaults\n", encoding="utf-8")
        build, files = timed(lambda: build_library(library, args.folders, args.per_folder))
        print(f"library at {library}: {files:,} media files", flush=True)
        reference, _ = median_of(args.runs, lambda: plain_walk(str(library)))
        rows = bench_cli(library, work, config, files, args.runs)
        rows += bench_api(library, work, files, args.runs, args.profile)
        ok = print_table(files, rows, reference, build)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
