"""Perceptual hashes of photos, for near-duplicates (see tagd.media.phash)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from itertools import combinations


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

    def set_dupe_verdict(self, content_ids: Sequence[int], verdict: str) -> None:
        """`verdict` for every pair of these contents."""
        now = time.time()
        pairs = [(a, b) for a, b in combinations(sorted(set(content_ids)), 2)]
        self.con.executemany(
            "INSERT INTO dupe_verdicts(a, b, verdict, decided_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(a, b) DO UPDATE SET verdict = excluded.verdict, "
            "decided_at = excluded.decided_at",
            [(a, b, verdict, now) for a, b in pairs],
        )

    def hashed_contents(self, content_ids: Sequence[int]) -> set[int]:
        """Those of `content_ids` that have hashes (the ones grouping can join)."""
        ids = sorted(set(content_ids))
        marks = ",".join("?" * len(ids))
        rows = self.con.execute(f"SELECT content_id FROM hashes WHERE content_id IN ({marks})", ids)
        return {r[0] for r in rows}

    def dupe_verdicts(self) -> dict[tuple[int, int], str]:
        """(a, b) with a < b -> "distinct" or "kept"."""
        return {
            (a, b): v for a, b, v in self.con.execute("SELECT a, b, verdict FROM dupe_verdicts")
        }
