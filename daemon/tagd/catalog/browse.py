"""What the HTTP API reads besides the reports: files page by page under filters,
one file by id with its queued writes, and how many files carry each tag."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from tagd.catalog.params import path_under
from tagd.catalog.reports import record_of, record_select
from tagd.catalog.search import TAG_NAMED
from tagd.records import ListedFile


@dataclass(frozen=True)
class FileFilters:
    """Each given filter narrows the listing (None: not applied)."""

    kind: str | None = None  # image | video
    under: str | None = None  # an absolute path: files at or below it
    status: str | None = None  # ok | pending | error
    changed_since: float | None = None  # unix seconds: modified or added since
    tag: str | None = None  # full path, leaf or path prefix of a tag
    min_score: float | None = None  # of `tag`
    max_score: float | None = None


@dataclass(frozen=True)
class QueuedWrite:
    """A write waiting in the outbox for one sink."""

    due: float
    attempts: int
    last_error: str | None


class BrowseQueries:
    con: sqlite3.Connection

    def file_page(
        self, analyzers: dict[str, str], filters: FileFilters, after_id: int, limit: int
    ) -> list[ListedFile]:
        """Up to `limit` files with ids above `after_id`, by id, passing `filters`.

        Paging by id (not offset, not path) keeps a walk over all pages free of
        gaps and repeats while the daemon adds files, and a moved file keeps its id.
        """
        where = ["f.id > ?"]
        params: list[object] = [after_id]
        if filters.kind:
            where.append("COALESCE(c.kind, f.kind) = ?")
            params.append(filters.kind)
        if filters.under:
            clause, under_params = path_under([filters.under])
            where.append(clause)
            params += under_params
        if filters.status:
            where.append("status = ?")  # record_select's column
            params.append(filters.status)
        if filters.changed_since is not None:
            where.append("(f.mtime_ns >= ? OR f.added_at >= ?)")
            params += [int(filters.changed_since * 1e9), filters.changed_since]
        if filters.tag:
            scored = ""
            if filters.min_score is not None:
                scored += " AND t.score >= ?"
            if filters.max_score is not None:
                scored += " AND t.score <= ?"
            where.append(
                "EXISTS (SELECT 1 FROM tags t WHERE t.content_id = f.content_id "
                f"AND {TAG_NAMED}{scored})"
            )
            params += [filters.tag] * 3
            params += [s for s in (filters.min_score, filters.max_score) if s is not None]
        return self._listed(
            " AND ".join(where) + " ORDER BY f.id LIMIT ?", [*params, limit], analyzers
        )

    def listed_file(self, analyzers: dict[str, str], file_id: int) -> ListedFile | None:
        found = self._listed("f.id = ?", [file_id], analyzers)
        return found[0] if found else None

    def _listed(
        self, where: str, params: list[object], analyzers: dict[str, str]
    ) -> list[ListedFile]:
        select, select_params = record_select(analyzers)
        rows = self.con.execute(f"{select} WHERE {where}", select_params + params)
        return [ListedFile(record_of(r), r[9], r[10]) for r in rows]

    def has_files_under(self, prefix: str) -> bool:
        """Whether the catalog holds a file at or below `prefix` (an absolute path)."""
        under, params = path_under([prefix])
        return (
            self.con.execute(f"SELECT 1 FROM files f WHERE {under} LIMIT 1", params).fetchone()
            is not None
        )

    def queued_writes(self, file_id: int) -> dict[str, QueuedWrite]:
        """sink -> the write waiting for it (a sink without one has nothing to do)."""
        rows = self.con.execute(
            "SELECT sink, due, attempts, last_error FROM outbox WHERE file_id = ?", (file_id,)
        )
        return {r[0]: QueuedWrite(r[1], r[2], r[3]) for r in rows}

    def tag_file_counts(self) -> list[tuple[str, int]]:
        """(tag, files carrying it) for every derived tag, by name; copies of one
        content count once each, as each is a file of the library."""
        rows = self.con.execute(
            "SELECT t.name, COUNT(f.id) FROM tags t JOIN files f ON f.content_id = t.content_id "
            "GROUP BY t.name ORDER BY t.name"
        )
        return [(r[0], int(r[1])) for r in rows]
