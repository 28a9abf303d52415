"""Stash performers and studios from tagd's people and studio tags (opt-in).

Which tags go where (see `route`):

- `[stash] performers = true`: every named person of a file (the faces tag
  "AI|People|Alice") becomes a performer of the scene or image instead of a
  Stash tag: performers are where Stash keeps people.
- `[stash] studio = true`: the best studio found in the file's text (the OCR
  tag "AI|Studio|Acme" with the highest score; a tie goes to the first name)
  becomes the scene's or image's studio instead of a Stash tag. The other
  suggestions are dropped: an object has one studio.

Off, those tags stay ordinary Stash tags, exactly as before.

Finding them in Stash (`PerformerResolver`, `StudioResolver`, once per
delivery run and name). Stash's EQUALS filter is SQL LIKE ('_' and '%' are
wildcards), so the matches it returns are compared here, case-insensitively:

- a performer named exactly so is reused. Stash keeps name + disambiguation
  unique, so one name may belong to several performers: then the one without a
  disambiguation is used, and without one the person is skipped with a
  warning (tagd never guesses which "Alice" is meant). No performer of that
  name: one whose alias it is (only when that alias is not ambiguous too);
  none at all: it is created, with "ignore auto tag" set so Stash's
  auto-tagger does not match the name against file names.
- a studio named so, else one whose alias it is, is reused; none: created the
  same way (Stash keeps studio names unique).

What tagd may change afterwards (see deliver.py, which records it in the
catalog before the write that could be lost): performers tagd added itself and
only those, once the person no longer applies (renamed, split away);
performers already on the object are never recorded as tagd's. The studio
only where the object has none or still has the one tagd set (`plan_studio`):
a studio the user set is never replaced, and never cleared.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tagd.config import Settings
from tagd.records import Tag
from tagd.sinks.stash.client import StashClient, StashGraphQLError

log = logging.getLogger(__name__)

FIND_PERFORMERS = """
query FindPerformers($name: String!) {
  findPerformers(
    performer_filter: {name: {value: $name, modifier: EQUALS},
                       OR: {aliases: {value: $name, modifier: EQUALS}}}
    filter: {per_page: 50}
  ) { performers { id name disambiguation alias_list } }
}
"""

CREATE_PERFORMER = """
mutation CreatePerformer($input: PerformerCreateInput!) {
  performerCreate(input: $input) { id }
}
"""

FIND_STUDIOS = """
query FindStudios($name: String!) {
  findStudios(
    studio_filter: {name: {value: $name, modifier: EQUALS},
                    OR: {aliases: {value: $name, modifier: EQUALS}}}
    filter: {per_page: 50}
  ) { studios { id name aliases } }
}
"""

CREATE_STUDIO = """
mutation CreateStudio($input: StudioCreateInput!) {
  studioCreate(input: $input) { id }
}
"""


# ---------------------------------------------------------------- which tags


@dataclass
class Routed:
    """One file's tags, sorted by where they go in Stash."""

    tags: list[Tag] = field(default_factory=list)  # Stash tags (and markers)
    people: list[str] = field(default_factory=list)  # performer names
    studio: str | None = None  # the studio suggestion that wins


def route(tags: Sequence[Tag], settings: Settings) -> Routed:
    """Split a file's tags into Stash tags, performers and a studio (see above)."""
    t = settings.tags
    people = _prefix(t.root, t.people.parent)
    studios = _prefix(t.root, t.text.studio_parent)
    text_tag = f"{t.root}|{t.text.name.strip()}"  # "has text": never a studio
    routed = Routed()
    suggestions: list[Tag] = []
    for tag in tags:
        if settings.stash.performers and tag.source == "faces" and _leaf_of(tag, people):
            routed.people.append(_leaf_of(tag, people))
        elif (
            settings.stash.studio
            and tag.source == "ocr"
            and tag.name != text_tag
            and _leaf_of(tag, studios)
        ):
            suggestions.append(tag)
        else:
            routed.tags.append(tag)
    if suggestions:
        best = min(suggestions, key=lambda s: (-s.score, _leaf_of(s, studios).lower()))
        routed.studio = _leaf_of(best, studios)
    return routed


def _prefix(root: str, parent: str) -> str:
    return "|".join([root, *(p for p in parent.split("|") if p)]) + "|"


def _leaf_of(tag: Tag, prefix: str) -> str:
    """The name below `prefix` ("" when the tag is not one level under it)."""
    if not tag.name.startswith(prefix):
        return ""
    leaf = tag.name[len(prefix) :]
    return "" if "|" in leaf else leaf


# ---------------------------------------------------------------- the studio rule


@dataclass(frozen=True)
class StudioPlan:
    """What to do with one object's studio (see `plan_studio`)."""

    write: bool = False  # send studio_id (below) with the bulk update
    studio_id: str | None = None  # the new studio; None with write = clear it
    record: frozenset[str] = frozenset()  # studios to record as tagd's before the write
    forget: frozenset[str] = frozenset()  # records to drop after it


