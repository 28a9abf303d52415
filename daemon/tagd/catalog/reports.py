"""What `tagd status`, `tags` and `export` list: every file with its state, and
the size of each table."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence

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

    def counts(self) -> dict[str, int]:
        return {
            table: self.con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            for table in _COUNTED
        }
