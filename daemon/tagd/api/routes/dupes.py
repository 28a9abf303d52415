"""GET /dupes: `tagd dupes --json`: near-duplicate groups, which to keep and why."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from tagd.api.auth import require
from tagd.api.state import ApiState, api_state
from tagd.cli.dupes_cmd import dupes_report
from tagd.dupes import load_photos

router = APIRouter(tags=["duplicates"], dependencies=[Depends(require("read"))])


@router.get("/dupes", summary="Groups of near-duplicate photos with a suggestion which to keep")
def dupes(
    state: Annotated[ApiState, Depends(api_state)],
    threshold: Annotated[
        int | None,
        Query(ge=0, le=16, description="max differing hash bits (default: duplicates.threshold)"),
    ] = None,
) -> dict[str, Any]:
    bits = state.settings.duplicates.threshold if threshold is None else threshold
    with state.catalog() as catalog:
        photos = load_photos(catalog)
    return dupes_report(photos, bits)
