"""POST /analyze: one uploaded image or video, or a file of the library, analysed
now; the answer is `tagd export`'s object for it, and nothing is stored."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile

from tagd.api.analyze import AnalyzeError, remove, save_upload, scratch_folder
from tagd.api.auth import require
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.paths import shown, within
from tagd.runtime.manifest import ModelError
from tagd.sinks.xmp.deliver import library_roots

router = APIRouter(tags=["analyze"], dependencies=[Depends(require("read"))])

# Room for the multipart envelope around the file itself.
ENVELOPE = 64 * 1024


def in_library(state: ApiState, path: str) -> Path:
    """`path` resolved (links followed) when it is a regular file under a library
    root; a Problem otherwise. The client never reaches anything else."""
    if not path.startswith("/"):
        raise Problem(422, "invalid-parameter", f"form field 'path': {path!r} must be absolute")
    real = os.path.realpath(path)  # links followed: one leading out is outside
    if not any(within(real, os.path.realpath(r)) for r in library_roots(state.settings)):
        raise Problem(
            403,
            "outside-library",
            f"form field 'path': {shown(path)} is outside the library roots "
            "([library] roots); upload the file instead",
        )
    if not os.path.isfile(real):
        raise Problem(404, "no-such-file", f"form field 'path': {shown(path)} is not a file")
    return Path(real)


def _limit(state: ApiState, request: Request) -> int:
    """The upload limit in bytes; a request announcing more is refused unread."""
    limit = state.settings.api.max_upload_mb * 2**20
    announced = request.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > limit + ENVELOPE:
        raise _too_large(state)
    return limit


def _upload(state: ApiState, file: UploadFile, folder: Path, limit: int) -> Path:
    """The upload saved under `folder` (Problem: not media, or too large)."""
    try:
        return save_upload(file.file.read(64), file.file, folder, limit)
    except AnalyzeError as exc:
        raise Problem(415, "unsupported-media", str(exc)) from None
    except OverflowError:
        raise _too_large(state) from None


def _too_large(state: ApiState) -> Problem:
    mb = state.settings.api.max_upload_mb
    return Problem(413, "too-large", f"the upload is larger than [api] max_upload_mb ({mb} MB)")


@router.post("/analyze", summary="Analyse one file now (nothing is stored)")
def analyze(
    request: Request,
    state: Annotated[ApiState, Depends(api_state)],
    file: Annotated[UploadFile | None, File(description="an image or video")] = None,
    path: Annotated[str | None, Form(description="or: a file under a library root")] = None,
    analyzers: Annotated[
        str, Form(description="comma-separated (objects,text,...); empty: all this server runs")
    ] = "",
) -> dict[str, Any]:
    limit = _limit(state, request)
    if (file is None) == (path is None):
        raise Problem(
            422, "invalid-parameter", "give either an uploaded 'file' or a 'path', not both"
        )
    names = [n.strip() for n in analyzers.split(",") if n.strip()]
    service = state.on_demand
    try:
        chosen = service.chosen(names)
        service.check(chosen)
    except AnalyzeError as exc:
        raise Problem(422, "invalid-parameter", f"form field {exc}") from None
    except ModelError as exc:
        raise Problem(503, "model-missing", str(exc)) from None
    folder = scratch_folder(state.scratch_dir)
    try:
        source = _upload(state, file, folder, limit) if file else in_library(state, path or "")
        try:
            result = service.analyze(source, chosen)
        except AnalyzeError as exc:
            raise Problem(422, "unreadable", str(exc)) from None
    finally:
        remove(folder)
    if result["status"] == "error":
        raise Problem(422, "unreadable", f"cannot analyse it: {result['error']}")
    if file is not None:
        result["path"] = file.filename  # the scratch copy is gone; the name the client gave
    return result
