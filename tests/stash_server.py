"""A Stash stand-in for tests: Stash's real GraphQL schema, state in memory.

graphql-core parses and validates every request against the schema vendored in
tests/data (see its header), so a query or mutation tagd sends that real Stash
would reject is rejected here too, and recorded in `invalid` (the fixture fails
the test on any). Resolvers cover what tagd uses: findScenes/findImages by
path or tag, findTags by name/alias, tagCreate/tagUpdate, findPerformers /
performerCreate and findStudios / studioCreate by name/alias (with Stash's
uniqueness rules), bulk updates of tags and performers in ADD/REMOVE/SET mode
and of the studio, scene markers. Only 127.0.0.1, random port, one thread.

Fault modes (`mode`): "ok", "slow" (sleep past the client's timeout), "500",
"garbage" (a non-JSON 200), "drop" (close the connection without answering);
`drop_after` switches to "drop" after that many requests; `lose_after` too,
but it first carries out the request after those and loses only its answer
(what a connection cut mid-answer does); "canned" answers the queries that
contain `canned_match` with `canned` (JSON, status 200: an answer of the wrong
shape) and the others as usual; stop()/start() close
and reopen the port while keeping the state. `redirects` maps a request path
to (status, Location) answered instead. `OtherHost` is a second server on
127.0.0.1 that records what it is sent (did an ApiKey header leak there?).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from graphql import GraphQLSchema, build_schema, graphql_sync

SCHEMA_FILE = Path(__file__).parent / "data" / "stash_schema.graphql"
NOW = "2024-01-01T00:00:00Z"


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
        self._check_performer(name, disambiguation)
        pid = self.new_id()
        self.performers[pid] = PerformerRow(pid, name, disambiguation, list(aliases or []))
        return pid

    def add_studio(self, name: str, aliases: list[str] | None = None) -> str:
        self._check_studio(name, list(aliases or []))
        sid = self.new_id()
        self.studios[sid] = StudioRow(sid, name, list(aliases or []))
        return sid

    def performers_named(self, name: str) -> list[PerformerRow]:
        return [p for p in self.performers.values() if p.name.lower() == name.lower()]

    def studio_by_name(self, name: str) -> StudioRow | None:
        return next((s for s in self.studios.values() if s.name.lower() == name.lower()), None)

    def _check_performer(self, name: str, disambiguation: str | None) -> None:
        # Real Stash: name + disambiguation is unique (EQUALS: case-insensitive;
        # no disambiguation and an empty one are the same). Aliases are free.
        extra = (disambiguation or "").strip().lower()
        for p in self.performers.values():
            if p.name.lower() == name.lower() and (p.disambiguation or "").strip().lower() == extra:
                raise ValueError(f"performer with name '{name}' already exists")

    def _check_studio(self, name: str, aliases: list[str]) -> None:
        # Real Stash: studio names and aliases are unique, case-insensitively.
        for s in self.studios.values():
            taken = [s.name.lower(), *(a.lower() for a in s.aliases)]
            for wanted in [name, *aliases]:
                if wanted.lower() in taken:
                    raise ValueError(f"studio name '{wanted}' already used by '{s.name}'")

    def add_tag(self, name: str, aliases: list[str] | None = None, parents: list[str] = ()) -> str:
        self._check_name(name, None)
        tid = self.new_id()
        self.tags[tid] = TagRow(tid, name, list(aliases or []), parent_ids=list(parents))
        return tid

    def tag_by_name(self, name: str) -> TagRow | None:
        return next((t for t in self.tags.values() if t.name.lower() == name.lower()), None)

    def _check_name(self, name: str, own: str | None) -> None:
        # Real Stash: names and aliases are unique across tags, case-insensitively.
        for t in self.tags.values():
            if t.id == own:
                continue
            if t.name.lower() == name.lower():
                raise ValueError(f"tag with name '{name}' already exists")
            if name.lower() in (a.lower() for a in t.aliases):
                raise ValueError(f"name '{name}' is used as alias for '{t.name}'")

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
        view["parents"] = lambda *_: [state.tag_view(state.tags[p]) for p in tag.parent_ids]
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
            "tags": [self.tag_view(self.tags[t]) for t in m.tag_ids],
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
            "title": None,
            "organized": False,
            "tags": [self.tag_view(self.tags[t]) for t in s.tag_ids if t in self.tags],
            "files": files,
            "visual_files": files,
            "performers": lambda *_: [
                self.performer_view(self.performers[p]) for p in s.performer_ids
            ],
            "studio": lambda *_: (
                self.studio_view(self.studios[s.studio_id]) if s.studio_id else None
            ),
            "created_at": NOW,
            "updated_at": NOW,
        }
        if s.kind == "scene":
            view["scene_markers"] = [
                self.marker_view(m) for m in self.markers.values() if m.scene_id == s.id
            ]
        return view


def _string_match(value: str, criterion: dict[str, Any]) -> bool:
    wanted, modifier = criterion["value"], criterion["modifier"]
    if modifier == "EQUALS":
        return value.lower() == wanted.lower()
    if modifier == "INCLUDES":
        return wanted.lower() in value.lower()
    raise NotImplementedError(f"string modifier {modifier} not served by the test server")


def _paged(items: list[Any], find: dict[str, Any] | None) -> list[Any]:
    find = find or {}
    per_page = find.get("per_page") or 25
    if per_page < 0:
        return items
    page = find.get("page") or 1
    return items[(page - 1) * per_page : page * per_page]


def _objects_filter(rows: list[SceneRow], flt: dict[str, Any] | None) -> list[SceneRow]:
    flt = flt or {}
    out = rows
    if "path" in flt:
        out = [r for r in out if any(_string_match(p, flt["path"]) for p in r.paths)]
    if "tags" in flt:
        ids = set(flt["tags"]["value"] or [])
        if flt["tags"]["modifier"] not in ("INCLUDES", "INCLUDES_ALL"):
            raise NotImplementedError("tags modifier")
        out = [r for r in out if ids & set(r.tag_ids)]
    unknown = set(flt) - {"path", "tags"}
    if unknown:
        raise NotImplementedError(f"filter {sorted(unknown)} not served by the test server")
    return out


def _bulk(rows: dict[str, SceneRow], payload: dict[str, Any], state: StashState) -> list[Any]:
    update = payload.get("tag_ids")
    performers = payload.get("performer_ids")
    if performers and any(p not in state.performers for p in performers.get("ids") or []):
        raise ValueError("performer not found")
    # studio_id absent: unchanged; present and null: cleared (as in Stash).
    if payload.get("studio_id") is not None and payload["studio_id"] not in state.studios:
        raise ValueError("studio not found")
    changed = []
    for oid in payload.get("ids") or []:
        row = rows[oid]
        if update:
            ids = [i for i in update.get("ids") or [] if i in state.tags]
            row.tag_ids = _update_ids(row.tag_ids, ids, update["mode"])
        if performers:
            row.performer_ids = _update_ids(
                row.performer_ids, list(performers.get("ids") or []), performers["mode"]
            )
        if "studio_id" in payload:
            row.studio_id = payload["studio_id"]
        changed.append(state.scene_view(row))
    return changed


def _update_ids(current: list[str], ids: list[str], mode: str) -> list[str]:
    if mode == "SET":
        return list(dict.fromkeys(ids))
    if mode == "ADD":
        return list(dict.fromkeys([*current, *ids]))
    return [i for i in current if i not in ids]


def build_resolvers(state: StashState) -> dict[str, Any]:
    lock = threading.Lock()

    def find_tags(_: Any, __: Any, tag_filter: Any = None, filter: Any = None, ids: Any = None):
        tags = list(state.tags.values())
        if ids is not None:
            tags = [t for t in tags if t.id in ids]
        if tag_filter:
            tags = [t for t in tags if _tag_matches(t, tag_filter)]
        return {"count": len(tags), "tags": [state.tag_view(t) for t in _paged(tags, filter)]}

    def find_performers(
        _: Any, __: Any, performer_filter: Any = None, filter: Any = None, **ids: Any
    ):
        rows = [p for p in state.performers.values() if _performer_matches(p, performer_filter)]
        views = [state.performer_view(p) for p in _paged(rows, filter)]
        return {"count": len(rows), "performers": views}

    def find_studios(_: Any, __: Any, studio_filter: Any = None, filter: Any = None, **ids: Any):
        rows = [s for s in state.studios.values() if _studio_matches(s, studio_filter)]
        views = [state.studio_view(s) for s in _paged(rows, filter)]
        return {"count": len(rows), "studios": views}

    def performer_create(_: Any, __: Any, input: dict[str, Any]) -> Any:
        with lock:
            name = input["name"]
            state._check_performer(name, input.get("disambiguation"))
            pid = state.new_id()
            # Stash drops aliases equal to the name or repeated (case-insensitively).
            aliases = _distinct(input.get("alias_list") or [], name)
            state.performers[pid] = PerformerRow(
                pid, name, input.get("disambiguation"), aliases, bool(input.get("ignore_auto_tag"))
            )
            return state.performer_view(state.performers[pid])

    def studio_create(_: Any, __: Any, input: dict[str, Any]) -> Any:
        with lock:
            name = input["name"]
            aliases = _distinct(input.get("aliases") or [], name)
            state._check_studio(name, aliases)
            sid = state.new_id()
            state.studios[sid] = StudioRow(sid, name, aliases, bool(input.get("ignore_auto_tag")))
            return state.studio_view(state.studios[sid])

    def find_scenes(_: Any, __: Any, scene_filter: Any = None, filter: Any = None, **ids: Any):
        rows = _objects_filter(list(state.scenes.values()), scene_filter)
        views = [state.scene_view(r) for r in _paged(rows, filter)]
        return {"count": len(rows), "duration": 0.0, "filesize": 0.0, "scenes": views}

    def find_images(_: Any, __: Any, image_filter: Any = None, filter: Any = None, **ids: Any):
        rows = _objects_filter(list(state.images.values()), image_filter)
        views = [state.scene_view(r) for r in _paged(rows, filter)]
        return {"count": len(rows), "megapixels": 0.0, "filesize": 0.0, "images": views}

    def find_markers(_: Any, __: Any, scene_marker_filter: Any = None, filter: Any = None, **k):
        markers = list(state.markers.values())
        scenes = (scene_marker_filter or {}).get("scenes")
        if scenes:
            markers = [m for m in markers if m.scene_id in scenes["value"]]
        views = [state.marker_view(m) for m in _paged(markers, filter)]
        return {"count": len(markers), "scene_markers": views}

    def tag_create(_: Any, __: Any, input: dict[str, Any]) -> Any:
        with lock:
            state._check_name(input["name"], None)
            tid = state.new_id()
            state.tags[tid] = TagRow(
                tid,
                input["name"],
                list(input.get("aliases") or []),
                bool(input.get("ignore_auto_tag")),
                list(input.get("parent_ids") or []),
            )
            return state.tag_view(state.tags[tid])

    def tag_update(_: Any, __: Any, input: dict[str, Any]) -> Any:
        with lock:
            tag = state.tags[input["id"]]
            if input.get("name") is not None:
                state._check_name(input["name"], tag.id)
                tag.name = input["name"]
            if input.get("parent_ids") is not None:
                tag.parent_ids = list(input["parent_ids"])
            if input.get("ignore_auto_tag") is not None:
                tag.ignore_auto_tag = bool(input["ignore_auto_tag"])
            if input.get("aliases") is not None:
                tag.aliases = list(input["aliases"])
            return state.tag_view(tag)

    def marker_create(_: Any, __: Any, input: dict[str, Any]) -> Any:
        with lock:
            if input["scene_id"] not in state.scenes:
                raise ValueError("scene not found")
            mid = state.new_id()
            state.markers[mid] = MarkerRow(
                mid,
                input["scene_id"],
                input["title"],
                input["seconds"],
                input.get("end_seconds"),
                input["primary_tag_id"],
                list(input.get("tag_ids") or []),
            )
            return state.marker_view(state.markers[mid])

    def marker_update(_: Any, __: Any, input: dict[str, Any]) -> Any:
        with lock:
            m = state.markers[input["id"]]
            for key in ("title", "seconds", "end_seconds", "primary_tag_id"):
                if key in input:
                    setattr(m, key, input[key])
            return state.marker_view(m)

    def marker_destroy(_: Any, __: Any, id: str) -> bool:
        with lock:
            return state.markers.pop(id, None) is not None

    def bulk_scenes(_: Any, __: Any, input: dict[str, Any]) -> Any:
        with lock:
            return _bulk(state.scenes, input, state)

    def bulk_images(_: Any, __: Any, input: dict[str, Any]) -> Any:
        with lock:
            return _bulk(state.images, input, state)

    return {
        "Query": {
            "findTags": find_tags,
            "findScenes": find_scenes,
            "findImages": find_images,
            "findSceneMarkers": find_markers,
            "findPerformers": find_performers,
            "findStudios": find_studios,
            "version": lambda *_: {"version": "v0.28.0-test", "hash": "test", "build_time": NOW},
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


def _tag_matches(tag: TagRow, flt: dict[str, Any]) -> bool:
    checks = []
    if "name" in flt:
        checks.append(_string_match(tag.name, flt["name"]))
    if "aliases" in flt:
        checks.append(any(_string_match(a, flt["aliases"]) for a in tag.aliases))
    own = all(checks) if checks else True
    if flt.get("OR"):
        return own or _tag_matches(tag, flt["OR"])
    return own


def _named_matches(values: dict[str, list[str]], flt: dict[str, Any] | None) -> bool:
    """A name/alias filter ({name: ..., aliases: ..., OR: {...}}) against a row's
    strings by criterion (`values`: criterion -> the row's strings for it)."""
    flt = flt or {}
    unknown = set(flt) - {*values, "OR"}
    if unknown:
        raise NotImplementedError(f"filter {sorted(unknown)} not served by the test server")
    checks = [
        any(_string_match(v, flt[key]) for v in strings)
        for key, strings in values.items()
        if key in flt
    ]
    own = all(checks) if checks else True
    if flt.get("OR"):
        return own or _named_matches(values, flt["OR"])
    return own


def _performer_matches(p: PerformerRow, flt: dict[str, Any] | None) -> bool:
    values = {"name": [p.name], "aliases": p.aliases, "disambiguation": [p.disambiguation or ""]}
    return _named_matches(values, flt)


def _studio_matches(s: StudioRow, flt: dict[str, Any] | None) -> bool:
    return _named_matches({"name": [s.name], "aliases": s.aliases}, flt)


def _distinct(aliases: list[str], name: str) -> list[str]:
    seen = {name.lower()}
    out = []
    for alias in aliases:
        if alias.lower() not in seen:
            seen.add(alias.lower())
            out.append(alias)
    return out


def load_schema(state: StashState) -> GraphQLSchema:
    schema = build_schema(SCHEMA_FILE.read_text(encoding="utf-8"))
    for type_name, fields in build_resolvers(state).items():
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


class StashServer:
    def __init__(self, api_key: str = "", slow_seconds: float = 2.0) -> None:
        self.state = StashState()
        self.schema = load_schema(self.state)
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
        self.port = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def reset(self) -> None:
        """An empty Stash again, answering normally, on the same port (quicker than
        a new server: building the schema is the slow part)."""
        with self._lock:
            self.state.__init__()  # type: ignore[misc]  # the resolvers hold this object
            self.mode, self.drop_after, self.lose_after = "ok", None, None
            self.canned, self.canned_match, self.redirects = None, "", {}
            self.requests.clear()  # `invalid` stays: every request must have been valid

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
        from graphql import parse, validate

        query = payload.get("query", "")
        document = parse(query)
        problems = validate(self.schema, document)
        if problems:
            self.invalid.extend(str(p) for p in problems)
            return {"errors": [{"message": p.message} for p in problems]}
        with self._lock:  # one request at a time, like a single SQLite writer
            result = graphql_sync(
                self.schema,
                query,
                variable_values=payload.get("variables"),
                field_resolver=_default_resolver,
            )
        out: dict[str, Any] = {"data": result.data}
        if result.errors:
            out["errors"] = [{"message": e.message} for e in result.errors]
            # A schema-level problem (bad variable type, missing non-null) is invalid too.
            self.invalid.extend(
                e.message for e in result.errors if e.message.startswith("Variable ")
            )
        return out


class _Handler(BaseHTTPRequestHandler):
    stash: StashServer

    def log_message(self, *args: Any) -> None:  # quiet test output
        pass

    def do_POST(self) -> None:
        stash = self.stash
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path in stash.redirects:
            status, location = stash.redirects[self.path]
            self._send(status, b"moved", headers={"Location": location})
            return
        if self.path != "/graphql":
            self._send(404, b"not found")
            return
        if stash.drop_after is not None and len(stash.requests) >= stash.drop_after:
            stash.mode = "drop"
        if stash.lose_after is not None and len(stash.requests) >= stash.lose_after:
            stash.mode, stash.lose_after = "drop", None
            if not stash.api_key or self.headers.get("ApiKey") == stash.api_key:
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
        if stash.api_key and self.headers.get("ApiKey") != stash.api_key:
            self._send(401, b"unauthorized")
            return
        payload = json.loads(body)
        if mode == "canned" and stash.canned_match in payload.get("query", ""):
            stash.requests.append(payload.get("query", ""))
            self._send(200, json.dumps(stash.canned).encode(), "application/json")
            return
        answer = stash.execute(payload)
        stash.requests.append(payload.get("query", ""))
        status = 200 if "data" in answer and answer["data"] is not None else 422
        self._send(status, json.dumps(answer).encode(), "application/json")

    def _send(
        self,
        status: int,
        body: bytes,
        ctype: str = "text/plain",
        headers: dict[str, str] | None = None,
    ) -> None:
        try:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
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
