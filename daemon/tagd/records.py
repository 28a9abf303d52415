"""The records tagd passes around: what analyzers find, what the tag policy
derives, and the rows the catalog hands back. Plain frozen dataclasses with no
database behind them, so the policy and the analyzers use them without the
catalog, and tests build them by hand."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# ------------------------------------------------------------ findings and tags


@dataclass(frozen=True)
class Detection:
    """One raw finding of an analyzer, in the upright original's pixels."""

    label: str
    score: float
    box: tuple[float, float, float, float] | None  # x0, y0, x1, y1; None for the whole image
    t: float | None = None  # seconds into a video
    text: str | None = None  # recognised text (full-text indexed)
    points: tuple[float, ...] = ()  # landmarks as x0, y0, x1, y1, ...
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)  # embedding
    id: int | None = field(default=None, compare=False)
    # Faces: the person the face belongs to (people.id, and the name once named).
    person_id: int | None = field(default=None, compare=False)
    person: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Media:
    """What the tag policy needs to know about a content besides its findings."""

    kind: str  # image | video
    width: int | None = None
    height: int | None = None
    duration: float | None = None
    # Seconds between a video's sampled frames, as sampled (None: image, or a
    # catalog from before it was recorded).
    interval: float | None = None


@dataclass(frozen=True)
class Segment:
    """A time range of a video in which a tag holds (seconds; score = best frame)."""

    start: float
    end: float
    score: float


@dataclass(frozen=True)
class Tag:
    name: str  # hierarchical, '|'-separated, e.g. "AI|Objects|dog"
    score: float
    source: str  # the analyzer the evidence came from
    segments: tuple[Segment, ...] = ()  # videos: where in the video the tag holds


@dataclass(frozen=True)
class ReviewItem:
    """A tag on a file, waiting for a user's accept or reject."""

    content_id: int
    name: str
    score: float
    source: str
    file_id: int
    path: str
    kind: str
    candidate: bool = False  # below its threshold: not on the file unless accepted


# ------------------------------------------------------------ files and work


@dataclass(frozen=True)
class IndexedFile:
    id: int
    path: str
    size: int
    mtime_ns: int
    content_id: int | None
    error: str | None


@dataclass(frozen=True)
class WorkItem:
    """One content to analyse, reachable through `path`."""

    content_id: int
    path: str
    kind: str
    missing: tuple[str, ...]
    # The file's size and mtime as indexed: a file that differs now is still changing.
    size: int | None = None
    mtime_ns: int | None = None


@dataclass(frozen=True)
class FileRecord:
    """A file with everything known about it, for status, tags and export."""

    id: int
    path: str
    kind: str
    status: str  # ok | error | pending
    error: str | None
    width: int | None
    height: int | None
    duration: float | None
    content_id: int | None


# ------------------------------------------------------------ people


@dataclass(frozen=True)
class Person:
    id: int
    name: str | None
    faces: int
    example: str | None  # a file showing the person (their best-scored face)
    hidden: bool = False  # strangers: kept out of sight on the people page

    @property
    def label(self) -> str:
        return self.name or f"unnamed person {self.id}"


@dataclass(frozen=True)
class FaceRow:
    detection_id: int
    content_id: int
    path: str
    score: float
    box: tuple[float, float, float, float]
    t: float | None
    person_id: int | None


@dataclass(frozen=True)
class Assignment:
    """A face's place and the person it belongs to, kept across a re-analysis."""

    t: float | None
    box: tuple[float, float, float, float]
    cluster_id: int | None
    person_id: int


@dataclass(frozen=True)
class ListedFile:
    """A file as the HTTP API lists it: its record, and what its stat said when indexed."""

    record: FileRecord
    size: int
    mtime_ns: int
