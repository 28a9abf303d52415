"""What the tag rules say about one label: its threshold and its full tag, or off.

Every tag group resolves a label the same way, most specific first:

1. the label's own config rule (`[tags.<group>.labels.<label>]`: threshold,
   name, parent, enabled);
2. the label's shipped defaults, where the group has them (a concept of the
   taxonomy, a CLIP prompt set: a parent below the group's, a threshold);
3. the group's threshold and parent.

Objects, NSFW, concepts, CLIP prompts and text all call `resolve`, so a rule
means the same wherever it is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from tagd.config import TagGroupSettings, TagRule, TagSettings


@dataclass(frozen=True)
class LabelRule:
    threshold: float
    tag: str | None  # the full tag, e.g. "AI|Objects|dog"; None when the label is off


def tag_path(root: str, parent: str, name: str) -> str:
    """root|parent parts|name, empty parts dropped (a parent may be "" or "A|B").

    A name that only repeats its parent (the catch-all "food" under "Food",
    "animal" under "Animals") is the parent itself: AI|Concepts|Food, never
    AI|Concepts|Food|food.
    """
    parents = [p for p in parent.split("|") if p]
    name = name.strip()
    if parents and _repeats(parents[-1], name):
        return "|".join([root, *parents])
    return "|".join([root, *parents, name])


def _repeats(parent: str, name: str) -> bool:
    """Whether a tag name says its parent again, in the singular or plural."""
    a, b = parent.casefold(), name.casefold()
    return a == b or a == b + "s" or b == a + "s"


def resolve(
    root: str,
    label: str,
    rule: TagRule | None,
    *,
    parent: str,
    threshold: float,
    lowerable: bool = True,
) -> LabelRule:
    """A label's rule: its config `rule` (None: none written) over the defaults.
    Within `lowered`, its threshold is at most the floor unless not `lowerable`
    (a threshold on another scale, which sets its own candidates' margin)."""
    if rule is not None and not rule.enabled:
        return LabelRule(threshold, None)
    if rule is not None and rule.threshold is not None:
        threshold = rule.threshold
    if rule is not None and rule.parent is not None:
        parent = rule.parent
    name = rule.name if rule is not None and rule.name else label
    floor = _floor.get()
    if floor is not None and lowerable:
        threshold = min(threshold, floor)
    return LabelRule(threshold, tag_path(root, parent, name))


# Set by `lowered`: no threshold above it, for one derive in this context.
_floor: ContextVar[float | None] = ContextVar("tagd_threshold_floor", default=None)


def lowering() -> bool:
    """Whether this derive is the candidates' (inside `lowered`)."""
    return _floor.get() is not None


@contextmanager
def lowered(floor: float) -> Iterator[None]:
    """Within: every threshold at most `floor`. What a file's findings would make
    of tags with lower thresholds: the review queue's candidates (tagd.policy.apply)."""
    token = _floor.set(floor)
    try:
        yield
    finally:
        _floor.reset(token)


def group_rule(
    root: str,
    group: TagGroupSettings,
    label: str,
    *,
    own_parent: str | None = None,
    own_threshold: float | None = None,
    rule: TagRule | None = None,
) -> LabelRule:
    """A label of a tag group: `rule` (default: the one under the label's own name)
    over the label's shipped parent (below the group's) and threshold, over the
    group's."""
    parent = "|".join(p for p in (group.parent, own_parent or "") if p)
    return resolve(
        root,
        label,
        rule if rule is not None else group.labels.get(label),
        parent=parent,
        threshold=own_threshold if own_threshold is not None else group.threshold,
    )


# The groups whose label rules may carry an xmp:Rating (their tags are
# root|parent|label, so a rule names its tag exactly).
RATED_GROUPS = ("objects", "nsfw", "quality")


def rating_for(tags: TagSettings, names: Iterable[str]) -> int | None:
    """The xmp:Rating opt-in rules give a file with these tags: the lowest of the
    ratings of its tags' rules (None: no rule gives one)."""
    have = set(names)
    found = []
    for key in RATED_GROUPS:
        group = getattr(tags, key)
        for label, rule in group.labels.items():
            if rule.rating is None:
                continue
            tag = group_rule(tags.root, group, label).tag
            if tag in have:
                found.append(rule.rating)
    return min(found) if found else None
