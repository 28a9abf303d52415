"""Small WebP previews, made from the frame a scan decoded anyway, so browsing
(the API, the web pages) never decodes an original again.

One per content (its id names the file), in `<state dir>/thumbs/`: the same
photo under two paths has one preview, and a re-analysis of changed content
writes a new one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np

LONG_SIDE = 320  # px: sharp in a grid on a phone or a 4K screen, ~10-20 KB
QUALITY = 80


def folder_for(catalog_path: Path) -> Path:
    """Where the previews of the catalog at `catalog_path` live."""
    return catalog_path.parent / "thumbs"


def path_for(folder: Path, content_id: int) -> Path:
    return folder / f"{content_id}.webp"


def encode(image: np.ndarray, long_side: int = LONG_SIDE) -> bytes:
    """A BGR image as WebP, its long side at most `long_side` (never enlarged)."""
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, data = cv2.imencode(".webp", image, [cv2.IMWRITE_WEBP_QUALITY, QUALITY])
    if not ok:
        raise ValueError("WebP encoding failed")
    return data.tobytes()


def save(folder: Path, content_id: int, image: np.ndarray) -> Path:
    """The preview of `content_id`, written atomically (a reader never sees half
    a file) unless it is there already."""
    target = path_for(folder, content_id)
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".thumb-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(encode(image))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
