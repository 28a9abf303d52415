"""Taught tags: the scores tagd.teach stores for each file, as tags.

No model runs here: a taught tag's classifier is fitted on the stored image
embeddings (tagd.teach) and its scores are stored under this name, one
finding per file (per video frame) with the taught name as label. They become
tags by [tags.taught]'s rules, as labelled detections do.
"""

from __future__ import annotations

from collections.abc import Sequence

from tagd.analyzers.registry import AnalyzerPlugin
from tagd.policy.labels import group_tags
from tagd.policy.tags import TagPolicy
from tagd.records import Detection, Media, Tag

NAME = "taught"


def derive(policy: TagPolicy, detections: Sequence[Detection], media: Media) -> list[Tag]:
    return group_tags(policy, policy.settings.taught, detections, media, NAME)


def _never_built(*_: object) -> None:
    """Nothing to run: tagd.teach stores the scores."""
    return None


PLUGIN = AnalyzerPlugin(
    name=NAME,
    rank=90,
    section="",  # no [section] of its own: never built, nothing to switch on
    build=_never_built,
    derive=derive,
)
