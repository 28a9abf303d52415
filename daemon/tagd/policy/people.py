"""Person tags: AI|People|Name for every named person with a face in the file.

Unnamed clusters make no tags (a keyword "unnamed person 7" helps no one in
Lightroom); the tag appears when the user names the person and goes when
faces are split away, through the same derive-and-queue path as every tag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tagd.records import Detection, Media, Tag

if TYPE_CHECKING:
    from tagd.policy.tags import TagPolicy


def person_tags(policy: TagPolicy, detections: Sequence[Detection], media: Media) -> list[Tag]:
    settings = policy.settings
    best: dict[str, float] = {}
    for d in detections:
        if d.person:
            best[d.person] = max(best.get(d.person, 0.0), d.score)
    parent = [p for p in settings.people.parent.split("|") if p]
    return [
        Tag("|".join([settings.root, *parent, name]), round(score, 4), "faces")
        for name, score in sorted(best.items())
    ]
