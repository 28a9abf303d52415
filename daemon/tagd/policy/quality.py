"""Quality tags from stored quality scores: AI|Quality|blurry, ...|underexposed.

The same per-label rules as object tags (threshold, alias, parent, switch),
under their own group [tags.quality]; videos get time ranges like objects.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tagd.policy.labels import group_tags
from tagd.records import Detection, Media, Tag

if TYPE_CHECKING:
    from tagd.policy.tags import TagPolicy

SOURCE = "quality"


def derive(policy: TagPolicy, detections: Sequence[Detection], media: Media) -> list[Tag]:
    return group_tags(policy, policy.settings.quality, detections, media, SOURCE)
