"""Paths a client names: accepted only inside the library roots, links followed
(one that leads out is outside), so no request reaches anything else."""

from __future__ import annotations

import os
from pathlib import Path

from tagd.api.problems import Problem
from tagd.api.state import ApiState
from tagd.paths import library_roots, shown, within


def in_library(state: ApiState, path: str, field: str, *, folder_ok: bool = False) -> Path:
    """`path` resolved when it is a file (or, `folder_ok`, a folder) under a library
    root; a Problem naming `field` otherwise."""
    if not path.startswith("/"):
        raise Problem(422, "invalid-parameter", f"{field}: {path!r} must be absolute")
    real = os.path.realpath(path)
    if not any(within(real, os.path.realpath(r)) for r in library_roots(state.settings)):
        raise Problem(
            403,
            "outside-library",
            f"{field}: {shown(path)} is outside the library roots ([library] roots)",
        )
    if not (os.path.isfile(real) or (folder_ok and os.path.isdir(real))):
        what = "a file or folder" if folder_ok else "a file"
        raise Problem(404, "no-such-file", f"{field}: {shown(path)} is not {what}")
    return Path(real)
