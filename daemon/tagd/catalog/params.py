"""Pieces shared by the catalog's queries: path ranges bound as bytes, id lists
in chunks SQLite accepts, and messages stored the way tagd shows them."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from tagd.catalog.connect import path_param
from tagd.paths import shown

# SQLite's default limit on bound parameters is 999 in older builds: stay well below.
CHUNK = 500


def path_under(prefixes: Sequence[str]) -> tuple[str, list[object]]:
    """SQL matching files (alias f) at or below any of `prefixes` (all files when
    empty): a range scan on the path index, byte by byte (see path_param), so a
    folder or file name that is not UTF-8 is found like any other."""
    if not prefixes:
        return "1", []
    clauses, params = [], []
    for prefix in prefixes:
        base = path_param(prefix.rstrip("/") or "/")
        clauses.append(
            "(f.path = CAST(? AS TEXT) OR (f.path >= CAST(? AS TEXT) AND f.path < CAST(? AS TEXT)))"
        )
        params += [base, base.rstrip(b"/") + b"/", base.rstrip(b"/") + b"0"]  # '0' follows '/'
    return "(" + " OR ".join(clauses) + ")", params


def prefix_range(prefix: str) -> tuple[bytes, bytes]:
    """The byte range [low, high) of the paths that start with `prefix`."""
    low = path_param(prefix)
    # Byte-wise, as paths compare (see path_param): the bound is the prefix
    # with its last byte incremented (a file name may hold any byte but / and NUL).
    high = low.rstrip(b"\xff")
    high = high[:-1] + bytes([high[-1] + 1]) if high else b"\xff" * (len(low) + 1)
    return low, high


def chunks(items: Sequence[int], size: int = CHUNK) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def marks(values: Sequence[object]) -> str:
    """The placeholders of an IN (...) list for `values`."""
    return ",".join("?" * len(values))


def readable(text: str | None) -> str | None:
    """A message for people (an error reason) that may quote a file name that is
    not UTF-8: stored with that name's odd bytes as \\xNN, as tagd shows them."""
    return None if text is None else shown(text)
