"""A Stash stand-in for tests: Stash's real GraphQL schema, state in memory.

graphql-core parses and validates every request against the schema vendored in
tests/data (see its header), so a query or mutation tagd sends that real Stash
would reject is rejected here too, and recorded in `invalid` (the fixture fails
the test on any). Resolvers cover what tagd uses: findScenes/findImages by
path or tag, findTags by name/alias, tagCreate/tagUpdate, findPerformers /
performerCreate and findStudios / studioCreate by name/alias, bulk updates of
tags and performers in ADD/REMOVE/SET mode and of the studio, scene markers.
Only 127.0.0.1, random port. Where it matters the behaviour follows Stash's
server code (stashapp/stash; the file is named beside each rule below):

- Names, aliases and paths are compared as Stash's SQL does: EQUALS is
  `LIKE ?` without ESCAPE, NOT_EQUALS `NOT LIKE` ('%' any run, '_' any one
  character, case folded for ASCII letters only), INCLUDES/EXCLUDES are
  `LIKE '%word%'` per word. So EQUALS "tagd_Tagged" also finds "tagd Tagged".
- Creating or renaming refuses what Stash refuses, with Stash's messages: a tag
  name or alias that LIKE-matches another tag's name or alias, a performer
  whose name (and disambiguation) LIKE-matches another, a studio name or alias
  that LIKE-matches another studio's; names are trimmed first, as Stash does.
- `version` (constructor; default "v0.28.0-test") is what the `version` query
  answers; below v0.28.0 the schema has no `end_seconds` (SceneMarker and the
  marker create/update inputs), as in those releases. A request refused only
  for that goes to `refused_by_version`, not `invalid`.
- Answers as gqlgen's POST transport: a request that does not parse or
  validate (variables included) gets 422 `{"errors": [...], "data": null}`; an
  error raised while resolving (a refused mutation) gets 200 with
  `{"errors": [{"message", "path"}], "data": ...}`.
- bulkSceneUpdate/bulkImageUpdate run in one transaction: an unknown object,
  tag, performer or studio id fails the whole update (nothing changes). Then
  each object's Update.Post hooks run one at a time before the answer:
  `hook_seconds` (default 0) each, with the state unlocked meanwhile, so N
  objects answer after about N*hook_seconds and the write stands even when
  the client has given up waiting.
- Scene markers: end_seconds < seconds is refused, and so is destroying or
  updating a marker that does not exist.
- findScenes/findImages/findTags/...: per_page -1 is all, 0 is none (count is
  still the total), missing is 25; `sort` ("path", "id", "title", ...) and
  `direction` are obeyed, an unknown sort is refused; without a sort tags,
  performers and studios come by name, scenes and images by id.
- Authentication as Stash's: with `api_key` set, a missing or wrong ApiKey
  (header or ?apikey=) gets 401 with an empty body and `WWW-Authenticate:
  FormBased`; with `api_key` "" (no login configured) any ApiKey sent is
  refused the same way.

Fault modes (`mode`): "ok", "slow" (sleep past the client's timeout), "500",
"garbage" (a non-JSON 200), "drop" (close the connection without answering),
"tripwire" (403 with Stash's public-exposure tripwire text, which Stash answers
before it looks at any key); `drop_after` switches to "drop" after that many
requests; `lose_after` too, but it first carries out the request after those
and loses only its answer (what a connection cut mid-answer does); "canned"
answers the queries that contain `canned_match` with `canned` (JSON, status
200: an answer of the wrong shape) and the others as usual; stop()/start()
close and reopen the port while keeping the state. `redirects` maps a request
path to (status, Location) answered instead. `OtherHost` is a second server on
127.0.0.1 that records what it is sent (did an ApiKey header leak there?).
"""

from __future__ import annotations

import functools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from graphql import (
    GraphQLError,
    GraphQLSchema,
    OperationDefinitionNode,
    Undefined,
    build_schema,
    execute,
    get_named_type,
    is_enum_type,
    is_input_object_type,
    is_list_type,
    is_non_null_type,
    parse,
    type_from_ast,
    validate,
)
from graphql.execution.values import get_variable_values

SCHEMA_FILE = Path(__file__).parent / "data" / "stash_schema.graphql"
NOW = "2024-01-01T00:00:00Z"
DEFAULT_VERSION = "v0.28.0-test"
END_SECONDS_SINCE = (0, 28, 0)  # graphql/schema/types/scene-marker.graphql, #5311

# internal/api/authentication.go
TRIPWIRE_MESSAGE = (
    "Stash is exposed to the public internet without authentication, and is not serving any "
    "more content to protect your privacy. More information and fixes are available at "
    "https://discourse.stashapp.cc/t/-/1658"
)


class StashError(Exception):
    """An error a Stash resolver returns: gqlgen answers it with its message."""


def _fk_failed(table: str, id_col: str, fk_col: str, oid: int, fk: int) -> StashError:
    # pkg/sqlite/table.go joinTable.insertJoins, wrapped by sqlError in pkg/sqlite/tx.go.
    sql = (
        f"INSERT INTO {table} ({id_col}, {fk_col}) VALUES (?, ?) "
        f"ON CONFLICT ({id_col}, {fk_col}) DO NOTHING"
    )
    return StashError(f"error executing `{sql}` [[{oid} {fk}]]: FOREIGN KEY constraint failed")


def _atoi(value: Any, what: str) -> int:
    # strconv.Atoi as the resolvers call it ("converting ids: ...").
    text = str(value)
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise StashError(f'{what}: strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


# ---------------------------------------------------------------- SQL LIKE and collation


@functools.lru_cache(maxsize=4096)
def _like_regex(pattern: str) -> re.Pattern[str]:
    """SQLite's LIKE without ESCAPE: '%' any run, '_' any one character, ASCII
    letters match either case, everything else (backslash included) itself."""
    parts = []
    for ch in pattern:
        if ch == "%":
            parts.append(".*")
        elif ch == "_":
            parts.append(".")
        elif ch.isascii() and ch.isalpha():
            parts.append(f"[{ch.lower()}{ch.upper()}]")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.DOTALL)


def sql_like(value: str | None, pattern: str) -> bool | None:
    """`value LIKE pattern` as SQLite computes it (None: NULL)."""
    if value is None:
        return None
    return _like_regex(pattern).fullmatch(value) is not None


def _search_words(q: str) -> list[str]:
    # pkg/sqlite/sql.go getStringSearchClause / criterion_handlers.go
    # getPathSearchClauseMany: words split on whitespace unless the value is quoted.
    q = q.strip()
    trimmed = q.strip('"')
    if trimmed != q:
        return [trimmed]
    return re.sub(r"[\t\n\f\r ]+", " ", q).split(" ")


def _string_criterion(value: str | None, c: dict[str, Any]) -> bool:
    """pkg/sqlite/criterion_handlers.go stringCriterionHandler: one column."""
    modifier, wanted = c["modifier"], c.get("value") or ""
    if modifier == "EQUALS":
        return sql_like(value, wanted) is True
    if modifier == "NOT_EQUALS":
        return sql_like(value, wanted) is False
    if modifier == "INCLUDES":
        return any(sql_like(value, f"%{w}%") for w in _search_words(wanted))
    if modifier == "EXCLUDES":
        return all(sql_like(value, f"%{w}%") is False for w in _search_words(wanted))
    if modifier == "IS_NULL":
        return value is None or value.strip(" ") == ""
    if modifier == "NOT_NULL":
        return value is not None and value.strip(" ") != ""
    raise NotImplementedError(f"string modifier {modifier} not served by the test server")


