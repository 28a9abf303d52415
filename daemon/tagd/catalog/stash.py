"""What tagd wrote into Stash, keyed by Stash's ids (stable across renames on
either side): the tags, performers and studio it set on a scene or image (only
those are ever removed again; what people set stays), and the scene markers it
made (re-runs update them instead of adding duplicates)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

# Stash's bulk update field -> the table (and column) recording tagd's own ids.
_RECORDED = {
    "tag_ids": ("stash_tags", "tag_id"),
    "performer_ids": ("stash_performers", "performer_id"),
    "studio_id": ("stash_studios", "studio_id"),
}


class StashQueries:
    con: sqlite3.Connection

    def stash_recorded(self, ids_field: str, obj: str) -> set[str]:
        """The ids tagd set in `ids_field` (tag_ids, performer_ids, studio_id) of `obj`."""
        table, column = _RECORDED[ids_field]
        rows = self.con.execute(f"SELECT {column} FROM {table} WHERE object = ?", (obj,))
        return {r[0] for r in rows}

    def stash_record(self, ids_field: str, obj: str, ids: Iterable[str]) -> None:
        table, column = _RECORDED[ids_field]
        self.con.executemany(
            f"INSERT OR IGNORE INTO {table}(object, {column}) VALUES (?, ?)",
            [(obj, i) for i in ids],
        )

    def stash_forget(self, ids_field: str, obj: str, ids: Iterable[str]) -> None:
        table, column = _RECORDED[ids_field]
        self.con.executemany(
            f"DELETE FROM {table} WHERE object = ? AND {column} = ?", [(obj, i) for i in ids]
        )

    def stash_markers(self, scene_id: str) -> dict[str, tuple[str, float, float | None]]:
        """marker id -> (tag id, seconds, end seconds) of the markers tagd made on a scene."""
        rows = self.con.execute(
            "SELECT marker_id, tag_id, seconds, end_seconds FROM stash_markers WHERE scene_id = ?",
            (scene_id,),
        )
        return {r[0]: (r[1], r[2], r[3]) for r in rows}

    def record_stash_marker(
        self, marker_id: str, scene_id: str, tag_id: str, seconds: float, end: float | None
    ) -> None:
        self.con.execute(
            "INSERT INTO stash_markers(marker_id, scene_id, tag_id, seconds, end_seconds) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(marker_id) DO UPDATE SET tag_id = excluded.tag_id, "
            "seconds = excluded.seconds, end_seconds = excluded.end_seconds",
            (marker_id, scene_id, tag_id, seconds, end),
        )

    def forget_stash_marker(self, marker_id: str) -> None:
        self.con.execute("DELETE FROM stash_markers WHERE marker_id = ?", (marker_id,))
