"""Open the catalog with a SQLite driver that can load sqlite-vec.

The stdlib ``sqlite3`` is used when it was built with extension loading; many
distribution Pythons (and these machines) lack ``enable_load_extension``, so
the ``pysqlite3`` wheel, which has the same DB-API, is the fallback.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from pathlib import Path
from types import ModuleType

import sqlite_vec


class CatalogError(RuntimeError):
    """The catalog database cannot be opened or used."""


class DiskFullError(CatalogError):
    """A write failed for want of space (or quota) on the disk holding `where`."""

    def __init__(self, where: Path | str) -> None:
        super().__init__(f"disk full: {where}")
        self.where = where


SQLITE_IOERR, SQLITE_FULL = 10, 13  # "disk I/O error", "database or disk is full"
# Less free space than this is a full disk for the catalog: WAL mode's index
# (-shm) alone needs 32 KiB, a commit a few pages more.
NO_ROOM = 1 << 20


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


def disk_full(exc: BaseException, folder: Path | None = None) -> bool:
    """Did a write fail for want of space? ENOSPC or EDQUOT from the OS, SQLITE_FULL
    from SQLite (which then has rolled back or still holds the transaction: the
    catalog itself stays intact either way). SQLite reports a -shm file it cannot
    grow as an I/O error, sqlite-vec one of its vector chunks as its own error:
    those count when `folder` (the catalog's) has no room."""
    if isinstance(exc, DiskFullError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if not isinstance(exc, DRIVER.Error):
        return False
    if "sqlite-vec error" in str(exc):
        # sqlite-vec reports a vector chunk it could not write as an error of its
        # own (SQLITE_ERROR), the disk's answer lost: the free space tells.
        return folder is not None and no_room(folder)
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:  # a driver without error codes: only the message tells
        return "disk is full" in str(exc)
    # The low byte is the primary code (SQLITE_IOERR_SHMSIZE is SQLITE_IOERR).
    primary = code & 0xFF
    return primary == SQLITE_FULL or (
        primary == SQLITE_IOERR and folder is not None and no_room(folder)
    )


def no_room(folder: Path) -> bool:
    """Less than NO_ROOM bytes free for this user on `folder`'s filesystem."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < NO_ROOM


def _text(data: bytes) -> str:
    """TEXT values as str. A file name that is not UTF-8 (b"caf\\xe9.jpg" from a
    Latin-1 share) is stored as its own bytes (see path_param) and comes back as
    the str Python's os functions use for it (surrogateescape), so it opens again
    and compares equal to what a walk of the folder finds."""
    return data.decode("utf-8", "surrogateescape")


def path_param(path: str) -> bytes:
    """A path as a query parameter: its bytes, to be bound as ``CAST(? AS TEXT)``.

    sqlite3 binds a str only when it is valid UTF-8, and a BLOB would sort after
    every TEXT (prefix range scans would miss it). Cast to TEXT, the bytes are
    kept as they are and compare byte by byte with the other paths, as UTF-8
    does: ORDER BY, =, and the range scans for a folder treat both kinds alike.
    """
    return path.encode("utf-8", "surrogateescape")


def _wal(con: sqlite3.Connection) -> None:
    """Switch to WAL mode. Switching needs a moment alone with the file, and SQLite
    answers "database is locked" at once, without its busy handler, while another
    process opens the new catalog too: wait for that instead of failing."""
    deadline = time.monotonic() + 30.0
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except DRIVER.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection in WAL mode with sqlite-vec loaded and foreign keys on."""
    try:
        con = DRIVER.connect(str(path), timeout=30.0, isolation_level=None)
    except DRIVER.Error as exc:
        if disk_full(exc, Path(path).parent):
            raise DiskFullError(Path(path).parent) from None
        raise CatalogError(f"cannot open catalog {path}: {exc}") from None
    con.text_factory = _text
    try:
        con.enable_load_extension(True)
        sqlite_vec.load(con)
        con.enable_load_extension(False)
        _wal(con)
        # NORMAL is durable against a killed process in WAL mode; only a power
        # loss can drop the last transactions, never corrupt the file.
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute("PRAGMA foreign_keys=ON")
        con.execute("PRAGMA busy_timeout=30000")
    except DRIVER.Error as exc:
        con.close()
        if disk_full(exc, Path(path).parent):  # WAL mode writes the header and the -shm
            raise DiskFullError(Path(path).parent) from None
        raise CatalogError(f"cannot prepare catalog {path}: {exc}") from None
    return con
