"""Perceptual hashes of photos, for near-duplicates (see tagd.media.phash)."""

from __future__ import annotations

import sqlite3


class HashQueries:
    con: sqlite3.Connection

    def save_hashes(self, content_id: int, phash: int, variants: bytes) -> None:
        """The plain pHash (signed 64-bit, as SQLite stores integers) and every stored
        hash of the photo packed as little-endian uint64."""
        self.con.execute(
            "INSERT INTO hashes(content_id, phash, variants) VALUES (?, ?, ?) "
            "ON CONFLICT(content_id) DO UPDATE SET phash = excluded.phash, "
            "variants = excluded.variants",
            (content_id, phash, variants),
        )

    def phash(self, content_id: int) -> int | None:
        """The plain pHash as stored (signed); None when the content was not hashed."""
        row = self.con.execute(
            "SELECT phash FROM hashes WHERE content_id = ?", (content_id,)
        ).fetchone()
        return row[0] if row else None

    def hashed_files(self) -> list[tuple[str, int, str, int, int, int, int, bytes | None]]:
        """(path, content id, kind, width, height, size, phash, variants) of every
        readable file whose content has hashes (a copy shares its content's), by path."""
        rows = self.con.execute(
            "SELECT f.path, c.id, c.kind, COALESCE(c.width, 0), COALESCE(c.height, 0), f.size, "
            "h.phash, h.variants FROM hashes h JOIN contents c ON c.id = h.content_id "
            "JOIN files f ON f.content_id = c.id WHERE f.error IS NULL AND c.error IS NULL "
            "ORDER BY f.path"
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]
