"""Writing model files: atomically, and described by their sha256."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from tagd.runtime.manifest import sha256_of


def write_bytes(dest: Path, data: bytes) -> str:
    """Write atomically; returns the sha256 of what was written."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256_of(dest)


def install_file(src: Path, dest: Path) -> str:
    """Copy atomically (a no-op when dest already has the same content)."""
    if dest.exists() and sha256_of(dest) == sha256_of(src):
        return sha256_of(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return sha256_of(dest)