def _path_criterion(paths: list[str], c: dict[str, Any]) -> bool:
    """pkg/sqlite/criterion_handlers.go pathCriterionHandler and getPathSearchClause:
    `folder || '/' || basename LIKE ?` (no wildcards added for EQUALS), against
    every file of the object (a join: any file will do)."""
    modifier, wanted = c["modifier"], c.get("value") or ""
    if modifier == "EQUALS":
        return any(sql_like(p, wanted) for p in paths)
    if modifier == "NOT_EQUALS":
        return any(not sql_like(p, wanted) for p in paths)
    if modifier == "INCLUDES":
        words = _search_words(wanted)
        return any(sql_like(p, f"%{w}%") for p in paths for w in words)
    if modifier == "EXCLUDES":
        words = _search_words(wanted)
        return any(all(not sql_like(p, f"%{w}%") for w in words) for p in paths)
    if modifier == "IS_NULL":
        return False
    if modifier == "NOT_NULL":
        return bool(paths)
    raise NotImplementedError(f"path modifier {modifier} not served by the test server")


def _fold(ch: str) -> str:
    """The lowest-numbered rune simple case folding makes equal to `ch`."""
    options = [ch, ch.lower(), ch.upper(), ch.lower().upper(), ch.upper().lower()]
    return min((o for o in options if len(o) == 1), key=ord)


def natural_less(s1: str, s2: str) -> bool:
    """COLLATE NATURAL_CI (pkg/sqlite/driver.go): casefolded.NaturalLess of
    github.com/WithoutPants/sortorder. Digit runs compare by value (fewer
    leading zeros first on a tie), other characters one by one, ASCII by their
    upper case, others by their lowest case-equivalent."""
    i = j = 0
    n1, n2 = len(s1), len(s2)
    while i < n1 and j < n2:
        c1, c2 = s1[i], s2[j]
        if not ("0" <= c1 <= "9" and "0" <= c2 <= "9"):
            i, j = i + 1, j + 1
            if c1 == c2:
                continue
            if c1.isascii() and c2.isascii():
                u1, u2 = c1.upper(), c2.upper()
            else:
                u1, u2 = _fold(c1), _fold(c2)
            if u1 != u2:
                return u1 < u2
            continue
        while i < n1 and s1[i] == "0":
            i += 1
        while j < n2 and s2[j] == "0":
            j += 1
        nz1, nz2 = i, j
        while i < n1 and "0" <= s1[i] <= "9":
            i += 1
        while j < n2 and "0" <= s2[j] <= "9":
            j += 1
        if i - nz1 != j - nz2:
            return i - nz1 < j - nz2
        if s1[nz1:i] != s2[nz2:j]:
            return s1[nz1:i] < s2[nz2:j]
        if nz1 != nz2:
            return nz1 < nz2
    return n1 - i < n2 - j


def _natural_cmp(a: str, b: str) -> int:
    return -1 if natural_less(a, b) else (1 if natural_less(b, a) else 0)


def _sorted(items: list[Any], keys: list[tuple[Callable[[Any], Any], bool, bool]]) -> list[Any]:
    """Sort by several (key, natural collation?, descending?) terms in turn: one
    stable sort per term, the last term first."""
    out = list(items)
    natural = functools.cmp_to_key(_natural_cmp)
    for key, collated, desc in reversed(keys):
        if collated:
            out.sort(key=lambda x, key=key: natural(key(x)), reverse=desc)
        else:
            out.sort(key=key, reverse=desc)
    return out


def _folder_and_base(path: str) -> tuple[str, str]:
    """A path as Stash stores it: parent folder and basename (Windows paths
    split on either separator, as Stash on Windows does)."""
    windows = bool(re.match(r"^[A-Za-z]:[\\/]|^\\\\", path))
    cut = max(path.rfind("/"), path.rfind("\\")) if windows else path.rfind("/")
    return (path[:cut], path[cut + 1 :]) if cut >= 0 else ("", path)


# ---------------------------------------------------------------- rows


@dataclass
class TagRow:
    id: str
    name: str
    aliases: list[str] = field(default_factory=list)
    ignore_auto_tag: bool = False
    parent_ids: list[str] = field(default_factory=list)


@dataclass
class PerformerRow:
    id: str
    name: str
    disambiguation: str | None = None
    aliases: list[str] = field(default_factory=list)
    ignore_auto_tag: bool = False


@dataclass
class StudioRow:
    id: str
    name: str
    aliases: list[str] = field(default_factory=list)
    ignore_auto_tag: bool = False


@dataclass
class SceneRow:
    id: str
    path: str
    tag_ids: list[str] = field(default_factory=list)
    kind: str = "scene"  # scene | image
    performer_ids: list[str] = field(default_factory=list)
    studio_id: str | None = None
    more_paths: list[str] = field(default_factory=list)  # a scene with several files
    title: str | None = None

    @property
    def paths(self) -> list[str]:
        return [self.path, *self.more_paths]


@dataclass
class MarkerRow:
    id: str
    scene_id: str
    title: str
    seconds: float
    end_seconds: float | None
    primary_tag_id: str
    tag_ids: list[str] = field(default_factory=list)


def _by_name(rows: Iterable[Any]) -> list[Any]:
    # The default sort of tags, performers and studios: name COLLATE NATURAL_CI ASC.
    return _sorted(
        list(rows), [(lambda r: r.name, True, False), (lambda r: int(r.id), False, False)]
    )


