"""Uploads for POST /analyze: saved under the extension their content calls for,
within [api] max_upload_mb, in a scratch folder removed after the request. The
analysis itself is the analysis process's (tagd.engine.on_demand)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from tagd.media.raw import raw_format
from tagd.media.sniff import describe, sniff

# The extension the walker wants for each sniffed format (uploads carry no name
# tagd trusts: what they hold decides).
EXTENSIONS = {
    "jpeg": "jpg",
    "png": "png",
    "gif": "gif",
    "tiff": "tif",
    "bmp": "bmp",
    "webp": "webp",
    "heif": "heic",
    "matroska": "mkv",
    "mp4": "mp4",
    "avi": "avi",
}


class UploadError(ValueError):
    """The upload is not an image or video tagd reads; the message says what it is."""


def save_upload(head: bytes, rest: Any, folder: Path, limit: int) -> Path:
    """An upload written to `folder` under the extension its content calls for;
    UploadError for content that is no image or video, OverflowError past `limit`
    bytes. `rest` is a file object with the bytes after `head`."""
    fmt = sniff(head)
    # A camera RAW keeps its own extension: many are TIFFs that only their
    # extension or their first directory (beyond `head`) tells apart.
    ext = raw_format(head) or EXTENSIONS.get(fmt or "")
    if ext is None:
        raise UploadError(f"the upload is not an image or video tagd reads ({describe(head)})")
    target = folder / f"upload.{ext}"
    size = len(head)
    with open(target, "wb") as out:
        out.write(head)
        while chunk := rest.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise OverflowError(size)
            out.write(chunk)
    return target


def scratch_folder(parent: Path) -> Path:
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="upload-", dir=parent))


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
