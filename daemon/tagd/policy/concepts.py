"""Concept tags from stored ImageNet class probabilities, through the taxonomy.

The concepts analyzer stores the classifier's top-k classes per photo (or
video frame); a tag's score is the sum of the probabilities of its classes
(120 dog breeds at 0.1 each make a sure "dog"). The taxonomy ships as
`taxonomy.toml` and is extended by `[tags.concepts.taxonomy]` in config, so
editing either re-derives tags without running the classifier.

`frame_scores` and `passing` are the per-frame rule; the video time-range
aggregation (tagd.policy.segments) can call them on each frame's detections.
"""

from __future__ import annotations

import re
import tomllib
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING

from tagd.config import ConceptEntry, ConceptTagSettings, TagRule
from tagd.policy.label_names import unknown_labels
from tagd.policy.rules import LabelRule, group_rule
from tagd.records import Detection, Media, Tag

if TYPE_CHECKING:
    from tagd.policy.tags import TagPolicy

SOURCE = "concepts"
_RANGE = re.compile(r"\s*(\d+)\s*-\s*(\d+)\s*")


class TaxonomyError(ValueError):
    """A taxonomy entry that cannot be resolved (names the tag and the value)."""


@dataclass(frozen=True)
class Concept:
    name: str
    parent: str  # below [tags.concepts].parent
    threshold: float | None
    keys: frozenset[str]  # class keys (see class_keys) whose probabilities add up


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in index order (shipped with the taxonomy)."""
    text = resources.files("tagd.policy").joinpath("imagenet_classes.txt").read_text("utf-8")
    return tuple(line for line in text.splitlines() if line)


def class_keys(labels: Sequence[str]) -> tuple[str, ...]:
    """A unique label per class index: the name, or "name (index)" when the name repeats
    (ImageNet has two "crane"s, a bird and a machine, and two "maillot"s)."""
    counts: dict[str, int] = defaultdict(int)
    for label in labels:
        counts[label] += 1
    return tuple(lab if counts[lab] == 1 else f"{lab} ({i})" for i, lab in enumerate(labels))


@cache
def shipped_taxonomy() -> dict[str, ConceptEntry]:
    text = resources.files("tagd.policy").joinpath("taxonomy.toml").read_text("utf-8")
    data = tomllib.loads(text).get("tag", {})
    return {
        name: ConceptEntry(
            classes=[str(c) for c in entry.get("classes", [])],
            includes=list(entry.get("includes", [])),
            parent=entry.get("parent"),
            threshold=entry.get("threshold"),
            aliases=list(entry.get("aliases", [])),
        )
        for name, entry in data.items()
    }


def resolve_taxonomy(
    user: dict[str, ConceptEntry], labels: Sequence[str] | None = None
) -> dict[str, Concept]:
    """Shipped taxonomy + config entries (same name replaces) as class-key sets.

    Raises TaxonomyError naming the tag for an unknown class, tag or alias.
    """
    labels = tuple(labels) if labels is not None else imagenet_classes()
    keys = class_keys(labels)
    by_name: dict[str, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_name[label].append(i)
    entries = {**shipped_taxonomy(), **user}
    alias = {a: name for name, e in entries.items() for a in e.aliases if a not in entries}

    def indices(name: str, spec: str) -> list[int]:
        match = _RANGE.fullmatch(spec)
        if match:
            lo, hi = int(match.group(1)), int(match.group(2))
            if not 0 <= lo <= hi < len(labels):
                raise TaxonomyError(f"{name}: class range {spec!r} outside 0-{len(labels) - 1}")
            return list(range(lo, hi + 1))
        if spec.strip().isdigit():
            index = int(spec)
            if index >= len(labels):
                raise TaxonomyError(f"{name}: class {spec!r} outside 0-{len(labels) - 1}")
            return [index]
        if spec in by_name:
            return by_name[spec]
        raise TaxonomyError(f"{name}: {spec!r} is not a class index, range or class name")

    resolved: dict[str, set[int]] = {}

    def collect(name: str, path: tuple[str, ...]) -> set[int]:
        if name in resolved:
            return resolved[name]
        if name in path:
            raise TaxonomyError(f"{name}: includes itself ({' -> '.join([*path, name])})")
        entry = entries[name]
        out = {i for spec in entry.classes for i in indices(name, spec)}
        for inc in entry.includes:
            target = inc if inc in entries else alias.get(inc)
            if target is None:
                raise TaxonomyError(f"{name}: includes unknown tag {inc!r}")
            out |= collect(target, (*path, name))
        if not out:
            raise TaxonomyError(f"{name}: no classes (give classes or includes)")
        resolved[name] = out
        return out

    return {
        name: Concept(
            name=name,
            parent=e.parent or "",
            threshold=e.threshold,
            keys=frozenset(keys[i] for i in collect(name, ())),
        )
        for name, e in entries.items()
    }


def aliases(user: dict[str, ConceptEntry]) -> dict[str, str]:
    """alias -> tag name, for config rules written against an alias."""
    entries = {**shipped_taxonomy(), **user}
    return {a: name for name, e in entries.items() for a in e.aliases if a not in entries}


_RESOLVED: dict[str, tuple[dict[str, Concept], dict[str, str]]] = {}


def _concepts(settings: ConceptTagSettings) -> tuple[dict[str, Concept], dict[str, str]]:
    # Resolved once per taxonomy config: deriving runs for every file of a library.
    key = repr(settings.taxonomy)
    if key not in _RESOLVED:
        _RESOLVED[key] = resolve_taxonomy(settings.taxonomy), aliases(settings.taxonomy)
    return _RESOLVED[key]


def _rule(settings: ConceptTagSettings, name: str) -> TagRule | None:
    """The config rule for a tag, written under its name or one of its aliases."""
    if name in settings.labels:
        return settings.labels[name]
    _, alias = _concepts(settings)
    return next((r for a, r in settings.labels.items() if alias.get(a) == name), None)


def problems(settings: ConceptTagSettings) -> list[str]:
    """Config problems, as messages naming the key (for `tagd config check`)."""
    try:
        concepts, alias = _concepts(settings)
    except TaxonomyError as exc:
        return [f"tags.concepts.taxonomy.{exc}"]
    what = "not a tag or alias of the concept taxonomy (daemon/tagd/policy/taxonomy.toml)"
    return unknown_labels("concepts", settings.labels, [*concepts, *alias], what)


def frame_scores(settings: ConceptTagSettings, detections: Iterable[Detection]) -> dict[str, float]:
    """Every concept's score in one frame: the sum of its stored class probabilities."""
    concepts, _ = _concepts(settings)
    probs: dict[str, float] = {}
    for d in detections:
        probs[d.label] = probs.get(d.label, 0.0) + d.score
    return {
        name: s
        for name, c in concepts.items()
        if (s := sum(probs.get(k, 0.0) for k in c.keys & probs.keys())) > 0
    }