class StashState:
    def __init__(self) -> None:
        self.tags: dict[str, TagRow] = {}
        self.scenes: dict[str, SceneRow] = {}
        self.images: dict[str, SceneRow] = {}
        self.markers: dict[str, MarkerRow] = {}
        self.performers: dict[str, PerformerRow] = {}
        self.studios: dict[str, StudioRow] = {}
        self._next = 0

    def new_id(self) -> str:
        self._next += 1
        return str(self._next)

    def add_scene(
        self,
        path: str,
        tag_ids: list[str] | None = None,
        performer_ids: list[str] | None = None,
        studio_id: str | None = None,
    ) -> str:
        sid = self.new_id()
        self.scenes[sid] = SceneRow(
            sid, path, list(tag_ids or []), "scene", list(performer_ids or []), studio_id
        )
        return sid

    def add_image(
        self,
        path: str,
        tag_ids: list[str] | None = None,
        performer_ids: list[str] | None = None,
        studio_id: str | None = None,
    ) -> str:
        iid = self.new_id()
        self.images[iid] = SceneRow(
            iid, path, list(tag_ids or []), "image", list(performer_ids or []), studio_id
        )
        return iid

    def add_performer(
        self, name: str, disambiguation: str | None = None, aliases: list[str] | None = None
    ) -> str:
        """A performer as performerCreate makes it (same checks, same messages)."""
        name, extra = name.strip(), (disambiguation or "").strip()
        aliases = [a.strip() for a in aliases or []]
        self.check_performer(name, extra, aliases)
        pid = self.new_id()
        self.performers[pid] = PerformerRow(pid, name, extra or None, aliases)
        return pid

    def add_studio(
        self, name: str, aliases: list[str] | None = None, ignore_auto_tag: bool = False
    ) -> str:
        """A studio as studioCreate makes it (same checks, same messages)."""
        name = name.strip()
        aliases = [a.strip() for a in aliases or []]
        self.check_studio_name(name, None)
        sid = self.new_id()
        self.studios[sid] = StudioRow(sid, name, [], ignore_auto_tag)
        try:
            self.check_studio_aliases(sid, aliases)
        except StashError:
            del self.studios[sid]
            raise
        self.studios[sid].aliases = aliases
        return sid

    def add_tag(self, name: str, aliases: list[str] | None = None, parents: list[str] = ()) -> str:
        """A tag as tagCreate makes it (same checks, same messages)."""
        name = name.strip()
        aliases = [a.strip() for a in aliases or []]
        self.check_tag(name, aliases, None)
        tid = self.new_id()
        self.tags[tid] = TagRow(tid, name, aliases, parent_ids=list(parents))
        return tid

    # Test helpers (exact, case-insensitive): not what Stash's filters do.
    def performers_named(self, name: str) -> list[PerformerRow]:
        return [p for p in self.performers.values() if p.name.lower() == name.lower()]

    def studio_by_name(self, name: str) -> StudioRow | None:
        return next((s for s in self.studios.values() if s.name.lower() == name.lower()), None)

    def tag_by_name(self, name: str) -> TagRow | None:
        return next((t for t in self.tags.values() if t.name.lower() == name.lower()), None)

    # ------------------------------------------------------------ Stash's checks

    def check_tag(self, name: str, aliases: list[str] | None, own: str | None) -> None:
        """pkg/tag/validate.go ValidateCreate/ValidateUpdate with pkg/tag/update.go
        EnsureTagNameUnique: ByName, then ByAlias (pkg/tag/query.go), each an
        EQUALS (LIKE) query with per_page 1 in name order; only that first match
        counts, and only when it is another tag."""
        if name == "":
            raise StashError("tag name must not be blank")
        for wanted in [name, *(aliases or [])]:
            self._tag_name_unique(wanted, own)

    def _tag_name_unique(self, name: str, own: str | None) -> None:
        first = next(iter(_by_name(t for t in self.tags.values() if sql_like(t.name, name))), None)
        if first is not None and first.id != own:
            raise StashError(f"tag with name '{name}' already exists")
        aliased = (t for t in self.tags.values() if any(sql_like(a, name) for a in t.aliases))
        first = next(iter(_by_name(aliased)), None)
        if first is not None and first.id != own:
            raise StashError(f"name '{name}' is used as alias for '{first.name}'")

    def check_performer(
        self, name: str, disambiguation: str, aliases: list[str] | None, own: str | None = None
    ) -> None:
        """pkg/performer/validate.go: name EQUALS (LIKE) and disambiguation EQUALS,
        or IS_NULL when none is given, must match no other performer; no alias may
        repeat the name or another alias (case-insensitively)."""
        if name == "":
            raise StashError("performer name must not be blank")
        matches = [
            p
            for p in self.performers.values()
            if sql_like(p.name, name)
            and (
                sql_like(p.disambiguation, disambiguation)
                if disambiguation
                else (p.disambiguation is None or p.disambiguation.strip(" ") == "")
            )
        ]
        if [p for p in matches if p.id != own]:
            if disambiguation:
                raise StashError(
                    f"performer with name '{name}' and disambiguation '{disambiguation}' "
                    "already exists"
                )
            raise StashError(f"performer with name '{name}' already exists")
        seen = {name.lower()}
        for alias in aliases or []:
            if alias.lower() in seen:
                raise StashError(f"performer contains duplicate alias '{alias}'")
            seen.add(alias.lower())

    def check_studio_name(self, name: str, own: str | None, alias: bool = False) -> None:
        """pkg/studio/validate.go validateName / EnsureStudioNameUnique (ByName,
        ByAlias of pkg/studio/query.go: LIKE, per_page 1, name order)."""
        if name == "":
            raise StashError(
                "studio alias must not be an empty string"
                if alias
                else "studio name must not be blank"
            )
        first = next(
            iter(_by_name(s for s in self.studios.values() if sql_like(s.name, name))), None
        )
        if first is not None and first.id != own:
            raise StashError(f"studio with name '{name}' already exists")
        aliased = (s for s in self.studios.values() if any(sql_like(a, name) for a in s.aliases))
        first = next(iter(_by_name(aliased)), None)
        if first is not None and first.id != own:
            raise StashError(f"name '{name}' is used as alias for '{first.name}'")

    def check_studio_aliases(self, own: str, aliases: list[str]) -> None:
        """pkg/sqlite/studio.go Create: the studio row exists already when its
        aliases are checked (so an alias like its own name passes), then they
        are inserted: studio_aliases.alias is unique (byte for byte)."""
        for alias in aliases:
            self.check_studio_name(alias, own, alias=True)
        if len(set(aliases)) != len(aliases):
            raise StashError(
                "inserting into studio_aliases: UNIQUE constraint failed: studio_aliases.alias"
            )

    # ------------------------------------------------------------ views

    def tag_view(self, tag: TagRow) -> dict[str, Any]:
        state = self

        class View(dict):  # parents/children resolve lazily: the graph has cycles
            pass

        view = View(
            id=tag.id,
            name=tag.name,
            aliases=list(tag.aliases),
            ignore_auto_tag=tag.ignore_auto_tag,
            created_at=NOW,
            updated_at=NOW,
            favorite=False,
            stash_ids=[],
            custom_fields={},
        )
        view["parents"] = lambda *_: [
            state.tag_view(state.tags[p]) for p in tag.parent_ids if p in state.tags
        ]
        view["children"] = lambda *_: [
            state.tag_view(t) for t in state.tags.values() if tag.id in t.parent_ids
        ]
        return view

    def performer_view(self, p: PerformerRow) -> dict[str, Any]:
        return {
            "id": p.id,
            "name": p.name,
            "disambiguation": p.disambiguation,
            "alias_list": list(p.aliases),
            "ignore_auto_tag": p.ignore_auto_tag,
            "favorite": False,
            "tags": [],
            "urls": [],
            "stash_ids": [],
            "custom_fields": {},
            "created_at": NOW,
            "updated_at": NOW,
            "scenes": lambda *_: [
                self.scene_view(s) for s in self.scenes.values() if p.id in s.performer_ids
            ],
        }

    def studio_view(self, s: StudioRow) -> dict[str, Any]:
        return {
            "id": s.id,
            "name": s.name,
            "aliases": list(s.aliases),
            "ignore_auto_tag": s.ignore_auto_tag,
            "organized": False,
            "favorite": False,
            "urls": [],
            "tags": [],
            "stash_ids": [],
            "child_studios": [],
            "parent_studio": None,
            "custom_fields": {},
            "created_at": NOW,
            "updated_at": NOW,
        }

    def marker_view(self, m: MarkerRow) -> dict[str, Any]:
        return {
            "id": m.id,
            "title": m.title,
            "seconds": m.seconds,
            "end_seconds": m.end_seconds,
            "primary_tag": self.tag_view(self.tags[m.primary_tag_id]),
            "tags": [self.tag_view(self.tags[t]) for t in m.tag_ids if t in self.tags],
            "scene": lambda *_: self.scene_view(self.scenes[m.scene_id]),
            "created_at": NOW,
            "updated_at": NOW,
        }

    def scene_view(self, s: SceneRow) -> dict[str, Any]:
        typename = "VideoFile" if s.kind == "scene" else "ImageFile"
        files = [
            {"__typename": typename, "id": f"{s.id}.{i}", "path": p, "basename": Path(p).name}
            for i, p in enumerate(s.paths)
        ]
        view: dict[str, Any] = {
            "id": s.id,
            "title": s.title,
            "organized": False,
            "tags": [self.tag_view(self.tags[t]) for t in s.tag_ids if t in self.tags],
            "files": files,
            "visual_files": files,
            "performers": lambda *_: [
                self.performer_view(self.performers[p])
                for p in s.performer_ids
                if p in self.performers
            ],
            "studio": lambda *_: (
                self.studio_view(self.studios[s.studio_id]) if s.studio_id in self.studios else None
            ),
            "created_at": NOW,
            "updated_at": NOW,
        }
        if s.kind == "scene":
            view["scene_markers"] = [
                self.marker_view(m) for m in self.markers.values() if m.scene_id == s.id
            ]
        return view


