"""The outbox: writes queued for the sinks (sidecars, Stash), retried with backoff
until they go through, so a sink that is down loses nothing."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

from tagd.catalog.params import chunks, marks, readable


class OutboxQueries:
    con: sqlite3.Connection

    def enqueue(self, file_ids: Iterable[int], sink: str) -> None:
        now = time.time()
        self.con.executemany(
            "INSERT INTO outbox(file_id, sink, due) VALUES (?, ?, ?) "
            "ON CONFLICT(file_id, sink) DO UPDATE SET due = MIN(due, excluded.due)",
            ((i, sink, now) for i in file_ids),
        )

    def enqueue_content(self, content_ids: Iterable[int], sink: str) -> None:
        ids = list(content_ids)
        for chunk in chunks(ids):
            rows = self.con.execute(
                f"SELECT id FROM files WHERE content_id IN ({marks(chunk)})", chunk
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
            (readable(error), time.time() + retry_in, file_id, sink),
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
        row = self.con.execute(
            f"SELECT MIN(due) FROM outbox WHERE sink IN ({marks(sinks)})", tuple(sinks)
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
