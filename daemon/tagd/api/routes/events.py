"""GET /events: what the daemon does, live, as server-sent events (a UI's
progress bar, a plugin's log): `scan` (queued, running, done, with its
summary), `progress` (state and files done / to do), `errors` (files that
failed), `error` (a scan that failed), `paused`, `resumed`. Each event's data
is JSON. A comment line every 15 s keeps proxies from closing a quiet stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.sse import EventSourceResponse, ServerSentEvent

from tagd.api.auth import require
from tagd.api.state import ApiState, api_state

router = APIRouter(tags=["scans"], dependencies=[Depends(require("read"))])


@router.get(
    "/events",
    response_class=EventSourceResponse,
    summary="Live events: scans, progress, errors, pause and resume (text/event-stream)",
)
async def events(
    state: Annotated[ApiState, Depends(api_state)],
) -> AsyncIterator[ServerSentEvent]:
    listener = state.events.subscribe()
    try:
        # A first event, so a client knows it is connected and what the daemon does.
        yield ServerSentEvent(event="hello", data=state.snapshot())
        while True:  # until the client goes: the server then cancels this generator
            event = await listener.next(timeout=5.0)
            if event is not None:
                kind = event.pop("event")
                yield ServerSentEvent(event=kind, id=str(event["id"]), data=event)
    finally:
        state.events.unsubscribe(listener)
