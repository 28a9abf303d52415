"""Perceptual hashes of photos, for near-duplicates (see tagd.media.phash)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence
from itertools import combinations

from tagd.catalog.params import chunks

# path, content id, kind, width, height, size, phash, variants, mtime_ns
HashedFile = tuple[str, int, str, int, int, int, int, bytes | None, int]
_HASHED_FILES = (
    "SELECT f.path, c.id, c.kind, COALESCE(c.width, 0), COALESCE(c.height, 0), f.size, "
    "h.phash, h.variants, f.mtime_ns FROM hashes h JOIN contents c ON c.id = h.content_id "
    "JOIN files f ON f.content_id = c.id WHERE f.error IS NULL AND c.error IS NULL"
)


class HashQueries:
    con: sqlite3.Connection

    def save_hashes(self, content_id: int, phash: int, variants: bytes) -> None:
        """The plain pHash (signed 64-bit, as SQLite stores integers) and every stored
        hash of the photo packed as little-endian uint64."""
        self.con.execute(
            "INSERT INTO hashes(content_id, phash, variants) VALUES (?, ?, ?) "
            "ON CONFLICT(content_id) DO UPDATE SET phash = excluded.phash, "
            "variants = excluded.variants, paired = 0",
            (content_id, phash, variants),
        )

    def phash(self, content_id: int) -> int | None:
        """The plain pHash as stored (signed); None when the content was not hashed."""
        row = self.con.execute(
            "SELECT phash FROM hashes WHERE content_id = ?", (content_id,)
        ).fetchone()
        return row[0] if row else None

    def hashed_files(self) -> list[HashedFile]:
        """(path, content id, kind, width, height, size, phash, variants, mtime_ns) of
        every readable file whose content has hashes (a copy shares its content's),
        by path."""
        rows = self.con.execute(f"{_HASHED_FILES} ORDER BY f.path")
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def hashed_file_count(self) -> int:
        """How many readable files have a hashed content."""
        row = self.con.execute(
            "SELECT COUNT(*) FROM hashes h JOIN contents c ON c.id = h.content_id "
            "JOIN files f ON f.content_id = c.id WHERE f.error IS NULL AND c.error IS NULL"
        ).fetchone()
        return int(row[0])

    def hashed_files_of(self, content_ids: Sequence[int]) -> list[HashedFile]:
        """hashed_files() for these contents only."""
        out: list[HashedFile] = []
        for part in chunks(sorted(set(content_ids))):
            rows = self.con.execute(
                f"{_HASHED_FILES} AND c.id IN ({','.join('?' * len(part))})", part
            )
            out += [tuple(r) for r in rows]  # type: ignore[misc]
        return sorted(out)

    def hash_rows(self) -> list[tuple[int, str, int, bytes | None]]:
        """(content id, kind, phash, variants) of every hashed content."""
        rows = self.con.execute(
            "SELECT h.content_id, c.kind, h.phash, h.variants FROM hashes h "
            "JOIN contents c ON c.id = h.content_id ORDER BY h.content_id"
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def unpaired_contents(self) -> list[int]:
        """Contents hashed since the last pairing pass (tagd.dupe_pairs)."""
        return [r[0] for r in self.con.execute("SELECT content_id FROM hashes WHERE paired = 0")]

    def unpair_all(self) -> None:
        """Every content to be compared again, the threshold changed (call inside a
        transaction)."""
        self.con.execute("DELETE FROM dupe_pairs")
        self.con.execute("UPDATE hashes SET paired = 0 WHERE paired = 1")

    def replace_dupe_pairs(
        self, content_ids: Sequence[int], pairs: Sequence[tuple[int, int, int]]
    ) -> None:
        """The pairs of `content_ids` are now `pairs` (a < b, distance), and they
        count as compared (call inside a transaction)."""
        ids = [(c,) for c in content_ids]
        self.con.executemany("DELETE FROM dupe_pairs WHERE a = ?", ids)
        self.con.executemany("DELETE FROM dupe_pairs WHERE b = ?", ids)
        self.con.executemany(
            "INSERT INTO dupe_pairs(a, b, distance) VALUES (?, ?, ?) ON CONFLICT(a, b) "
            "DO UPDATE SET distance = MIN(distance, excluded.distance)",
            pairs,
        )
        self.con.executemany("UPDATE hashes SET paired = 1 WHERE content_id = ?", ids)

    def dupe_pairs(self, max_distance: int) -> list[tuple[int, int]]:
        """(a, b) of the stored pairs within `max_distance` bits."""
        rows = self.con.execute("SELECT a, b FROM dupe_pairs WHERE distance <= ?", (max_distance,))
        return [(a, b) for a, b in rows]

    def copied_contents(self) -> list[tuple[int, int]]:
        """(content id, files) of the contents with two or more readable files
        (exact copies), from the index of readable files alone."""
        rows = self.con.execute(
            "SELECT content_id, COUNT(*) FROM files WHERE error IS NULL "
            "GROUP BY content_id HAVING COUNT(*) > 1"
        )
        return [(c, n) for c, n in rows]

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
