"""XMP inside image files: what every container (JPEG, PNG, WebP, TIFF) provides.

Each container module reads the XMP packet out of a file's bytes, writes a new
packet by replacing only the bytes that hold it, and checks a written file
against its original: same container, every other segment or chunk
byte-identical and in the same order.  Nothing here parses the packet itself;
that is :mod:`tagd.sinks.xmp.sidecar`'s job.  Unusual or damaged files are refused with
a :class:`ContainerError` rather than guessed at: the photo is the user's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["Container", "ContainerError", "Part", "same_parts"]


class ContainerError(ValueError):
    """The file's structure is damaged, unusual or would not hold the packet; the
    message says what (the caller adds the file name)."""


@dataclass(frozen=True)
class Container:
    """The XMP operations of one file format, all on whole-file bytes."""

    # The file's XMP packet, or None when it has none.
    read: Callable[[bytes], bytes | None]
    # The file with `packet` as its XMP and every other byte kept.
    write: Callable[[bytes, bytes], bytes]
    # Raises ContainerError unless a written file (second) differs from its original
    # (first) only in its XMP.
    check: Callable[[bytes, bytes], None]


@dataclass(frozen=True)
class Part:
    """One segment or chunk of a file, by name (for messages) and its raw bytes."""

    name: str
    raw: bytes


def same_parts(kind: str, before: Sequence[Part], after: Sequence[Part]) -> None:
    """Raise ContainerError unless `after` holds exactly the parts of `before`, in order."""
    index = next(
        (i for i, (old, new) in enumerate(zip(before, after, strict=False)) if old != new),
        min(len(before), len(after)),
    )
    if len(before) == len(after) and index < len(before):
        raise ContainerError(
            f"{kind} {index + 1} ({before[index].name}) differs in the written file"
            f" ({after[index].name})"
        )
    if len(after) < len(before):
        raise ContainerError(f"the written file lost {kind} {index + 1} ({before[index].name})")
    if len(after) > len(before):
        raise ContainerError(
            f"the written file has an extra {kind} {index + 1} ({after[index].name})"
        )
