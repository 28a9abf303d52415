"""What `tagd status`, `tags` and `export` list: every file with its state, and
the size of each table."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from tagd.catalog.params import path_under
from tagd.records import FileRecord

# The tables `counts` reports, by the key it reports them under.
_COUNTED = ("files", "contents", "detections", "tags", "outbox")


class ReportQueries:
    con: sqlite3.Connection

    def records(
        self, analyzers: dict[str, str], prefixes: Sequence[str] = ()
    ) -> Iterator[FileRecord]:
        """Every file with its status: error, ok (all `analyzers` done), or pending."""
        select, params = record_select(analyzers)
        under, under_params = path_under(prefixes)
        rows = self.con.execute(f"{select} WHERE {under} ORDER BY f.path", params + under_params)
        for r in rows:
            yield record_of(r)

    def status_counts(self, analyzers: dict[str, str]) -> dict[tuple[str, str], int]:
        """(kind, status) -> files, counted by SQLite (a status report of a large
        library without a Python object per file)."""
        select, params = record_select(analyzers)
        rows = self.con.execute(
            f"SELECT kind, status, COUNT(*) FROM ({select}) GROUP BY kind, status", params
        )
        return {(kind, status): n for kind, status, n in rows}

    def records_in_error(self, analyzers: dict[str, str]) -> list[FileRecord]:
        """The files whose reading or analysis failed, by path."""
        select, params = record_select(analyzers)
        # The error test itself, not `status = 'error'`: SQLite then skips the
        # analyses lookups of every readable file (55 -> 2 ms at 100,000 files).
        rows = self.con.execute(
            f"{select} WHERE COALESCE(f.error, c.error) <> '' ORDER BY f.path", params
        )
        return [record_of(r) for r in rows]

    def counts(self) -> dict[str, int]:
        return {
            table: self.con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in _COUNTED
        }


def record_select(analyzers: dict[str, str]) -> tuple[str, list[object]]:
    """SELECT of every file (alias f) as `record_of` reads it, with its status:
    error, ok (all `analyzers` done) or pending; add WHERE and ORDER BY. Also the
    source of the HTTP API's file listing (tagd.catalog.browse), which filters on
    the status, so it is computed here rather than in Python."""
    done_all = (
        " AND ".join(
            "EXISTS (SELECT 1 FROM analyses a WHERE a.content_id = c.id "
            "AND a.analyzer = ? AND a.model_sha256 = ?)"
            for _ in analyzers
        )
        or "1"
    )
    params: list[object] = [v for pair in analyzers.items() for v in pair]
    sql = (
        "SELECT f.id, f.path, COALESCE(c.kind, f.kind) AS kind, COALESCE(f.error, c.error), "
        "c.width, c.height, c.duration, f.content_id, "
        "CASE WHEN COALESCE(f.error, c.error) <> '' THEN 'error' "
        f"WHEN ({done_all}) THEN 'ok' ELSE 'pending' END AS status, f.size, f.mtime_ns "
        "FROM files f LEFT JOIN contents c ON c.id = f.content_id"
    )
    return sql, params


def record_of(r: Any) -> FileRecord:
    """A row of `record_select` as a record."""
    return FileRecord(
        id=r[0],
        path=r[1],
        kind=r[2],
        status=r[8],
        error=r[3],
        width=r[4],
        height=r[5],
        duration=r[6],
        content_id=r[7],
    )