def plan_studio(
    current: str | None,
    ours: set[str],
    suggestion: str | None,
    resolve: Callable[[str], str | None],
) -> StudioPlan:
    """The studio change for an object whose studio is `current`, where tagd
    recorded `ours` as set by itself and the file's best suggestion is
    `suggestion` (a name; resolved only when tagd may set it).

    tagd may touch the studio while the object has none or one of `ours`.
    `ours` holds the old and the new studio while tagd moves the object from
    one to the other, so a lost answer leaves the old one still tagd's.
    """
    free = current is None or current in ours
    if not free:
        # The user chose this studio (or changed tagd's): theirs, forget ours.
        return StudioPlan(forget=frozenset(ours))
    if suggestion is not None:
        target = resolve(suggestion)
        if target is None:
            return StudioPlan()  # several studios of that name: left as it is
        return StudioPlan(
            write=current != target,
            studio_id=target,
            record=frozenset({target} - ours),
            forget=frozenset(ours - {target}),
        )
    # No suggestion (any more): clear the studio tagd set, then forget it.
    return StudioPlan(write=current is not None, forget=frozenset(ours))


# ---------------------------------------------------------------- resolvers


class _Resolver:
    """Find-or-create by name, cached for one delivery run."""

    kind = ""

    def __init__(self, client: StashClient) -> None:
        self.client = client
        self._ids: dict[str, str | None] = {}  # name (lower) -> id; None = skipped
        # name (lower) -> the ids it could mean: tagd must not remove any of them.
        self.ambiguous: dict[str, frozenset[str]] = {}

    def resolve(self, name: str) -> str | None:
        """The id for `name`, created when Stash has none; None when ambiguous."""
        key = name.lower()
        if key not in self._ids:
            found = self._lookup(name)
            named = [f for f in found if f["name"].lower() == key]
            aliased = [f for f in found if key in (a.lower() for a in self._aliases(f))]
            if named or aliased:
                self._ids[key] = self._pick(name, named, aliased)
            elif found:
                self._ids[key] = self._blocked(name, found)
            else:
                try:
                    self._ids[key] = self._create(name)
                except StashGraphQLError as exc:
                    if not any("already exists" in m for m in exc.messages):
                        raise
                    self._ids[key] = self._blocked(name, [])
        return self._ids[key]

    def _blocked(self, name: str, near: list[dict[str, Any]]) -> None:
        """Stash compares names with SQL LIKE ('_' and '%' match any character),
        so a near match keeps it from creating `name`: skipped, with the fix."""
        others = ", ".join(_label(f) for f in near) or f"another {self.kind}"
        log.warning(
            "stash: cannot create %s %r: Stash's name check matches %s ('_' and '%%' "
            "stand for any characters there); skipped: rename one of them, or give the "
            "existing one %r as an alias",
            self.kind,
            name,
            others,
            name,
        )
        self.ambiguous[name.lower()] = frozenset(str(f["id"]) for f in near)
        return None

    def _pick(
        self, name: str, named: list[dict[str, Any]], aliased: list[dict[str, Any]]
    ) -> str | None:
        candidates = named or aliased
        if len(candidates) == 1:
            return str(candidates[0]["id"])
        plain = [c for c in named if not (c.get("disambiguation") or "").strip()]
        if len(plain) == 1:
            return str(plain[0]["id"])
        self.ambiguous[name.lower()] = frozenset(str(c["id"]) for c in candidates)
        log.warning(
            "stash: %d %ss match %r (%s): skipped, tagd does not guess; "
            "give one of them a unique name or alias",
            len(candidates),
            self.kind,
            name,
            ", ".join(_label(c) for c in candidates),
        )
        return None

    def _lookup(self, name: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _aliases(self, found: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    def _create(self, name: str) -> str:
        raise NotImplementedError


class PerformerResolver(_Resolver):
    kind = "performer"

    def _lookup(self, name: str) -> list[dict[str, Any]]:
        answer = self.client.call(FIND_PERFORMERS, {"name": name})
        return list(answer["findPerformers"]["performers"])

    def _aliases(self, found: dict[str, Any]) -> list[str]:
        return list(found.get("alias_list") or [])

    def _create(self, name: str) -> str:
        payload = {"name": name, "ignore_auto_tag": True}
        return str(self.client.call(CREATE_PERFORMER, {"input": payload})["performerCreate"]["id"])


class StudioResolver(_Resolver):
    kind = "studio"

    def _lookup(self, name: str) -> list[dict[str, Any]]:
        return list(self.client.call(FIND_STUDIOS, {"name": name})["findStudios"]["studios"])

    def _aliases(self, found: dict[str, Any]) -> list[str]:
        return list(found.get("aliases") or [])

    def _create(self, name: str) -> str:
        payload = {"name": name, "ignore_auto_tag": True}
        return str(self.client.call(CREATE_STUDIO, {"input": payload})["studioCreate"]["id"])


def _label(found: dict[str, Any]) -> str:
    extra = (found.get("disambiguation") or "").strip()
    name = f"{found['name']} ({extra})" if extra else found["name"]
    return f"{name} #{found['id']}"
