"""Incremental, density-based face clustering (the rule Immich uses), one KNN per face.

A face is *core* when at least `faces.min_faces` faces, itself included, lie
within `faces.max_distance` of it (dlib's Euclidean distance). A core face joins
the person of its closest already-assigned neighbour, or starts a new person
when none of its neighbours has one. A face that is not core but has an
assigned neighbour within reach joins that neighbour's person (a border
face). Anything else waits in `faces` with no person.

Only what a new face can change is looked at again: its arrival raises the
neighbour count of the waiting faces near it, and a face that gets a person
can pull its waiting neighbours in, so those - and only those - go back into
the queue. Each new face therefore costs one sqlite-vec KNN query (plus one
per waiting neighbour it wakes up), never a pass over the whole library, and
a singleton waits until someone like it shows up in a later scan.

The algorithm never merges, renames or takes faces from a person: named
people are the user's, and clusters only grow. Faces across video frames are
clustered like any other, but near-identical faces of one video (the same
person in consecutive frames, closer than `faces.video_dedupe`) count as one
neighbour, so a stranger filling one video does not become a person alone.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.people import store
from tagd.policy.apply import derive_and_queue
from tagd.policy.tags import TagPolicy
from tagd.sinks.select import enabled_sinks

KNN = 32  # neighbours fetched per face; enough to count min_faces and find a person


@dataclass
class ClusterReport:
    new: int = 0  # faces looked at for the first time
    assigned: int = 0  # faces that got a person in this run
    created: int = 0  # people started
    waiting: int = 0  # faces without a person after the run
    touched: set[int] = field(default_factory=set)  # people that gained faces
    assigned_ids: list[int] = field(default_factory=list)


def cluster_new_faces(catalog: Catalog, settings: Settings) -> ClusterReport:
    """Cluster the faces found since the last run (called after each scan's analysis);
    re-derives person tags and queues sidecars of files whose faces joined someone."""
    with catalog.transaction():
        catalog.drop_empty_unnamed_people()
        new = catalog.new_faces(store.ANALYZER)
        catalog.add_waiting_faces(new)
        report = _Clusterer(catalog, settings).run(new)
        report.new = len(new)
        rederive(catalog, settings, _contents(catalog, report.assigned_ids))
        report.waiting = catalog.waiting_faces()
    return report


def cluster_faces(
    catalog: Catalog, settings: Settings, seeds: Sequence[int], restrict: set[int] | None
) -> set[int]:
    """Cluster `seeds` (already in `faces`, waiting), seeing only neighbours in
    `restrict` when given; returns the people they went to. Caller holds a transaction."""
    return _Clusterer(catalog, settings, restrict).run(seeds).touched


def rederive(catalog: Catalog, settings: Settings, content_ids: Iterable[int]) -> int:
    """Re-derive the faces tags of these contents (inside a transaction); queue a
    write to every sink (sidecars, Stash) where they changed. Returns how many changed."""
    # A renamed or split person must reach Stash too (tags, or performers).
    work = {cid: [store.ANALYZER] for cid in content_ids}
    return len(derive_and_queue(catalog, TagPolicy(settings.tags), enabled_sinks(settings), work))


def _contents(catalog: Catalog, detection_ids: Sequence[int]) -> set[int]:
    return {cid for cid, _ in catalog.face_info(detection_ids).values()}


class _Clusterer:
    def __init__(
        self, catalog: Catalog, settings: Settings, restrict: set[int] | None = None
    ) -> None:
        self.catalog = catalog
        self.cfg = settings.faces
        self.restrict = restrict
        self.info: dict[int, tuple[int, int | None]] = {}  # id -> (content, person)
        self.refused: dict[int, set[int]] = {}  # id -> people it is not (the user said)
        self.vecs: dict[int, np.ndarray] = {}

    def run(self, seeds: Sequence[int]) -> ClusterReport:
        report = ClusterReport()
        fresh = set(seeds)
        queue, queued = deque(seeds), set(seeds)
        self._load_info(seeds)
        while queue:
            did = queue.popleft()
            queued.discard(did)
            if self.info[did][1] is not None:
                continue
            near = self._neighbours(did)
            person = self._decide(did, near, report)
            if person is not None:
                store.assign(self.catalog, [did], person, by_user=False)
                self.info[did] = (self.info[did][0], person)
                report.assigned += 1
                report.assigned_ids.append(did)
                report.touched.add(person)
            if person is not None or did in fresh:
                # Its arrival or its new person may tip waiting neighbours over.
                for n, _ in near:
                    if self.info[n][1] is None and n not in queued and n != did:
                        queue.append(n)
                        queued.add(n)
        return report

    def _decide(self, did: int, near: list[tuple[int, float]], report: ClusterReport) -> int | None:
        # A person the user said this face is not is never its person again.
        refused = self.refused.get(did, set())
        closest_person = next(
            (p for n, _ in near if (p := self.info[n][1]) and p not in refused), None
        )
        if closest_person is not None:
            return closest_person  # core or border: the closest person within reach
        if self._support(did, near) >= self.cfg.min_faces:
            report.created += 1
            return self.catalog.new_person()
        return None

    def _neighbours(self, did: int) -> list[tuple[int, float]]:
        hits = self.catalog.nearest(store.ANALYZER, self._vector(did), k=KNN)
        near = [
            (n, d)
            for n, d in hits
            if d <= self.cfg.max_distance
            and n != did
            and (self.restrict is None or n in self.restrict)
        ]
        self._load_info([n for n, _ in near])
        return near

    def _support(self, did: int, near: list[tuple[int, float]]) -> int:
        """Faces within reach, itself included, near-identical frames of one video
        counted once."""
        counted: list[tuple[int, int]] = [(self.info[did][0], did)]
        for n, _ in near:
            content = self.info[n][0]
            twins = [c for cid, c in counted if cid == content]
            if twins and min(self._dist(n, t) for t in twins) < self.cfg.video_dedupe:
                continue
            counted.append((content, n))
        return len(counted)

    def _dist(self, a: int, b: int) -> float:
        return float(np.linalg.norm(self._vector(a) - self._vector(b)))

    def _vector(self, did: int) -> np.ndarray:
        if did not in self.vecs:
            self.vecs.update(self.catalog.vectors(store.ANALYZER, [did]))
        return self.vecs[did]

    def _load_info(self, ids: Iterable[int]) -> None:
        missing = [i for i in ids if i not in self.info]
        if missing:
            self.info.update(self.catalog.face_info(missing))
            self.refused.update(self.catalog.refusals(missing))


def after_scan(catalog: Catalog, settings: Settings) -> ClusterReport | None:
    """The scan's hook (`tagd scan`, `tagd run`): cluster new faces when faces are on."""
    if not settings.faces.enabled:
        return None
    return cluster_new_faces(catalog, settings)
