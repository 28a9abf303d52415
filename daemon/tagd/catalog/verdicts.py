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

    def all_verdicts(self) -> list[tuple[str, str, float, str]]:
        """(tag, source, score when decided, verdict) of every decision, by tag."""
        rows = self.con.execute(
            "SELECT name, source, score, verdict FROM tag_verdicts ORDER BY name"
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def tag_source(self, name: str) -> str | None:
        """The analyzer a tag comes from, where any file has or had it."""
        row = self.con.execute(
            "SELECT source FROM tag_verdicts WHERE name = ? UNION "
            "SELECT source FROM tags WHERE name = ? LIMIT 1",
            (name, name),
        ).fetchone()
        return str(row[0]) if row else None

    def verdicts_of(self, content_id: int) -> dict[str, str]:
        """tag -> "accept" or "reject": every decision on a content's tags."""
        rows = self.con.execute(
            "SELECT name, verdict FROM tag_verdicts WHERE content_id = ?", (content_id,)
        )
        return {name: verdict for name, verdict in rows}

    def review_items(
        self, low: float, high: float, tag: str | None, limit: int
    ) -> list[ReviewItem]:
        """Tags, and candidates (tags below their threshold, tag_candidates), scored
        within [low, high] that nobody decided on yet, least sure first. Person
        tags are decided on the people page instead."""
        # Each in score order from its index, stopping at `limit`, then merged: a
        # page of the queue reads about as many rows as it shows, whatever the library.
        tags = self.con.execute(
            "SELECT t.content_id, t.name, t.score, t.source, f.id, f.path, c.kind, 0 "
            "FROM tags t JOIN contents c ON c.id = t.content_id "
            "JOIN files f ON f.id = (SELECT MIN(id) FROM files WHERE content_id = t.content_id) "
            "WHERE t.score BETWEEN ? AND ? AND t.source != 'faces' "
            "AND NOT EXISTS (SELECT 1 FROM tag_verdicts v "
            "WHERE v.content_id = t.content_id AND v.name = t.name) "
            f"AND {NOT_A_PARENT} AND (? IS NULL OR t.name = ?) "
            "ORDER BY t.score, t.content_id, t.name LIMIT ?",
            (low, high, tag, tag, limit),
        ).fetchall()
        candidates = self.con.execute(
            "SELECT t.content_id, t.name, t.score, t.source, f.id, f.path, c.kind, 1 "
            "FROM tag_candidates t JOIN contents c ON c.id = t.content_id "
            "JOIN files f ON f.id = (SELECT MIN(id) FROM files WHERE content_id = t.content_id) "
            "WHERE t.score BETWEEN ? AND ? AND (? IS NULL OR t.name = ?) "
            "ORDER BY t.score, t.content_id, t.name LIMIT ?",
            (low, high, tag, tag, limit),
        ).fetchall()
        rows = sorted([*tags, *candidates], key=lambda r: (r[2], r[0], r[1]))[:limit]
        return [ReviewItem(*r[:7], candidate=bool(r[7])) for r in rows]

    def review_tags(self, low: float, high: float) -> list[tuple[str, int]]:
        """The tags waiting for review in the band, with how many files each: the
        band's tags counted from the tags_score index, less those decided (few),
        parents left out (a name another one continues)."""
        counts = dict(
            self.con.execute(
                "SELECT name, COUNT(*) FROM tags INDEXED BY tags_score "
                "WHERE score BETWEEN ? AND ? AND source != 'faces' GROUP BY name",
                (low, high),
            ).fetchall()
        )
        # Candidates never include what was decided (derived again at each decision).
        for name, n in self.con.execute(
            "SELECT name, COUNT(*) FROM tag_candidates INDEXED BY tag_candidates_score "
            "WHERE score BETWEEN ? AND ? GROUP BY name",
            (low, high),
        ):
            counts[name] = counts.get(name, 0) + n
        for name, decided in self.con.execute(
            "SELECT v.name, COUNT(*) FROM tag_verdicts v JOIN tags t "
            "ON t.content_id = v.content_id AND t.name = v.name "
            "WHERE t.score BETWEEN ? AND ? GROUP BY v.name",
            (low, high),
        ):
            if name in counts:
                counts[name] -= decided
        parents = {n for n in counts if any(m.startswith(n + "|") for m in counts)}
        waiting = [(n, c) for n, c in counts.items() if c > 0 and n not in parents]
        return sorted(waiting, key=lambda item: (-item[1], item[0]))
