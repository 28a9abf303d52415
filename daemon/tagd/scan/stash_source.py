"""Stash as the source of files: `tagd scan --from-stash [--tagme-only]`.

Stash already knows which files the user cares about (and, with the
"<prefix>_TagMe" workflow tag, which ones they want tagged now), so tagd asks
it for scenes and images page by page and maps Stash's paths back to local
ones with `path_mappings`, instead of walking folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.sinks.stash.client import StashClient
from tagd.sinks.stash.lookup import local_path
from tagd.sinks.stash.tags import FIND_TAGS
from tagd.words import count

SCENES = """
query SourceScenes($filter: FindFilterType, $scene_filter: SceneFilterType) {
  findScenes(filter: $filter, scene_filter: $scene_filter) { count scenes { id files { path } } }
}
"""

IMAGES = """
query SourceImages($filter: FindFilterType, $image_filter: ImageFilterType) {
  findImages(filter: $filter, image_filter: $image_filter) {
    count
    images { id visual_files { ... on ImageFile { path } ... on VideoFile { path } } }
  }
}
"""

# (query, filter variable, result field, files field) per kind of Stash object.
KINDS = {
    "scene": (SCENES, "scene_filter", "findScenes", "scenes", "files"),
    "image": (IMAGES, "image_filter", "findImages", "images", "visual_files"),
}


@dataclass
class StashFiles:
    """What Stash listed: local paths to scan, and the ones not found here."""

    local: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    # Images of zip galleries: a member of an archive, not a file tagd can read.
    in_archives: list[str] = field(default_factory=list)
    no_tagme_tag: str | None = None  # the TagMe tag Stash does not have (nothing to do)

    def summary(self) -> str:
        """One line for `tagd scan` and the daemon's log."""
        if self.no_tagme_tag:
            return f"stash: no tag {self.no_tagme_tag} in Stash: nothing to scan"
        line = f"stash: {count(len(self.local), 'file')} to scan, {len(self.missing)} missing here"
        if self.in_archives:
            zipped = count(len(self.in_archives), "image")
            line += f", {zipped} inside zip galleries skipped (tagd reads files, not archives)"
        return line


def tag_id(client: StashClient, name: str) -> str | None:
    """The id of the tag named exactly `name` (never created: no tag, no work)."""
    tags = client.call(FIND_TAGS, {"name": name})["findTags"]["tags"]
    # EQUALS is SQL LIKE in Stash ('_' is a wildcard): compare names here.
    return next((str(t["id"]) for t in tags if t["name"].lower() == name.lower()), None)


def stash_paths(
    client: StashClient, kind: str, tags: list[str] | None, per_page: int
) -> Iterator[str]:
    """Every file path of Stash's scenes or images (only those with `tags`, when given)."""
    query, filter_var, result, items, files = KINDS[kind]
    criterion = {"tags": {"value": tags, "modifier": "INCLUDES"}} if tags is not None else None
    page, seen = 1, 0
    while True:
        variables: dict[str, Any] = {
            # id, not path: a path sort is a full collation sort for every page.
            "filter": {"page": page, "per_page": per_page, "sort": "id", "direction": "ASC"},
            filter_var: criterion,
        }
        answer = client.call(query, variables)[result]
        batch = answer[items]
        for item in batch:
            for f in item.get(files) or []:
                if f.get("path"):
                    yield str(f["path"])
        seen += len(batch)
        # Stop on a short or empty page too: a count that shrinks mid-listing ends it.
        if not batch or len(batch) < per_page or seen >= int(answer["count"]):
            return
        page += 1


def files_from_stash(client: StashClient, settings: Settings, tagme_only: bool) -> StashFiles:
    """The local files of Stash's scenes and images, optionally only the TagMe ones."""
    s = settings.stash
    out = StashFiles()
    tags: list[str] | None = None
    if tagme_only:
        name = f"{s.workflow_prefix}_TagMe"
        found = tag_id(client, name) if s.workflow_prefix else None
        if found is None:
            out.no_tagme_tag = name if s.workflow_prefix else "TagMe (workflow_prefix is empty)"
            return out
        tags = [found]
    seen: set[str] = set()
    for kind in KINDS:
        for path in stash_paths(client, kind, tags, s.page_size):
            local = local_path(path, s.path_mappings)
            if local in seen:
                continue
            seen.add(local)
            if os.path.isfile(local):
                out.local.append(local)
            elif _inside_archive(local):
                out.in_archives.append(local)
            else:
                out.missing.append(local)
    return out


def _inside_archive(path: str) -> bool:
    """Whether `path` names a member of an archive here: Stash gives the images of
    a zip gallery as ARCHIVE/MEMBER, and the nearest existing part is a file."""
    parent = os.path.dirname(path)
    while parent and parent != os.path.dirname(parent):
        if os.path.exists(parent):
            return os.path.isfile(parent)
        parent = os.path.dirname(parent)
    return False


def queue_listed(catalog: Catalog, paths: list[str]) -> None:
    """Queue the listed files for Stash even when unchanged: a TagMe file tagd
    already knew must still get its tags written and TagMe swapped for Tagged."""
    from tagd.sinks.stash.deliver import SINK

    ids = [f.id for p in paths if (f := catalog.file_by_path(p)) is not None]
    with catalog.transaction():
        catalog.enqueue(ids, SINK)
