"""Object tags from stored detector boxes, by the [tags.objects] rules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tagd.policy.labels import group_tags
from tagd.records import Detection, Media, Tag

if TYPE_CHECKING:
    from tagd.policy.tags import TagPolicy

SOURCE = "objects"


def derive(policy: TagPolicy, detections: Sequence[Detection], media: Media) -> list[Tag]:
    # Videos: per-frame hits merged into time ranges (policy/segments.py).
    return group_tags(policy, policy.settings.objects, detections, media, SOURCE)
