"""Counts as people read them: "1 face", "2 faces"."""

from __future__ import annotations

# Nouns whose plural is not the singular plus "s".
_IRREGULAR = {"person": "people", "match": "matches"}


def count(n: int, noun: str) -> str:
    """n and the noun, in the singular for exactly one."""
    if n == 1:
        return f"1 {noun}"
    *words, last = noun.split(" ")
    return " ".join([str(n), *words, _IRREGULAR.get(last, last + "s")])
