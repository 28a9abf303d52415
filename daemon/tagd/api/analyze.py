"""Analyse one file on demand (POST /analyze) with the pipeline `tagd scan` runs,
leaving no trace in the catalog.

The file goes through the real scan code (index, decode, analyzers, tag policy)
against a scratch catalog made for the request (a fresh SQLite file costs about
5 ms) and removed afterwards, and the answer is what `tagd export` gives for it:
the same code, so the same results. The analyzers are built once per server and
shared, so their models load on the first request and stay loaded. One worker
thread analyses; requests that wait together go through as one batch.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tagd.analyzers.base import Analyzer
from tagd.catalog.catalog import Catalog
from tagd.cli.export_cmd import file_results
from tagd.config import Settings
from tagd.media.sniff import describe, sniff
from tagd.pipeline import Pipeline, build_analyzers
from tagd.scan.index import index_roots, make_walker

# The extension the walker wants for each sniffed format (uploads carry no name
# tagd trusts: what they hold decides).
EXTENSIONS = {
    "jpeg": "jpg",
    "png": "png",
    "gif": "gif",
    "tiff": "tif",
    "bmp": "bmp",
    "webp": "webp",
    "heif": "heic",
    "matroska": "mkv",
    "mp4": "mp4",
    "avi": "avi",
}


# Requests analysed together at most (a scan's batch of files).
MAX_BATCH = 16
# The names the API takes besides the analyzers' own.
ALIASES = {"text": "ocr", "duplicates": "phash", "hash": "phash"}


class AnalyzeError(ValueError):
    """The request cannot be analysed as asked; the message says why."""


class OnDemand:
    """The server's analyzers, and one-file analyses with them."""

    def __init__(self, settings: Settings, models_dir: Path, scratch_parent: Path) -> None:
        # No wait for a copy to settle: an upload is complete when it is saved, and
        # a client naming a library file asks for it as it is now.
        library = dataclasses.replace(settings.library, settle_seconds=0.0)
        self.settings = dataclasses.replace(settings, library=library)
        self.models_dir = models_dir
        self.scratch_parent = scratch_parent
        self._analyzers: list[Analyzer] | None = None
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._waiting: list[_Job] = []
        self._worker: threading.Thread | None = None
        self._verified: set[str] = set()  # analyzers whose model files were checked

    @property
    def built(self) -> list[Analyzer] | None:
        """The analyzers, once a request built them (None before)."""
        return self._analyzers

    def _built(self) -> list[Analyzer]:
        if self._analyzers is None:
            self._analyzers = build_analyzers(self.settings, self.models_dir)
        return self._analyzers

    def chosen(self, names: Sequence[str]) -> list[Analyzer]:
        """The analyzers asked for (none asked: all); unknown names are an error."""
        built = {a.name: a for a in self._built()}
        names = [ALIASES.get(n, n) for n in names]
        unknown = [n for n in names if n not in built]
        if unknown:
            raise AnalyzeError(
                f"analyzers: {', '.join(unknown)} not available here; this server runs "
                f"{', '.join(built) or 'none'} (enable others in its config)"
            )
        return [built[n] for n in names] if names else list(built.values())

    def check(self, analyzers: Sequence[Analyzer]) -> None:
        """Every model file of the analyzers present and verified (ModelError if
        not), once per server: hashing them costs tens of ms, and a session loads
        only verified files anyway."""
        for analyzer in analyzers:
            if analyzer.name in self._verified:
                continue
            for model in analyzer.models:
                model.check()
            self._verified.add(analyzer.name)

    def analyze(self, source: Path, analyzers: Sequence[Analyzer]) -> dict[str, Any]:
        """`tagd export`'s object for `source` analysed by `analyzers`.

        Requests that arrive together with the same analyzers are analysed as one
        batch (one scratch catalog, one pipeline run, batched inference), as a
        scan does a folder: concurrent clients get the throughput of a scan."""
        job = _Job(source, tuple(analyzers))
        with self._lock:
            self._waiting.append(job)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._serve, name="analyze", daemon=True)
                self._worker.start()
            self._arrived.notify()
        job.done.wait()
        if job.error is not None:
            raise job.error
        assert job.result is not None
        return job.result

    def _serve(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    self._arrived.wait()
                first = self._waiting[0]
                batch = [j for j in self._waiting if j.analyzers == first.analyzers][:MAX_BATCH]
                self._waiting = [j for j in self._waiting if j not in batch]
            try:
                self._run(batch)
            except Exception as exc:
                for job in batch:
                    if not job.done.is_set():
                        job.error = exc
                        job.done.set()

    def _run(self, batch: list[_Job]) -> None:
        analyzers = batch[0].analyzers
        with tempfile.TemporaryDirectory(dir=self.scratch_parent) as scratch:
            catalog = Catalog(Path(scratch) / "catalog.db")
            try:
                paths = [os.path.abspath(job.source) for job in batch]
                index_roots(catalog, make_walker(self.settings), paths)
                start = time.perf_counter()
                Pipeline(catalog, self.settings, analyzers, prefixes=paths).run()
                seconds = time.perf_counter() - start
                shas = {a.name: a.model_sha256 for a in analyzers}
                found = {r.path: r for r in catalog.records(shas, paths)}
                for job, path in zip(batch, paths, strict=True):
                    record = found.get(path)
                    if record is None:
                        job.error = AnalyzeError(f"{job.source}: not an image or video tagd reads")
                    else:
                        job.result = file_results(catalog, record) | {
                            "seconds": round(seconds, 4),
                            "batch": len(batch),
                            "analyzers": [a.name for a in analyzers],
                        }
            finally:
                catalog.close()
        # Answered once the scratch catalog is gone: an answer means no trace is left.
        for job in batch:
            job.done.set()


@dataclasses.dataclass(eq=False)
class _Job:
    """One request waiting for the analysis worker."""

    source: Path
    analyzers: tuple[Analyzer, ...]
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    error: Exception | None = None


def save_upload(head: bytes, rest: Any, folder: Path, limit: int) -> Path:
    """An upload written to `folder` under the extension its content calls for;
    AnalyzeError for content that is no image or video, OverflowError past `limit`
    bytes. `rest` is a file object with the bytes after `head`."""
    fmt = sniff(head)
    if fmt not in EXTENSIONS:
        raise AnalyzeError(f"the upload is not an image or video tagd reads ({describe(head)})")
    target = folder / f"upload.{EXTENSIONS[fmt]}"
    size = len(head)
    with open(target, "wb") as out:
        out.write(head)
        while chunk := rest.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise OverflowError(size)
            out.write(chunk)
    return target


def scratch_folder(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="upload-", dir=parent))


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
