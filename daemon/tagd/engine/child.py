"""The analysis process itself (`python -m tagd.engine.child FD`).

It reads requests from the daemon on a socket (FD), one thread receiving:

- ("check", id, generation, settings): build the config's analyzers and verify
  their model files (nothing is loaded); answers their names;
- ("job", id, generation, settings, Job): a scan or a round of writes (jobs.py),
  run on the main thread one at a time, with progress events on the way;
- ("analyze", id, generation, settings, path, names, shown): one file on demand
  (on_demand.py), answered between two batches of a running scan with its
  export object as JSON bytes;
- ("stop", deadline, everything), ("pause", paused), ("quit",).

A request's settings are None when they are the ones the daemon sent last.
Answers are ("result", id, value) or ("failure", id, kind, message). The
analyzers of one generation (one loaded config) are built once and kept, so
their models stay loaded from one job to the next until the daemon ends this
process at idle. It ignores SIGINT and SIGTERM (`systemctl stop` signals the
whole group; the daemon decides how a stop goes) and exits when the daemon's
end of the socket closes.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tagd.analyzers.base import Analyzer
from tagd.catalog.catalog import Catalog
from tagd.catalog.connect import DiskFullError, disk_full
from tagd.config import Settings
from tagd.engine.jobs import Jobs, Progress
from tagd.engine.on_demand import AnalyzeError, OnDemand, chosen
from tagd.engine.protocol import Job
from tagd.engine.turns import Turns
from tagd.paths import models_dir
from tagd.runtime.manifest import ModelError
from tagd.service.memory import tune_malloc

log = logging.getLogger("tagd.engine")

# The messages that are requests: (kind, id, generation, settings or None, ...).
REQUESTS = {"check", "shas", "analyze", "preview", "job"}


class Child:
    def __init__(self, conn: Connection, init: dict[str, Any]) -> None:
        self.conn = conn
        self.catalog_path = Path(init["catalog"])
        self._send_lock = threading.Lock()
        self.work: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self.stop = threading.Event()  # the daemon is stopping: no new job
        self.job_stop = threading.Event()  # the job in flight stops
        self.deadline: float | None = None
        self.resume = threading.Event()  # set while not paused
        if not init.get("paused"):
            self.resume.set()
        self.turns = Turns()
        self._settings: tuple[int, Settings] | None = None  # the daemon's last sent
        self.on_demand = OnDemand(self.turns)
        self._generation: tuple[int, list[Analyzer]] | None = None
        self._build_lock = threading.Lock()
        self._catalog: Catalog | None = None

    # ------------------------------------------------------------ messages

    def send(self, message: tuple[Any, ...]) -> None:
        with self._send_lock:
            try:
                self.conn.send(message)
            except OSError:
                os._exit(0)  # the daemon is gone: nobody wants the answer

    def receive(self) -> None:
        """The receiving thread: routes each message, exits when the daemon is gone."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                # Nothing uncommitted matters: SQLite rolls it back, the daemon's
                # next start redoes it.
                os._exit(0)
            what = message[0]
            if what in REQUESTS:
                message = self._with_settings(message)
                if message is None:
                    continue
            if what == "stop":
                self.deadline = message[1]
                if message[2]:
                    self.stop.set()
                self.job_stop.set()
                self.resume.set()  # a paused job wakes to stop
            elif what == "pause":
                if message[1]:
                    self.resume.clear()
                else:
                    self.resume.set()
            elif what == "analyze":
                self.analyze(*message[1:])
            elif what == "preview":
                threading.Thread(target=self.preview, args=message[1:], daemon=True).start()
            elif what in ("check", "shas"):
                # Not behind a running job: a config reload waits for no scan.
                target = self.check if what == "check" else self.shas
                threading.Thread(target=target, args=message[1:], daemon=True).start()
            elif what == "quit":
                self.work.put(None)
            else:
                if what == "job" and not self.stop.is_set():
                    # Here, in the order the daemon sent them: a "stop" for this
                    # job may follow before the main thread takes it up.
                    self.job_stop.clear()
                self.work.put(message)

    def _with_settings(self, message: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """The request with its settings: those it carries, or (None) the ones the
        daemon sent last, which it leaves out while they stay the same. None (the
        request failed) when it left out settings this process never had."""
        what, rid, generation, settings, *args = message
        if settings is None:
            if self._settings is None or self._settings[0] != generation:
                self.send(("failure", rid, "error", f"no settings of generation {generation}"))
                return None
            settings = self._settings[1]
        else:
            self._settings = (generation, settings)
        return (what, rid, generation, settings, *args)

    # ------------------------------------------------------------ work

    def serve(self) -> int:
        threading.Thread(target=self.receive, name="receive", daemon=True).start()
        while (message := self.work.get()) is not None:
            what, rid, generation, settings, *args = message
            try:
                if what != "job":
                    raise ValueError(f"unknown request {what!r}")
                value: Any = self.job(rid, generation, settings, args[0])
            except Exception as exc:
                self.send(("failure", rid, *self.failure(exc)))
            else:
                self.send(("result", rid, value))
        if self._catalog is not None:
            self._catalog.close()
        return 0

    def failure(self, exc: Exception) -> tuple[str, str]:
        if isinstance(exc, ModelError):
            return "model", str(exc)
        if isinstance(exc, AnalyzeError):
            return "request", str(exc)
        if disk_full(exc, self.catalog_path.parent):
            return "disk_full", str(DiskFullError(self.catalog_path.parent))
        log.error("failed", exc_info=exc)
        return "error", repr(exc)

    def check(self, rid: int, generation: int, settings: Settings) -> None:
        """Answers analyzer name -> model sha256, once every model file is verified."""
        try:
            shas = {a.name: a.model_sha256 for a in self.analyzers(generation, settings)}
        except Exception as exc:
            self.send(("failure", rid, *self.failure(exc)))
        else:
            self.send(("result", rid, shas))

    def shas(self, rid: int, generation: int, settings: Settings) -> None:
        """Analyzer name -> model sha256 as the config names them, files verified
        or not (what tells an analysed file from a pending one)."""
        from tagd.pipeline import analyzer_shas

        try:
            self.send(("result", rid, analyzer_shas(settings, models_dir(settings))))
        except Exception as exc:
            self.send(("failure", rid, *self.failure(exc)))

    def preview(
        self,
        rid: int,
        generation: int,
        settings: Settings,
        what: str,
        key: int,
        path: str,
        box: tuple[float, float, float, float] | None = None,
    ) -> None:
        """A preview the scan did not make (a file scanned before previews existed):
        made now from the original and kept. Answers the preview's path."""
        from tagd.media import thumbnail
        from tagd.media.image import DecodeError

        folder = thumbnail.folder_for(self.catalog_path)
        try:
            if what == "face":
                assert box is not None
                # Full size: the stored box is in the original's pixels.
                image = thumbnail.read_image(path, min_long_side=0, reduced=False)
                made = thumbnail.save_face(folder, key, image, box)
            else:
                made = thumbnail.save(folder, key, thumbnail.read_image(path, thumbnail.LONG_SIDE))
        except (OSError, DecodeError, ValueError) as exc:
            self.send(("failure", rid, "request", f"cannot make a preview: {exc}"))
        except Exception as exc:
            self.send(("failure", rid, *self.failure(exc)))
        else:
            self.send(("result", rid, str(made)))

    def analyzers(self, generation: int, settings: Settings) -> list[Analyzer]:
        """The analyzers of `generation`, built and their model files verified once.
        Those of an older one (the daemon reloaded its config) are released; a job
        still using them loads a model again if it needs one."""
        with self._build_lock:
            if self._generation is not None and self._generation[0] == generation:
                return self._generation[1]
            from tagd.pipeline import usable_analyzers
            from tagd.runtime.backends import resolve_backend

            built, off = usable_analyzers(settings, models_dir(settings))
            for name, why in off.items():
                log.warning("%s: %s", name, why)
            for analyzer in built:
                for model in analyzer.models:
                    model.check()
            if settings.profile == "gpu" and resolve_backend(settings.runtime.backend) == "cpu":
                log.warning("profile 'gpu' but onnxruntime has no CUDA provider: on the CPU")
            if self._generation is not None and self._generation[0] < generation:
                for analyzer in self._generation[1]:
                    for model in analyzer.models:
                        model.unload()
            if self._generation is None or self._generation[0] < generation:
                self._generation = (generation, built)
            return built

    def job(self, rid: int, generation: int, settings: Settings, job: Job) -> dict[str, Any]:
        if self.stop.is_set() and job.source != "flush":
            return {"summary": ["not done: tagd is stopping"], "failed": 0, "scanned": False}
        analyzers = self.analyzers(generation, settings) if job.source != "flush" else []
        if self._catalog is None:
            self._catalog = Catalog(self.catalog_path)
        jobs = Jobs(self._catalog, self.job_stop, lambda: self.deadline, self.turns.scan)
        progress = Progress(lambda event: self.send(("event", rid, event)), self.resume)
        result = jobs.run(job, settings, analyzers, progress)
        return vars(result)

    def analyze(
        self,
        rid: int,
        generation: int,
        settings: Settings,
        path: str,
        names: list[str],
        shown: str | None = None,
    ) -> None:
        """One file on demand: queued for the on-demand worker, answered from there
        with `tagd export`'s object for it as JSON (the API's answer as it is),
        its "path" given as `shown` when the daemon names it otherwise."""

        def answer(result: dict[str, Any] | None, error: Exception | None) -> None:
            if result is not None and result["status"] == "error":
                result, error = None, AnalyzeError(f"cannot analyse it: {result['error']}")
            if result is None:
                assert error is not None
                self.send(("failure", rid, *self.failure(error)))
                return
            if shown is not None:
                result["path"] = shown
            self.send(("result", rid, json.dumps(result, ensure_ascii=False).encode()))

        try:
            analyzers = chosen(self.analyzers(generation, settings), names)
        except Exception as exc:
            answer(None, exc)
            return
        self.on_demand.submit(Path(path), settings, analyzers, answer)


def main(argv: list[str]) -> int:
    # The daemon decides how a stop goes (see the module's docstring).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Before any thread starts. Buffers up to 4 MB (a 640 px photo, a model's
    # input tensor) come from the heap and are reused: unmapped at every free,
    # each new one costs page faults, a quarter of the throughput on small
    # photos. Larger ones (a 12 MP frame) still go back at once, and the heap
    # goes back when this process ends at idle.
    tune_malloc(mmap_threshold=4 * 2**20)
    conn = Connection(int(argv[1]))
    try:
        init = conn.recv()
    except (EOFError, OSError):
        return 0
    from tagd.service import logs

    logs.configure(init["log_level"], timestamps=init["timestamps"])
    return Child(conn, init).serve()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
