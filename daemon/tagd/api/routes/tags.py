"""GET /tags: every tag in the catalog with how many files carry it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from tagd.api.auth import require
from tagd.api.state import ApiState, api_state

router = APIRouter(tags=["tags"], dependencies=[Depends(require("read"))])


@router.get("/tags", summary="Every tag with its number of files, by name")
def tags(state: Annotated[ApiState, Depends(api_state)]) -> dict[str, Any]:
    with state.catalog() as catalog:
        return {"tags": [{"name": n, "files": k} for n, k in catalog.tag_file_counts()]}
