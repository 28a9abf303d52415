"""What analyzers found: the work still to do, each content's media facts, and
the raw detections (with their embeddings, see vectors).

An analysis is valid for (content, analyzer, model sha256): a new model re-runs
only that analyzer.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence

from tagd.catalog.params import chunks, marks, path_under
from tagd.catalog.vectors import VectorQueries
from tagd.records import Detection, Media, WorkItem


class AnalysisQueries(VectorQueries):
    # ------------------------------------------------------------ work to do

    def pending(
        self, analyzers: dict[str, str], limit: int = 10_000, prefixes: Sequence[str] = ()
    ) -> list[WorkItem]:
        """Contents missing an analysis by one of `analyzers` (name -> model sha256),
        optionally only those with a file under one of `prefixes`."""
        if not analyzers:
            return []
        where, params = _pending_where(analyzers, prefixes)
        rows = self.con.execute(
            # SQLite takes the bare size/mtime from the row MIN(path) chose.
            "SELECT c.id, MIN(f.path), c.kind, f.size, f.mtime_ns FROM contents c "
            "JOIN files f ON f.content_id = c.id "
            f"WHERE {where} GROUP BY c.id ORDER BY MIN(f.path) LIMIT ?",
            [*params, limit],
        ).fetchall()
        done = self.done_analyses([r[0] for r in rows])
        return [
            WorkItem(
                content_id=cid,
                path=path,
                kind=kind,
                missing=tuple(
                    name for name, sha in analyzers.items() if done.get((cid, name)) != sha
                ),
                size=size,
                mtime_ns=mtime_ns,
            )
            for cid, path, kind, size, mtime_ns in rows
        ]

    def pending_count(self, analyzers: dict[str, str], prefixes: Sequence[str] = ()) -> int:
        if not analyzers:
            return 0
        where, params = _pending_where(analyzers, prefixes)
        return int(
            self.con.execute(
                "SELECT COUNT(DISTINCT c.id) FROM contents c JOIN files f "
                f"ON f.content_id = c.id WHERE {where}",
                params,
            ).fetchone()[0]
        )

    def done_analyses(self, content_ids: Sequence[int]) -> dict[tuple[int, str], str]:
        done: dict[tuple[int, str], str] = {}
        for chunk in chunks(content_ids):
            for cid, name, sha in self.con.execute(
                f"SELECT content_id, analyzer, model_sha256 FROM analyses "
                f"WHERE content_id IN ({marks(chunk)})",
                chunk,
            ):
                done[(cid, name)] = sha
        return done

    def analysed_contents(self, analyzer: str) -> list[int]:
        return [
            r[0]
            for r in self.con.execute(
                "SELECT content_id FROM analyses WHERE analyzer = ?", (analyzer,)
            )
        ]

    # ------------------------------------------------------------ media facts

    def set_media_info(
        self,
        content_id: int,
        *,
        kind: str,
        width: int,
        height: int,
        duration: float | None = None,
        interval: float | None = None,
    ) -> None:
        self.con.execute(
            "UPDATE contents SET kind = ?, width = ?, height = ?, duration = ?, "
            "frame_interval = ?, error = NULL WHERE id = ?",
            (kind, width, height, duration, interval, content_id),
        )

    def set_analysis_interval(self, content_id: int, analyzer: str, interval: float | None) -> None:
        """Record the spacing of the frames `analyzer` looked at (None: all of them)."""
        self.con.execute(
            "UPDATE analyses SET frame_interval = ? WHERE content_id = ? AND analyzer = ?",
            (interval, content_id, analyzer),
        )

    def media_for(self, media: Media, content_id: int, analyzer: str) -> Media:
        """`media` as `analyzer` saw it: a video's frame interval is its own when it
        looked at fewer frames than were sampled."""
        if media.kind != "video":
            return media
        row = self.con.execute(
            "SELECT frame_interval FROM analyses WHERE content_id = ? AND analyzer = ?",
            (content_id, analyzer),
        ).fetchone()
        if row is None or row[0] is None:
            return media
        return dataclasses.replace(media, interval=float(row[0]))

    def media(self, content_id: int) -> Media:
        row = self.con.execute(
            "SELECT kind, width, height, duration, frame_interval FROM contents WHERE id = ?",
            (content_id,),
        ).fetchone()
        return Media(*row) if row else Media("image")

    # ------------------------------------------------------------ detections

    def save_analysis(
        self, content_id: int, analyzer: str, model_sha256: str, detections: Sequence[Detection]
    ) -> list[int]:
        """Replace this analyzer's raw results for the content (call inside a transaction);
        returns the new detection ids in order."""
        self._delete_detections(content_id, analyzer)
        ids = []
        for d in detections:
            box = d.box if d.box is not None else (None, None, None, None)
            data = json.dumps({"points": list(d.points)}) if d.points else None
            cur = self.con.execute(
                "INSERT INTO detections(content_id, analyzer, t, label, score, x0, y0, x1, y1, "
                "text, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (content_id, analyzer, d.t, d.label, d.score, *box, d.text, data),
            )
            ids.append(int(cur.lastrowid or 0))
            if d.vector is not None:
                self.store_vector(analyzer, ids[-1], d.vector)
        self.con.execute(
            "INSERT INTO analyses(content_id, analyzer, model_sha256, done_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT(content_id, analyzer) DO UPDATE SET "
            "model_sha256 = excluded.model_sha256, done_at = excluded.done_at",
            (content_id, analyzer, model_sha256, time.time()),
        )
        return ids

    def _delete_detections(self, content_id: int, analyzer: str) -> None:
        # The vector table's trigger takes the embeddings along.
        self.con.execute(
            "DELETE FROM detections WHERE content_id = ? AND analyzer = ?", (content_id, analyzer)
        )

    def detections(
        self, content_id: int, analyzer: str | None = None, *, with_vectors: bool = False
    ) -> list[Detection]:
        """Stored detections; with_vectors fills in embeddings (one analyzer's only)."""
        found = self._detections(content_id, analyzer)
        if not (with_vectors and analyzer and found):
            return found
        vectors = self.vectors(analyzer, [d.id for d in found if d.id is not None])
        if not vectors:
            return found
        return [dataclasses.replace(d, vector=vectors.get(d.id or -1)) for d in found]

    def _detections(self, content_id: int, analyzer: str | None) -> list[Detection]:
        sql = (
            "SELECT label, score, x0, y0, x1, y1, t, text, data, detections.id, fc.person_id, "
            "p.name FROM detections LEFT JOIN faces fc ON fc.detection_id = detections.id "
            "LEFT JOIN people p ON p.id = fc.person_id WHERE content_id = ?"
        )
        params: list[object] = [content_id]
        if analyzer:
            sql += " AND analyzer = ?"
            params.append(analyzer)
        sql += " ORDER BY t, score DESC, detections.id"
        return [_detection(r) for r in self.con.execute(sql, params)]

    def detection_contents(self, detection_ids: Sequence[int]) -> dict[int, int]:
        """detection id -> the content it was found in (ids no longer stored are left out)."""
        out: dict[int, int] = {}
        for chunk in chunks(detection_ids):
            for did, cid in self.con.execute(
                f"SELECT id, content_id FROM detections WHERE id IN ({marks(chunk)})", chunk
            ):
                out[did] = cid
        return out


def _detection(r: Sequence[object]) -> Detection:
    box = None if r[2] is None else (float(r[2]), float(r[3]), float(r[4]), float(r[5]))  # type: ignore[arg-type]
    data = json.loads(r[8]) if r[8] else {}  # type: ignore[arg-type]
    return Detection(
        label=str(r[0]),
        score=float(r[1]),
        box=box,
        t=r[6],
        text=r[7],  # type: ignore[arg-type]
        points=tuple(data.get("points", ())),
        id=int(r[9]),  # type: ignore[call-overload]
        person_id=r[10] if len(r) > 10 else None,  # type: ignore[arg-type]
        person=r[11] if len(r) > 11 else None,  # type: ignore[arg-type]
    )


def _pending_where(analyzers: dict[str, str], prefixes: Sequence[str]) -> tuple[str, list[object]]:
    """Readable contents, under `prefixes`, that miss a current analysis."""
    missing_any = " OR ".join(
        "NOT EXISTS (SELECT 1 FROM analyses a WHERE a.content_id = c.id "
        "AND a.analyzer = ? AND a.model_sha256 = ?)"
        for _ in analyzers
    )
    params: list[object] = [v for pair in analyzers.items() for v in pair]
    under, under_params = path_under(prefixes)
    where = f"c.error IS NULL AND f.error IS NULL AND ({missing_any}) AND {under}"
    return where, [*params, *under_params]
