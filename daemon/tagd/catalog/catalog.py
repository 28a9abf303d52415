"""The catalog: every query tagd makes, in one readable place.

Files point at contents (identified by a fingerprint), and everything an
analyzer finds belongs to the content, so a renamed or moved file keeps its
results and two copies of one photo are analysed once. An analysis is valid
for (content, analyzer, model sha256): a new model re-runs only that analyzer.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagd.catalog.connect import connect, path_param
from tagd.catalog.migrations import migrate
from tagd.paths import shown


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


class Catalog:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self.con = connect(path)
        try:
            migrate(self.con)
        except BaseException:
            self.con.close()
            raise

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit: a killed process leaves all of it or none of it."""
        self.con.execute("BEGIN IMMEDIATE")
        try:
            yield self.con
            self.con.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full) leaves the transaction open, and SQLite
            # may already have rolled back on its own (SQLITE_FULL mid-statement):
            # end it either way, so the next transaction of a long-lived
            # connection (the daemon's) can begin.
            if self.con.in_transaction:
                self.con.execute("ROLLBACK")
            raise

    # ------------------------------------------------------------ meta

    def get_meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        self.con.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    # ------------------------------------------------------------ index

    def files_under(self, prefix: str) -> dict[str, IndexedFile]:
        """Files whose path is `prefix` or lies below it (a range scan on the index)."""
        under, params = path_under([prefix])
        rows = self.con.execute(
            f"SELECT id, path, size, mtime_ns, content_id, error FROM files f WHERE {under}",
            params,
        )
        return {r[1]: IndexedFile(*r) for r in rows}

    def content_by_fingerprint(self, fingerprint: str) -> int | None:
        row = self.con.execute(
            "SELECT id FROM contents WHERE fingerprint = ?", (fingerprint,)
        ).fetchone()
        return row[0] if row else None

    def ensure_content(self, fingerprint: str, kind: str) -> int:
        existing = self.content_by_fingerprint(fingerprint)
        if existing is not None:
            return existing
        cur = self.con.execute(
            "INSERT INTO contents(fingerprint, kind) VALUES (?, ?)", (fingerprint, kind)
        )
        return int(cur.lastrowid or 0)

    def add_file(
        self,
        path: str,
        kind: str,
        size: int,
        mtime_ns: int,
        content_id: int | None,
        error: str | None,
    ) -> int:
        cur = self.con.execute(
            "INSERT INTO files(path, kind, size, mtime_ns, content_id, error, added_at) "
            "VALUES (CAST(? AS TEXT), ?, ?, ?, ?, ?, ?)",
            (path_param(path), kind, size, mtime_ns, content_id, _readable(error), time.time()),
        )
        return int(cur.lastrowid or 0)

    def update_file(
        self,
        file_id: int,
        *,
        path: str,
        size: int,
        mtime_ns: int,
        content_id: int | None,
        error: str | None,
    ) -> None:
        self.con.execute(
            "UPDATE files SET path = CAST(? AS TEXT), size = ?, mtime_ns = ?, content_id = ?, "
            "error = ? WHERE id = ?",
            (path_param(path), size, mtime_ns, content_id, _readable(error), file_id),
        )

    def delete_files(self, ids: Iterable[int]) -> None:
        self.con.executemany("DELETE FROM files WHERE id = ?", ((i,) for i in ids))

    def drop_orphan_contents(self) -> int:
        cur = self.con.execute(
            "DELETE FROM contents WHERE id NOT IN "
            "(SELECT content_id FROM files WHERE content_id IS NOT NULL)"
        )
        return cur.rowcount

    # ------------------------------------------------------------ analysis

    def pending(
        self, analyzers: dict[str, str], limit: int = 10_000, prefixes: Sequence[str] = ()
    ) -> list[WorkItem]:
        """Contents missing an analysis by one of `analyzers` (name -> model sha256),
        optionally only those with a file under one of `prefixes`."""
        if not analyzers:
            return []
        where, params = _pending_where(analyzers, prefixes)
        rows = self.con.execute(
            "SELECT c.id, MIN(f.path), c.kind FROM contents c JOIN files f ON f.content_id = c.id "
            f"WHERE {where} GROUP BY c.id ORDER BY MIN(f.path) LIMIT ?",
            [*params, limit],
        ).fetchall()
        done = self._done_analyses([r[0] for r in rows])
        return [
            WorkItem(
                content_id=cid,
                path=path,
                kind=kind,
                missing=tuple(
                    name for name, sha in analyzers.items() if done.get((cid, name)) != sha
                ),
            )
            for cid, path, kind in rows
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

    def _done_analyses(self, content_ids: Sequence[int]) -> dict[tuple[int, str], str]:
        done: dict[tuple[int, str], str] = {}
        for chunk in _chunks(content_ids, 500):
            marks = ",".join("?" * len(chunk))
            for cid, name, sha in self.con.execute(
                f"SELECT content_id, analyzer, model_sha256 FROM analyses "
                f"WHERE content_id IN ({marks})",
                chunk,
            ):
                done[(cid, name)] = sha
        return done

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

    def set_analysis_interval(
        self, content_id: int, analyzer: str, interval: float | None
    ) -> None:
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

    def set_content_error(self, content_id: int, reason: str) -> None:
        self.con.execute(
            "UPDATE contents SET error = ? WHERE id = ?", (_readable(reason), content_id)
        )

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
                self._store_vector(analyzer, ids[-1], d.vector)
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

    def _vector_table(self, analyzer: str, create_dim: int | None) -> str | None:
        """The sqlite-vec table holding `analyzer`'s embeddings (rowid = detection id)."""
        table = "vec_" + "".join(c if c.isalnum() else "_" for c in analyzer)
        exists = self.con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone()
        if exists:
            return table
        if create_dim is None:
            return None
        self.con.execute(f"CREATE VIRTUAL TABLE {table} USING vec0(embedding float[{create_dim}])")
        # Contents deleted by a rescan cascade to detections; take their vectors along.
        self.con.execute(
            f"CREATE TRIGGER {table}_gc AFTER DELETE ON detections WHEN old.analyzer = "
            f"'{analyzer}' BEGIN DELETE FROM {table} WHERE rowid = old.id; END"
        )
        return table

    def _store_vector(self, analyzer: str, detection_id: int, vector: np.ndarray) -> None:
        flat = np.ascontiguousarray(vector, dtype=np.float32).ravel()
        table = self._vector_table(analyzer, create_dim=len(flat))
        self.con.execute(
            f"INSERT INTO {table}(rowid, embedding) VALUES (?, ?)", (detection_id, flat.tobytes())
        )

    def vectors(self, analyzer: str, detection_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored embeddings by detection id."""
        table = self._vector_table(analyzer, create_dim=None)
        out: dict[int, np.ndarray] = {}
        if not table:
            return out
        for chunk in _chunks(detection_ids, 500):
            marks = ",".join("?" * len(chunk))
            for rowid, blob in self.con.execute(
                f"SELECT rowid, embedding FROM {table} WHERE rowid IN ({marks})", chunk
            ):
                out[rowid] = np.frombuffer(blob, dtype=np.float32)
        return out

    def nearest(self, analyzer: str, vector: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
        """(detection id, L2 distance) of the k nearest stored embeddings (exact KNN)."""
        table = self._vector_table(analyzer, create_dim=None)
        if not table:
            return []
        flat = np.ascontiguousarray(vector, dtype=np.float32).ravel().tobytes()
        rows = self.con.execute(
            f"SELECT rowid, distance FROM {table} WHERE embedding MATCH ? AND k = ? "
            "ORDER BY distance",
            (flat, k),
        )
        return [(r[0], float(r[1])) for r in rows]

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

    def search_text(self, query: str, limit: int = 100) -> list[tuple[str, str, float]]:
        """(path, matched text, bm25 rank) for an FTS5 query over recognised text."""
        rows = self.con.execute(
            "SELECT f.path, d.text, bm25(detections_fts) AS rank FROM detections_fts "
            "JOIN detections d ON d.id = detections_fts.rowid "
            "JOIN files f ON f.content_id = d.content_id "
            "WHERE detections_fts MATCH ? ORDER BY rank LIMIT ?",
            (query, limit),
        )
        return [(r[0], r[1], float(r[2])) for r in rows]

    def analysed_contents(self, analyzer: str) -> list[int]:
        return [
            r[0]
            for r in self.con.execute(
                "SELECT content_id FROM analyses WHERE analyzer = ?", (analyzer,)
            )
        ]

    # ------------------------------------------------------------ tags

    def replace_tags(self, content_id: int, source: str, tags: Sequence[Tag]) -> bool:
        """Set the derived tags of one source; returns True when they changed."""
        before = self.con.execute(
            "SELECT name, score, segments FROM tags WHERE content_id = ? AND source = ? "
            "ORDER BY name",
            (content_id, source),
        ).fetchall()
        # Segments count as a change: a moved range must reach the sinks (markers).
        after = sorted((t.name, t.score, _segments_json(t.segments)) for t in tags)
        if [tuple(r) for r in before] == after:
            return False
        self.con.execute(
            "DELETE FROM tags WHERE content_id = ? AND source = ?", (content_id, source)
        )
        # Two sources giving one tag: the better score wins, and its ranges with it
        # (SET expressions all see the old row, so `score` below is the old one).
        self.con.executemany(
            "INSERT INTO tags(content_id, name, score, source, segments) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(content_id, name) DO UPDATE SET score = MAX(score, excluded.score), "
            "segments = CASE WHEN excluded.score > score THEN excluded.segments "
            "ELSE segments END",
            [(content_id, t.name, t.score, t.source, _segments_json(t.segments)) for t in tags],
        )
        return True

    def tags(self, content_id: int) -> list[Tag]:
        return [
            Tag(name, score, source, _segments_from_json(segments))
            for name, score, source, segments in self.con.execute(
                "SELECT name, score, source, segments FROM tags WHERE content_id = ? ORDER BY name",
                (content_id,),
            )
        ]

    def search_tag(self, name: str) -> list[tuple[str, str, float]]:
        """Files carrying a tag given by full path, leaf name or path prefix."""
        rows = self.con.execute(
            "SELECT f.path, t.name, t.score FROM tags t "
            "JOIN files f ON f.content_id = t.content_id "
            "WHERE lower(t.name) = lower(?) OR lower(t.name) LIKE '%|' || lower(?) "
            "OR lower(t.name) LIKE lower(?) || '|%' ORDER BY t.score DESC, f.path",
            (name, name, name),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    # ------------------------------------------------------------ outbox

    def enqueue(self, file_ids: Iterable[int], sink: str) -> None:
        now = time.time()
        self.con.executemany(
            "INSERT INTO outbox(file_id, sink, due) VALUES (?, ?, ?) "
            "ON CONFLICT(file_id, sink) DO UPDATE SET due = MIN(due, excluded.due)",
            ((i, sink, now) for i in file_ids),
        )

    def enqueue_content(self, content_ids: Iterable[int], sink: str) -> None:
        ids = list(content_ids)
        for chunk in _chunks(ids, 500):
            marks = ",".join("?" * len(chunk))
            rows = self.con.execute(
                f"SELECT id FROM files WHERE content_id IN ({marks})", chunk
            ).fetchall()
            self.enqueue((r[0] for r in rows), sink)

    def due(self, sink: str, now: float, limit: int = 1000) -> list[tuple[int, str, int]]:
        """(file id, path, content id) of queued writes that are due."""
        rows = self.con.execute(
            "SELECT f.id, f.path, f.content_id FROM outbox o JOIN files f ON f.id = o.file_id "
            "WHERE o.sink = ? AND o.due <= ? ORDER BY o.due, f.path LIMIT ?",
            (sink, now, limit),
        )
        return [(r[0], r[1], r[2]) for r in rows]

    def outbox_done(self, file_id: int, sink: str) -> None:
        self.con.execute("DELETE FROM outbox WHERE file_id = ? AND sink = ?", (file_id, sink))

    def outbox_failed(self, file_id: int, sink: str, error: str, retry_in: float) -> None:
        self.con.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, due = ? "
            "WHERE file_id = ? AND sink = ?",
            (_readable(error), time.time() + retry_in, file_id, sink),
        )

    def outbox_defer(self, file_ids: Iterable[int], sink: str, until: float) -> None:
        """Push queued writes back to `until` without counting an attempt (their sink
        is down: they were not tried)."""
        self.con.executemany(
            "UPDATE outbox SET due = MAX(due, ?) WHERE file_id = ? AND sink = ?",
            ((until, i, sink) for i in file_ids),
        )

    def next_due(self, sinks: Sequence[str]) -> float | None:
        """When the earliest queued write for `sinks` is due (None: nothing queued)."""
        if not sinks:
            return None
        marks = ",".join("?" * len(sinks))
        row = self.con.execute(
            f"SELECT MIN(due) FROM outbox WHERE sink IN ({marks})", tuple(sinks)
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def outbox_attempts(self, file_id: int, sink: str) -> int:
        row = self.con.execute(
            "SELECT attempts FROM outbox WHERE file_id = ? AND sink = ?", (file_id, sink)
        ).fetchone()
        return int(row[0]) if row else 0

    def outbox_by_sink(self) -> dict[str, tuple[int, int, float | None]]:
        """Per sink: (queued writes, those that failed before, when the next is due)."""
        rows = self.con.execute(
            "SELECT sink, COUNT(*), COUNT(last_error), MIN(due) FROM outbox GROUP BY sink"
        )
        return {r[0]: (int(r[1]), int(r[2]), r[3]) for r in rows}

    def outbox_errors(self) -> list[tuple[str, str, int, str]]:
        rows = self.con.execute(
            "SELECT f.path, o.sink, o.attempts, o.last_error FROM outbox o "
            "JOIN files f ON f.id = o.file_id WHERE o.last_error IS NOT NULL ORDER BY f.path"
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    # ------------------------------------------------------------ reports

    def records(
        self, analyzers: dict[str, str], prefixes: Sequence[str] = ()
    ) -> Iterator[FileRecord]:
        """Every file with its status: error, ok (all `analyzers` done), or pending."""
        done_all = (
            " AND ".join(
                "EXISTS (SELECT 1 FROM analyses a WHERE a.content_id = c.id "
                "AND a.analyzer = ? AND a.model_sha256 = ?)"
                for _ in analyzers
            )
            or "1"
        )
        params: list[object] = [v for pair in analyzers.items() for v in pair]
        under, under_params = path_under(prefixes)
        params += under_params
        sql = (
            "SELECT f.id, f.path, COALESCE(c.kind, f.kind), COALESCE(f.error, c.error), "
            f"c.width, c.height, c.duration, f.content_id, ({done_all}) "
            "FROM files f LEFT JOIN contents c ON c.id = f.content_id "
            f"WHERE {under} ORDER BY f.path"
        )
        for r in self.con.execute(sql, params):
            status = "error" if r[3] else ("ok" if r[8] else "pending")
            yield FileRecord(
                id=r[0],
                path=r[1],
                kind=r[2],
                status=status,
                error=r[3],
                width=r[4],
                height=r[5],
                duration=r[6],
                content_id=r[7],
            )

    def file_by_path(self, path: str) -> IndexedFile | None:
        row = self.con.execute(
            "SELECT id, path, size, mtime_ns, content_id, error FROM files "
            "WHERE path = CAST(? AS TEXT)",
            (path_param(path),),
        ).fetchone()
        return IndexedFile(*row) if row else None

    def files_starting_with(self, prefix: str) -> list[IndexedFile]:
        """The files whose path starts with `prefix` (a range scan on the path index:
        sibling files of one name, such as IMG_1.jpg and IMG_1.mov)."""
        low = path_param(prefix)
        # Byte-wise, as paths compare (see path_param): the bound is the prefix
        # with its last byte incremented (a file name may hold any byte but / and NUL).
        high = low.rstrip(b"\xff")
        high = high[:-1] + bytes([high[-1] + 1]) if high else b"\xff" * (len(low) + 1)
        rows = self.con.execute(
            "SELECT id, path, size, mtime_ns, content_id, error FROM files "
            "WHERE path >= CAST(? AS TEXT) AND path < CAST(? AS TEXT) ORDER BY path",
            (low, high),
        )
        return [IndexedFile(*r) for r in rows]

    def counts(self) -> dict[str, int]:
        one = self.con.execute
        return {
            "files": one("SELECT COUNT(*) FROM files").fetchone()[0],
            "contents": one("SELECT COUNT(*) FROM contents").fetchone()[0],
            "detections": one("SELECT COUNT(*) FROM detections").fetchone()[0],
            "tags": one("SELECT COUNT(*) FROM tags").fetchone()[0],
            "outbox": one("SELECT COUNT(*) FROM outbox").fetchone()[0],
        }


def _segments_json(segments: Sequence[Segment]) -> str | None:
    """Stored form of a tag's ranges; NULL for none (images) keeps rows small."""
    if not segments:
        return None
    return json.dumps([[s.start, s.end, s.score] for s in segments], separators=(",", ":"))


def _segments_from_json(text: str | None) -> tuple[Segment, ...]:
    return tuple(Segment(*map(float, s)) for s in json.loads(text)) if text else ()


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


def _readable(text: str | None) -> str | None:
    """A message for people (an error reason) that may quote a file name that is
    not UTF-8: stored with that name's odd bytes as \\xNN, as tagd shows them."""
    return None if text is None else shown(text)


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


def _chunks(items: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
