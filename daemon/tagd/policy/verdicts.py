"""A user's accept or reject of a tag on a file (the review page, POST
/api/v1/review): stored, the file's tags derived again, and the change queued
for every sink (sidecars, Stash) at once, in one transaction."""

from __future__ import annotations

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.policy.apply import derive_and_queue
from tagd.policy.tags import TagPolicy
from tagd.sinks.select import enabled_sinks

VERDICTS = ("accept", "reject", "clear")


class VerdictError(ValueError):
    """No such tag on that file."""


def decide(catalog: Catalog, settings: Settings, content_id: int, name: str, verdict: str) -> bool:
    """Store `verdict` ("clear": forget it) for tag `name` of a content; True when
    the file's tags changed (and its writes were queued)."""
    with catalog.transaction():
        if verdict == "clear":
            source = catalog.clear_verdict(content_id, name)
            if source is None:
                return False
        else:
            # A tag of the file, or one it would get below its threshold (a candidate).
            tag = catalog.tag_or_candidate(content_id, name)
            if tag is None:
                raise VerdictError(f"file content {content_id} has no tag {name!r}")
            source = tag.source
            catalog.set_verdict(content_id, name, source, verdict, tag.score)
        queued = derive_and_queue(
            catalog, TagPolicy(settings.tags), enabled_sinks(settings), {content_id: [source]}
        )
        return bool(queued)