# ---------------------------------------------------------------- filters, sort, pages


def _sub_filtered(own: list[bool], flt: dict[str, Any], test: Callable[[Any], bool]) -> bool:
    """pkg/sqlite/filter.go getSubFilterClause: own clauses, then AND/OR/NOT the
    sub-filter (alone when there are no own clauses)."""
    result = all(own)
    for op in ("AND", "OR", "NOT"):
        sub = flt.get(op)
        if not sub:
            continue
        other = test(sub)
        if op == "NOT":
            result = result and not other
        elif not own:
            result = other
        else:
            result = (result and other) if op == "AND" else (result or other)
    return result


def _named_matches(
    values: dict[str, list[str | None]], lists: set[str], flt: dict[str, Any] | None
) -> bool:
    """A name/alias filter ({name: ..., aliases: ..., OR: {...}}) against a row's
    strings by criterion (`values`: criterion -> the row's strings for it;
    `lists`: criteria on a joined list, like aliases)."""
    flt = flt or {}
    unknown = {k for k, v in flt.items() if v is not None} - {*values, "AND", "OR", "NOT"}
    if unknown:
        raise NotImplementedError(f"filter {sorted(unknown)} not served by the test server")
    own = []
    for key, strings in values.items():
        c = flt.get(key)
        if c is None:
            continue
        if key in lists and c["modifier"] == "EXCLUDES":
            # stringListCriterionHandlerBuilder: id NOT IN (... alias LIKE '%v%').
            own.append(not any(sql_like(s, f"%{c['value']}%") for s in strings))
        else:  # a LEFT JOIN: no aliases is one NULL alias
            own.append(any(_string_criterion(s, c) for s in strings or [None]))
    return _sub_filtered(own, flt, lambda sub: _named_matches(values, lists, sub))


def _tag_matches(tag: TagRow, flt: dict[str, Any] | None) -> bool:
    # pkg/sqlite/tag_filter.go
    return _named_matches({"name": [tag.name], "aliases": list(tag.aliases)}, {"aliases"}, flt)


def _performer_matches(p: PerformerRow, flt: dict[str, Any] | None) -> bool:
    # pkg/sqlite/performer_filter.go
    values = {"name": [p.name], "aliases": list(p.aliases), "disambiguation": [p.disambiguation]}
    return _named_matches(values, {"aliases"}, flt)


def _studio_matches(s: StudioRow, flt: dict[str, Any] | None) -> bool:
    # pkg/sqlite/studio_filter.go
    return _named_matches({"name": [s.name], "aliases": list(s.aliases)}, {"aliases"}, flt)


def _objects_filter(rows: list[SceneRow], flt: dict[str, Any] | None) -> list[SceneRow]:
    flt = flt or {}
    unknown = {k for k, v in flt.items() if v is not None} - {"path", "tags", "AND", "OR", "NOT"}
    if unknown:
        raise NotImplementedError(f"filter {sorted(unknown)} not served by the test server")
    return [r for r in rows if _object_matches(r, flt)]


def _object_matches(row: SceneRow, flt: dict[str, Any]) -> bool:
    own = []
    if flt.get("path") is not None:
        own.append(_path_criterion(row.paths, flt["path"]))
    if flt.get("tags") is not None:
        c = flt["tags"]
        ids, have = set(c.get("value") or []), set(row.tag_ids)
        modifier = c["modifier"]
        if modifier == "INCLUDES":
            own.append(bool(ids & have))
        elif modifier == "INCLUDES_ALL":
            own.append(ids <= have)
        elif modifier == "EXCLUDES":
            own.append(not ids & have)
        elif modifier == "IS_NULL":
            own.append(not have)
        elif modifier == "NOT_NULL":
            own.append(bool(have))
        else:
            raise NotImplementedError(f"tags modifier {modifier} not served by the test server")
    return _sub_filtered(own, flt, lambda sub: _object_matches(row, sub))


def _page(items: list[Any], find: dict[str, Any] | None) -> list[Any]:
    """pkg/models/find_filter.go and pkg/sqlite/sql.go getPagination: per_page
    missing is 25, negative is all (no LIMIT), 0 is LIMIT 0; page < 1 is 1."""
    find = find or {}
    per_page = find.get("per_page")
    if per_page is not None and per_page < 0:
        return items
    size = 25 if per_page is None else per_page
    page = find.get("page")
    page = 1 if page is None or page < 1 else page
    return items[(page - 1) * size : page * size]


def _no_query(find: dict[str, Any] | None) -> None:
    if (find or {}).get("q"):
        raise NotImplementedError("filter.q not served by the test server")


def _sort_request(find: dict[str, Any] | None) -> tuple[str | None, bool]:
    find = find or {}
    return find.get("sort") or None, find.get("direction") == "DESC"


def _check_sort(sort: str, options: set[str]) -> None:
    # pkg/sqlite/sql.go sortOptions.validateSort (CVE-2024-32231)
    if sort.startswith("random_"):
        seed = sort[len("random_") :]
        if not seed.isdigit():
            raise StashError(f"invalid random seed: {seed}")
        return
    if sort not in options:
        raise StashError(f"invalid sort: {sort}")


SCENE_SORTS = {
    "bitrate", "created_at", "code", "date", "file_count", "filesize", "duration",
    "file_mod_time", "framerate", "group_scene_number", "id", "interactive",
    "interactive_speed", "last_o_at", "last_played_at", "movie_scene_number", "o_counter",
    "organized", "performer_count", "play_count", "play_duration", "resume_time", "path",
    "perceptual_similarity", "random", "rating", "resolution", "studio", "tag_count",
    "title", "updated_at", "performer_age",
}  # fmt: skip  # pkg/sqlite/scene.go sceneSortOptions
IMAGE_SORTS = {
    "created_at", "date", "file_count", "file_mod_time", "filesize", "id", "o_counter",
    "path", "performer_count", "random", "rating", "resolution", "tag_count", "title",
    "updated_at",
}  # fmt: skip  # pkg/sqlite/image.go imageSortOptions
TAG_SORTS = {
    "created_at", "galleries_count", "groups_count", "id", "images_count", "movies_count",
    "studios_count", "name", "performers_count", "random", "scene_markers_count",
    "scenes_count", "scenes_duration", "updated_at",
}  # fmt: skip  # pkg/sqlite/tag.go tagSortOptions


def _sort_objects(rows: list[SceneRow], find: dict[str, Any] | None, options: set[str]) -> list:
    """pkg/sqlite/scene.go setSceneSort, pkg/sqlite/image.go
    setImageSortAndPagination: no sort is no ORDER BY (SQLite then reads them
    in id order); "path" is folder || basename (no separator) COLLATE
    NATURAL_CI; then always COALESCE(title, id) COLLATE NATURAL_CI ASC."""
    sort, desc = _sort_request(find)
    by_id = (lambda r: int(r.id), False, False)
    if sort is None:
        return _sorted(rows, [by_id])
    _check_sort(sort, options)
    tail = [(lambda r: r.title or r.id, True, False), by_id]
    if sort == "path":
        keys = [(lambda r: "".join(_folder_and_base(r.path)), True, desc)]
    elif sort == "id":
        keys = [(lambda r: int(r.id), False, desc)]
    elif sort == "title":
        keys = [
            (lambda r: r.title or _folder_and_base(r.path)[1], True, desc),
            (lambda r: _folder_and_base(r.path)[0], True, desc),
        ]
    elif sort in ("created_at", "updated_at"):
        keys = [(lambda r: NOW, False, desc)]
    elif sort in ("tag_count", "performer_count", "file_count"):
        attr = {"tag_count": "tag_ids", "performer_count": "performer_ids", "file_count": "paths"}
        keys = [(lambda r, a=attr[sort]: len(getattr(r, a)), False, desc)]
    else:
        raise NotImplementedError(f"sort {sort!r} not served by the test server")
    return _sorted(rows, keys + tail)


