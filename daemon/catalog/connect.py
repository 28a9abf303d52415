"""Open the catalog with a SQLite driver that can load sqlite-vec.

The stdlib ``sqlite3`` is used when it was built with extension loading; many
distribution Pythons (and these machines) lack ``enable_load_extension``, so
the ``pysqlite3`` wheel, which has the same DB-API, is the fallback.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType

import sqlite_vec


class CatalogError(RuntimeError):
    """The catalog database cannot be opened or used."""


def _driver() -> ModuleType:
    probe = sqlite3.connect(":memory:")
    try:
        if hasattr(probe, "enable_load_extension"):
            return sqlite3
    finally:
        probe.close()
    try:
        from pysqlite3 import dbapi2  # type: ignore[import-not-found]
    except ImportError:
        raise CatalogError(
            "this Python's sqlite3 cannot load extensions and pysqlite3 is missing: "
            "pip install pysqlite3-binary"
        ) from None
    return dbapi2


DRIVER = _driver()
Connection = sqlite3.Connection  # both drivers implement the same DB-API
DatabaseError: type[Exception] = DRIVER.DatabaseError


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection in WAL mode with sqlite-vec loaded and foreign keys on."""
    try:
        con = DRIVER.connect(str(path), timeout=30.0, isolation_level=None)
    except DRIVER.Error as exc:
        raise CatalogError(f"cannot open catalog {path}: {exc}") from None
    try:
        con.enable_load_extension(True)
        sqlite_vec.load(con)
        con.enable_load_extension(False)
        con.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable against a killed process in WAL mode; only a power
        # loss can drop the last transactions, never corrupt the file.
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA busy_timeout=30000")
    except DRIVER.Error as exc:
        con.close()
        raise CatalogError(f"cannot prepare catalog {path}: {exc}") from None
    return con
