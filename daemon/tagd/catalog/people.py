"""The faces and people tables.

A person is a row of `people`; `name` is NULL for a cluster nobody has named
yet. A face is a detection of the faces analyzer; it gets a row in `faces` the
first time clustering looks at it: `person_id` NULL means it waits (not enough
neighbours yet), and `cluster_id` is the person the algorithm put it in (NULL
when a user placed it, so it is known to be a human decision).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

from tagd.catalog.params import chunks, marks
from tagd.records import Assignment, FaceRow, Person


class PeopleQueries:
    con: sqlite3.Connection

    # ------------------------------------------------------------ faces

    def new_faces(self, analyzer: str) -> list[int]:
        """Face detections clustering has never looked at, oldest first."""
        rows = self.con.execute(
            "SELECT d.id FROM detections d LEFT JOIN faces f ON f.detection_id = d.id "
            "WHERE d.analyzer = ? AND f.detection_id IS NULL ORDER BY d.id",
            (analyzer,),
        )
        return [r[0] for r in rows]

    def add_waiting_faces(self, detection_ids: Iterable[int]) -> None:
        self.con.executemany(
            "INSERT OR IGNORE INTO faces(detection_id) VALUES (?)", ((i,) for i in detection_ids)
        )

    def waiting_faces(self) -> int:
        """How many faces have no person yet."""
        return int(
            self.con.execute("SELECT COUNT(*) FROM faces WHERE person_id IS NULL").fetchone()[0]
        )

    def people_counts(self) -> tuple[int, int]:
        """(people with a face, of them named), without listing them."""
        total, named = self.con.execute(
            "SELECT COUNT(*), COUNT(p.name) FROM people p "
            "WHERE EXISTS (SELECT 1 FROM faces f WHERE f.person_id = p.id)"
        ).fetchone()
        return int(total), int(named)

    def face_info(self, detection_ids: Sequence[int]) -> dict[int, tuple[int, int | None]]:
        """detection id -> (content id, person id) for the given faces."""
        out: dict[int, tuple[int, int | None]] = {}
        for chunk in chunks(detection_ids):
            for did, cid, pid in self.con.execute(
                f"SELECT d.id, d.content_id, f.person_id FROM detections d "
                f"LEFT JOIN faces f ON f.detection_id = d.id WHERE d.id IN ({marks(chunk)})",
                chunk,
            ):
                out[did] = (cid, pid)
        return out

    def assign_faces(
        self, detection_ids: Iterable[int], person_id: int, cluster_id: int | None
    ) -> None:
        """Put faces with a person; `cluster_id` None marks the user's decision."""
        self.con.executemany(
            "INSERT INTO faces(detection_id, cluster_id, person_id) VALUES (?, ?, ?) "
            "ON CONFLICT(detection_id) DO UPDATE SET cluster_id = excluded.cluster_id, "
            "person_id = excluded.person_id",
            ((i, cluster_id, person_id) for i in detection_ids),
        )

    def add_face(self, detection_id: int, cluster_id: int | None, person_id: int) -> None:
        """A face new to `faces` that already has its person (carried over)."""
        self.con.execute(
            "INSERT INTO faces(detection_id, cluster_id, person_id) VALUES (?, ?, ?)",
            (detection_id, cluster_id, person_id),
        )

    def face_assignments(self, content_id: int, analyzer: str) -> list[Assignment]:
        """The faces of a content that belong to someone, with where they are."""
        rows = self.con.execute(
            "SELECT d.t, d.x0, d.y0, d.x1, d.y1, f.cluster_id, f.person_id FROM detections d "
            "JOIN faces f ON f.detection_id = d.id "
            "WHERE d.content_id = ? AND d.analyzer = ? AND f.person_id IS NOT NULL",
            (content_id, analyzer),
        )
        return [Assignment(r[0], (r[1], r[2], r[3], r[4]), r[5], r[6]) for r in rows]

    def faces_of(self, person_id: int) -> list[FaceRow]:
        rows = self.con.execute(
            "SELECT d.id, d.content_id, MIN(fl.path), d.score, d.x0, d.y0, d.x1, d.y1, d.t, "
            "f.person_id FROM faces f JOIN detections d ON d.id = f.detection_id "
            "JOIN files fl ON fl.content_id = d.content_id WHERE f.person_id = ? "
            "GROUP BY d.id ORDER BY MIN(fl.path), d.t, d.id",
            (person_id,),
        )
        return [FaceRow(r[0], r[1], r[2], r[3], (r[4], r[5], r[6], r[7]), r[8], r[9]) for r in rows]

    def move_faces(self, from_person: int, to_person: int) -> None:
        """Every face of one person to another; faces a user placed stay marked so."""
        self.con.execute(
            "UPDATE faces SET person_id = ?, cluster_id = CASE WHEN cluster_id IS NULL "
            "THEN NULL ELSE ? END WHERE person_id = ?",
            (to_person, to_person, from_person),
        )

    def forget_faces_of(self, person_id: int) -> None:
        """Drop what clustering knew of a person's faces (they count as new again)."""
        self.con.execute("DELETE FROM faces WHERE person_id = ?", (person_id,))

    # ------------------------------------------------------------ people

    def new_person(self, name: str | None = None) -> int:
        cur = self.con.execute(
            "INSERT INTO people(name, created_at) VALUES (?, ?)", (name, time.time())
        )
        return int(cur.lastrowid or 0)

    def rename_person(self, person_id: int, name: str) -> None:
        self.con.execute("UPDATE people SET name = ? WHERE id = ?", (name, person_id))

    def delete_person(self, person_id: int) -> None:
        self.con.execute("DELETE FROM people WHERE id = ?", (person_id,))

    def drop_empty_unnamed_people(self) -> int:
        """Unnamed clusters left without faces (their photos were deleted or re-analysed).
        Named people stay: a name is the user's work."""
        cur = self.con.execute(
            "DELETE FROM people WHERE name IS NULL AND id NOT IN "
            "(SELECT person_id FROM faces WHERE person_id IS NOT NULL)"
        )
        return cur.rowcount

    def people(self) -> list[Person]:
        """Everyone with at least one face, named ones first, then by face count."""
        rows = self.con.execute(
            "SELECT p.id, p.name, COUNT(f.detection_id), "
            "(SELECT MIN(fl.path) FROM faces f2 JOIN detections d ON d.id = f2.detection_id "
            " JOIN files fl ON fl.content_id = d.content_id WHERE f2.person_id = p.id "
            " AND d.score = (SELECT MAX(d3.score) FROM faces f3 JOIN detections d3 "
            "  ON d3.id = f3.detection_id WHERE f3.person_id = p.id)), p.hidden "
            "FROM people p LEFT JOIN faces f ON f.person_id = p.id GROUP BY p.id "
            "ORDER BY p.name IS NULL, COUNT(f.detection_id) DESC, p.id"
        )
        return [Person(*r[:4], hidden=bool(r[4])) for r in rows]

    def set_hidden(self, person_id: int, hidden: bool) -> None:
        self.con.execute("UPDATE people SET hidden = ? WHERE id = ?", (int(hidden), person_id))

    def refuse_face(self, detection_id: int, person_id: int) -> None:
        """The face is not this person: out of it now, and kept out by clustering."""
        self.con.execute(
            "INSERT OR IGNORE INTO face_refusals(detection_id, person_id) VALUES (?, ?)",
            (detection_id, person_id),
        )
        self.con.execute(
            "UPDATE faces SET person_id = NULL, cluster_id = NULL "
            "WHERE detection_id = ? AND person_id = ?",
            (detection_id, person_id),
        )

    def people_brief(self) -> list[tuple[int, str | None, bool, int]]:
        """(id, name, hidden, faces) of everyone with a face: people() without the
        example file (a tenth of the time)."""
        rows = self.con.execute(
            "SELECT p.id, p.name, p.hidden, COUNT(f.detection_id) FROM people p "
            "JOIN faces f ON f.person_id = p.id GROUP BY p.id"
        )
        return [(pid, name, bool(hidden), n) for pid, name, hidden, n in rows]

    def refuse_for(self, detection_ids: Iterable[int], person_id: int) -> None:
        """Faces that are not this person, left where they are: clustering and the
        suggestions keep them out of it."""
        self.con.executemany(
            "INSERT OR IGNORE INTO face_refusals(detection_id, person_id) VALUES (?, ?)",
            [(did, person_id) for did in detection_ids],
        )

    def face_ids_by_person(self, person_ids: Iterable[int]) -> dict[int, list[int]]:
        """person -> the detection ids of its faces."""
        out: dict[int, list[int]] = {}
        for chunk in chunks(list(person_ids)):
            for did, pid in self.con.execute(
                f"SELECT detection_id, person_id FROM faces WHERE person_id IN ({marks(chunk)}) "
                "ORDER BY detection_id",
                chunk,
            ):
                out.setdefault(pid, []).append(did)
        return out

    def refusals(self, detection_ids: Iterable[int]) -> dict[int, set[int]]:
        """face -> the people it was said not to be."""
        out: dict[int, set[int]] = {}
        for chunk in chunks(list(detection_ids)):
            for did, pid in self.con.execute(
                "SELECT detection_id, person_id FROM face_refusals "
                f"WHERE detection_id IN ({marks(chunk)})",
                chunk,
            ):
                out.setdefault(did, set()).add(pid)
        return out

    def contents_of_people(self, person_ids: Iterable[int]) -> set[int]:
        """The contents showing any of these people."""
        out: set[int] = set()
        for pid in person_ids:
            out.update(
                r[0]
                for r in self.con.execute(
                    "SELECT DISTINCT d.content_id FROM faces f JOIN detections d "
                    "ON d.id = f.detection_id WHERE f.person_id = ?",
                    (pid,),
                )
            )
        return out
