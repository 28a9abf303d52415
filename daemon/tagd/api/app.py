"""The API and the web pages as one ASGI app: create_app(settings, state_dir) for
`tagd serve`, `tagd run` and tests."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from tagd import __version__
from tagd.api import problems
from tagd.api.guard import Guard
from tagd.api.routes import (
    analyze,
    dupes,
    events,
    faces,
    files,
    health,
    metrics,
    people,
    review,
    scans,
    search,
    status,
    tags,
    teach,
    thresholds,
)
from tagd.api.state import ApiState
from tagd.config import Settings
from tagd.engine.client import Engine
from tagd.paths import models_dir
from tagd.ui import pages

PREFIX = "/api/v1"
STATIC = Path(pages.__file__).parent / "static"


def create_app(settings: Settings, state_dir: Path, state: ApiState | None = None) -> FastAPI:
    """The app over `state` (`tagd run` passes its own: its engine, the daemon);
    without one, an API of its own with an analysis process of its own."""
    if state is None:
        engine = Engine(
            state_dir / "catalog.db",
            log_level=settings.daemon.log_level,
            idle=settings.runtime.idle_unload,
        )
        state = ApiState(settings, state_dir, models_dir(settings), engine)
    app = FastAPI(
        title="tagd",
        version=__version__,
        summary="tagd: files, tags, search, people, duplicates, and analysis on demand.",
        description=(
            "Every route but /api/v1/healthz needs `Authorization: Bearer <key>` "
            "once `[api] api_keys` holds a key (`tagd api-key new` makes one); "
            "without keys only clients on tagd's machine may connect. Errors are "
            "`application/problem+json`: {type, title, status, detail}."
        ),
        docs_url="/api/docs",
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )
    app.state.tagd = state
    problems.install(app)
    routes = (health, status, metrics, files, tags, search, people, faces, dupes, analyze)
    for module in (*routes, thresholds, review, teach, scans, events):
        app.include_router(module.router, prefix=PREFIX)
    # The web pages on the same app: the same auth, catalog and analysis process.
    app.include_router(pages.router)
    app.add_exception_handler(pages.SignIn, pages.sign_in_redirect)  # type: ignore[arg-type]
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    app.add_middleware(Guard, keys_configured=lambda: bool(state.settings.api.api_keys))
    return app