def _sort_tags(tags: list[TagRow], find: dict[str, Any] | None, state: StashState) -> list:
    """pkg/sqlite/tag.go getTagSort: default name (COLLATE NATURAL_CI), then
    always name COLLATE NATURAL_CI ASC."""
    sort, desc = _sort_request(find)
    sort = sort or "name"
    _check_sort(sort, TAG_SORTS)
    tail = [(lambda t: t.name, True, False), (lambda t: int(t.id), False, False)]
    if sort == "name":
        keys = [(lambda t: t.name, True, desc)]
    elif sort == "id":
        keys = [(lambda t: int(t.id), False, desc)]
    elif sort in ("created_at", "updated_at"):
        keys = [(lambda t: NOW, False, desc)]
    elif sort in ("scenes_count", "images_count"):
        rows = state.scenes if sort == "scenes_count" else state.images
        keys = [(lambda t: sum(t.id in r.tag_ids for r in rows.values()), False, desc)]
    else:
        raise NotImplementedError(f"sort {sort!r} not served by the test server")
    return _sorted(tags, keys + tail)


def _sort_named(rows: list[Any], find: dict[str, Any] | None) -> list[Any]:
    """Performers and studios: default name; "name" and "id" served."""
    sort, desc = _sort_request(find)
    sort = sort or "name"
    by_id = (lambda r: int(r.id), False, desc if sort == "id" else False)
    if sort == "name":
        return _sorted(rows, [(lambda r: r.name, True, desc), by_id])
    if sort == "id":
        return _sorted(rows, [by_id])
    raise NotImplementedError(f"sort {sort!r} not served by the test server")


def _find_many(rows: dict[str, Any], ids: list[Any], what: str) -> list[Any]:
    # pkg/sqlite/*.go FindMany: in the order asked, every id must exist.
    out = []
    for raw in ids:
        oid = _atoi(raw, "ids")
        if str(oid) not in rows:
            raise StashError(f"{what} with id {oid} not found")
        out.append(rows[str(oid)])
    return out


# ---------------------------------------------------------------- bulk updates

# (kind, input field) -> (join table, id column, foreign key column, state rows):
# pkg/sqlite/tables.go, scene.go, image.go.
_JOINS = {
    ("scene", "performer_ids"): ("performers_scenes", "scene_id", "performer_id", "performers"),
    ("scene", "tag_ids"): ("scenes_tags", "scene_id", "tag_id", "tags"),
    ("image", "performer_ids"): ("performers_images", "image_id", "performer_id", "performers"),
    ("image", "tag_ids"): ("images_tags", "image_id", "tag_id", "tags"),
}
_ROW_FIELD = {"performer_ids": "performer_ids", "tag_ids": "tag_ids"}


def _modify_joins(
    state: StashState, kind: str, row: SceneRow | None, oid: int, key: str, change: dict
) -> None:
    """pkg/sqlite/table.go joinTable.modifyJoins: SET replaces, ADD inserts what
    is missing, REMOVE deletes; each insert is checked by SQLite's foreign keys."""
    table, id_col, fk_col, target = _JOINS[(kind, key)]
    ids = [_atoi(i, f"converting {key.replace('_ids', '')} ids") for i in change.get("ids") or []]
    mode = change["mode"]
    current = [int(i) for i in getattr(row, _ROW_FIELD[key])] if row else []
    if mode == "REMOVE":
        new = [i for i in current if i not in ids]
    else:
        base = [] if mode == "SET" else current
        new = list(base)
        for fk in dict.fromkeys(ids):
            if fk in new:
                continue  # ON CONFLICT DO NOTHING
            if row is None or str(fk) not in getattr(state, target):
                raise _fk_failed(table, id_col, fk_col, oid, fk)
            new.append(fk)
    if row is not None:
        setattr(row, _ROW_FIELD[key], [str(i) for i in new])


def _bulk(
    state: StashState, kind: str, rows: dict[str, SceneRow], payload: dict[str, Any]
) -> list[str]:
    """internal/api/resolver_mutation_scene.go BulkSceneUpdate and
    resolver_mutation_image.go BulkImageUpdate: every object in one transaction
    (UpdatePartial in pkg/sqlite/scene.go, image.go), rolled back on the first
    error. Returns the ids changed."""
    ids = [_atoi(i, "converting ids") for i in payload.get("ids") or []]
    studio = None
    if payload.get("studio_id") is not None:
        studio = _atoi(payload["studio_id"], "converting studio id")
    backup = {k: (list(r.tag_ids), list(r.performer_ids), r.studio_id) for k, r in rows.items()}
    order = ["performer_ids", "tag_ids"]  # the order UpdatePartial modifies them in
    changed = []
    try:
        for oid in ids:
            row = rows.get(str(oid))
            if kind == "image" and row is None:
                raise StashError(f"image with id {oid} not found")
            if "studio_id" in payload and row is not None:
                if studio is not None and str(studio) not in state.studios:
                    table = f"{kind}s"
                    raise StashError(
                        f"updating {table}: executing `UPDATE `{table}` SET "
                        f"`studio_id`=?,`updated_at`=? WHERE (`{table}`.`id` = ?)` "
                        f"[[{studio} {NOW} {oid}]]: FOREIGN KEY constraint failed"
                    )
                row.studio_id = None if studio is None else str(studio)
            for key in order:
                if payload.get(key) is not None:
                    _modify_joins(state, kind, row, oid, key, payload[key])
            if row is None:  # qb.find after the update
                raise StashError("sql: no rows in result set")
            changed.append(row.id)
    except Exception:
        for k, (tags, performers, studio_id) in backup.items():
            if k in rows:
                rows[k].tag_ids, rows[k].performer_ids, rows[k].studio_id = (
                    tags,
                    performers,
                    studio_id,
                )
        raise
    return changed


def _end_seconds_ok(seconds: float, end_seconds: float) -> None:
    # internal/api/resolver_mutation_scene.go validateSceneMarkerEndSeconds
    if end_seconds < seconds:
        raise StashError(
            f"end_seconds ({end_seconds:f}) must be greater than or equal to seconds ({seconds:f})"
        )


# ---------------------------------------------------------------- resolvers


class _Runtime:
    """What resolvers need from the server: its version and the hooks' delay."""

    version = DEFAULT_VERSION
    hook_seconds = 0.0

    def pause(self, seconds: float) -> None:
        time.sleep(seconds)


