"""GET /healthz: is the server up and the catalog readable (no key needed, for
monitoring and for scripts waiting on `tagd serve`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from tagd.api.state import ApiState, api_state

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The server answers and the catalog can be read")
def healthz(state: Annotated[ApiState, Depends(api_state)]) -> dict[str, str]:
    with state.catalog() as catalog:
        catalog.get_meta("last_scan")  # a read: raises (503) when the catalog cannot be read
    return {"status": "ok"}
