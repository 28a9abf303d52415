"""GET /people: what `tagd people list` shows."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from tagd.api.auth import require
from tagd.api.state import ApiState, api_state
from tagd.paths import shown

router = APIRouter(tags=["people"], dependencies=[Depends(require("read"))])


@router.get("/people", summary="People and unnamed clusters with their face counts")
def people(state: Annotated[ApiState, Depends(api_state)]) -> dict[str, Any]:
    with state.catalog() as catalog:
        everyone = catalog.people()
        waiting = catalog.waiting_faces()
    return {
        "people": [
            {
                "id": p.id,
                "name": p.name,
                "label": p.label,
                "faces": p.faces,
                "example": shown(p.example) if p.example else None,
            }
            for p in everyone
        ],
        # Faces not yet in a person: clustering waits for more like them.
        "waiting_faces": waiting,
    }
