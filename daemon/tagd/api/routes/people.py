"""People: GET /people (what `tagd people list` shows), GET /people/{id} (its
faces), and what `tagd people name | merge | split` do, for admin keys. A change
re-derives the person tags of the files involved and queues their sidecars and
Stash writes (the daemon or the next `tagd scan` writes them)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from tagd.api.auth import require
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.catalog.catalog import Catalog
from tagd.paths import shown
from tagd.people import ops, store
from tagd.people.suggest import suggestions
from tagd.records import Person

router = APIRouter(tags=["people"])
reader = [Depends(require("read"))]
admin = [Depends(require("admin"))]
PersonId = Annotated[int, Path(ge=1, description="id from /people")]


class NameBody(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="the person's name")


class MergeBody(BaseModel):
    other: int = Field(ge=1, description="the person merged into this one (then gone)")


class SplitBody(BaseModel):
    faces: list[int] = Field(
        default_factory=list, description="face (detection) ids moved to a new person"
    )
    recluster: bool = Field(
        default=False, description="instead: cluster an unnamed person's faces again"
    )


def person_json(p: Person) -> dict[str, Any]:
    return {
        "id": p.id,
        "name": p.name,
        "label": p.label,
        "faces": p.faces,
        "example": shown(p.example) if p.example else None,
        "hidden": p.hidden,
    }


def _change(state: ApiState, change: Callable[[Catalog], Person]) -> dict[str, Any]:
    """One change to people, answered with the person as it is after it."""
    with state.catalog() as catalog:
        try:
            changed = person_json(change(catalog))
        except ops.PeopleError as exc:
            raise _refused(exc) from None
    state.deliver_soon()  # the files' person tags changed
    return changed


def _refused(exc: ops.PeopleError) -> Problem:
    if isinstance(exc, ops.NoSuchPerson):
        return Problem(404, "no-such-person", str(exc))
    return Problem(409, "people-conflict", str(exc))


@router.get(
    "/people", summary="People and unnamed clusters with their face counts", dependencies=reader
)
def people(state: Annotated[ApiState, Depends(api_state)]) -> dict[str, Any]:
    with state.catalog() as catalog:
        everyone = catalog.people()
        waiting = catalog.waiting_faces()
    # Faces not yet in a person: clustering waits for more like them.
    return {"people": [person_json(p) for p in everyone], "waiting_faces": waiting}


@router.get(
    "/people/suggestions",
    summary="Unnamed clusters that look like a named person: is this Alice?",
    dependencies=reader,
)
def people_suggestions(
    state: Annotated[ApiState, Depends(api_state)],
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
) -> dict[str, Any]:
    with state.catalog() as catalog:
        found = suggestions(catalog, state.settings, limit)
    return {"suggestions": [dataclasses.asdict(s) for s in found]}


@router.get("/people/{person_id}", summary="One person and each of its faces", dependencies=reader)
def person(state: Annotated[ApiState, Depends(api_state)], person_id: PersonId) -> dict[str, Any]:
    with state.catalog() as catalog:
        found = store.person(catalog, str(person_id))
        if found is None:
            raise Problem(404, "no-such-person", f"no person {person_id}; /people lists them")
        faces = catalog.faces_of(found.id)
    return person_json(found) | {
        "face_list": [
            {"id": f.detection_id, "path": shown(f.path), "box": list(f.box), "score": f.score}
            | ({"t": f.t} if f.t is not None else {})
            for f in faces
        ]
    }


@router.post("/people/{person_id}/name", summary="Name a person", dependencies=admin)
def name(
    state: Annotated[ApiState, Depends(api_state)], person_id: PersonId, body: NameBody
) -> dict[str, Any]:
    return _change(state, lambda c: ops.name(c, state.settings, str(person_id), body.name))


@router.post("/people/{person_id}/merge", summary="Merge another person into this one",
             dependencies=admin)  # fmt: skip
def merge(
    state: Annotated[ApiState, Depends(api_state)], person_id: PersonId, body: MergeBody
) -> dict[str, Any]:
    return _change(state, lambda c: ops.merge(c, state.settings, str(person_id), str(body.other)))


@router.post("/people/{person_id}/refuse",
             summary="The faces of another (unnamed) cluster are not this person",
             dependencies=admin)  # fmt: skip
def refuse(
    state: Annotated[ApiState, Depends(api_state)], person_id: PersonId, body: MergeBody
) -> dict[str, Any]:
    return _change(state, lambda c: ops.refuse_cluster(c, str(person_id), str(body.other)))


@router.post("/people/{person_id}/split", summary="Move faces to a new person, or recluster",
             dependencies=admin)  # fmt: skip
def split(
    state: Annotated[ApiState, Depends(api_state)], person_id: PersonId, body: SplitBody
) -> dict[str, Any]:
    if body.recluster == bool(body.faces):
        raise Problem(422, "invalid-parameter", "give either 'faces' or 'recluster': true")
    with state.catalog() as catalog:
        try:
            if body.recluster:
                made = ops.recluster(catalog, state.settings, str(person_id))
            else:
                made = [ops.split_faces(catalog, state.settings, str(person_id), body.faces)]
        except ops.PeopleError as exc:
            raise _refused(exc) from None
    state.deliver_soon()
    return {"people": [person_json(p) for p in made]}


class HideBody(BaseModel):
    hidden: bool = Field(default=True, description="false: show the cluster again")


FaceId = Annotated[int, Path(ge=1, description="a face id from /people/{id}")]


@router.post("/people/{person_id}/hide", summary="Hide an unnamed cluster (strangers)",
             dependencies=admin)  # fmt: skip
def hide(
    state: Annotated[ApiState, Depends(api_state)], person_id: PersonId, body: HideBody
) -> dict[str, Any]:
    return _change(state, lambda c: ops.hide(c, str(person_id), body.hidden))


# A user's verdict on one face of a person.
VERDICTS = {"reject": ops.refuse_face, "accept": ops.confirm_face}


@router.post("/people/{person_id}/faces/{face_id}/{verdict}",
             summary="reject: not this person (the face leaves it and never rejoins it); "
             "accept: yes, this person (kept as a user's decision)",
             dependencies=admin)  # fmt: skip
def face_verdict(
    state: Annotated[ApiState, Depends(api_state)],
    person_id: PersonId,
    face_id: FaceId,
    verdict: Literal["reject", "accept"],
) -> dict[str, Any]:
    decide = VERDICTS[verdict]
    return _change(state, lambda c: decide(c, state.settings, str(person_id), face_id))
