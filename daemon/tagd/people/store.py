"""The faces and people tables: every query the people code makes.

A person is a row of `people`; `name` is NULL for a cluster nobody has named
yet (shown as "unnamed person N", N = its id). A face is a detection of the
"faces" analyzer; it gets a row in `faces` the first time clustering looks at
it: `person_id` NULL means it waits (not enough neighbours yet), and
`cluster_id` is the person the algorithm put it in (NULL when a user placed it
with `tagd people split`, so it is known to be a human decision).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tagd.catalog.catalog import Catalog, Detection

ANALYZER = "faces"


@dataclass(frozen=True)
class Person:
    id: int
    name: str | None
    faces: int
    example: str | None  # a file showing the person (their best-scored face)

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


def new_faces(catalog: Catalog) -> list[int]:
    """Face detections clustering has never looked at, oldest first."""
    rows = catalog.con.execute(
        "SELECT d.id FROM detections d LEFT JOIN faces f ON f.detection_id = d.id "
        "WHERE d.analyzer = ? AND f.detection_id IS NULL ORDER BY d.id",
        (ANALYZER,),
    )
    return [r[0] for r in rows]


def add_waiting(catalog: Catalog, detection_ids: Iterable[int]) -> None:
    catalog.con.executemany(
        "INSERT OR IGNORE INTO faces(detection_id) VALUES (?)", ((i,) for i in detection_ids)
    )


def face_info(catalog: Catalog, detection_ids: Sequence[int]) -> dict[int, tuple[int, int | None]]:
    """detection id -> (content id, person id) for the given faces."""
    out: dict[int, tuple[int, int | None]] = {}
    for start in range(0, len(detection_ids), 500):
        chunk = list(detection_ids[start : start + 500])
        marks = ",".join("?" * len(chunk))
        for did, cid, pid in catalog.con.execute(
            f"SELECT d.id, d.content_id, f.person_id FROM detections d "
            f"LEFT JOIN faces f ON f.detection_id = d.id WHERE d.id IN ({marks})",
            chunk,
        ):
            out[did] = (cid, pid)
    return out


def assign(
    catalog: Catalog, detection_ids: Iterable[int], person_id: int, *, by_user: bool
) -> None:
    cluster = None if by_user else person_id
    catalog.con.executemany(
        "INSERT INTO faces(detection_id, cluster_id, person_id) VALUES (?, ?, ?) "
        "ON CONFLICT(detection_id) DO UPDATE SET cluster_id = excluded.cluster_id, "
        "person_id = excluded.person_id",
        ((i, cluster, person_id) for i in detection_ids),
    )


@dataclass(frozen=True)
class Assignment:
    """A face's place and the person it belongs to, kept across a re-analysis."""

    t: float | None
    box: tuple[float, float, float, float]
    cluster_id: int | None
    person_id: int


def assignments(catalog: Catalog, content_id: int) -> list[Assignment]:
    rows = catalog.con.execute(
        "SELECT d.t, d.x0, d.y0, d.x1, d.y1, f.cluster_id, f.person_id FROM detections d "
        "JOIN faces f ON f.detection_id = d.id "
        "WHERE d.content_id = ? AND d.analyzer = ? AND f.person_id IS NOT NULL",
        (content_id, ANALYZER),
    )
    return [Assignment(r[0], (r[1], r[2], r[3], r[4]), r[5], r[6]) for r in rows]


