"""What every route reads: the settings, the catalog (opened for one request at a
time), the analysis process for POST /analyze, and, when `tagd run` serves the
API, the daemon itself (scans, pause and resume, live events)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.engine.client import Engine, EngineError
from tagd.service.events import EventBus

if TYPE_CHECKING:
    from tagd.service.loop import Service


@dataclass
class ApiState:
    settings: Settings
    state_dir: Path
    models_dir: Path
    engine: Engine
    generation: int = 0  # of `settings`, as the analysis process knows them
    daemon: Service | None = None  # None: `tagd serve`, no scheduler
    events: EventBus = field(default_factory=EventBus)
    # analyzer name -> model sha256 (see `shas`); the daemon sets it on reload.
    known_shas: dict[str, str] | None = None

    @property
    def catalog_path(self) -> Path:
        return self.state_dir / "catalog.db"

    @contextmanager
    def catalog(self) -> Iterator[Catalog]:
        """The catalog for one request. A connection per request, opened and closed
        in the thread that runs the route: SQLite connections must stay in their
        thread, and in WAL mode readers never wait for the daemon's writes."""
        catalog = Catalog(self.catalog_path)
        try:
            yield catalog
        finally:
            catalog.close()

    @property
    def shas(self) -> dict[str, str]:
        """analyzer -> model sha256, which tells analysed files from pending ones.
        The analysis process works it out (the models are its business), once per
        config; {} when it cannot (then every file counts as analysed by nothing)."""
        if self.known_shas is None:
            try:
                self.known_shas = self.engine.call("shas", self.settings, self.generation)
            except EngineError:
                return {}
        return self.known_shas

    def snapshot(self) -> dict[str, object]:
        """What the daemon does now (GET /events' first event)."""
        worker = self.daemon.worker if self.daemon is not None else None
        engine = {"analysis_process": self.engine.running, "starts": self.engine.started}
        if worker is None:
            return {"daemon": False, **engine}
        return {
            "daemon": True,
            "state": worker.activity.state,
            "progress": worker.activity.progress,
            "paused": worker.paused,
            "waiting": worker.requests.qsize(),
            **engine,
        }

    def scheduler(self, what: str) -> Service:
        """The daemon (`tagd run`) that does `what`; a 503 Problem under `tagd serve`,
        which runs no scans."""
        from tagd.api.problems import Problem

        if self.daemon is None or self.daemon.worker is None:
            raise Problem(
                503,
                "no-scheduler",
                f"{what} need the daemon: this server was started by `tagd serve`, which "
                "runs no scans; `tagd run` serves the same API and does them",
            )
        return self.daemon

    def deliver_soon(self) -> None:
        """A change a client made queued writes: under `tagd run` they go out now
        (the scan thread merges a burst of these into one round); under `tagd
        serve` the daemon's retry timer or the next `tagd scan` writes them."""
        if self.daemon is not None and self.daemon.worker is not None:
            self.daemon.worker.request("api change", None, "deliver")

    @cached_property
    def ui_secret(self) -> bytes:
        """What signs the web pages' sign-in cookies (tagd.ui.session)."""
        from tagd.ui.session import secret

        return secret(self.state_dir)

    @property
    def scratch_dir(self) -> Path:
        """Where uploads live while a request runs."""
        return self.state_dir / "tmp"


async def api_state(request: Request) -> ApiState:
    # async: a sync dependency would cost every request a hop to a worker thread.
    state: ApiState = request.app.state.tagd
    return state
