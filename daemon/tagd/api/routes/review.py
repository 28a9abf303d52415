"""The review queue: GET /review lists tags whose score lies in a band
([tags.review], default 0.45-0.75: where models are least sure) that nobody
decided on yet, and the candidates, tags a file would get below their
threshold (`candidate`: accepting one adds it); POST /review stores an accept
or reject (admin), derives the file's tags again and queues its sidecar and
Stash writes."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from tagd.analyzers.taught import NAME as TAUGHT
from tagd.api.auth import require
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.paths import shown
from tagd.policy.verdicts import VerdictError, decide
from tagd.teach import apply_all

router = APIRouter(tags=["review"])
reader = [Depends(require("read"))]
admin = [Depends(require("admin"))]


class Verdict(BaseModel):
    content_id: int = Field(ge=1, description="from GET /review (or /files/{id})")
    tag: str = Field(min_length=1, max_length=500, description="the tag's full name")
    verdict: Literal["accept", "reject", "clear"]


def band(low: float, high: float) -> tuple[float, float]:
    if low > high:
        raise Problem(422, "invalid-parameter", f"low ({low}) must not be above high ({high})")
    return low, high


@router.get(
    "/review", summary="Tags waiting for a decision", dependencies=[Depends(require("read"))]
)
def review(
    state: Annotated[ApiState, Depends(api_state)],
    low: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="default: [tags.review] low")
    ] = None,
    high: Annotated[
        float | None, Query(ge=0.0, le=1.0, description="default: [tags.review] high")
    ] = None,
    tag: Annotated[str | None, Query(max_length=500)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    configured = state.settings.tags.review
    low, high = band(
        configured.low if low is None else low, configured.high if high is None else high
    )
    with state.catalog() as catalog:
        items = catalog.review_items(low, high, tag, limit)
        counts = catalog.review_tags(low, high)
    return {
        "items": [
            {
                "content_id": i.content_id,
                "file_id": i.file_id,
                "path": shown(i.path),
                "kind": i.kind,
                "tag": i.name,
                "score": i.score,
                "source": i.source,
                "candidate": i.candidate,
            }
            for i in items
        ],
        "tags": [{"tag": name, "files": n} for name, n in counts],
    }


@router.post(
    "/review", summary="Accept or reject a tag on a file", dependencies=[Depends(require("admin"))]
)
def decide_tag(state: Annotated[ApiState, Depends(api_state)], body: Verdict) -> dict[str, Any]:
    with state.catalog() as catalog:
        found = catalog.tag_or_candidate(body.content_id, body.tag)
        taught = found is not None and found.source == TAUGHT
        try:
            changed = decide(catalog, state.settings, body.content_id, body.tag, body.verdict)
        except VerdictError as exc:
            raise Problem(404, "no-such-tag", str(exc)) from None
        if taught:
            # A decision on a taught tag is one more example: fitted again at once.
            changed = bool(apply_all(catalog, state.settings)) or changed
        tags = [t.name for t in catalog.tags(body.content_id)]
    if changed:
        state.deliver_soon()
    return {"changed": changed, "tags": tags}
