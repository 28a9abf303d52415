"""GET /status: what `tagd status` prints, as data."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from tagd.api.auth import require
from tagd.api.state import ApiState, api_state
from tagd.cli.report_cmds import status_report

router = APIRouter(tags=["status"], dependencies=[Depends(require("read"))])


@router.get("/status", summary="Counts by state, the queues, the daemon and the last scan")
def status(state: Annotated[ApiState, Depends(api_state)]) -> dict[str, Any]:
    with state.catalog() as catalog:
        return status_report(catalog, state.shas, state.state_dir)
