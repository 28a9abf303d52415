"""What `tagd search` reads: the files passing its filters, tag names, and
matches in the full-text index of recognised text."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from tagd.catalog.params import path_under

# A tag given by full path, leaf name or path prefix (case-insensitive); also
# the tag filter of the HTTP API's file listing (tagd.catalog.browse).
TAG_NAMED = (
    "(lower(t.name) = lower(?) OR lower(t.name) LIKE '%|' || lower(?) "
    "OR lower(t.name) LIKE lower(?) || '|%')"
)


class SearchQueries:
    con: sqlite3.Connection

    def search_candidates(
        self,
        *,
        kind: str | None = None,
        under: str | None = None,
        tag: str | None = None,
        person: str | None = None,
    ) -> dict[int, list[tuple[str, str]]]:
        """content id -> [(path, kind)] of the analysed files of this `kind`, at or
        below the absolute path `under`, carrying `tag`, showing the named `person`
        (each filter applies when given)."""
        sql = "SELECT f.content_id, f.path, f.kind FROM files f WHERE f.content_id IS NOT NULL"
        params: list[object] = []
        if kind:
            sql += " AND f.kind = ?"
            params.append(kind)
        if under:
            # A range on the path index, not LIKE (a path may contain % and _) nor
            # substr (it counts characters, which a name that is not UTF-8 lacks).
            clause, under_params = path_under([under])
            sql += f" AND {clause}"
            params += under_params
        if tag:
            sql += (
                " AND EXISTS (SELECT 1 FROM tags t WHERE t.content_id = f.content_id "
                f"AND {TAG_NAMED})"
            )
            params += [tag] * 3
        if person:
            sql += (
                " AND EXISTS (SELECT 1 FROM faces fa JOIN detections d ON d.id = fa.detection_id "
                "JOIN people p ON p.id = fa.person_id "
                "WHERE d.content_id = f.content_id AND lower(p.name) = lower(?))"
            )
            params.append(person)
        out: dict[int, list[tuple[str, str]]] = {}
        for cid, path, file_kind in self.con.execute(sql, params):
            out.setdefault(cid, []).append((path, file_kind))
        return out

    def all_tags(self) -> Iterator[tuple[int, str, float]]:
        """(content id, tag, score) of every derived tag, read as they are used."""
        for cid, name, score in self.con.execute("SELECT content_id, name, score FROM tags"):
            yield cid, name, float(score)

    def text_matches(self, match: str, limit: int) -> list[tuple[int, str, float]]:
        """(content id, recognised text, bm25 rank) for an FTS5 query, best first
        (bm25 is negative: lower is better)."""
        rows = self.con.execute(
            "SELECT d.content_id, d.text, bm25(detections_fts) AS rank FROM detections_fts "
            "JOIN detections d ON d.id = detections_fts.rowid "
            "WHERE detections_fts MATCH ? ORDER BY rank LIMIT ?",
            (match, limit),
        )
        return [(r[0], r[1], float(r[2])) for r in rows]