def label_rule(root: str, settings: ConceptTagSettings, name: str) -> LabelRule:
    """Threshold and full tag (None: switched off) of a concept tag, by the shared
    resolver. Config rules may be keyed by the tag or by one of its aliases."""
    concepts, _ = _concepts(settings)
    concept = concepts[name]
    return group_rule(
        root,
        settings,
        name,
        own_parent=concept.parent,
        own_threshold=concept.threshold,
        rule=_rule(settings, name),
    )


def passing(settings: ConceptTagSettings, scores: dict[str, float]) -> dict[str, float]:
    """The concepts whose score reaches their threshold (tag name -> score)."""
    out = {}
    for name, score in scores.items():
        # Only switched on or off matters here, not where the tag goes: no root.
        rule = label_rule("", settings, name)
        if rule.tag is not None and score >= rule.threshold:
            out[name] = score
    return out


def concept_tags(
    root: str, settings: ConceptTagSettings, detections: Sequence[Detection]
) -> list[Tag]:
    """One tag per concept that passes in at least one frame, with its best score."""
    frames: dict[float | None, list[Detection]] = defaultdict(list)
    for d in detections:
        frames[d.t].append(d)
    best: dict[str, float] = {}
    for frame in frames.values():
        for name, score in passing(settings, frame_scores(settings, frame)).items():
            best[name] = max(score, best.get(name, 0.0))
    tags: dict[str, Tag] = {}
    for name, score in best.items():
        path = _tag_path(root, settings, name)
        score = round(min(score, 1.0), 4)
        if path not in tags or score > tags[path].score:
            tags[path] = Tag(path, score, SOURCE)
    return sorted(tags.values(), key=lambda t: t.name)


def _tag_path(root: str, settings: ConceptTagSettings, name: str) -> str:
    return label_rule(root, settings, name).tag or ""


def concept_video_tags(
    policy: TagPolicy, detections: Sequence[Detection], media: Media
) -> list[Tag]:
    """Concept tags of a video with their time ranges, by the [tags.video] rules."""
    from tagd.policy.segments import ranged_tags

    settings = policy.settings
    frames: dict[float, list[Detection]] = defaultdict(list)
    for d in detections:
        frames[round(d.t or 0.0, 6)].append(d)
    hits: dict[str, dict[float, float]] = defaultdict(dict)
    for t, frame in frames.items():
        for name, score in passing(
            settings.concepts, frame_scores(settings.concepts, frame)
        ).items():
            path = _tag_path(settings.root, settings.concepts, name)
            hits[path][t] = max(min(score, 1.0), hits[path].get(t, 0.0))
    return ranged_tags(policy, hits, media, detections, SOURCE)


def derive(policy: TagPolicy, detections: Sequence[Detection], media: Media) -> list[Tag]:
    settings = policy.settings
    if media.kind == "video":
        return concept_video_tags(policy, detections, media)
    return concept_tags(settings.root, settings.concepts, detections)