def build_resolvers(state: StashState, runtime: Any = None) -> dict[str, Any]:
    runtime = runtime or _Runtime()

    def find_tags(_: Any, __: Any, tag_filter: Any = None, filter: Any = None, ids: Any = None):
        # internal/api/resolver_query_find_tag.go: ids given: those, nothing else.
        if ids:
            tags = _find_many(state.tags, ids, "tag")
            return {"count": len(tags), "tags": [state.tag_view(t) for t in tags]}
        _no_query(filter)
        tags = [t for t in state.tags.values() if _tag_matches(t, tag_filter)]
        tags = _sort_tags(tags, filter, state)
        return {"count": len(tags), "tags": [state.tag_view(t) for t in _page(tags, filter)]}

    def find_performers(
        _: Any, __: Any, performer_filter: Any = None, filter: Any = None, **ids: Any
    ):
        _no_query(filter)
        rows = [p for p in state.performers.values() if _performer_matches(p, performer_filter)]
        rows = _sort_named(rows, filter)
        views = [state.performer_view(p) for p in _page(rows, filter)]
        return {"count": len(rows), "performers": views}

    def find_studios(_: Any, __: Any, studio_filter: Any = None, filter: Any = None, **ids: Any):
        _no_query(filter)
        rows = [s for s in state.studios.values() if _studio_matches(s, studio_filter)]
        rows = _sort_named(rows, filter)
        views = [state.studio_view(s) for s in _page(rows, filter)]
        return {"count": len(rows), "studios": views}

    def performer_create(_: Any, __: Any, input: dict[str, Any]) -> Any:
        # internal/api/resolver_mutation_performer.go PerformerCreate: trimmed.
        name = input["name"].strip()
        extra = (input.get("disambiguation") or "").strip()
        aliases = [a.strip() for a in input.get("alias_list") or []]
        state.check_performer(name, extra, aliases)
        pid = state.new_id()
        state.performers[pid] = PerformerRow(
            pid, name, extra or None, aliases, bool(input.get("ignore_auto_tag"))
        )
        return state.performer_view(state.performers[pid])

    def studio_create(_: Any, __: Any, input: dict[str, Any]) -> Any:
        # internal/api/resolver_mutation_studio.go StudioCreate: trimmed, checked.
        sid = state.add_studio(
            input["name"], input.get("aliases"), bool(input.get("ignore_auto_tag"))
        )
        return state.studio_view(state.studios[sid])

    def find_objects(rows: dict[str, SceneRow], flt: Any, find: Any, ids: Any, what: str):
        # internal/api/resolver_query_find_scene.go / _image.go: ids given: those.
        if ids:
            return _find_many(rows, ids, what), None
        _no_query(find)
        found = _objects_filter(list(rows.values()), flt)
        found = _sort_objects(found, find, SCENE_SORTS if what == "scene" else IMAGE_SORTS)
        return found, find

    def find_scenes(_: Any, __: Any, scene_filter: Any = None, filter: Any = None, **kw: Any):
        ids = kw.get("ids") or kw.get("scene_ids")
        rows, find = find_objects(state.scenes, scene_filter, filter, ids, "scene")
        views = [state.scene_view(r) for r in (_page(rows, find) if find is not None else rows)]
        return {"count": len(rows), "duration": 0.0, "filesize": 0.0, "scenes": views}

    def find_images(_: Any, __: Any, image_filter: Any = None, filter: Any = None, **kw: Any):
        ids = kw.get("ids") or kw.get("image_ids")
        rows, find = find_objects(state.images, image_filter, filter, ids, "image")
        views = [state.scene_view(r) for r in (_page(rows, find) if find is not None else rows)]
        return {"count": len(rows), "megapixels": 0.0, "filesize": 0.0, "images": views}

    def find_markers(_: Any, __: Any, scene_marker_filter: Any = None, filter: Any = None, **k):
        markers = list(state.markers.values())
        scenes = (scene_marker_filter or {}).get("scenes")
        if scenes:
            markers = [m for m in markers if m.scene_id in scenes["value"]]
        markers = _sorted(markers, [(lambda m: int(m.id), False, False)])
        views = [state.marker_view(m) for m in _page(markers, filter)]
        return {"count": len(markers), "scene_markers": views}

    def parent_ids(tid: int, raw: list[Any]) -> list[str]:
        out = []
        for p in dict.fromkeys(_atoi(i, "converting parent tag ids") for i in raw):
            if str(p) not in state.tags:
                raise _fk_failed("tags_relations", "child_id", "parent_id", tid, p)
            out.append(str(p))
        return out

    def tag_create(_: Any, __: Any, input: dict[str, Any]) -> Any:
        # internal/api/resolver_mutation_tag.go TagCreate: trimmed, ValidateCreate.
        name = input["name"].strip()
        aliases = [a.strip() for a in input.get("aliases") or []]
        state.check_tag(name, aliases, None)
        tid = state.new_id()
        parents = parent_ids(int(tid), input.get("parent_ids") or [])
        if len(set(aliases)) != len(aliases):
            raise StashError(
                "inserting into tag_aliases: UNIQUE constraint failed: tag_aliases.alias"
            )
        state.tags[tid] = TagRow(tid, name, aliases, bool(input.get("ignore_auto_tag")), parents)
        return state.tag_view(state.tags[tid])

    def tag_update(_: Any, __: Any, input: dict[str, Any]) -> Any:
        # internal/api/resolver_mutation_tag.go TagUpdate, pkg/tag/validate.go
        # ValidateUpdate; the changeset translator trims strings.
        tid = _atoi(input["id"], "converting id")
        tag = state.tags.get(str(tid))
        if tag is None:
            raise StashError(f"tag with id {tid} not found")
        name = (input["name"] or "").strip() if "name" in input else None
        if name is not None:
            state.check_tag(name, None, tag.id)
        aliases = None
        if "aliases" in input:
            aliases = [a.strip() for a in input["aliases"] or []]
            for alias in aliases:
                state._tag_name_unique(alias, tag.id)
        parents = None
        if input.get("parent_ids") is not None:
            parents = parent_ids(tid, input["parent_ids"])
        if name is not None:
            tag.name = name
        if aliases is not None:
            tag.aliases = aliases
        if parents is not None:
            tag.parent_ids = parents
        if input.get("ignore_auto_tag") is not None:
            tag.ignore_auto_tag = bool(input["ignore_auto_tag"])
        return state.tag_view(tag)

    def marker_tags(mid: int, primary: str, raw: list[Any]) -> list[str]:
        # The primary tag is left out of the marker's tags; each is a foreign key.
        out = []
        for t in dict.fromkeys(_atoi(i, "converting tag ids") for i in raw):
            if str(t) == primary:
                continue
            if str(t) not in state.tags:
                raise _fk_failed("scene_markers_tags", "scene_marker_id", "tag_id", mid, t)
            out.append(str(t))
        return out

    def marker_create(_: Any, __: Any, input: dict[str, Any]) -> Any:
        # internal/api/resolver_mutation_scene.go SceneMarkerCreate
        scene = _atoi(input["scene_id"], "converting scene id")
        primary = _atoi(input["primary_tag_id"], "converting primary tag id")
        end = input.get("end_seconds")
        if end is not None:
            _end_seconds_ok(input["seconds"], end)
        if str(scene) not in state.scenes or str(primary) not in state.tags:
            # pkg/sqlite/table.go insert (the SQL abridged here)
            raise StashError(
                "inserting into scene_markers: executing `INSERT INTO `scene_markers` (...)`: "
                "FOREIGN KEY constraint failed"
            )
        mid = state.new_id()
        tags = marker_tags(int(mid), str(primary), input.get("tag_ids") or [])
        state.markers[mid] = MarkerRow(
            mid, str(scene), input["title"].strip(), input["seconds"], end, str(primary), tags
        )
        return state.marker_view(state.markers[mid])

    def marker_update(_: Any, __: Any, input: dict[str, Any]) -> Any:
        # internal/api/resolver_mutation_scene.go SceneMarkerUpdate
        mid = _atoi(input["id"], "converting id")
        m = state.markers.get(str(mid))
        if m is None:
            raise StashError(f"scene marker with id {mid} not found")
        if ("seconds" in input or "end_seconds" in input) and not (
            "end_seconds" in input and input["end_seconds"] is None
        ):
            seconds = input["seconds"] if input.get("seconds") is not None else m.seconds
            end = input.get("end_seconds", m.end_seconds)
            if end is not None:
                _end_seconds_ok(seconds, end)
        scene = m.scene_id
        if input.get("scene_id") is not None:
            scene = str(_atoi(input["scene_id"], "converting scene id"))
        primary = m.primary_tag_id
        if input.get("primary_tag_id") is not None:
            primary = str(_atoi(input["primary_tag_id"], "converting primary tag id"))
        if scene not in state.scenes or primary not in state.tags:
            raise StashError(
                "updating scene_markers: executing `UPDATE `scene_markers` SET ...`: "
                "FOREIGN KEY constraint failed"
            )
        tags = None
        if "tag_ids" in input:
            tags = marker_tags(mid, primary, input["tag_ids"] or [])
        if input.get("title") is not None:
            m.title = input["title"].strip()
        if input.get("seconds") is not None:
            m.seconds = input["seconds"]
        if "end_seconds" in input:
            m.end_seconds = input["end_seconds"]
        m.scene_id, m.primary_tag_id = scene, primary
        if tags is not None:
            m.tag_ids = tags
        return state.marker_view(m)

    def marker_destroy(_: Any, __: Any, id: str) -> bool:
        # internal/api/resolver_mutation_scene.go SceneMarkersDestroy
        mid = _atoi(id, "converting ids")
        if str(mid) not in state.markers:
            raise StashError(f"scene marker with id {mid} not found")
        del state.markers[str(mid)]
        return True

    def bulk(kind: str, rows: dict[str, SceneRow], payload: dict[str, Any]) -> Any:
        changed = _bulk(state, kind, rows, payload)
        views = []
        for oid in changed:  # the Update.Post hooks, one object at a time, then re-read
            if runtime.hook_seconds > 0:
                runtime.pause(runtime.hook_seconds)
            if oid in rows:
                views.append(state.scene_view(rows[oid]))
        return views

    def bulk_scenes(_: Any, __: Any, input: dict[str, Any]) -> Any:
        return bulk("scene", state.scenes, input)

    def bulk_images(_: Any, __: Any, input: dict[str, Any]) -> Any:
        return bulk("image", state.images, input)

    return {
        "Query": {
            "findTags": find_tags,
            "findScenes": find_scenes,
            "findImages": find_images,
            "findSceneMarkers": find_markers,
            "findPerformers": find_performers,
            "findStudios": find_studios,
            "version": lambda *_: {"version": runtime.version, "hash": "test", "build_time": NOW},
        },
        "Mutation": {
            "tagCreate": tag_create,
            "tagUpdate": tag_update,
            "performerCreate": performer_create,
            "studioCreate": studio_create,
            "sceneMarkerCreate": marker_create,
            "sceneMarkerUpdate": marker_update,
            "sceneMarkerDestroy": marker_destroy,
            "bulkSceneUpdate": bulk_scenes,
            "bulkImageUpdate": bulk_images,
        },
    }


