"""Pydantic's validation errors worded as tagd words them.

One message per problem, each naming the key path as written in TOML
("tags.objects.labels.person.threshold", "library.roots[1]"), the value with
its TOML-level type, and what is allowed there: the person reading it has a
text editor open, not the Python classes.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from tagd.config.models import Settings

# Fields of Settings that are not keys of the file.
NOT_KEYS = frozenset({"source"})

_TABLE_ERRORS = {"dataclass_type", "dataclass_exact_type", "dict_type", "model_type"}
_SCALAR_ERRORS = {
    "bool_type": "bool",
    "int_type": "int",
    "float_type": "float",
    "string_type": "str",
}


def problems(error: ValidationError) -> list[str]:
    """One message per error pydantic found in a table validated as Settings."""
    return [describe(e) for e in error.errors(include_url=False)]


def describe(error: ErrorDetails) -> str:
    loc = error["loc"]
    path = key_path(loc)
    kind = error["type"]
    if kind in ("unexpected_keyword_argument", "extra_forbidden"):
        return unknown_key(loc)
    given = f"{path or 'top level'} = {show(error['input'])}"
    if kind in _TABLE_ERRORS:
        return f"{given}: expected a table"
    if kind == "list_type":
        return f"{given}: expected a list"
    if kind in _SCALAR_ERRORS:
        return f"{given}: expected {_SCALAR_ERRORS[kind]}"
    if kind == "literal_error":
        allowed = " | ".join(repr(a) for a in typing.get_args(type_at(loc)))
        return f"{given}: allowed values are {allowed}"
    # A Range's own message ("must be between 0.0 and 1.0"), or pydantic's for a
    # kind the fields of tagd.config.fields do not produce.
    return f"{given}: {error['msg']}"


def unknown_key(loc: tuple[int | str, ...]) -> str:
    """The message for a key no section has, with the keys its section has."""
    parent = loc[:-1]
    where = f"[{key_path(parent)}]" if parent else "the top level"
    allowed = ", ".join(keys_of(type_at(parent)))
    return f"{key_path(loc)}: unknown key; allowed in {where}: {allowed}"


def key_path(loc: tuple[int | str, ...]) -> str:
    """("library", "roots", 1) -> "library.roots[1]"."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path = f"{path}.{part}" if path else part
    return path


def show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def keys_of(section: Any) -> list[str]:
    """The keys a section of the file may have, sorted."""
    return sorted(key_of(f) for f in dataclasses.fields(section) if f.name not in NOT_KEYS)


def key_of(f: dataclasses.Field[Any]) -> str:
    """A field's key in the file: its alias where the key is a Python keyword
    ([organize] import), else its name."""
    return getattr(f.default, "alias", None) or f.name


def _field_name(section: Any, key: int | str) -> int | str:
    for f in dataclasses.fields(section):
        if key_of(f) == key:
            return f.name
    return key


def type_at(loc: tuple[int | str, ...]) -> Any:
    """The declared type of the value at `loc`, without None and annotations."""
    tp: Any = Settings
    for part in loc:
        # A section's field, or the values of a dict[str, X] or list[X].
        if dataclasses.is_dataclass(tp):
            inner = _hints(tp)[_field_name(tp, part)]
        else:
            inner = typing.get_args(tp)[-1]
        tp = _without_none(inner)
    return tp


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _without_none(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return inner[0] if len(inner) == 1 else tp
    return tp
