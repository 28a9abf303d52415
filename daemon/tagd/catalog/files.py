"""Files and the contents they point at: what a scan reads and writes.

Paths are bound as bytes (`path_param`, `CAST(? AS TEXT)`) so a name that is
not UTF-8 is stored, found and compared like any other.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable

from tagd.catalog.connect import path_param
from tagd.catalog.params import chunks, marks, path_under, prefix_range, readable
from tagd.records import IndexedFile

_FILE_COLUMNS = "id, path, size, mtime_ns, content_id, error"


class FileQueries:
    con: sqlite3.Connection

    def files_under(self, prefix: str) -> dict[str, IndexedFile]:
        """Files whose path is `prefix` or lies below it (a range scan on the index)."""
        under, params = path_under([prefix])
        rows = self.con.execute(f"SELECT {_FILE_COLUMNS} FROM files f WHERE {under}", params)
        return {r[1]: IndexedFile(*r) for r in rows}

    def file_by_path(self, path: str) -> IndexedFile | None:
        row = self.con.execute(
            f"SELECT {_FILE_COLUMNS} FROM files WHERE path = CAST(? AS TEXT)",
            (path_param(path),),
        ).fetchone()
        return IndexedFile(*row) if row else None

    def files_starting_with(self, prefix: str) -> list[IndexedFile]:
        """The files whose path starts with `prefix` (a range scan on the path index:
        sibling files of one name, such as IMG_1.jpg and IMG_1.mov)."""
        rows = self.con.execute(
            f"SELECT {_FILE_COLUMNS} FROM files "
            "WHERE path >= CAST(? AS TEXT) AND path < CAST(? AS TEXT) ORDER BY path",
            prefix_range(prefix),
        )
        return [IndexedFile(*r) for r in rows]

    def readable_contents(self, file_ids: Iterable[int]) -> dict[int, int]:
        """file id -> content id, for the files that were read (no error)."""
        out: dict[int, int] = {}
        for chunk in chunks(list(file_ids)):
            rows = self.con.execute(
                f"SELECT id, content_id FROM files WHERE id IN ({marks(chunk)}) "
                "AND content_id IS NOT NULL AND error IS NULL",
                chunk,
            )
            out.update(rows)
        return out

    def file_kind(self, file_id: int) -> str | None:
        """image | video; None for a file no longer in the catalog."""
        row = self.con.execute("SELECT kind FROM files WHERE id = ?", (file_id,)).fetchone()
        return row[0] if row else None

    def paths_of_content(self, content_id: int) -> list[str]:
        """Every file holding this content (copies share it), in path order."""
        rows = self.con.execute(
            "SELECT path FROM files WHERE content_id = ? ORDER BY path", (content_id,)
        )
        return [r[0] for r in rows]

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

    def content_error(self, content_id: int) -> str | None:
        """Why the content cannot be read (None: it can, or it is gone)."""
        row = self.con.execute("SELECT error FROM contents WHERE id = ?", (content_id,)).fetchone()
        return row[0] if row else None

    def set_content_error(self, content_id: int, reason: str) -> None:
        self.con.execute(
            "UPDATE contents SET error = ? WHERE id = ?", (readable(reason), content_id)
        )

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
            (path_param(path), kind, size, mtime_ns, content_id, readable(error), time.time()),
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
            (path_param(path), size, mtime_ns, content_id, readable(error), file_id),
        )

    def delete_files(self, ids: Iterable[int]) -> None:
        self.con.executemany("DELETE FROM files WHERE id = ?", ((i,) for i in ids))

    def drop_orphan_contents(self) -> int:
        cur = self.con.execute(
            "DELETE FROM contents WHERE id NOT IN "
            "(SELECT content_id FROM files WHERE content_id IS NOT NULL)"
        )
        return cur.rowcount