def load_schema(state: StashState, runtime: Any = None, end_seconds: bool = True) -> GraphQLSchema:
    """The vendored schema with the resolvers; without `end_seconds` it is the
    schema of Stash before v0.28.0 (markers had a start only)."""
    schema = build_schema(SCHEMA_FILE.read_text(encoding="utf-8"))
    if not end_seconds:
        for type_name in ("SceneMarker", "SceneMarkerCreateInput", "SceneMarkerUpdateInput"):
            del schema.get_type(type_name).fields["end_seconds"]  # type: ignore[union-attr]
    for type_name, fields in build_resolvers(state, runtime).items():
        gtype = schema.get_type(type_name)
        for name, resolver in fields.items():
            gtype.fields[name].resolve = resolver  # type: ignore[union-attr]
    return schema


def _default_resolver(source: Any, info: Any, **args: Any) -> Any:
    # Values in views may be callables (lazy parents/children); call them.
    value = (
        source.get(info.field_name)
        if isinstance(source, dict)
        else getattr(source, info.field_name, None)
    )
    return value(info, **args) if callable(value) else value


def version_tuple(version: str) -> tuple[int, int, int] | None:
    m = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


# ---------------------------------------------------------------- gqlgen's answers


def _located(message: str, error: GraphQLError, code: str) -> dict[str, Any]:
    # gqlparser's errors quote names with double quotes, graphql-core's with single.
    out: dict[str, Any] = {"message": message.replace("'", '"')}
    if error.locations:
        out["locations"] = [{"line": loc.line, "column": loc.column} for loc in error.locations]
    out["extensions"] = {"code": code}
    return out


def _gqlparser_variable_error(
    schema: GraphQLSchema, operation: OperationDefinitionNode, variables: dict[str, Any]
) -> dict[str, Any] | None:
    """The first error gqlparser's validator.VariableValues reports (its
    wording: "unknown field", "must be defined", "cannot be null", ...), with
    the path it gives (["variable", name, field, ...]); None for the rest."""

    def walk(gtype: Any, value: Any, path: list[Any]) -> tuple[str, list[Any]] | None:
        if value is None:
            return ("cannot be null", path) if is_non_null_type(gtype) else None
        if is_non_null_type(gtype):
            gtype = gtype.of_type
        if is_list_type(gtype):
            items = value if isinstance(value, list) else [value]
            for i, item in enumerate(items):
                found = walk(gtype.of_type, item, [*path, i])
                if found:
                    return found
            return None
        named = get_named_type(gtype)
        if is_input_object_type(named):
            if not isinstance(value, dict):
                return f"must be a {named.name}", path
            for key in value:
                if key not in named.fields:
                    return "unknown field", [*path, key]
            for name, fdef in named.fields.items():
                if name not in value:
                    if is_non_null_type(fdef.type) and fdef.default_value is Undefined:
                        return "must be defined", [*path, name]
                    continue
                found = walk(fdef.type, value[name], [*path, name])
                if found:
                    return found
            return None
        if is_enum_type(named) and isinstance(value, str) and value not in named.values:
            return f"{value} is not a valid {named.name}", path
        return None

    for definition in operation.variable_definitions or []:
        name = definition.variable.name.value
        gtype = type_from_ast(schema, definition.type)
        path = ["variable", name]
        if name not in variables:
            if definition.default_value is None and is_non_null_type(gtype):
                found: tuple[str, list[Any]] | None = ("must be defined", path)
            else:
                found = None
        else:
            found = walk(gtype, variables[name], path)
        if found:
            message, where = found
            return {
                "message": message,
                "path": where,
                "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"},
            }
    return None


