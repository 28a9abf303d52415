"""GET /faces/{id}/thumbnail: a face's preview (the id is a face's detection id,
as /people/{id} lists them)."""

from __future__ import annotations

from pathlib import Path as PathType
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from fastapi.responses import FileResponse

from tagd.api.auth import require
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.engine.client import EngineError
from tagd.media import preview_files as thumbnail
from tagd.records import Detection

router = APIRouter(tags=["people"], dependencies=[Depends(require("read"))])


@router.get(
    "/faces/{face_id}/thumbnail",
    summary="A small WebP of one face",
    response_class=FileResponse,
    responses={200: {"content": {"image/webp": {}}}},
)
def face_preview(
    state: Annotated[ApiState, Depends(api_state)],
    face_id: Annotated[int, Path(ge=1, description="a face id from /people/{id}")],
) -> FileResponse:
    """The preview the scan cut from its decode; a face scanned before previews
    existed gets one now from its photo, kept for next time."""
    folder = thumbnail.folder_for(state.catalog_path)
    target = thumbnail.face_path_for(folder, face_id)
    if not target.exists():
        with state.catalog() as catalog:
            found = catalog.face_info([face_id]).get(face_id)
            face = None
            paths: list[str] = []
            if found is not None:
                content_id = found[0]
                face = next(
                    (d for d in catalog.detections(content_id, "faces") if d.id == face_id), None
                )
                paths = catalog.paths_of_content(content_id)
        if face is None or face.box is None:
            raise Problem(404, "no-such-face", f"no face {face_id}; /people/{{id}} lists them")
        target = _late(state, face_id, face, paths)
    return FileResponse(
        target,
        media_type="image/webp",
        headers={"Cache-Control": "private, max-age=86400", "ETag": f'"face-{face_id}"'},
    )


def _late(state: ApiState, face_id: int, face: Detection, paths: list[str]) -> PathType:
    """Cut from the photo itself by the analysis process, kept for next time."""
    assert face.box is not None
    if face.t is not None or not paths:
        raise Problem(404, "no-preview", f"face {face_id} has no preview yet: a scan makes it")
    try:
        made = state.engine.call(
            "preview", state.settings, state.generation, "face", face_id, paths[0], face.box
        )
    except EngineError as exc:
        raise Problem(404, "no-preview", f"face {face_id}: {exc}") from None
    return PathType(made)
