"""NSFW tags from stored NudeNet boxes: per-label threshold, alias, parent, switch.

The same rules as object tags ([tags.objects]), under their own group
[tags.nsfw] (parent "NSFW" by default). Videos go through the shared
time-range aggregation (tagd.policy.segments) like objects do.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from tagd.catalog.catalog import Detection, Media, Tag
from tagd.config import TagGroupSettings

if TYPE_CHECKING:
    from tagd.policy.tags import TagPolicy

SOURCE = "nsfw"


def label_tags(
    policy: TagPolicy, group: TagGroupSettings, detections: Iterable[Detection], source: str
) -> list[Tag]:
    """One tag per label whose best detection passes its threshold (aliases may merge)."""
    best: dict[str, float] = {}
    for d in detections:
        if d.score >= policy.threshold(group, d.label) and d.score > best.get(d.label, -1.0):
            best[d.label] = d.score
    tags: dict[str, Tag] = {}
    for label, score in best.items():
        name = policy.tag_name(group, label)
        if name and score > (tags[name].score if name in tags else -1.0):
            tags[name] = Tag(name, round(score, 4), source)
    return sorted(tags.values(), key=lambda t: t.name)


def derive(policy: TagPolicy, detections: Sequence[Detection], media: Media) -> list[Tag]:
    group = policy.settings.nsfw
    if media.kind == "video":
        from tagd.policy.segments import video_tags

        return video_tags(policy, group, detections, media, SOURCE)
    return label_tags(policy, group, detections, SOURCE)
