"""Taught tags: POST /teach fits a tag on example files and applies it to the
whole library from stored embeddings (tagd.teach); GET /teach lists them;
DELETE /teach/{name} takes one off every file."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel, Field

from tagd.api.auth import require
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.catalog.catalog import Catalog
from tagd.teach import MAX_NAME, TeachError, describe, forget, teach

router = APIRouter(tags=["teach"])


class Lesson(BaseModel):
    tag: str = Field(min_length=1, max_length=MAX_NAME, description="the new tag's name")
    examples: list[int] = Field(
        min_length=1, max_length=1000, description="ids of files that show it (/files)"
    )
    counter: list[int] = Field(
        default_factory=list, max_length=1000, description="ids of files that do not"
    )


def _contents(catalog: Catalog, file_ids: list[int], field: str) -> list[int]:
    found = catalog.readable_contents(file_ids)
    missing = [f for f in file_ids if f not in found]
    if missing:
        raise Problem(
            404, "no-such-file", f"{field}: no readable file {missing[0]}; /files lists them"
        )
    return [found[f] for f in file_ids]


@router.post(
    "/teach",
    summary="Teach a tag by example and apply it to the library (no model runs)",
    dependencies=[Depends(require("admin"))],
)
def teach_tag(state: Annotated[ApiState, Depends(api_state)], body: Lesson) -> dict[str, Any]:
    with state.catalog() as catalog:
        examples = _contents(catalog, body.examples, "examples")
        counter = _contents(catalog, body.counter, "counter")
        try:
            found = teach(catalog, state.settings, body.tag, examples, counter)
        except TeachError as exc:
            raise Problem(422, "cannot-teach", str(exc)) from None
    state.deliver_soon()
    return dataclasses.asdict(found)


@router.get("/teach", summary="The taught tags", dependencies=[Depends(require("read"))])
def taught(state: Annotated[ApiState, Depends(api_state)]) -> dict[str, Any]:
    with state.catalog() as catalog:
        return {
            "taught": [
                dataclasses.asdict(describe(catalog, state.settings, t.name))
                for t in catalog.taught_tags()
            ]
        }


@router.delete(
    "/teach/{name}",
    summary="Take a taught tag off every file and forget it",
    dependencies=[Depends(require("admin"))],
)
def forget_tag(
    state: Annotated[ApiState, Depends(api_state)],
    name: Annotated[str, Path(max_length=MAX_NAME)],
) -> dict[str, Any]:
    with state.catalog() as catalog:
        if not forget(catalog, state.settings, name):
            raise Problem(
                404, "no-such-tag", f"no taught tag {name!r}; GET /api/v1/teach lists them"
            )
    state.deliver_soon()
    return {"forgotten": name}
