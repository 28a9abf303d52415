"""What users said of the tags on a file (the review page): accepted tags stay
whatever their threshold, rejected ones are never derived for that file again
(tagd.policy.apply applies them when it derives)."""

from __future__ import annotations

import sqlite3
import time

from tagd.records import ReviewItem

# A parent tag (AI|Animals over AI|Animals|dog) follows its children: what is
# decided is the child.
NOT_A_PARENT = (
    "NOT EXISTS (SELECT 1 FROM tags c WHERE c.content_id = t.content_id "
    "AND substr(c.name, 1, length(t.name) + 1) = t.name || '|')"
)


class VerdictQueries:
    con: sqlite3.Connection

    def set_verdict(
        self, content_id: int, name: str, source: str, verdict: str, score: float
    ) -> None:
        self.con.execute(
            "INSERT INTO tag_verdicts(content_id, name, source, verdict, score, decided_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(content_id, name) DO UPDATE SET "
            "verdict = excluded.verdict, source = excluded.source, "
            "decided_at = excluded.decided_at",
            (content_id, name, source, verdict, score, time.time()),
        )

    def clear_verdict(self, content_id: int, name: str) -> str | None:
        """Forget what the user said; the source whose tags to derive again."""
        row = self.con.execute(
            "DELETE FROM tag_verdicts WHERE content_id = ? AND name = ? RETURNING source",
            (content_id, name),
        ).fetchone()
        return row[0] if row else None

    def verdicts(self, content_id: int, source: str) -> dict[str, tuple[str, float]]:
        """tag -> (verdict, score) for one analyzer's tags of a content."""
        return {
            name: (verdict, score)
            for name, verdict, score in self.con.execute(
                "SELECT name, verdict, score FROM tag_verdicts WHERE content_id = ? AND source = ?",
                (content_id, source),
            )
        }

    def review_items(
        self, low: float, high: float, tag: str | None, limit: int
    ) -> list[ReviewItem]:
        """Tags scored within [low, high] nobody decided on yet, least sure first.
        Person tags are decided on the people page instead."""
        rows = self.con.execute(
            "SELECT t.content_id, t.name, t.score, t.source, MIN(f.id), MIN(f.path), c.kind "
            "FROM tags t JOIN files f ON f.content_id = t.content_id "
            "JOIN contents c ON c.id = t.content_id "
            "LEFT JOIN tag_verdicts v ON v.content_id = t.content_id AND v.name = t.name "
            "WHERE v.content_id IS NULL AND t.score BETWEEN ? AND ? AND t.source != 'faces' "
            f"AND {NOT_A_PARENT} AND (? IS NULL OR t.name = ?) "
            "GROUP BY t.content_id, t.name ORDER BY t.score, t.content_id, t.name LIMIT ?",
            (low, high, tag, tag, limit),
        )
        return [ReviewItem(*r) for r in rows]

    def review_tags(self, low: float, high: float) -> list[tuple[str, int]]:
        """The tags waiting for review in the band, with how many files each."""
        return list(
            self.con.execute(
                "SELECT t.name, COUNT(*) FROM tags t LEFT JOIN tag_verdicts v "
                "ON v.content_id = t.content_id AND v.name = t.name "
                "WHERE v.content_id IS NULL AND t.score BETWEEN ? AND ? AND t.source != 'faces' "
                f"AND {NOT_A_PARENT} GROUP BY t.name ORDER BY COUNT(*) DESC, t.name",
                (low, high),
            )
        )
