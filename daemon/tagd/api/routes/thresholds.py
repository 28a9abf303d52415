"""Thresholds that learn (tagd.policy.learning): GET /review/thresholds gives,
per tag people decided on, the precision its threshold gives and a suggested
one; POST /review/thresholds writes a threshold into config.toml (admin) and
derives the tags again from the stored findings."""

from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from tagd.api.auth import require
from tagd.api.problems import Problem
from tagd.api.state import ApiState, api_state
from tagd.policy.apply import derive_and_queue
from tagd.policy.learning import GROUPS, TARGET, ApplyError, apply_threshold, learned, rule_of
from tagd.policy.tags import TagPolicy
from tagd.sinks.select import enabled_sinks

router = APIRouter(tags=["review"])


class NewThreshold(BaseModel):
    tag: str = Field(min_length=1, max_length=500, description="the tag's full name")
    threshold: float = Field(ge=0.0, le=1.0)


@router.get(
    "/review/thresholds",
    summary="Per decided tag: the precision its threshold gives, and a suggested one",
    dependencies=[Depends(require("read"))],
)
def thresholds(
    state: Annotated[ApiState, Depends(api_state)],
    target: Annotated[float, Query(gt=0.0, le=1.0, description="precision wanted")] = TARGET,
) -> dict[str, Any]:
    with state.catalog() as catalog:
        found = learned(catalog, state.settings, target)
    return {"target": target, "tags": [dataclasses.asdict(x) for x in found]}


@router.post(
    "/review/thresholds",
    summary="Write a tag's threshold into the config and derive the tags again",
    dependencies=[Depends(require("admin"))],
)
def set_threshold(
    state: Annotated[ApiState, Depends(api_state)], body: NewThreshold
) -> dict[str, Any]:
    source = _source_of(state, body.tag)
    rule = rule_of(state.settings, source, body.tag)
    if rule is None:
        raise Problem(404, "no-such-rule", f"no label rule makes {body.tag!r}")
    path = state.settings.source
    if path is None:
        raise Problem(
            409,
            "no-config-file",
            "tagd runs on its built-in defaults: there is no config file to write "
            "(start it with --config FILE or TAGD_CONFIG)",
        )
    try:
        settings = apply_threshold(Path(path), GROUPS[source], rule[0], body.threshold)
    except ApplyError as exc:
        raise Problem(409, "config-not-written", str(exc)) from None
    if state.daemon is not None:
        # The daemon reloads as on SIGHUP: its scans take the rule, and the
        # tags are derived again from the stored findings.
        os.kill(os.getpid(), signal.SIGHUP)
        derived = None
    else:
        state.settings = settings
        derived = _derive_again(state, source)
    return {"tag": body.tag, "threshold": body.threshold, "config": str(path), "derived": derived}


def _source_of(state: ApiState, tag: str) -> str:
    with state.catalog() as catalog:
        source = catalog.tag_source(tag)
    if source is None:
        raise Problem(404, "no-such-tag", f"no file has or had the tag {tag!r}")
    return source


def _derive_again(state: ApiState, source: str) -> int:
    """`tagd serve`: every file `source` analysed gets its tags derived by the new
    rules now (their writes queued); returns how many changed."""
    with state.catalog() as catalog, catalog.transaction():
        work = {cid: [source] for cid in catalog.analysed_contents(source)}
        policy = TagPolicy(state.settings.tags)
        return len(derive_and_queue(catalog, policy, enabled_sinks(state.settings), work))
