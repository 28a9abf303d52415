"""Analyse files on demand (POST /analyze) with the pipeline `tagd scan` runs,
leaving no trace in the catalog.

The files go through the real scan code (index, decode, analyzers, tag policy)
against a scratch catalog in memory made for the batch (a copy of an empty
one, 0.05 ms) and dropped afterwards, and each answer is what `tagd export` gives for
its file: the same code, so the same results. The analyzers are the analysis
process's own, shared with the scan that may be running (Turns lets a request
in between two of its batches). Requests that wait together with the same
analyzers go through as one batch, as a scan does a folder, and two batches are
in flight, decoding or running the models side by side (tagd.engine.turns):
concurrent clients get close to the throughput of a scan.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tagd.analyzers.base import Analyzer
from tagd.catalog.catalog import Catalog
from tagd.cli.export_cmd import file_results
from tagd.config import Settings
from tagd.engine.turns import Turns
from tagd.pipeline import Pipeline
from tagd.runtime.backends import cpu_threads
from tagd.scan.index import index_roots, make_walker

MAX_BATCH = 16  # requests analysed together at most (a scan's batch of files)
# Batches in flight: one decodes while the other's inference runs.
WORKERS = 2
# The names the API takes besides the analyzers' own.
ALIASES = {"text": "ocr", "duplicates": "phash", "hash": "phash"}


class AnalyzeError(ValueError):
    """The request cannot be analysed as asked; the message says why."""


def chosen(built: Sequence[Analyzer], names: Sequence[str]) -> list[Analyzer]:
    """The analyzers asked for (none asked: all); unknown names are an error."""
    by_name = {a.name: a for a in built}
    names = [ALIASES.get(n, n) for n in names]
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise AnalyzeError(
            f"analyzers: {', '.join(unknown)} not available here; this server runs "
            f"{', '.join(by_name) or 'none'} (enable others in its config)"
        )
    return [by_name[n] for n in names] if names else list(by_name.values())


@dataclasses.dataclass(eq=False)
class _Job:
    """One file waiting for the analysis worker; `answer` gets its result or error."""

    source: Path
    analyzers: tuple[Analyzer, ...]
    settings: Settings
    answer: Callable[[dict[str, Any] | None, Exception | None], None]


class OnDemand:
    def __init__(self, turns: Turns) -> None:
        self.turns = turns
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._waiting: list[_Job] = []
        self._workers: list[threading.Thread] = []
        self._settled: tuple[Settings, Settings] | None = None  # (given, as analysed)

    def submit(
        self,
        source: Path,
        settings: Settings,
        analyzers: Sequence[Analyzer],
        answer: Callable[[dict[str, Any] | None, Exception | None], None],
    ) -> None:
        """Queue `source`; `answer(result, None)` or `answer(None, error)` is called
        from the worker thread once the scratch catalog is gone."""
        job = _Job(source, tuple(analyzers), self._unsettled(settings), answer)
        with self._lock:
            self._waiting.append(job)
            self._workers = [w for w in self._workers if w.is_alive()]
            if len(self._workers) < WORKERS:
                worker = threading.Thread(target=self._serve, name="analyze", daemon=True)
                self._workers.append(worker)
                worker.start()
            self._arrived.notify()

    def _unsettled(self, settings: Settings) -> Settings:
        """`settings` with no wait for a copy to settle: an upload is complete when
        it is saved, and a client naming a library file asks for it as it is now.
        Made once per settings (a validated copy costs more than a request's
        indexing)."""
        made = self._settled
        if made is None or made[0] is not settings:
            library = dataclasses.replace(settings.library, settle_seconds=0.0)
            made = self._settled = (settings, dataclasses.replace(settings, library=library))
        return made[1]

    def _serve(self) -> None:
        # This worker's own decode pool, kept: batches of a file or two would
        # otherwise start and join its threads each time.
        decoders: tuple[int, ThreadPoolExecutor] | None = None
        while True:
            with self._lock:
                while not self._waiting:
                    self._arrived.wait()
                first = self._waiting[0]
                batch = [j for j in self._waiting if j.analyzers == first.analyzers][:MAX_BATCH]
                self._waiting = [j for j in self._waiting if j not in batch]
            workers = cpu_threads(batch[0].settings.decode.workers)
            if decoders is None or decoders[0] != workers:
                if decoders is not None:
                    decoders[1].shutdown()
                decoders = (workers, ThreadPoolExecutor(workers, thread_name_prefix="decode"))
            try:
                answers = self._run(batch, decoders[1])
            except Exception as exc:
                answers = [(None, exc)] * len(batch)
            for job, (result, error) in zip(batch, answers, strict=True):
                job.answer(result, error)

    def _run(
        self, batch: list[_Job], decoders: ThreadPoolExecutor
    ) -> list[tuple[dict[str, Any] | None, Exception | None]]:
        analyzers = batch[0].analyzers
        settings = batch[0].settings
        answers: list[tuple[dict[str, Any] | None, Exception | None]] = []
        # A catalog in memory: nothing of the request ever reaches the disk, and
        # it costs half of a file's (no WAL, no fsync, nothing to remove).
        catalog = Catalog.scratch()
        try:
            paths = [os.path.abspath(job.source) for job in batch]
            index_roots(catalog, make_walker(settings), paths)
            start = time.perf_counter()
            # The models' turn for the inference only: the other worker reads and
            # decodes its batch meanwhile, and a scan waits at most one batch.
            # One lane: the WORKERS are this path's lanes (each batch's models in
            # its worker, no thread pools made and ended per request batch).
            pipeline = Pipeline(catalog, settings, analyzers, prefixes=paths)
            pipeline.run(turn=self.turns.request, lanes=1, decoders=decoders)
            seconds = time.perf_counter() - start
            found = {r.path: r for r in catalog.records(pipeline.shas, paths)}
            for job, path in zip(batch, paths, strict=True):
                record = found.get(path)
                if record is None:
                    error = AnalyzeError(f"{job.source}: not an image or video tagd reads")
                    answers.append((None, error))
                    continue
                result = file_results(catalog, record) | {
                    "seconds": round(seconds, 4),
                    "batch": len(batch),
                    "analyzers": [a.name for a in analyzers],
                }
                answers.append((result, None))
        finally:
            catalog.close()
        # Answered once the scratch catalog is gone: an answer means no trace is left.
        return answers
