"""Scans through the daemon (`tagd run`): POST /scans queues one and answers its
id, GET /scans/{id} says how it goes, POST /scans/pause and /scans/resume hold
and release the scanning (the batch in flight finishes first; POST /analyze is
still served). `tagd serve` runs no scans: these answer 503 there."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Response
from pydantic import BaseModel, Field

from tagd.api.auth import require
from tagd.api.library import in_library
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state

if TYPE_CHECKING:
    from tagd.service.loop import Service

router = APIRouter(tags=["scans"])
reader = [Depends(require("read"))]
admin = [Depends(require("admin"))]


class ScanBody(BaseModel):
    paths: list[str] = Field(
        default_factory=list,
        max_length=1000,
        description="files or folders under the library roots; none: every root",
    )
    source: Literal["library", "stash", "tagme"] = Field(
        default="library",
        description="library: the paths (or roots); stash / tagme: the files Stash lists "
        "(all, or those tagged <prefix>_TagMe)",
    )
    retry_writes: bool = Field(
        default=True, description="write every queued sidecar and Stash update now, backoff or not"
    )


def _daemon(state: ApiState) -> Service:
    daemon = state.scheduler("scans")
    if daemon.stop.is_set():
        raise Problem(503, "stopping", "tagd is stopping; try again once it is back")
    return daemon


@router.post(
    "/scans",
    status_code=202,
    dependencies=admin,
    summary="Queue a scan (of some paths, every root, or what Stash lists)",
)
def start_scan(
    state: Annotated[ApiState, Depends(api_state)],
    response: Response,
    body: ScanBody | None = None,
) -> dict[str, Any]:
    body = body or ScanBody()
    daemon = _daemon(state)
    if body.source != "library" and body.paths:
        raise Problem(422, "invalid-parameter", "paths: only for source = library")
    if body.source != "library" and not state.settings.stash.enabled:
        raise Problem(409, "stash-off", "Stash is not configured: set [stash] enabled = true")
    roots = {str(in_library(state, p, "paths", folder_ok=True)) for p in body.paths} or None
    assert daemon.worker is not None
    request = daemon.worker.request("api", roots, body.source, force=body.retry_writes)
    response.headers["Location"] = f"/api/v1/scans/{request.id}"
    return request.view()


@router.get("/scans/{scan_id}", dependencies=reader, summary="How a scan goes")
def get_scan(
    state: Annotated[ApiState, Depends(api_state)],
    scan_id: Annotated[int, Path(ge=1, description="id from POST /scans")],
) -> dict[str, Any]:
    daemon = _daemon(state)
    assert daemon.worker is not None
    found = daemon.worker.find(scan_id)
    if found is None:
        raise Problem(
            404,
            "no-such-scan",
            f"no scan {scan_id} (the daemon keeps the last 200 it was asked for)",
        )
    return found.view()


def _pause(state: ApiState, paused: bool) -> dict[str, Any]:
    daemon = _daemon(state)
    daemon.pause(paused)
    assert daemon.worker is not None
    return {"paused": daemon.worker.paused, "state": daemon.worker.activity.state}


@router.post(
    "/scans/pause",
    dependencies=admin,
    summary="Pause scanning: the batch in flight finishes, then the daemon waits",
)
def pause(state: Annotated[ApiState, Depends(api_state)]) -> dict[str, Any]:
    return _pause(state, True)


@router.post("/scans/resume", dependencies=admin, summary="Resume scanning")
def resume(state: Annotated[ApiState, Depends(api_state)]) -> dict[str, Any]:
    return _pause(state, False)