class StashServer:
    def __init__(
        self,
        api_key: str = "",
        slow_seconds: float = 2.0,
        version: str = DEFAULT_VERSION,
        hook_seconds: float = 0.0,
    ) -> None:
        self.state = StashState()
        self.version = version  # what the `version` query answers; < v0.28.0: no end_seconds
        self.hook_seconds = hook_seconds  # each object's Update.Post hooks in a bulk update
        self._schema = load_schema(self.state, self)
        self._schema_old = load_schema(self.state, self, end_seconds=False)
        self.api_key = api_key
        self.slow_seconds = slow_seconds
        self.mode = "ok"
        self.drop_after: int | None = None
        self.lose_after: int | None = None
        self.canned: Any = None  # mode "canned": the JSON answer...
        self.canned_match = ""  # ...to every query containing this text
        self.redirects: dict[str, tuple[int, str]] = {}  # path -> (status, Location)
        self.requests: list[str] = []  # operation text of every answered request
        self.invalid: list[str] = []  # validation errors: tagd sent what Stash rejects
        self.refused_by_version: list[str] = []  # valid for v0.28.0+, not for `version`
        self.port = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def schema(self) -> GraphQLSchema:
        """The schema of the Stash `version` claims to be."""
        return self._schema_old if self.old else self._schema

    @property
    def old(self) -> bool:
        found = version_tuple(self.version)
        return found is not None and found < END_SECONDS_SINCE

    def reset(self) -> None:
        """An empty Stash again, answering normally, on the same port (quicker than
        a new server: building the schema is the slow part)."""
        with self._lock:
            self.state.__init__()  # type: ignore[misc]  # the resolvers hold this object
            self.mode, self.drop_after, self.lose_after = "ok", None, None
            self.canned, self.canned_match, self.redirects = None, "", {}
            self.requests.clear()  # `invalid` stays: every request must have been valid

    def pause(self, seconds: float) -> None:
        """Sleep with the state unlocked (Stash runs post hooks outside its
        transaction: other requests go on meanwhile)."""
        self._lock.release()
        try:
            time.sleep(seconds)
        finally:
            self._lock.acquire()

    def authorized(self, api_key_header: str | None, query: str = "") -> bool:
        """pkg/session/session.go Authenticate and internal/api/authentication.go:
        a key sent (ApiKey header, else ?apikey=) must equal the configured one
        (none configured: no key matches); no key and no session is refused when
        credentials are configured."""
        key = api_key_header or (parse_qs(query).get("apikey") or [""])[0]
        if key:
            return key == self.api_key
        return not self.api_key

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    def start(self) -> StashServer:
        server = self
        handler = type("Handler", (_Handler,), {"stash": server})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def execute(self, payload: dict[str, Any]) -> dict[str, Any]:
        """The JSON answer to a GraphQL request (see `answer` for the status)."""
        return self.answer(payload)[1]

    def _refusal(self, old: list[str], valid_when_new: bool) -> None:
        if self.old and valid_when_new:
            self.refused_by_version.extend(old)
        else:
            self.invalid.extend(old)

    def answer(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, JSON answer) as gqlgen's POST transport gives them
        (graphql/handler/transport/http_post.go, graphql/executor/executor.go):
        a parse, validation or variables error is 422 with data null; errors
        while resolving are 200."""
        query = payload.get("query") or ""
        variables = payload.get("variables") or {}
        op_name = payload.get("operationName") or None
        schema = self.schema
        if not query.strip():
            self.invalid.append("no operation provided")
            error = {"message": "no operation provided"}
            error["extensions"] = {"code": "GRAPHQL_VALIDATION_FAILED"}
            return 422, {"errors": [error], "data": None}
        try:
            document = parse(query)
        except GraphQLError as e:
            self.invalid.append(str(e))
            message = e.message.removeprefix("Syntax Error: ")
            return 422, {"errors": [_located(message, e, "GRAPHQL_PARSE_FAILED")], "data": None}
        problems = validate(schema, document)
        if problems:
            self._refusal([str(p) for p in problems], not validate(self._schema, document))
            errors = [_located(p.message, p, "GRAPHQL_VALIDATION_FAILED") for p in problems]
            return 422, {"errors": errors, "data": None}
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        if op_name is None and len(operations) == 1:
            operation: OperationDefinitionNode | None = operations[0]
        else:
            operation = next((o for o in operations if o.name and o.name.value == op_name), None)
        if operation is None:
            message = f"operation {op_name or ''} not found"
            self.invalid.append(message)
            error = {"message": message, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}
            return 422, {"errors": [error], "data": None}
        coerced = get_variable_values(schema, operation.variable_definitions or [], variables)
        if isinstance(coerced, list):
            fine_when_new = not isinstance(
                get_variable_values(self._schema, operation.variable_definitions or [], variables),
                list,
            )
            self._refusal([e.message for e in coerced], fine_when_new)
            error = _gqlparser_variable_error(schema, operation, variables) or _located(
                coerced[0].message, coerced[0], "GRAPHQL_VALIDATION_FAILED"
            )
            return 422, {"errors": [error], "data": None}
        with self._lock:  # one request at a time, like a single SQLite writer
            result = execute(
                schema,
                document,
                variable_values=variables,
                operation_name=op_name,
                field_resolver=_default_resolver,
            )
        out: dict[str, Any] = {}
        if result.errors:
            # graphql.DefaultErrorPresenter: the message and the field's path.
            out["errors"] = [{"message": e.message, "path": e.path} for e in result.errors]
        out["data"] = result.data
        return 200, out


class _Handler(BaseHTTPRequestHandler):
    stash: StashServer

    def log_message(self, *args: Any) -> None:  # quiet test output
        pass

    def do_POST(self) -> None:
        stash = self.stash
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        url = urlsplit(self.path)
        if self.path in stash.redirects or url.path in stash.redirects:
            status, location = stash.redirects.get(self.path) or stash.redirects[url.path]
            self._send(status, b"moved", headers={"Location": location})
            return
        if url.path != "/graphql":
            self._send(404, b"not found")
            return
        if stash.drop_after is not None and len(stash.requests) >= stash.drop_after:
            stash.mode = "drop"
        if stash.lose_after is not None and len(stash.requests) >= stash.lose_after:
            stash.mode, stash.lose_after = "drop", None
            if stash.authorized(self.headers.get("ApiKey"), url.query):
                payload = json.loads(body)
                stash.execute(payload)  # done in Stash, but the answer never arrives
                stash.requests.append(payload.get("query", ""))
            self.close_connection = True
            return
        mode = stash.mode
        if mode == "drop":
            self.close_connection = True
            return  # no answer at all: the client sees the connection closed
        if mode == "slow":
            time.sleep(stash.slow_seconds)
        if mode == "500":
            self._send(500, b"internal error")
            return
        if mode == "garbage":
            self._send(200, b"<html>502 Bad Gateway</html>", "text/html")
            return
        if mode == "tripwire":  # http.Error: the text, a newline, nosniff
            body = (TRIPWIRE_MESSAGE + "\n").encode()
            nosniff = {"X-Content-Type-Options": "nosniff"}
            self._send(403, body, "text/plain; charset=utf-8", nosniff)
            return
        if not stash.authorized(self.headers.get("ApiKey"), url.query):
            self._send(401, b"", None, {"WWW-Authenticate": "FormBased"})
            return
        try:
            payload = json.loads(body)
        except ValueError as e:  # gqlgen: 400 and what could not be decoded
            message = (
                f"json request body could not be decoded: {e} body:{body.decode(errors='replace')}"
            )
            answer = {"errors": [{"message": message}], "data": None}
            self._send(400, json.dumps(answer).encode(), "application/json")
            return
        if mode == "canned" and stash.canned_match in payload.get("query", ""):
            stash.requests.append(payload.get("query", ""))
            self._send(200, json.dumps(stash.canned).encode(), "application/json")
            return
        status, answer = stash.answer(payload)
        stash.requests.append(payload.get("query", ""))
        self._send(status, json.dumps(answer).encode(), "application/json")

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str | None = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if ctype is not None:
                self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up first (its timeout in the "slow" tests): as with
            # real Stash, the request was carried out and the answer is lost.
            self.close_connection = True


class OtherHost:
    """Another server on 127.0.0.1 (another origin: its own port), standing in for
    the host a redirect points to. It records every request's method, path and
    headers, and answers like a Stash would, so a client that follows gets on."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                recorder.received.append((self.command, self.path, dict(self.headers)))
                body = json.dumps({"data": {"version": {"version": "v0.0.0"}}}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _record

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/graphql"

    def api_keys(self) -> list[str]:
        """Every ApiKey header value this server was sent."""
        return [v for _, _, h in self.received for k, v in h.items() if k.lower() == "apikey"]

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
