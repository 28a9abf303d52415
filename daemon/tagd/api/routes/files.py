"""GET /files (filtered, paged) and GET /files/{id} (a file as `tagd export` has it,
with where its writes stand)."""

from __future__ import annotations

import base64
import binascii
import json
import os
from pathlib import Path as PathType
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import FileResponse, Response

from tagd.api.auth import require
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.catalog.browse import FileFilters
from tagd.catalog.catalog import Catalog
from tagd.cli.export_cmd import file_results
from tagd.dupes import similar_json, similar_to
from tagd.engine.client import EngineError
from tagd.media import preview_files as thumbnail
from tagd.media.files import NotRegularFile, open_regular
from tagd.media.sniff import sniff
from tagd.paths import library_roots, shown, within
from tagd.records import ListedFile
from tagd.sinks.outbox import enabled as enabled_sinks

router = APIRouter(tags=["files"], dependencies=[Depends(require("read"))])


def encode_cursor(last_id: int) -> str:
    # Opaque to clients, so paging may change (another key, more fields) later.
    return base64.urlsafe_b64encode(json.dumps({"after": last_id}).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        after = json.loads(raw)["after"]
    except (binascii.Error, ValueError, KeyError, TypeError):
        after = None
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise Problem(
            422,
            "invalid-parameter",
            "query parameter 'cursor': not a cursor this API gave; pass next_cursor of the "
            "previous page unchanged, or leave it out for the first page",
        )
    return after


def checked_prefix(catalog: Catalog, state: ApiState, path: str) -> str:
    """The `path` filter, normalised; a Problem unless it lies in the library: under
    a library root (or a Stash mapping's local side), or where the catalog holds files."""
    if not path.startswith("/"):
        raise Problem(
            422, "invalid-parameter", f"query parameter 'path': {path!r} must be absolute"
        )
    prefix = os.path.normpath(path)
    in_roots = any(within(prefix, os.path.abspath(r)) for r in library_roots(state.settings))
    if in_roots or catalog.has_files_under(prefix):
        return prefix
    raise Problem(
        403,
        "outside-library",
        f"query parameter 'path': {shown(prefix)} is outside the library: no library root "
        "holds it and the catalog has no file there; give a folder of the library "
        "([library] roots, or one given to `tagd scan`)",
    )


def _listed(catalog: Catalog, state: ApiState, file_id: int) -> ListedFile:
    item = catalog.listed_file(state.shas, file_id)
    if item is None:
        raise Problem(404, "no-such-file", f"no file {file_id} in the catalog; /files lists them")
    return item


def listed(item: ListedFile) -> dict[str, Any]:
    r = item.record
    return {
        "id": r.id,
        "path": shown(r.path),  # JSON is UTF-8: a name that is not shows \xNN
        "kind": r.kind,
        "size": item.size,
        "mtime": item.mtime_ns / 1e9,
        "status": r.status,
        "error": r.error,
        "width": r.width,
        "height": r.height,
        "duration": r.duration,
    }


@router.get("/files", summary="Files under filters, page by page (by id)")
def list_files(
    state: Annotated[ApiState, Depends(api_state)],
    tag: Annotated[
        str | None, Query(description="a tag's full path (AI|Objects|dog) or its last part")
    ] = None,
    kind: Annotated[Literal["image", "video"] | None, Query()] = None,
    path: Annotated[
        str | None, Query(description="only files at or below this absolute path")
    ] = None,
    status: Annotated[Literal["ok", "pending", "error"] | None, Query()] = None,
    changed_since: Annotated[
        float | None, Query(ge=0, description="unix seconds: modified or catalogued since")
    ] = None,
    min_score: Annotated[float | None, Query(ge=0, le=1, description="with tag")] = None,
    max_score: Annotated[float | None, Query(ge=0, le=1, description="with tag")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> dict[str, Any]:
    for name, value in (("min_score", min_score), ("max_score", max_score)):
        if value is not None and not tag:
            raise Problem(
                422,
                "invalid-parameter",
                f"query parameter {name!r}: a score is a tag's; give 'tag' with it",
            )
    after = decode_cursor(cursor) if cursor else 0
    with state.catalog() as catalog:
        under = checked_prefix(catalog, state, path) if path is not None else None
        filters = FileFilters(kind, under, status, changed_since, tag, min_score, max_score)
        # One more than asked: whether another page follows, without a second query.
        page = catalog.file_page(state.shas, filters, after, limit + 1)
    more = len(page) > limit
    page = page[:limit]
    return {
        "files": [listed(item) for item in page],
        "next_cursor": encode_cursor(page[-1].record.id) if more else None,
    }


def delivery(catalog: Catalog, state: ApiState, file_id: int) -> dict[str, Any]:
    """sink -> where this file's write stands: queued (due), retrying (failed
    before: attempts, last_error) or idle (nothing waiting: written, or nothing
    to write yet)."""
    queued = catalog.queued_writes(file_id)
    out: dict[str, Any] = {}
    for sink in sorted({s.name for s in enabled_sinks(state.settings)} | set(queued)):
        write = queued.get(sink)
        if write is None:
            out[sink] = {"state": "idle", "due": None, "attempts": 0, "last_error": None}
        else:
            out[sink] = {
                "state": "retrying" if write.last_error else "queued",
                "due": write.due,
                "attempts": write.attempts,
                "last_error": write.last_error,
            }
    return out


@router.get("/files/{file_id}", summary="One file: `tagd export`'s object, and its writes")
def get_file(
    state: Annotated[ApiState, Depends(api_state)],
    file_id: Annotated[int, Path(ge=1, description="id from /files")],
) -> dict[str, Any]:
    with state.catalog() as catalog:
        item = _listed(catalog, state, file_id)
        record = item.record
        cid = record.content_id
        # export's object, its tags with the analyzer each came from.
        result = file_results(catalog, record) | {
            "tags": [
                {"name": t.name, "score": t.score, "source": t.source}
                for t in (catalog.tags(cid) if cid else [])
            ]
        }
        return (
            {"id": record.id}
            | result
            | {
                "size": item.size,
                "mtime": item.mtime_ns / 1e9,
                "delivery": delivery(catalog, state, record.id),
            }
        )


@router.get("/files/{file_id}/similar", summary="The files most like this one")
def similar(
    state: Annotated[ApiState, Depends(api_state)],
    file_id: Annotated[int, Path(ge=1, description="id from /files")],
    limit: Annotated[int, Query(ge=1, le=200)] = 10,
) -> dict[str, Any]:
    """As `tagd similar FILE --json`: by image embedding when one is stored (DINOv2,
    CLIP), else by perceptual hash; smaller distances are closer."""
    with state.catalog() as catalog:
        item = _listed(catalog, state, file_id)
        record = item.record
        signal, unit, hits = similar_to(catalog, record.content_id, record.path, limit)
    return similar_json(record.path, signal, unit, hits)


@router.get(
    "/files/{file_id}/thumbnail",
    summary="A small WebP preview",
    response_class=FileResponse,
    responses={200: {"content": {"image/webp": {}}}},
)
def preview(
    state: Annotated[ApiState, Depends(api_state)],
    file_id: Annotated[int, Path(ge=1, description="id from /files")],
) -> FileResponse:
    """The preview the scan kept (tagd.media.thumbnail); a photo scanned before
    previews existed gets one now, from one reduced decode, kept for next time."""
    with state.catalog() as catalog:
        item = _listed(catalog, state, file_id)
    record = item.record
    if record.content_id is None:
        raise Problem(404, "no-preview", f"file {file_id} could not be read: {record.error}")
    folder = thumbnail.folder_for(state.catalog_path)
    target = thumbnail.path_for(folder, record.content_id)
    if not target.exists():
        target = _late_preview(state, record.content_id, record.path, record.kind, file_id)
    return FileResponse(
        target,
        media_type="image/webp",
        # Content ids never change what they show: browsers may keep it.
        headers={"Cache-Control": "private, max-age=86400", "ETag": f'"{record.content_id}"'},
    )


# What browsers show themselves: served as they are, nothing decoded here.
BROWSER_IMAGES = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "gif": "image/gif",
    "webp": "image/webp",
}


@router.get(
    "/files/{file_id}/original",
    summary="The photo itself, where browsers show its format (JPEG, PNG, GIF, WebP)",
    response_class=Response,
    responses={200: {"content": {kind: {} for kind in BROWSER_IMAGES.values()}}},
)
def original(
    state: Annotated[ApiState, Depends(api_state)],
    file_id: Annotated[int, Path(ge=1, description="id from /files")],
) -> Response:
    """The file's bytes, read (never decoded) from where the catalog has it, when it
    is still that file: under a library root or, link-free, where it was scanned.
    Other formats (HEIC, TIFF, RAW, videos): 415, use /thumbnail."""
    with state.catalog() as catalog:
        item = _listed(catalog, state, file_id)
    path = item.record.path
    real = os.path.realpath(path)
    if real != path and not any(
        within(real, os.path.realpath(r)) for r in library_roots(state.settings)
    ):
        raise Problem(403, "outside-library", f"file {file_id} now leads outside the library")
    try:
        with open_regular(real) as fh:
            data = fh.read(state.settings.api.max_upload_mb * 2**20 + 1)
    except (OSError, NotRegularFile) as exc:
        raise Problem(404, "unreadable", f"file {file_id} cannot be read now: {exc}") from None
    media_type = BROWSER_IMAGES.get(sniff(data[:64]) or "")
    if media_type is None:
        raise Problem(
            415, "not-for-browsers", f"file {file_id} is no format browsers show; use /thumbnail"
        )
    if len(data) > state.settings.api.max_upload_mb * 2**20:
        raise Problem(413, "too-large", f"file {file_id} is larger than [api] max_upload_mb")
    return Response(data, media_type=media_type, headers={"Cache-Control": "private, max-age=3600"})


def _late_preview(state: ApiState, content_id: int, path: str, kind: str, file_id: int) -> PathType:
    """Made by the analysis process (one reduced decode), kept for next time."""
    if kind != "image":
        raise Problem(
            404, "no-preview", f"file {file_id} has no preview yet: the next scan makes it"
        )
    try:
        made = state.engine.call(
            "preview", state.settings, state.generation, "file", content_id, path
        )
    except EngineError as exc:
        raise Problem(404, "no-preview", f"file {file_id}: {exc}") from None
    return PathType(made)
