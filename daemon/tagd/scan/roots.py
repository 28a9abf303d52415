"""Roots that cannot be scanned: missing, not a folder, unreadable.

The usual cause is a NAS share that is not mounted (yet), which passes: such a
root is reported and skipped, and nothing the catalog knows under it is
forgotten. `tagd scan` then exits 2 (the setup needs a look); the daemon keeps
running, logs it and shows it in `tagd status`, and scans it again once it is
back.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable

SKIPPED = "skipped; nothing under it is removed from the catalog"


def root_problem(root: str, folder: bool = True) -> str | None:
    """Why `root` cannot be scanned, or None when it can.

    `folder`: it must be a folder (library.roots); the PATHs given to `tagd
    scan` may also be single files.
    """
    try:
        mode = os.stat(root).st_mode
    except FileNotFoundError:
        return f"{root}: does not exist (not mounted?)"
    except OSError as exc:
        return f"{root}: cannot be reached: {exc.strerror}"
    if stat.S_ISDIR(mode):
        try:
            with os.scandir(root):
                return None
        except OSError as exc:
            return f"{root}: cannot be listed: {exc.strerror}"
    if folder:
        return f"{root}: not a folder (library.roots names the folders to scan)"
    return _unreadable(root)


def _unreadable(path: str) -> str | None:
    # O_NONBLOCK: a named pipe must not block the scan until someone writes to it.
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC))
    except OSError as exc:
        return f"{path}: cannot be read: {exc.strerror}"
    return None


def usable_roots(roots: Iterable[str], folders: bool = True) -> tuple[list[str], list[str]]:
    """(the roots that can be scanned, a problem message per other root)."""
    usable, problems = [], []
    for root in roots:
        problem = root_problem(root, folders)
        if problem is None:
            usable.append(root)
        else:
            problems.append(problem)
    return usable, problems
