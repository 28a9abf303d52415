"""GET /dupes: `tagd dupes --json`: near-duplicate groups, which to keep and why;
POST /dupes/verdict: a group is not duplicates (never grouped again), or was
looked at and all kept. Nothing is ever deleted or moved."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from tagd.api.auth import require
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.cli.dupes_cmd import distinct_pairs, dupes_report

router = APIRouter(tags=["duplicates"])


@router.get(
    "/dupes",
    summary="Groups of near-duplicate photos with a suggestion which to keep",
    dependencies=[Depends(require("read"))],
)
def dupes(
    state: Annotated[ApiState, Depends(api_state)],
    threshold: Annotated[
        int | None,
        Query(ge=0, le=16, description="max differing hash bits (default: duplicates.threshold)"),
    ] = None,
) -> dict[str, Any]:
    bits = state.settings.duplicates.threshold if threshold is None else threshold
    with state.catalog() as catalog:
        return dupes_report(catalog, bits, distinct_pairs(catalog))


class DupeVerdict(BaseModel):
    content_ids: list[int] = Field(
        min_length=2, max_length=1000, description="the group's contents (from /files/{id})"
    )
    verdict: Literal["distinct", "kept"] = Field(
        description="distinct: not duplicates, never grouped again; kept: looked at, all kept"
    )


@router.post(
    "/dupes/verdict",
    summary="Say a group is not duplicates, or was looked at (nothing is deleted)",
    dependencies=[Depends(require("admin"))],
)
def dupe_verdict(
    state: Annotated[ApiState, Depends(api_state)], body: DupeVerdict
) -> dict[str, Any]:
    ids = sorted(set(body.content_ids))
    if len(ids) < 2:
        raise Problem(422, "invalid-parameter", "content_ids: give at least two different ones")
    with state.catalog() as catalog, catalog.transaction():
        unknown = set(ids) - catalog.hashed_contents(ids)
        if unknown:
            raise Problem(
                404,
                "no-such-content",
                f"content_ids {sorted(unknown)}: no such photo with a hash; /dupes lists them",
            )
        catalog.set_dupe_verdict(ids, body.verdict)
    return {"content_ids": ids, "verdict": body.verdict}
