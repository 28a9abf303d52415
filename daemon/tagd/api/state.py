"""What every route reads: the settings the server started with, and the catalog,
opened for one request at a time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import Request

from tagd.catalog.catalog import Catalog
from tagd.config import Settings

if TYPE_CHECKING:
    from tagd.api.analyze import OnDemand


@dataclass(frozen=True)
class ApiState:
    settings: Settings
    state_dir: Path
    models_dir: Path

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

    @cached_property
    def shas(self) -> dict[str, str]:
        """analyzer -> model sha256 (tagd.pipeline.analyzer_shas), read once: the
        settings and models are those the server started with."""
        from tagd.pipeline import analyzer_shas

        return analyzer_shas(self.settings, self.models_dir)

    def models_loaded(self) -> dict[str, bool]:
        """model name -> whether this server holds it now (POST /analyze loads them)."""
        service = self.__dict__.get("on_demand")  # never built: nothing loaded
        if service is None or service.built is None:
            return {}
        return {m.spec.name: m.loaded for a in service.built for m in a.models}

    @property
    def scratch_dir(self) -> Path:
        """Where uploads and on-demand scratch catalogs live while a request runs."""
        return self.state_dir / "tmp"

    @cached_property
    def on_demand(self) -> OnDemand:
        """The analyzers for POST /analyze, built once (models load on first use)."""
        from tagd.api.analyze import OnDemand

        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        return OnDemand(self.settings, self.models_dir, self.scratch_dir)


def api_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.tagd
    return state
