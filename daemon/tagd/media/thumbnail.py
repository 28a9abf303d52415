"""Small WebP previews, made from the frame a scan decoded anyway, so browsing
(the API, the web pages) never decodes an original again.

One per content (its id names the file), in `<state dir>/thumbs/`: the same
photo under two paths has one preview, and a re-analysis of changed content
writes a new one.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from tagd.media.files import open_regular
from tagd.media.image import decode_image
from tagd.media.preview_files import (  # noqa: F401  (where previews live: also here)
    FACE_MARGIN,
    FACE_SIDE,
    LONG_SIDE,
    QUALITY,
    face_path_for,
    folder_for,
    path_for,
)


def encode(image: np.ndarray, long_side: int = LONG_SIDE) -> bytes:
    """A BGR image as WebP, its long side at most `long_side` (never enlarged)."""
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    # Pillow's WebP at method 0 (its fastest): 2.7 ms for 320x240 against 6.3 ms
    # for OpenCV's (method 4, not adjustable), for files about 20 % larger.
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image[:, :, ::-1])).save(
        out, "WEBP", quality=QUALITY, method=0
    )
    return out.getvalue()


def read_image(path: str, min_long_side: int, reduced: bool = True) -> np.ndarray:
    """An original decoded (upright), for a preview made after the scan: a catalog
    from before previews existed."""
    with open_regular(path) as fh:
        data = fh.read()
    return decode_image(data, min_long_side=min_long_side, reduced=reduced, name=path).image


def save(folder: Path, content_id: int, image: np.ndarray) -> Path:
    """The preview of `content_id` (kept as it is when there already)."""
    return _write(path_for(folder, content_id), image, LONG_SIDE)


def save_face(
    folder: Path, detection_id: int, image: np.ndarray, box: tuple[float, float, float, float]
) -> Path:
    """The preview of one face: its box in `image`'s pixels, with a margin."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    mx, my = (x1 - x0) * FACE_MARGIN, (y1 - y0) * FACE_MARGIN
    left, top = max(0, int(x0 - mx)), max(0, int(y0 - my))
    right, bottom = min(width, int(x1 + mx + 1)), min(height, int(y1 + my + 1))
    if right <= left or bottom <= top:
        raise ValueError(f"face box {box} lies outside the frame")
    return _write(face_path_for(folder, detection_id), image[top:bottom, left:right], FACE_SIDE)


def _write(target: Path, image: np.ndarray, long_side: int) -> Path:
    """`image` as WebP at `target`, written atomically (a reader never sees half a
    file), unless it is there already."""
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".thumb-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(encode(image, long_side))
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
