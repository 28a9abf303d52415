"""GET /dupes: `tagd dupes --json`: near-duplicate groups, which to keep and why;
POST /dupes/verdict: a group is not duplicates (never grouped again), or was
looked at and all kept. POST /dupes/quarantine and /dupes/restore: the copies
moved aside and back (tagd.quarantine); GET /dupes/quarantine: what is there.
Nothing is deleted here: only the daemon purges, when told to."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from tagd import quarantine as q
from tagd.api.auth import require
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.cli.dupes_cmd import distinct_pairs, dupes_report, run_quarantine
from tagd.dupes import groups
from tagd.paths import shown
from tagd.quarantine import Move

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


class QuarantineRequest(BaseModel):
    dry_run: bool = Field(False, description="plan the moves and make none")
    threshold: int | None = Field(
        None, ge=0, le=16, description="max differing hash bits (default: duplicates.threshold)"
    )


def _moves(moves: list[Move]) -> list[dict[str, str]]:
    return [{"from": shown(m.source), "to": shown(m.target)} for m in moves]


def _left(skipped: list[tuple[str, str]]) -> list[dict[str, str]]:
    return [{"path": shown(path), "reason": why} for path, why in skipped]


@router.post(
    "/dupes/quarantine",
    summary="Move every copy but the kept one of each group into the quarantine folder",
    dependencies=[Depends(require("admin"))],
)
def quarantine(
    state: Annotated[ApiState, Depends(api_state)], body: QuarantineRequest
) -> dict[str, Any]:
    bits = state.settings.duplicates.threshold if body.threshold is None else body.threshold
    with state.catalog() as catalog:
        found = groups(catalog, bits, distinct_pairs(catalog))
        day, moves, report, finished = run_quarantine(catalog, state.settings, found, body.dry_run)
    return {
        "date": day.isoformat(),
        "dry_run": body.dry_run,
        "moved": _moves(moves if body.dry_run else report.moved),
        "left": _left(report.skipped),
        "finished_interrupted": finished,
    }


@router.get(
    "/dupes/quarantine",
    summary="The days with quarantined copies, per library root",
    dependencies=[Depends(require("read"))],
)
def quarantined(state: Annotated[ApiState, Depends(api_state)]) -> dict[str, Any]:
    days = q.days(state.settings.library.roots)
    return {
        "retention_days": state.settings.duplicates.retention_days,
        "purge": state.settings.duplicates.purge,
        "days": [
            {"root": shown(root), "date": day.isoformat(), "files": q.count_moved(root, day)}
            for root, day in days
        ],
    }


class RestoreRequest(BaseModel):
    date: dt.date | None = Field(None, description="the day to put back (default: every day)")


@router.post(
    "/dupes/restore",
    summary="Put quarantined copies back where they were",
    dependencies=[Depends(require("admin"))],
)
def restore(state: Annotated[ApiState, Depends(api_state)], body: RestoreRequest) -> dict[str, Any]:
    report = q.Report()
    q.restore(state.settings.library.roots, body.date, report)
    return {"restored": [shown(m.target) for m in report.moved], "left": _left(report.skipped)}
