"""Find tagd's files in Stash: one query per file, or Stash's whole list when that is cheaper.

Stash finds a scene or image by path with a LIKE over every file it knows, so
asking once per file costs a table scan per file: a first delivery of a large
library would make tens of thousands of them. When more files of a kind are due
than it takes pages to list all of Stash's scenes (or images), tagd lists them
page by page instead (`page_size` per request, sorted by path) and looks paths
up locally. A file missing from that list is still asked for on its own (Stash
may have scanned it since), and an object tagd has written is asked for again
the next time it is needed (a scene with two files), so tagd never plans from
what it has already changed.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tagd.config import PathMapping, Settings
from tagd.paths import shown
from tagd.sinks.stash.client import StashClient, StashError

# What tagd reads of a scene or image; `@fields` becomes `performers { id }` /
# `studio { id }` when those options are on (off, tagd asks exactly what it
# did before they existed).
SCENE_FIELDS = """
      id
      files { path }
      tags { id }@fields
      scene_markers { id seconds end_seconds primary_tag { id } }
"""
IMAGE_FIELDS = """
      id
      visual_files { ... on ImageFile { path } ... on VideoFile { path } }
      tags { id }@fields
"""

FIND = {
    "scene": """
query FindScene($path: String!) {
  findScenes(scene_filter: {path: {value: $path, modifier: EQUALS}}, filter: {per_page: 10}) {
    scenes {@scene}
  }
}
""",
    "image": """
query FindImage($path: String!) {
  findImages(image_filter: {path: {value: $path, modifier: EQUALS}}, filter: {per_page: 10}) {
    images {@image}
  }
}
""",
}

LIST = {
    "scene": """
query ListScenes($filter: FindFilterType) {
  findScenes(filter: $filter) { count scenes {@scene} }
}
""",
    "image": """
query ListImages($filter: FindFilterType) {
  findImages(filter: $filter) { count images {@image} }
}
""",
}

COUNT = {
    "scene": "query CountScenes { findScenes(filter: {per_page: 1}) { count } }",
    "image": "query CountImages { findImages(filter: {per_page: 1}) { count } }",
}

# kind -> (result field, items field, files field)
RESULT = {
    "scene": ("findScenes", "scenes", "files"),
    "image": ("findImages", "images", "visual_files"),
}


def stash_path(local: str, mappings: list[PathMapping]) -> str:
    """The path Stash knows `local` by."""
    return _remap(local, [(m.local, m.stash) for m in mappings])


def local_path(stash: str, mappings: list[PathMapping]) -> str:
    """The local path of Stash's `stash` path."""
    return _remap(stash, [(m.stash, m.local) for m in mappings])


def _remap(path: str, pairs: list[tuple[str, str]]) -> str:
    """`path` with its longest matching (from) prefix replaced by `to`; unchanged
    when none matches. Prefixes match whole folders: /srv is not /srvother."""
    best: tuple[str, str] | None = None
    for src, dest in pairs:
        root = src.rstrip("/")
        if (path == root or path.startswith(root + "/")) and (
            best is None or len(root) > len(best[0])
        ):
            best = (root, dest.rstrip("/"))
    return path if best is None else best[1] + path[len(best[0]) :]


class NotInStash(StashError):
    """Stash has not scanned this file (yet): retried later with backoff."""


class NotSendable(StashError):
    """A path Stash cannot be asked about: its name is not UTF-8, and GraphQL
    carries text only. No retry can help while the file keeps that name."""


@dataclass(frozen=True)
class StashObject:
    kind: str  # scene | image
    id: str
    tag_ids: frozenset[str]
    markers: tuple[dict[str, Any], ...] = ()
    performer_ids: frozenset[str] = frozenset()  # asked for only with [stash] performers
    studio_id: str | None = None  # asked for only with [stash] studio

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.id}"


def _object(kind: str, item: dict[str, Any]) -> StashObject:
    studio = item.get("studio")
    return StashObject(
        kind,
        str(item["id"]),
        frozenset(str(t["id"]) for t in item["tags"]),
        tuple(item.get("scene_markers") or ()),
        frozenset(str(p["id"]) for p in item.get("performers") or ()),
        str(studio["id"]) if studio else None,
    )


def _is_utf8(path: str) -> bool:
    """False for a name Python read with surrogateescape (bytes that are not UTF-8)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class StashLookup:
    def __init__(self, client: StashClient, settings: Settings) -> None:
        self.client = client
        self.page_size = settings.stash.page_size
        fields = [
            ("\n      performers { id }", settings.stash.performers),
            ("\n      studio { id }", settings.stash.studio),
        ]
        extra = "".join(text for text, on in fields if on)
        selection = {
            "@scene": SCENE_FIELDS.replace("@fields", extra),
            "@image": IMAGE_FIELDS.replace("@fields", extra),
        }

        def fill(query: str) -> str:
            for mark, text in selection.items():
                query = query.replace(mark, text)
            return query

        self.find_query = {kind: fill(q) for kind, q in FIND.items()}
        self.list_query = {kind: fill(q) for kind, q in LIST.items()}
        self._listed: dict[str, dict[str, StashObject]] = {}  # kind -> path -> object
        self._written: set[str] = set()  # keys of objects changed since they were listed

    def prepare(self, due: Counter[str]) -> None:
        """List a kind's objects when that takes fewer requests than finding each
        due file (`due`: files per kind)."""
        for kind, files in due.items():
            if files < 2:
                continue
            result, _, _ = RESULT[kind]
            total = int(self.client.call(COUNT[kind])[result]["count"])
            if math.ceil(total / self.page_size) < files:
                self._listed[kind] = self._list(kind)

    def find(self, kind: str, path: str) -> StashObject:
        if not _is_utf8(path):
            raise NotSendable(
                f"not sent to Stash: the name is not UTF-8 ({shown(path)} there) and Stash "
                "takes paths as text; rename the file to have its tags in Stash"
            )
        listed = self._listed.get(kind, {}).get(path)
        if listed is not None and listed.key not in self._written:
            return listed
        result, items, files = RESULT[kind]
        for item in self.client.call(self.find_query[kind], {"path": path})[result][items]:
            # EQUALS is SQL LIKE in Stash: check the path really is this one.
            if any(f.get("path") == path for f in item.get(files) or []):
                return _object(kind, item)
        raise NotInStash(f"no {kind} in Stash with path {path} (not scanned by Stash yet?)")

    def written(self, obj: StashObject) -> None:
        """`obj` changed: what was listed of it is out of date."""
        self._written.add(obj.key)

    def _list(self, kind: str) -> dict[str, StashObject]:
        result, items, files = RESULT[kind]
        by_path: dict[str, StashObject] = {}
        page = 1
        while True:
            variables = {
                "filter": {
                    "page": page,
                    "per_page": self.page_size,
                    "sort": "path",
                    "direction": "ASC",
                }
            }
            answer = self.client.call(self.list_query[kind], variables)[result]
            batch = answer[items]
            for item in batch:
                obj = _object(kind, item)
                for f in item.get(files) or []:
                    if f.get("path"):
                        by_path[str(f["path"])] = obj
            if len(batch) < self.page_size or page * self.page_size >= int(answer["count"]):
                return by_path
            page += 1
