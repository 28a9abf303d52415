"""Turn stored raw findings into tags, by the rules in config.toml.

Thresholds, aliases (`name`), parents and per-label switches live in this
package (one resolver: tagd.policy.rules) and nowhere else, so editing them
re-derives every tag from the catalog without running a model. Which rules
apply to an analyzer's findings, its module says (tagd.analyzers.registry).
A tag is a '|'-separated path under the root, e.g. `AI|Objects|dog`; its last
part is the plain keyword.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from functools import cached_property

from tagd.analyzers.registry import plugin
from tagd.config import TagGroupSettings, TagSettings
from tagd.policy.labels import label_tags
from tagd.policy.rules import LabelRule, group_rule
from tagd.records import Detection, Media, Tag

# Raised when a rule's code derives something else from the same findings (2:
# time ranges for text and CLIP tags of videos), so catalogs re-derive their
# tags and rewrite sidecars and Stash once after an upgrade. 3: a tag named like
# its parent is the parent (AI|Concepts|Food, not AI|Concepts|Food|food).
RULES_VERSION = 3


class TagPolicy:
    def __init__(self, settings: TagSettings) -> None:
        self.settings = settings

    @cached_property
    def fingerprint(self) -> str:
        """What changes when the rules do (asked once per scan, not per pipeline:
        an on-demand analysis makes one per request batch)."""
        rules = {"version": RULES_VERSION, "settings": asdict(self.settings)}
        return hashlib.sha256(json.dumps(rules, sort_keys=True).encode()).hexdigest()[:16]

    def rule(self, group: TagGroupSettings, label: str) -> LabelRule:
        """Threshold and full tag (None: switched off) of a label of a tag group."""
        return group_rule(self.settings.root, group, label)

    def derive(self, analyzer: str, detections: Sequence[Detection], media: Media) -> list[Tag]:
        """Tags from one analyzer's findings (none for analyzers without tag rules:
        embeddings and hashes), by the deriver its module declares."""
        found = plugin(analyzer)
        return found.derive(self, detections, media) if found and found.derive else []

    def object_tags(self, detections: Iterable[Detection]) -> list[Tag]:
        """One tag per label whose best detection passes its threshold."""
        return label_tags(self, self.settings.objects, detections, "objects")
