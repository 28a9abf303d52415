"""POST /analyze: one uploaded image or video, or a file of the library, analysed
now; the answer is `tagd export`'s object for it, and nothing is stored.

The route waits for the analysis process on the event loop, not in a thread of
its own, and passes on the JSON body that process makes: on 2 cores, the thread
hops and the encoding twice were a tenth of a 640 px photo's cost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from tagd.api.analyze import UploadError, remove, save_upload, scratch_folder
from tagd.api.auth import require
from tagd.api.library import in_library
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.cli.export_cmd import file_results
from tagd.engine.client import EngineError
from tagd.media.raw import HEAD as RAW_HEAD

router = APIRouter(tags=["analyze"], dependencies=[Depends(require("read"))])

# Room for the multipart envelope around the file itself.
ENVELOPE = 64 * 1024
# Uploads up to this size (held in memory by the form parser) are saved on the
# event loop: a write to the page cache. Larger ones, and library paths (a
# realpath on a network share), are handled in a worker thread.
INLINE = 2**20


def _library_file(state: ApiState, path: str) -> Path:
    try:
        return in_library(state, path, "form field 'path'")
    except Problem as problem:
        if problem.status == 403:
            problem.detail += "; upload the file instead"
        raise


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
        return save_upload(file.file.read(RAW_HEAD), file.file, folder, limit)
    except UploadError as exc:
        raise Problem(415, "unsupported-media", str(exc)) from None
    except OverflowError:
        raise _too_large(state) from None


def _problem(exc: EngineError) -> Problem:
    if exc.kind == "request":
        # An analyzer this server does not run, or a file it cannot read.
        if str(exc).startswith("analyzers:"):
            return Problem(422, "invalid-parameter", f"form field {exc}")
        return Problem(422, "unreadable", str(exc))
    if exc.kind == "model":
        return Problem(503, "model-missing", str(exc))
    if exc.kind == "gone":
        return Problem(503, "analysis-unavailable", f"{exc}; try again")
    return Problem(500, "analysis-failed", f"the analysis failed: {exc}")


def _too_large(state: ApiState) -> Problem:
    mb = state.settings.api.max_upload_mb
    return Problem(413, "too-large", f"the upload is larger than [api] max_upload_mb ({mb} MB)")


@router.post(
    "/analyze",
    summary="Analyse one file now (nothing is stored)",
    response_class=Response,
    responses={
        200: {
            "description": "`tagd export`'s object for the file",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def analyze(
    request: Request,
    state: Annotated[ApiState, Depends(api_state)],
    file: Annotated[UploadFile | None, File(description="an image or video")] = None,
    path: Annotated[str | None, Form(description="or: a file under a library root")] = None,
    analyzers: Annotated[
        str, Form(description="comma-separated (objects,text,...); empty: all this server runs")
    ] = "",
    store: Annotated[
        bool,
        Form(
            description="a library path only: scan it into the catalog (tags, sidecars, "
            "Stash) as the daemon's scans do, and answer what is stored"
        ),
    ] = False,
) -> Any:
    limit = _limit(state, request)
    if (file is None) == (path is None):
        raise Problem(
            422, "invalid-parameter", "give either an uploaded 'file' or a 'path', not both"
        )
    names = [n.strip() for n in analyzers.split(",") if n.strip()]
    if store:
        return JSONResponse(await run_in_threadpool(_stored, state, file, path, names))
    if file is not None and (file.size or 0) <= INLINE:
        folder, source = _source(state, file, path, limit)
    else:
        folder, source = await run_in_threadpool(_source, state, file, path, limit)
    try:
        # The upload's own name in the answer: the scratch copy is gone by then.
        shown = file.filename if file is not None else None
        body = await state.engine.acall(
            "analyze", state.settings, state.generation, str(source), names, shown
        )
    except EngineError as exc:
        raise _problem(exc) from None
    finally:
        remove(folder)
    return Response(body, media_type="application/json")


def _source(
    state: ApiState, file: UploadFile | None, path: str | None, limit: int
) -> tuple[Path, Path]:
    """(scratch folder, the file to analyse): the upload saved there, or the library
    file `path` names."""
    folder = scratch_folder(state.scratch_dir)
    try:
        source = _upload(state, file, folder, limit) if file else _library_file(state, path or "")
    except BaseException:
        remove(folder)
        raise
    return folder, source


def _stored(
    state: ApiState, file: UploadFile | None, path: str | None, names: list[str]
) -> dict[str, Any]:
    """store=true: the daemon scans the file (its analyzers, its tags, its writes)
    and the answer is what the catalog then holds for it."""
    if file is not None:
        raise Problem(
            422,
            "invalid-parameter",
            "store=true is for a 'path' of the library; uploads are not kept",
        )
    if names:
        raise Problem(
            422,
            "invalid-parameter",
            "store=true analyses with every analyzer of the config, as a scan does; "
            "leave 'analyzers' empty",
        )
    source = _library_file(state, path or "")
    worker = state.scheduler("store=true and scans").worker
    assert worker is not None
    if worker.paused:
        raise Problem(409, "paused", "scans are paused: POST /api/v1/scans/resume first")
    scan = worker.request("api analyze", {str(source)})
    for event in scan.done:
        event.wait()
    with state.catalog() as catalog:
        found = catalog.records(state.shas, [str(source)])
        record = next((r for r in found if r.path == str(source)), None)
        if record is None:
            raise Problem(422, "unreadable", f"{path} was not stored: {'; '.join(scan.summary)}")
        result = file_results(catalog, record)
    if result["status"] == "error":
        raise Problem(422, "unreadable", f"cannot analyse it: {result['error']}")
    return result | {"stored": True, "scan": scan.id}
