"""GET /search: `tagd search` (tags, recognised text, CLIP), same ranking."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query

from tagd.api.auth import require
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.search import Filters, search

router = APIRouter(tags=["search"], dependencies=[Depends(require("read"))])


@router.get("/search", summary="Files ranked by words, as `tagd search --json` ranks them")
def search_files(
    state: Annotated[ApiState, Depends(api_state)],
    q: Annotated[str, Query(min_length=1, max_length=1000, description="words to look for")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    tag: Annotated[str | None, Query(description="only files with this tag")] = None,
    person: Annotated[str | None, Query(description="only files showing this person")] = None,
    kind: Annotated[Literal["image", "video"] | None, Query()] = None,
) -> dict[str, Any]:
    if not q.strip():
        raise Problem(422, "invalid-parameter", "query parameter 'q': give words to search for")
    with state.catalog() as catalog:
        hits = search(
            catalog,
            state.settings,
            state.models_dir,
            q,
            Filters(tag=tag, person=person, kind=kind),
            limit,
        )
    return {"query": q, "results": [h.as_dict() for h in hits]}
