"""Tags from recognised text: `AI|Text`, and `AI|Studio|Name` for names in it.

The rules read only stored detections (text and its confidence), so editing
`[tags.text]` (a threshold, the list of studios) re-derives tags without
reading a photo again.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rapidfuzz import fuzz

from tagd.catalog.catalog import Detection, Media, Tag

if TYPE_CHECKING:
    from tagd.policy.tags import TagPolicy

_NOT_ALNUM = re.compile(r"[^0-9a-z]+")
SHORT_NAME = 4  # names shorter than this (letters) must match a whole word exactly


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
    return float(fuzz.partial_ratio(target, haystack))


def text_tags(policy: TagPolicy, detections: Sequence[Detection], media: Media) -> list[Tag]:
    rules = policy.settings.text
    root = policy.settings.root
    lines = [
        d
        for d in detections
        if d.text and d.score >= rules.threshold and len(squash(d.text)) >= rules.min_chars
    ]
    if not lines:
        return []
    tags = [Tag(f"{root}|{rules.name.strip()}", round(max(d.score for d in lines), 4), "ocr")]
    # Names are matched against every confident line, and against all of them
    # joined in reading order per frame (a name split over two lines).
    texts = [d.text or "" for d in lines]
    by_frame: dict[float | None, list[str]] = {}
    for d in lines:
        by_frame.setdefault(d.t, []).append(d.text or "")
    texts += [" ".join(parts) for parts in by_frame.values() if len(parts) > 1]
    parent = [p for p in rules.studio_parent.split("|") if p]
    for studio in rules.studios:
        score = max(name_score(studio, t) for t in texts)
        if score >= rules.studio_threshold:
            name = "|".join([root, *parent, studio.strip()])
            tags.append(Tag(name, round(score / 100, 4), "ocr"))
    return sorted(tags, key=lambda t: t.name)
