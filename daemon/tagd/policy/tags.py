"""Turn stored raw findings into tags, by the rules in config.toml.

Thresholds, aliases (`name`), parents and per-label switches live here and
nowhere else, so editing them re-derives every tag from the catalog without
running a model. A tag is a '|'-separated path under the root, e.g.
`AI|Objects|dog`; its last part is the plain keyword.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict

from tagd.catalog.catalog import Detection, Media, Tag
from tagd.config import TagGroupSettings, TagSettings
from tagd.policy import clip_tags, concepts, nsfw, ocr, people
from tagd.policy.segments import video_tags

# Raised when a rule's code derives something else from the same findings (2:
# time ranges for text and CLIP tags of videos), so catalogs re-derive their
# tags and rewrite sidecars and Stash once after an upgrade.
RULES_VERSION = 2


class TagPolicy:
    def __init__(self, settings: TagSettings) -> None:
        self.settings = settings
        rules = {"version": RULES_VERSION, "settings": asdict(settings)}
        self.fingerprint = hashlib.sha256(
            json.dumps(rules, sort_keys=True).encode()
        ).hexdigest()[:16]

    def tag_name(self, group: TagGroupSettings, label: str) -> str | None:
        """The full tag for a label, or None when the label is switched off."""
        rule = group.labels.get(label)
        if rule is not None and not rule.enabled:
            return None
        name = (rule.name if rule and rule.name else label).strip()
        parent = rule.parent if rule and rule.parent is not None else group.parent
        parts = [self.settings.root, *(p for p in parent.split("|") if p), name]
        return "|".join(parts)

    def threshold(self, group: TagGroupSettings, label: str) -> float:
        rule = group.labels.get(label)
        if rule is not None and rule.threshold is not None:
            return rule.threshold
        return group.threshold

    def derive(self, analyzer: str, detections: Sequence[Detection], media: Media) -> list[Tag]:
        """Tags from one analyzer's findings (none for analyzers without tag rules)."""
        rule = DERIVERS.get(analyzer)
        return rule(self, detections, media) if rule else []

    def object_tags(self, detections: Iterable[Detection]) -> list[Tag]:
        """One tag per label whose best detection passes its threshold."""
        group = self.settings.objects
        best: dict[str, float] = {}
        for d in detections:
            if d.score >= self.threshold(group, d.label) and d.score > best.get(d.label, -1.0):
                best[d.label] = d.score
        tags: dict[str, Tag] = {}
        for label, score in best.items():
            name = self.tag_name(group, label)
            if name and score > (tags[name].score if name in tags else -1.0):
                # Two labels may share an alias; the tag keeps the best evidence.
                tags[name] = Tag(name, round(score, 4), "objects")
        return sorted(tags.values(), key=lambda t: t.name)


# analyzer name -> how its findings become tags. Analyzers without an entry
# (embeddings, hashes) produce no tags of their own.
Deriver = Callable[[TagPolicy, Sequence[Detection], Media], list[Tag]]


def _objects(policy: TagPolicy, detections: Sequence[Detection], media: Media) -> list[Tag]:
    # Videos: per-frame hits merged into time ranges (policy/segments.py).
    if media.kind == "video":
        return video_tags(policy, policy.settings.objects, detections, media, "objects")
    return policy.object_tags(detections)


# Rules that score stored embeddings (CLIP prompts); the others never need them,
# and loading every face's vector just to derive tags would be wasted work.
NEEDS_VECTORS = frozenset({"clip"})
DERIVERS: dict[str, Deriver] = {
    "objects": _objects,
    "ocr": ocr.text_tags,
    "concepts": concepts.derive,
    "clip": clip_tags.derive,
    "nsfw": nsfw.derive,
    "faces": people.person_tags,
}
