"""Embeddings in sqlite-vec: one table per analyzer, rowid = detection id.

The tables come from `migrations.create_vector_table` and are found through
the `vector_tables` register, never by guessing names. An analyzer's vectors
are float32, or int8 (a quarter of the room) when it hands int8 arrays: the
first one stored decides its table's element type.
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
        found = self._vector_table(analyzer)
        return found[0] if found else None

    def _vector_table(self, analyzer: str) -> tuple[str, str] | None:
        """(table, element type) of `analyzer`'s embeddings."""
        row = self.con.execute(
            "SELECT name, element FROM vector_tables WHERE analyzer = ?", (analyzer,)
        ).fetchone()
        return (row[0], row[1]) if row else None

    def has_vectors(self, analyzer: str) -> bool:
        return self.vector_table(analyzer) is not None

    def store_vector(self, analyzer: str, detection_id: int, vector: np.ndarray) -> None:
        """Keep a detection's embedding (inside the transaction that saved it)."""
        found = self._vector_table(analyzer)
        if found is None:
            element = "int8" if np.asarray(vector).dtype == np.int8 else "float"
            table = create_vector_table(self.con, analyzer, np.asarray(vector).size, element)
        else:
            table, element = found
        self.con.execute(
            f"INSERT INTO {table}(rowid, embedding) VALUES (?, {_WRAP[element]}(?))",
            (detection_id, _blob(vector, element)),
        )

    def vectors(self, analyzer: str, detection_ids: Sequence[int]) -> dict[int, np.ndarray]:
        """Stored embeddings by detection id (float32 or int8, as stored)."""
        found = self._vector_table(analyzer)
        out: dict[int, np.ndarray] = {}
        if not found:
            return out
        table, element = found
        for chunk in chunks(detection_ids):
            for rowid, blob in self.con.execute(
                f"SELECT rowid, embedding FROM {table} WHERE rowid IN ({marks(chunk)})", chunk
            ):
                out[rowid] = np.frombuffer(blob, dtype=_DTYPE[element])
        return out

    def all_vectors(self, analyzer: str) -> tuple[np.ndarray, np.ndarray]:
        """(detection ids, N x dim matrix) of every stored embedding of `analyzer`,
        read as one block (100,000 int8 vectors of 1280: about 0.3 s)."""
        found = self._vector_table(analyzer)
        if not found:
            return np.zeros(0, np.int64), np.zeros((0, 0), np.float32)
        table, element = found
        ids, blobs = [], []
        for rowid, blob in self.con.execute(f"SELECT rowid, embedding FROM {table}"):
            ids.append(rowid)
            blobs.append(blob)
        dtype = np.dtype(_DTYPE[element])
        matrix = np.frombuffer(b"".join(blobs), dtype)
        width = len(blobs[0]) // dtype.itemsize if blobs else 0
        return np.array(ids, np.int64), matrix.reshape(len(blobs), width)

    def nearest(self, analyzer: str, vector: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
        """(detection id, L2 distance) of the k nearest stored embeddings (exact KNN)."""
        found = self._vector_table(analyzer)
        if not found:
            return []
        table, element = found
        rows = self.con.execute(
            f"SELECT rowid, distance FROM {table} WHERE embedding MATCH {_WRAP[element]}(?) "
            "AND k = ? ORDER BY distance",
            (_blob(vector, element), k),
        )
        return [(r[0], float(r[1])) for r in rows]


_DTYPE = {"float": "<f4", "int8": "i1"}
# sqlite-vec reads a BLOB as float32 unless told: int8 vectors go through vec_int8().
_WRAP = {"float": "", "int8": "vec_int8"}


def _blob(vector: np.ndarray, element: str) -> bytes:
    flat = np.ascontiguousarray(vector).ravel()
    if element == "int8" and flat.dtype != np.int8:
        raise ValueError("this analyzer's embeddings are int8")
    return flat.astype(_DTYPE[element]).tobytes()
