"""Tags the policy derived for each content, with a video's time ranges."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from tagd.records import Segment, Tag


class TagQueries:
    con: sqlite3.Connection

    def replace_tags(self, content_id: int, source: str, tags: Sequence[Tag]) -> bool:
        """Set the derived tags of one source; returns True when they changed."""
        before = self.con.execute(
            "SELECT name, score, segments FROM tags WHERE content_id = ? AND source = ? "
            "ORDER BY name",
            (content_id, source),
        ).fetchall()
        # Segments count as a change: a moved range must reach the sinks (markers).
        after = sorted((t.name, t.score, _segments_json(t.segments)) for t in tags)
        if [tuple(r) for r in before] == after:
            return False
        self.con.execute(
            "DELETE FROM tags WHERE content_id = ? AND source = ?", (content_id, source)
        )
        # Two sources giving one tag: the better score wins, and its ranges with it
        # (SET expressions all see the old row, so `score` below is the old one).
        self.con.executemany(
            "INSERT INTO tags(content_id, name, score, source, segments) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(content_id, name) DO UPDATE SET score = MAX(score, excluded.score), "
            "segments = CASE WHEN excluded.score > score THEN excluded.segments "
            "ELSE segments END",
            [(content_id, t.name, t.score, t.source, _segments_json(t.segments)) for t in tags],
        )
        return True

    def replace_candidates(self, content_id: int, source: str, tags: Sequence[Tag]) -> None:
        """Set one source's candidates of a content: tags it would get with lower
        thresholds (tagd.policy.apply)."""
        self.con.execute(
            "DELETE FROM tag_candidates WHERE content_id = ? AND source = ?", (content_id, source)
        )
        self.con.executemany(
            "INSERT INTO tag_candidates(content_id, name, score, source) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(content_id, name) DO UPDATE SET score = MAX(score, excluded.score)",
            [(content_id, t.name, t.score, t.source) for t in tags],
        )

    def tag_or_candidate(self, content_id: int, name: str) -> Tag | None:
        """The file's tag `name`, or the candidate of that name (below its threshold)."""
        row = self.con.execute(
            "SELECT score, source FROM tags WHERE content_id = ? AND name = ? UNION ALL "
            "SELECT score, source FROM tag_candidates WHERE content_id = ? AND name = ? LIMIT 1",
            (content_id, name, content_id, name),
        ).fetchone()
        return Tag(name, row[0], row[1]) if row else None

    def tags(self, content_id: int) -> list[Tag]:
        return [
            Tag(name, score, source, _segments_from_json(segments))
            for name, score, source, segments in self.con.execute(
                "SELECT name, score, source, segments FROM tags WHERE content_id = ? ORDER BY name",
                (content_id,),
            )
        ]


def _segments_json(segments: Sequence[Segment]) -> str | None:
    """Stored form of a tag's ranges; NULL for none (images) keeps rows small."""
    if not segments:
        return None
    return json.dumps([[s.start, s.end, s.score] for s in segments], separators=(",", ":"))


def _segments_from_json(text: str | None) -> tuple[Segment, ...]:
    return tuple(Segment(*map(float, s)) for s in json.loads(text)) if text else ()
