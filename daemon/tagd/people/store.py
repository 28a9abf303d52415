"""What the people code adds to the catalog's face queries (tagd.catalog.people):
user-made assignments, carrying people over a re-analysis, lookup by name, export.

A person is a row of `people`; `name` is NULL for a cluster nobody has named
yet (shown as "unnamed person N", N = its id). A face is a detection of the
"faces" analyzer; it gets a row in `faces` the first time clustering looks at
it: `person_id` NULL means it waits (not enough neighbours yet), and
`cluster_id` is the person the algorithm put it in (NULL when a user placed it
with `tagd people split`, so it is known to be a human decision).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from tagd.catalog.catalog import Catalog
from tagd.records import Assignment, Detection, Person

ANALYZER = "faces"


def assign(
    catalog: Catalog, detection_ids: Iterable[int], person_id: int, *, by_user: bool
) -> None:
    catalog.assign_faces(detection_ids, person_id, cluster_id=None if by_user else person_id)


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
        catalog.add_face(new_id, old.cluster_id, old.person_id)
    return len(used_new)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def person(catalog: Catalog, key: str) -> Person | None:
    """A person by id (`12`) or by name (case-insensitive)."""
    everyone = catalog.people()
    if key.isdigit():
        return next((p for p in everyone if p.id == int(key)), None)
    lowered = key.strip().lower()
    return next((p for p in everyone if p.name and p.name.lower() == lowered), None)


def export_faces(catalog: Catalog, content_id: int) -> list[dict[str, Any]]:
    """The export's `faces` key: box, score, the person's name (None until named) and
    the person/cluster id (None while the face waits)."""
    return [
        {"box": list(d.box or ()), "score": d.score, "person": d.person, "cluster": d.person_id}
        | ({"t": d.t} if d.t is not None else {})
        for d in catalog.detections(content_id, ANALYZER)
    ]
