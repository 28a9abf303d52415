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
import re
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
      tags { id }@fields@markers
"""
# Asked only with [stash] markers: end_seconds exists from Stash v0.28.0 on, so
# without markers tagd works with older servers too.
MARKER_FIELDS = "\n      scene_markers { id seconds end_seconds primary_tag { id } }"
MARKERS_SINCE = (0, 28, 0)
IMAGE_FIELDS = """
      id
      visual_files { ... on ImageFile { path } ... on VideoFile { path } }
      tags { id }@fields
"""

# Stash's path EQUALS is SQL LIKE ('_' and '%' match other paths too), so the
# answer may hold other files: pages sorted by id (cheap and stable) are read
# until this path's own object turns up or the matches run out.
FIND = {
    "scene": """
query FindScene($path: String!, $page: Int!) {
  findScenes(
    scene_filter: {path: {value: $path, modifier: EQUALS}}
    filter: {per_page: 25, page: $page, sort: "id", direction: ASC}
  ) {
    count
    scenes {@scene}
  }
}
""",
    "image": """
query FindImage($path: String!, $page: Int!) {
  findImages(
    image_filter: {path: {value: $path, modifier: EQUALS}}
    filter: {per_page: 25, page: $page, sort: "id", direction: ASC}
  ) {
    count
    images {@image}
  }
}
""",
}
FIND_PAGE = 25
# Stash may hold a file as the other kind: a video imported as an image clip.
OTHER_KIND = {"scene": "image", "image": "scene"}

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
    """The path Stash knows `local` by (with Windows separators where the
    mapping's Stash side is a Windows path: Stash on Windows builds paths with \\)."""
    pairs = [(m.local, _slashed(m.stash)) for m in mappings]
    mapped, used = _remap(local, pairs)
    if used is not None and _is_windows(mappings[used].stash):
        return mapped.replace("/", "\\")
    return mapped


def local_path(stash: str, mappings: list[PathMapping]) -> str:
    """The local path of Stash's `stash` path."""
    pairs = [(_slashed(m.stash), m.local) for m in mappings]
    windows = [_is_windows(m.stash) for m in mappings]
    mapped, used = _remap(_slashed(stash) if any(windows) else stash, pairs, fold=windows)
    return mapped if used is not None else stash


def _is_windows(path: str) -> bool:
    """A Windows path as Stash on Windows writes it: a drive letter or a backslash."""
    return "\\" in path or (len(path) >= 2 and path[1] == ":" and path[0].isalpha())


def _slashed(path: str) -> str:
    """A Windows path with / separators (others unchanged), to compare prefixes."""
    return path.replace("\\", "/") if _is_windows(path) else path


def _remap(
    path: str, pairs: list[tuple[str, str]], fold: list[bool] | None = None
) -> tuple[str, int | None]:
    """`path` with its longest matching (from) prefix replaced by `to`, and the
    index of the pair used (None: unchanged). Prefixes match whole folders: /srv
    is not /srvother; `fold[i]` compares pair i case-insensitively (Windows)."""
    best: tuple[int, int] | None = None  # (prefix length, pair index)
    for i, (src, _dest) in enumerate(pairs):
        root = src.rstrip("/")
        here = path.lower() if fold and fold[i] else path
        want = root.lower() if fold and fold[i] else root
        if (here == want or here.startswith(want + "/")) and (best is None or len(root) > best[0]):
            best = (len(root), i)
    if best is None:
        return path, None
    length, index = best
    return pairs[index][1].rstrip("/") + path[length:], index


def version_tuple(version: str) -> tuple[int, int, int] | None:
    """(0, 28, 0) from Stash's "v0.28.0" (or "v0.28.0-12-gabc"); None if unparsable."""
    found = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version.strip())
    return (int(found[1]), int(found[2]), int(found[3])) if found else None


def markers_problem(version: str) -> str | None:
    """Why scene markers cannot be written to a Stash of this version, or None."""
    found = version_tuple(version)
    if found is None or found >= MARKERS_SINCE:
        return None
    since = ".".join(map(str, MARKERS_SINCE))
    return (
        f"Stash {version} keeps no end time on scene markers (Stash v{since} and later do): "
        "upgrade Stash, or set [stash] markers = false"
    )


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
        markers = MARKER_FIELDS if settings.stash.markers else ""
        selection = {
            "@scene": SCENE_FIELDS.replace("@fields", extra).replace("@markers", markers),
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
        """The scene or image holding `path` (`kind` first, then the other one:
        Stash keeps videos imported as image clips as images)."""
        if not _is_utf8(path):
            raise NotSendable(
                f"not sent to Stash: the name is not UTF-8 ({shown(path)} there) and Stash "
                "takes paths as text; rename the file to have its tags in Stash"
            )
        for each in (kind, OTHER_KIND[kind]):
            listed = self._listed.get(each, {}).get(path)
            if listed is not None and listed.key not in self._written:
                return listed
            if each in self._listed and listed is None and each != kind:
                continue  # the whole kind was listed just now: not there
            found = self._ask(each, path)
            if found is not None:
                return found
        raise NotInStash(f"no scene or image in Stash with path {path} (not scanned by Stash yet?)")

    def _ask(self, kind: str, path: str) -> StashObject | None:
        result, items, files = RESULT[kind]
        page = 1
        while True:
            answer = self.client.call(self.find_query[kind], {"path": path, "page": page})[result]
            batch = answer[items]
            for item in batch:
                if any(f.get("path") == path for f in item.get(files) or []):
                    return _object(kind, item)
            if len(batch) < FIND_PAGE or page * FIND_PAGE >= int(answer["count"]):
                return None
            page += 1

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
                    # id, not path: a path sort is a full collation sort per page.
                    "sort": "id",
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
