"""Tags from recognised text: `AI|Text`, and `AI|Studio|Name` for names in it.

The rules read only stored detections (text and its confidence), so editing
`[tags.text]` (a threshold, the list of studios) re-derives tags without
reading a photo again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tagd.policy.rules import lowering, resolve
from tagd.records import Detection, Media, Tag

if TYPE_CHECKING:
    from tagd.policy.tags import TagPolicy

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
SOURCE = "ocr"
SHORT_NAME = 4  # names shorter than this (letters) must match a whole word exactly
# Studio names matched this many points (of 100) below studio_threshold wait on
# the review page: a misread letter or two.
STUDIO_REVIEW_MARGIN = 15.0


def squash(text: str) -> str:
    """Lower case, letters and digits only: 'Acme-Studios.com' -> 'acmestudioscom'."""
    return _NOT_ALNUM.sub("", text.casefold())


def words(text: str) -> list[str]:
    return [w for w in _NOT_ALNUM.split(text.casefold()) if w]


def name_score(name: str, text: str) -> float:
    """How well `name` appears somewhere in `text`, 0-100.

    Watermarks run words together ("AcmeStudios.com") or split them over a
    line, and OCR misreads a letter here and there, so both sides are squashed
    to letters and digits and the best-aligned substring is compared
    (rapidfuzz partial_ratio). Short names would match everywhere that way;
    they must equal a whole word.
    """
    target = squash(name)
    if not target:
        return 0.0
    if len(target) < SHORT_NAME:
        return 100.0 if target in words(text) else 0.0
    haystack = squash(text)
    if len(haystack) < len(target) - 1:  # a fragment of the name is not the name
        return 0.0
    # Imported here: only studio lists need it, and it costs 1.5 MB resident.
    from rapidfuzz import fuzz

    return float(fuzz.partial_ratio(target, haystack))


def text_tags(policy: TagPolicy, detections: Sequence[Detection], media: Media) -> list[Tag]:
    rules = policy.settings.text
    lines = [
        d
        for d in detections
        if d.text and d.score >= rules.threshold and len(squash(d.text)) >= rules.min_chars
    ]
    if not lines:
        return []
    by_frame: dict[float, list[Detection]] = {}
    for d in lines:
        by_frame.setdefault(round(d.t or 0.0, 6), []).append(d)
    if media.kind == "video":
        # Where in the video the text (and each studio's name) shows, by the
        # [tags.video] rules: Stash markers, and no tag for one misread frame.
        from tagd.policy.segments import ranged_tags

        hits: dict[str, dict[float, float]] = {}
        for t, frame in by_frame.items():
            for name, score in _frame_tags(policy, frame).items():
                hits.setdefault(name, {})[t] = score
        return ranged_tags(policy, hits, media, detections, SOURCE)
    found: dict[str, float] = {}
    for frame in by_frame.values():
        for name, score in _frame_tags(policy, frame).items():
            found[name] = max(score, found.get(name, 0.0))
    return sorted((Tag(n, s, SOURCE) for n, s in found.items()), key=lambda t: t.name)


def _frame_tags(policy: TagPolicy, lines: Sequence[Detection]) -> dict[str, float]:
    """{tag: score} for one photo or frame's confident lines: `AI|Text` and the
    studios whose name appears in a line, or in all lines joined in reading order
    (a name split over two lines)."""
    rules = policy.settings.text
    root = policy.settings.root
    # Text has no per-label config rules: the group's settings are the whole rule.
    text = resolve(root, rules.name, None, parent="", threshold=rules.threshold)
    tags = {text.tag or "": round(max(d.score for d in lines), 4)}
    texts = [d.text or "" for d in lines]
    if len(texts) > 1:
        texts.append(" ".join(texts))
    # Name scores are 0-100, not probabilities: the review's candidates are the
    # near misses within STUDIO_REVIEW_MARGIN points, not whatever scores the floor.
    margin = STUDIO_REVIEW_MARGIN if lowering() else 0.0
    for studio in rules.studios:
        rule = resolve(
            root,
            studio,
            None,
            parent=rules.studio_parent,
            threshold=rules.studio_threshold,
            lowerable=False,
        )
        score = max(name_score(studio, t) for t in texts)
        if rule.tag is not None and score >= rule.threshold - margin:
            tags[rule.tag] = round(score / 100, 4)
    return tags
