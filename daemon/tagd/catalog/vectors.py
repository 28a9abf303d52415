"""Embeddings in sqlite-vec: one table per analyzer, rowid = detection id.

The tables come from `migrations.create_vector_table` and are found through
the `vector_tables` register, never by guessing names.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import numpy as np

from tagd.catalog.migrations import create_vector_table
from tagd.catalog.params import chunks, marks


class VectorQueries:
    con: sqlite3.Connection

    def vector_table(self, analyzer: str) -> str | None:
        """The embedding table of `analyzer`; None until it stored an embedding."""
        row = self.con.execute(
            "SELECT name FROM vector_tables WHERE analyzer = ?", (analyzer,)
        ).fetchone()
        return row[0] if row else None

    def has_vectors(self, analyzer: str) -> bool:
        return self.vector_table(analyzer) is not None

    def store_vector(self, analyzer: str, detection_id: int, vector: np.ndarray) -> None:
        """Keep a detection's embedding (inside the transaction that saved it)."""
        flat = np.ascontiguousarray(vector, dtype=np.float32).ravel()
        table = self.vector_table(analyzer) or create_vector_table(self.con, analyzer, len(flat))
        self.con.execute(
            f"INSERT INTO {table}(rowid, embedding) VALUES (?, ?)", (detection_id, flat.tobytes())
        )

    def vectors(self, analyzer: str, detection_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored embeddings by detection id."""
        table = self.vector_table(analyzer)
        out: dict[int, np.ndarray] = {}
        if not table:
            return out
        for chunk in chunks(detection_ids):
            for rowid, blob in self.con.execute(
                f"SELECT rowid, embedding FROM {table} WHERE rowid IN ({marks(chunk)})", chunk
            ):
                out[rowid] = np.frombuffer(blob, dtype=np.float32)
        return out

    def nearest(self, analyzer: str, vector: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
        """(detection id, L2 distance) of the k nearest stored embeddings (exact KNN)."""
        table = self.vector_table(analyzer)
        if not table:
            return []
        flat = np.ascontiguousarray(vector, dtype=np.float32).ravel().tobytes()
        rows = self.con.execute(
            f"SELECT rowid, distance FROM {table} WHERE embedding MATCH ? AND k = ? "
            "ORDER BY distance",
            (flat, k),
        )
        return [(r[0], float(r[1])) for r in rows]
