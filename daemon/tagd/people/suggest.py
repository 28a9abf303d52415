"""New people suggestions for the review queue: "is this Alice?".

Clustering joins a face to a person only when it is close to several of their
faces (tagd.people.cluster), so the same person often stays split: a cluster
of five unnamed faces next to a named one. Here each unnamed cluster (biggest
first) is compared with each named person by the mean of their face
embeddings, and the close ones become questions: yes merges the cluster into
the person, no says its faces are not that person (face refusals: never
suggested again, and clustering keeps them apart).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tagd.catalog.catalog import Catalog
from tagd.config import Settings

ANALYZER = "faces"
CLUSTERS = 200  # unnamed clusters looked at, biggest first
REACH = 1.2  # x faces.max_distance: how far apart two means may still be asked about
LOOKUPS = 1000  # faces looked up by id at most; more: the whole table in one pass


@dataclass(frozen=True)
class Suggestion:
    cluster: int  # an unnamed person
    person: int  # the named one it may be
    name: str
    distance: float  # between the means of their face embeddings
    faces: int  # of the cluster
    face: int  # one of its faces, to show


def suggestions(catalog: Catalog, settings: Settings, limit: int) -> list[Suggestion]:
    """Unnamed clusters close to a named person, closest first."""
    everyone = [(pid, name, n) for pid, name, hidden, n in catalog.people_brief() if not hidden]
    named = {pid: name for pid, name, _ in everyone if name}
    unnamed = sorted((p for p in everyone if not p[1]), key=lambda p: -p[2])[:CLUSTERS]
    if not named or not unnamed:
        return []
    faces = catalog.face_ids_by_person([*named, *(pid for pid, _, _ in unnamed)])
    vectors = _vectors(catalog, [f for ids in faces.values() for f in ids])
    means = {
        pid: np.mean([vectors[f] for f in ids if f in vectors], axis=0)
        for pid, ids in faces.items()
        if any(f in vectors for f in ids)
    }
    people = [pid for pid in named if pid in means]
    if not people:
        return []
    centres = np.stack([means[pid] for pid in people])
    refused = catalog.refusals(f for pid, _, _ in unnamed for f in faces.get(pid, []))
    reach = settings.faces.max_distance * REACH
    out = []
    for cluster, _, _ in unnamed:
        if cluster not in means:
            continue
        distances = np.linalg.norm(centres - means[cluster], axis=1)
        best = int(distances.argmin())
        person = people[best]
        ids = faces[cluster]
        if distances[best] > reach or any(person in refused.get(f, ()) for f in ids):
            continue
        distance = round(float(distances[best]), 3)
        out.append(Suggestion(cluster, person, str(named[person]), distance, len(ids), ids[0]))
    return sorted(out, key=lambda s: s.distance)[:limit]


def _vectors(catalog: Catalog, ids: list[int]) -> dict[int, np.ndarray]:
    """The face embeddings of `ids`: looked up by id when they are few, else read
    in one pass over the table (5,000 faces: 16 ms instead of 35)."""
    if len(ids) <= LOOKUPS:
        return catalog.vectors(ANALYZER, ids)
    table, everything = catalog.all_vectors(ANALYZER)
    wanted = set(ids)
    return {i: row for i, row in zip(table.tolist(), everything, strict=True) if i in wanted}
