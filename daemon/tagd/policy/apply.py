"""Derive tags from stored findings and queue the changes for the sinks.

The one path from "something about a file changed" to "its sidecar and Stash
will say so": an analysis finished, the tag rules or sinks changed, a person
was named, merged or split. Each caller says which analyzers' tags to derive
for which contents; the tags are replaced in the catalog and every enabled
sink (XMP, Stash) gets a queued write where they changed. Writes go through
the outbox, so this runs inside the caller's transaction and is cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from tagd.analyzers.registry import plugin
from tagd.catalog.catalog import Catalog
from tagd.policy.rules import lowered
from tagd.policy.tags import TagPolicy
from tagd.records import Detection, Media, Tag


def derive(
    catalog: Catalog, policy: TagPolicy, content_id: int, analyzer: str, media: Media
) -> bool:
    """Replace one analyzer's tags of a content with those its stored findings give
    now; True when they changed."""
    found = plugin(analyzer)
    detections = catalog.detections(
        content_id, analyzer, with_vectors=found is not None and found.needs_vectors
    )
    # A video's frame interval as this analyzer saw it (some skip frames).
    seen = catalog.media_for(media, content_id, analyzer)
    verdicts = catalog.verdicts(content_id, analyzer)
    tags = with_verdicts(policy.derive(analyzer, detections, seen), verdicts, analyzer)
    changed = catalog.replace_tags(content_id, analyzer, tags)
    catalog.replace_candidates(
        content_id, analyzer, candidates(policy, analyzer, detections, seen, tags, verdicts)
    )
    return changed


def candidates(
    policy: TagPolicy,
    analyzer: str,
    detections: Sequence[Detection],
    media: Media,
    tags: Sequence[Tag],
    verdicts: Mapping[str, tuple[str, float]],
) -> list[Tag]:
    """The tags these findings would make if no threshold were above [tags.review]
    low, less those the file has and those someone decided on: what the review
    queue asks about below the thresholds."""
    floor = policy.settings.review.low
    with lowered(floor):
        wider = policy.derive(analyzer, detections, media)
    have = {t.name for t in tags} | set(verdicts)
    return [t for t in wider if t.name not in have and t.score >= floor]


def with_verdicts(
    tags: list[Tag], verdicts: Mapping[str, tuple[str, float]], source: str
) -> list[Tag]:
    """What the user said wins over the thresholds: a rejected tag goes, an accepted
    one stays (with the score it had when it was accepted, if it fell below)."""
    if not verdicts:
        return tags
    kept = [t for t in tags if verdicts.get(t.name, ("",))[0] != "reject"]
    have = {t.name for t in kept}
    kept += [
        Tag(name, score, source)
        for name, (verdict, score) in sorted(verdicts.items())
        if verdict == "accept" and name not in have
    ]
    return kept


def derive_and_queue(
    catalog: Catalog,
    policy: TagPolicy,
    sinks: Sequence[str],
    work: Mapping[int, Iterable[str]],
    *,
    queue_all: bool = False,
) -> list[int]:
    """Derive the tags of `work` (content id -> analyzers) and queue a write to every
    sink for each content whose tags changed, or for every content of `work` with
    `queue_all` (what the sinks write changed, not only the tags). Runs inside the
    caller's transaction. Returns the contents queued, in id order."""
    queued = []
    for content_id in sorted(work):
        media = catalog.media(content_id)  # once per file, not once per analyzer
        # A list, not any(generator): every analyzer's tags are derived.
        changed = [derive(catalog, policy, content_id, a, media) for a in work[content_id]]
        if any(changed) or queue_all:
            queued.append(content_id)
    if queued:
        for sink in sinks:
            catalog.enqueue_content(queued, sink)
    return queued
