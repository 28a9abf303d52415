"""Analyse one file on demand (POST /analyze) with the pipeline `tagd scan` runs,
leaving no trace in the catalog.

The file goes through the real scan code (index, decode, analyzers, tag policy)
against a scratch catalog made for the request (a fresh SQLite file costs about
5 ms) and removed afterwards, and the answer is what `tagd export` gives for it:
the same code, so the same results. The analyzers are built once per server and
shared, so their models load on the first request and stay loaded; requests run
one at a time (the models use every core anyway).
"""

from __future__ import annotations

import dataclasses
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

    def available(self) -> list[str]:
        """The analyzers this server runs (the enabled ones of its config)."""
        return [a.name for a in self._built()]

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
        """Every model file of the analyzers present and verified (ModelError if not)."""
        for analyzer in analyzers:
            for model in analyzer.models:
                model.check()

    def analyze(self, source: Path, analyzers: Sequence[Analyzer]) -> dict[str, Any]:
        """`tagd export`'s object for `source` analysed by `analyzers`."""
        with self._lock, tempfile.TemporaryDirectory(dir=self.scratch_parent) as scratch:
            catalog = Catalog(Path(scratch) / "catalog.db")
            try:
                return self._analyze(catalog, source, analyzers)
            finally:
                catalog.close()

    def _analyze(
        self, catalog: Catalog, source: Path, analyzers: Sequence[Analyzer]
    ) -> dict[str, Any]:
        path = str(source)
        index = index_roots(catalog, make_walker(self.settings), [path])
        if index.seen != 1:
            raise AnalyzeError(f"{path}: not an image or video tagd reads")
        pipeline = Pipeline(catalog, self.settings, analyzers, prefixes=[path])
        start = time.perf_counter()
        pipeline.run()
        seconds = time.perf_counter() - start
        shas = {a.name: a.model_sha256 for a in analyzers}
        (record,) = catalog.records(shas, [path])
        result = file_results(catalog, record)
        result["seconds"] = round(seconds, 4)
        result["analyzers"] = [a.name for a in analyzers]
        return result


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
