"""Tags taught by example (tagd.teach): their examples, and the stored image
embeddings the classifier reads."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from tagd.catalog.params import chunks, marks
from tagd.catalog.vectors import VectorQueries


@dataclass(frozen=True)
class TaughtTag:
    name: str  # the label; the tag is [tags.taught]'s parent + this
    examples: tuple[int, ...]  # content ids
    counter: tuple[int, ...]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class EmbeddingBlock:
    """Stored embeddings, a block of rows: whose (content, video time) and the values."""

    contents: np.ndarray  # int64[n]
    times: list[float | None]
    values: np.ndarray  # n x dim, as stored (int8)


_DTYPES = {"float": "<f4", "int8": "i1"}


class TaughtQueries(VectorQueries):
    con: sqlite3.Connection

    def taught_tags(self) -> list[TaughtTag]:
        rows = self.con.execute(
            "SELECT name, examples, counter, created_at, updated_at FROM taught_tags ORDER BY name"
        )
        return [
            TaughtTag(name, tuple(json.loads(ex)), tuple(json.loads(co)), created, updated)
            for name, ex, co, created, updated in rows
        ]

    def save_taught(self, name: str, examples: Sequence[int], counter: Sequence[int]) -> None:
        now = time.time()
        self.con.execute(
            "INSERT INTO taught_tags(name, examples, counter, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET examples = excluded.examples, "
            "counter = excluded.counter, updated_at = excluded.updated_at",
            (name, json.dumps(sorted(set(examples))), json.dumps(sorted(set(counter))), now, now),
        )

    def forget_taught(self, name: str) -> bool:
        return self.con.execute("DELETE FROM taught_tags WHERE name = ?", (name,)).rowcount > 0

    def embedding_blocks(
        self, analyzer: str, label: str | None, size: int = 8192
    ) -> Iterator[EmbeddingBlock]:
        """Every stored embedding of `analyzer` (of its findings labelled `label`;
        None: all that have one), `size` rows at a time: the whole library without
        holding it in memory. Values as stored (int8 or float32)."""
        found = self._vector_table(analyzer)
        if found is None:
            return
        table, element = found
        cursor = self.con.execute(
            f"SELECT d.content_id, d.t, v.embedding FROM detections d JOIN {table} v "
            "ON v.rowid = d.id WHERE d.analyzer = ? AND (? IS NULL OR d.label = ?) "
            "ORDER BY d.content_id",
            (analyzer, label, label),
        )
        dtype = np.dtype(_DTYPES[element])
        while rows := cursor.fetchmany(size):
            values = np.frombuffer(b"".join(r[2] for r in rows), dtype)
            yield EmbeddingBlock(
                np.array([r[0] for r in rows], np.int64),
                [r[1] for r in rows],
                values.reshape(len(rows), -1),
            )

    def embeddings_of(
        self, analyzer: str, label: str | None, content_ids: Sequence[int]
    ) -> dict[int, np.ndarray]:
        """content id -> its stored embeddings (one row a photo, a row a video frame)."""
        found = self._vector_table(analyzer)
        out: dict[int, list[bytes]] = {}
        if found is None:
            return {}
        table, element = found
        for chunk in chunks(list(content_ids)):
            rows = self.con.execute(
                f"SELECT d.content_id, v.embedding FROM detections d JOIN {table} v "
                "ON v.rowid = d.id WHERE d.analyzer = ? AND (? IS NULL OR d.label = ?) "
                f"AND d.content_id IN ({marks(chunk)}) ORDER BY d.content_id, d.t",
                (analyzer, label, label, *chunk),
            )
            for cid, blob in rows:
                out.setdefault(cid, []).append(blob)
        dtype = np.dtype(_DTYPES[element])
        return {
            cid: np.frombuffer(b"".join(blobs), dtype).reshape(len(blobs), -1)
            for cid, blobs in out.items()
        }

    def embedded_contents(self, analyzer: str) -> int:
        """How many contents have an embedding stored by `analyzer`."""
        table = self.vector_table(analyzer)
        if table is None:
            return 0
        row = self.con.execute(
            f"SELECT COUNT(DISTINCT d.content_id) FROM detections d JOIN {table} v "
            "ON v.rowid = d.id WHERE d.analyzer = ?",
            (analyzer,),
        ).fetchone()
        return int(row[0])

    def sample_embedded(self, analyzer: str, label: str | None, limit: int) -> list[int]:
        """Up to `limit` contents with an embedding, spread over the library (every
        n-th by id: the same sample each time, so a fit is repeatable)."""
        total = self.con.execute(
            "SELECT COUNT(*) FROM detections WHERE analyzer = ? AND (? IS NULL OR label = ?)",
            (analyzer, label, label),
        ).fetchone()[0]
        step = max(1, total // max(1, limit))
        rows = self.con.execute(
            "SELECT DISTINCT content_id FROM (SELECT content_id, ROW_NUMBER() OVER "
            "(ORDER BY content_id) AS n FROM detections WHERE analyzer = ? "
            "AND (? IS NULL OR label = ?)) WHERE n % ? = 0 LIMIT ?",
            (analyzer, label, label, step, limit),
        )
        return [r[0] for r in rows]

    def taught_detections(self, analyzer: str) -> dict[int, list[tuple[str, float | None, float]]]:
        """content id -> (label, t, score) of what tagd.teach stored."""
        out: dict[int, list[tuple[str, float | None, float]]] = {}
        for cid, label, t, score in self.con.execute(
            "SELECT content_id, label, t, score FROM detections WHERE analyzer = ? "
            "ORDER BY content_id, label, t",
            (analyzer,),
        ):
            out.setdefault(cid, []).append((label, t, score))
        return out

    def taught_verdicts(self, source: str) -> dict[str, dict[int, str]]:
        """tag -> {content id: "accept" | "reject"}: what people said of `source`'s tags."""
        out: dict[str, dict[int, str]] = {}
        for name, cid, verdict in self.con.execute(
            "SELECT name, content_id, verdict FROM tag_verdicts WHERE source = ?", (source,)
        ):
            out.setdefault(name, {})[cid] = verdict
        return out

    def count_tagged(self, tag: str) -> int:
        """Files whose content has `tag`."""
        row = self.con.execute(
            "SELECT COUNT(*) FROM files f JOIN tags t ON t.content_id = f.content_id "
            "WHERE t.name = ? AND f.error IS NULL",
            (tag,),
        ).fetchone()
        return int(row[0])
