"""The state of a catalog as `tagd doctor` reports it, read without changing
anything (the connection may be read-only, the schema newer than this tagd)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Health:
    schema: int  # migrations applied (PRAGMA user_version)
    quick_check: str  # "ok", or SQLite's first complaint
    journal: str  # journal mode: wal unless something switched it
    files: int
    errors: int  # files that cannot be read, or whose content cannot
    queued: int  # writes waiting in the outbox


def health(con: sqlite3.Connection) -> Health:
    """Read the catalog's state; raises the driver's error when it cannot be read."""

    def one(sql: str) -> Any:
        return con.execute(sql).fetchone()[0]

    return Health(
        schema=int(one("PRAGMA user_version")),
        quick_check=str(one("PRAGMA quick_check")),
        journal=str(one("PRAGMA journal_mode")),
        files=int(one("SELECT COUNT(*) FROM files")),
        errors=int(
            one(
                "SELECT COUNT(*) FROM files f LEFT JOIN contents c ON c.id = f.content_id "
                "WHERE f.error IS NOT NULL OR c.error IS NOT NULL"
            )
        ),
        queued=int(one("SELECT COUNT(*) FROM outbox")),
    )
