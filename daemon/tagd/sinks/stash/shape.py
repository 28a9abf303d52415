"""Does a GraphQL answer hold what its query asked for?

The sink reads answers by key (`data["findTags"]["tags"]`), so valid JSON of
another shape (`{"data": {}}` from a proxy or an unexpected Stash version, a
null where an object belongs, a string where a number belongs) would end a
scan with a KeyError. The client checks every answer against the selection set
of the query that asked for it, and a mismatch becomes an error naming the
field, which the outbox retries like a 5xx.

There is no schema here: which fields Stash may leave null and what the leaves
tagd reads must be is written down below, for the fields tagd's queries select.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any

# Fields Stash answers null for in normal operation, read by tagd as "none"
# (a scene without studio, a marker without end, a performer without
# disambiguation). Any other null is a broken answer.
NULLABLE = frozenset({"studio", "end_seconds", "disambiguation"})

# What the leaves tagd reads must be; other leaves may be any JSON scalar.
LEAVES = {
    "id": "id",
    "count": "int",
    "seconds": "number",
    "end_seconds": "number",
    "name": "str",
    "path": "str",
    "disambiguation": "str",
    "aliases": "strs",
    "alias_list": "strs",
}
_KIND_NAMES = {
    "id": "an id",
    "int": "an integer",
    "number": "a number",
    "str": "a string",
    "strs": "a list of strings",
    "scalar": "a plain value",
}

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|\.\.\.|[_A-Za-z][_0-9A-Za-z]*|[^\s,]')
_COMMENT = re.compile(r"#[^\n]*")


@dataclass(frozen=True)
class Field:
    sub: dict[str, Field] | None  # None: a leaf
    optional: bool = False  # in an inline fragment: present for some types only


class _Unsupported(Exception):
    """A query this checker does not read (named fragments): left unchecked."""


def problem(query: str, data: dict[str, Any]) -> str | None:
    """What `data` lacks or has wrong for `query` ("lacks findTags.tags"), or None."""
    fields = selection(query)
    return None if fields is None else _check(data, fields, "")


@functools.lru_cache(maxsize=64)
def selection(query: str) -> dict[str, Field] | None:
    """The fields the operation in `query` selects (None: not understood)."""
    tokens = _TOKEN.findall(_COMMENT.sub("", query))
    # The operation's selection set is the first "{" outside its variable list.
    depth, start = 0, None
    for i, token in enumerate(tokens):
        if token == "{" and depth == 0:
            start = i
            break
        depth += {"(": 1, ")": -1}.get(token, 0)
    if start is None:
        return None
    try:
        fields, _ = _selection_set(tokens, start, optional=False)
    except (_Unsupported, IndexError):
        return None
    return fields


def _selection_set(tokens: list[str], i: int, optional: bool) -> tuple[dict[str, Field], int]:
    """The fields of the set opening at tokens[i]; returns them and the index after it."""
    fields: dict[str, Field] = {}
    i += 1
    while tokens[i] != "}":
        if tokens[i] == "...":
            if tokens[i + 1] != "on":
                raise _Unsupported
            inner, i = _selection_set(tokens, i + 3, optional=True)
            for key, inner_field in inner.items():
                fields.setdefault(key, inner_field)
            continue
        key, field_optional, i = _field_head(tokens, i, optional)
        sub = None
        if tokens[i] == "{":
            sub, i = _selection_set(tokens, i, optional=False)
        fields[key] = Field(sub, field_optional)
    return fields, i + 1


def _field_head(tokens: list[str], i: int, optional: bool) -> tuple[str, bool, int]:
    """A field's answer key (its alias, if any), whether it may be absent, and the
    index after its arguments and directives."""
    key = tokens[i]
    i += 1
    if tokens[i] == ":":  # alias: field
        i += 2
    if tokens[i] == "(":
        i = _after_parens(tokens, i)
    while tokens[i] == "@":  # @include / @skip: the field may be left out
        optional = True
        i += 2
        if tokens[i] == "(":
            i = _after_parens(tokens, i)
    return key, optional, i


def _after_parens(tokens: list[str], i: int) -> int:
    depth = 0
    while True:
        depth += {"(": 1, ")": -1}.get(tokens[i], 0)
        i += 1
        if depth == 0:
            return i


def _check(data: dict[str, Any], fields: dict[str, Field], where: str) -> str | None:
    for key, spec in fields.items():
        path = where + key
        if key not in data:
            if spec.optional:
                continue
            return f"lacks {path}"
        value = data[key]
        if value is None:
            if spec.optional or key in NULLABLE:
                continue
            return f"has {path} = null"
        found = _check_object(value, spec.sub, path) if spec.sub else _check_leaf(key, value, path)
        if found:
            return found
    return None


def _check_object(value: Any, fields: dict[str, Field], path: str) -> str | None:
    """An object, or a list of objects, with the selected fields."""
    items = enumerate(value) if isinstance(value, list) else [(None, value)]
    for n, item in items:
        where = path if n is None else f"{path}[{n}]"
        if not isinstance(item, dict):
            return f"has {where} = {_short(item)}, not an object"
        found = _check(item, fields, where + ".")
        if found:
            return found
    return None


def _check_leaf(key: str, value: Any, path: str) -> str | None:
    kind = LEAVES.get(key, "scalar")
    if _is(kind, value):
        return None
    return f"has {path} = {_short(value)}, not {_KIND_NAMES[kind]}"


def _is(kind: str, value: Any) -> bool:
    if isinstance(value, bool):  # a JSON true is no id or number
        return kind == "scalar"
    if kind == "id":
        return isinstance(value, str | int)
    if kind == "int":
        return isinstance(value, int)
    if kind == "number":
        return isinstance(value, int | float) and math.isfinite(value)
    if kind == "str":
        return isinstance(value, str)
    if kind == "strs":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    scalar = (str, int, float)
    return isinstance(value, scalar) or (
        isinstance(value, list) and all(isinstance(v, scalar) for v in value)
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
