"""NSFW tags from stored NudeNet boxes: per-label threshold, alias, parent, switch.

The same rules as object tags ([tags.objects]), under their own group
[tags.nsfw] (parent "NSFW" by default). Videos go through the shared
time-range aggregation (tagd.policy.segments) like objects do.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tagd.policy.labels import group_tags
from tagd.records import Detection, Media, Tag

if TYPE_CHECKING:
    from tagd.policy.tags import TagPolicy

SOURCE = "nsfw"


def derive(policy: TagPolicy, detections: Sequence[Detection], media: Media) -> list[Tag]:
    return group_tags(policy, policy.settings.nsfw, detections, media, SOURCE)
