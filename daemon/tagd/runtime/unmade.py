"""Model families `tagd models fetch` could not make here, and why (a converter
that is not installed, weights it did not find).

Fetch records them in `<models dir>/unmade.toml` and clears each one it makes
later. An analyzer whose model file is absent and whose family is recorded here
stays off, with that reason, and the others run: a plain install without the
export extra tags photos with every other analyzer instead of every scan
failing on one missing file. A missing model fetch never tried to make is
still an error that says to run it.
"""

from __future__ import annotations

import os
import tempfile
import tomllib
from pathlib import Path

import tomli_w

FILE = "unmade.toml"


def unmade(models_dir: Path) -> dict[str, str]:
    """Family -> why fetch could not make it; {} when it made everything it tried
    (or no record can be read: then a missing model is the usual error)."""
    try:
        data = tomllib.loads((models_dir / FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return {}
    return {k: v for k, v in data.get("families", {}).items() if isinstance(v, str)}


def record(models_dir: Path, family: str, why: str) -> None:
    _write(models_dir, unmade(models_dir) | {family: why})


def clear(models_dir: Path, family: str) -> None:
    notes = unmade(models_dir)
    if family in notes:
        del notes[family]
        _write(models_dir, notes)


def _write(models_dir: Path, notes: dict[str, str]) -> None:
    path = models_dir / FILE
    if not notes:
        path.unlink(missing_ok=True)
        return
    models_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=".unmade.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write("# Written by `tagd models fetch`: what it could not make here, and why.\n")
        out.write(tomli_w.dumps({"families": dict(sorted(notes.items()))}))
    os.chmod(tmp, 0o644)  # the service user reads it
    os.replace(tmp, path)
