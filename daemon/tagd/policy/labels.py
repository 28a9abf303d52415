"""Tags from labelled detections (objects, NSFW body parts): per-label rules.

A photo gets one tag per label whose best detection reaches its threshold; a
video gets the labels' time ranges (tagd.policy.segments). Both groups share
these rules and differ only in their settings and their source name.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from tagd.config import TagGroupSettings
from tagd.policy.rules import LabelRule
from tagd.records import Detection, Media, Tag

if TYPE_CHECKING:
    from tagd.policy.tags import TagPolicy


def label_tags(
    policy: TagPolicy, group: TagGroupSettings, detections: Iterable[Detection], source: str
) -> list[Tag]:
    """One tag per label whose best detection passes its threshold (aliases may merge)."""
    best: dict[str, float] = {}
    rules: dict[str, LabelRule] = {}
    for d in detections:
        rule = rules.get(d.label)
        if rule is None:
            rule = rules[d.label] = policy.rule(group, d.label)
        if d.score >= rule.threshold and d.score > best.get(d.label, -1.0):
            best[d.label] = d.score
    tags: dict[str, Tag] = {}
    for label, score in best.items():
        name = rules[label].tag
        if name and score > (tags[name].score if name in tags else -1.0):
            # Two labels may share an alias; the tag keeps the best evidence.
            tags[name] = Tag(name, round(score, 4), source)
    return sorted(tags.values(), key=lambda t: t.name)


def group_tags(
    policy: TagPolicy,
    group: TagGroupSettings,
    detections: Sequence[Detection],
    media: Media,
    source: str,
) -> list[Tag]:
    """A photo's label tags, or a video's with their time ranges."""
    if media.kind == "video":
        from tagd.policy.segments import video_tags

        return video_tags(policy, group, detections, media, source)
    return label_tags(policy, group, detections, source)
