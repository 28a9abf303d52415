"""Label names in [tags.<group>.labels] that the group does not have."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def unknown_labels(group: str, names: Iterable[str], known: Iterable[str], what: str) -> list[str]:
    """A problem per name in [tags.<group>.labels] that is not one of `known`
    (`what` says what it is not), with the closest known names: a typo
    ("presron") must not be a rule that silently never applies."""
    choices = sorted(set(known))
    problems = []
    for name in sorted(set(names) - set(choices)):
        close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
        if not close:  # "Person" for "person": case is the usual slip
            close = [c for c in choices if c.lower() == name.lower()]
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        problems.append(f"tags.{group}.labels.{name}: {what}{hint}")
    return problems