def carry_over(
    catalog: Catalog, before: Sequence[Assignment], after: Sequence[tuple[int, Detection]]
) -> int:
    """Give each new face the person of the old face at the same place (same frame,
    IoU >= 0.5, best first); returns how many were carried over."""
    pairs = []
    for new_id, det in after:
        for i, old in enumerate(before):
            same_frame = (old.t is None and det.t is None) or (
                old.t is not None and det.t is not None and abs(old.t - det.t) < 0.01
            )
            overlap = _iou(old.box, det.box) if det.box and same_frame else 0.0
            if overlap >= 0.5:
                pairs.append((overlap, new_id, i))
    used_new: set[int] = set()
    used_old: set[int] = set()
    for _, new_id, i in sorted(pairs, reverse=True):
        if new_id in used_new or i in used_old:
            continue
        used_new.add(new_id)
        used_old.add(i)
        old = before[i]
        catalog.con.execute(
            "INSERT INTO faces(detection_id, cluster_id, person_id) VALUES (?, ?, ?)",
            (new_id, old.cluster_id, old.person_id),
        )
    return len(used_new)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def new_person(catalog: Catalog, name: str | None = None) -> int:
    cur = catalog.con.execute(
        "INSERT INTO people(name, created_at) VALUES (?, ?)", (name, time.time())
    )
    return int(cur.lastrowid or 0)


def drop_empty_unnamed(catalog: Catalog) -> int:
    """Unnamed clusters left without faces (their photos were deleted or re-analysed).
    Named people stay: a name is the user's work."""
    cur = catalog.con.execute(
        "DELETE FROM people WHERE name IS NULL AND id NOT IN "
        "(SELECT person_id FROM faces WHERE person_id IS NOT NULL)"
    )
    return cur.rowcount


def people(catalog: Catalog) -> list[Person]:
    """Everyone with at least one face, named ones first, then by face count."""
    rows = catalog.con.execute(
        "SELECT p.id, p.name, COUNT(f.detection_id), "
        "(SELECT MIN(fl.path) FROM faces f2 JOIN detections d ON d.id = f2.detection_id "
        " JOIN files fl ON fl.content_id = d.content_id WHERE f2.person_id = p.id "
        " AND d.score = (SELECT MAX(d3.score) FROM faces f3 JOIN detections d3 "
        "  ON d3.id = f3.detection_id WHERE f3.person_id = p.id)) "
        "FROM people p LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id "
        "ORDER BY p.name IS NULL, COUNT(f.detection_id) DESC, p.id"
    )
    return [Person(*r) for r in rows]


def person(catalog: Catalog, key: str) -> Person | None:
    """A person by id (`12`) or by name (case-insensitive)."""
    everyone = people(catalog)
    if key.isdigit():
        return next((p for p in everyone if p.id == int(key)), None)
    lowered = key.strip().lower()
    return next((p for p in everyone if p.name and p.name.lower() == lowered), None)


def faces_of(catalog: Catalog, person_id: int) -> list[FaceRow]:
    rows = catalog.con.execute(
        "SELECT d.id, d.content_id, MIN(fl.path), d.score, d.x0, d.y0, d.x1, d.y1, d.t, "
        "f.person_id FROM faces f JOIN detections d ON d.id = f.detection_id "
        "JOIN files fl ON fl.content_id = d.content_id WHERE f.person_id = ? "
        "GROUP BY d.id ORDER BY MIN(fl.path), d.t, d.id",
        (person_id,),
    )
    return [FaceRow(r[0], r[1], r[2], r[3], (r[4], r[5], r[6], r[7]), r[8], r[9]) for r in rows]


def contents_of(catalog: Catalog, person_ids: Iterable[int]) -> set[int]:
    out: set[int] = set()
    for pid in person_ids:
        out.update(
            r[0]
            for r in catalog.con.execute(
                "SELECT DISTINCT d.content_id FROM faces f JOIN detections d "
                "ON d.id = f.detection_id WHERE f.person_id = ?",
                (pid,),
            )
        )
    return out


def export_faces(catalog: Catalog, content_id: int) -> list[dict[str, Any]]:
    """The export's `faces` key: box, score, the person's name (None until named) and
    the person/cluster id (None while the face waits)."""
    return [
        {"box": list(d.box or ()), "score": d.score, "person": d.person, "cluster": d.person_id}
        | ({"t": d.t} if d.t is not None else {})
        for d in catalog.detections(content_id, ANALYZER)
    ]
