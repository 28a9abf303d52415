"""A contact sheet of one person's faces, for reviewing a cluster before naming it.

Each tile is the face box (grown by half its size, so hair and chin show) cut
from the original file, upright, scaled to TILE px, with the file name and the
face's detection id (what `tagd people split` takes) written under it. Videos
show the frame at the face's time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tagd.media.image import DecodeError, decode_image
from tagd.records import FaceRow

TILE = 160
LABEL_H = 34
COLUMNS = 6
GROW = 0.5


def sheet_size(count: int, columns: int = COLUMNS, tile: int = TILE) -> tuple[int, int]:
    """(width, height) in pixels of the sheet for `count` faces."""
    cols = max(1, min(columns, count))
    rows = max(1, math.ceil(count / cols))
    return cols * tile, rows * (tile + LABEL_H)


def _frame(path: str, t: float | None) -> np.ndarray | None:
    """The upright original (BGR), or the video frame at t."""
    try:
        if t is None:
            data = Path(path).read_bytes()
            return decode_image(data, min_long_side=0, reduced=False, name=str(path)).image
        from tagd.media.video import VideoError, sample_frames

        # Frames come at 0, interval, 2 * interval...: the second is the face's time.
        try:
            frames = list(sample_frames(Path(path), max(t, 0.1), max_frames=2))
        except VideoError:
            return None
        return frames[-1 if t > 0 else 0].image if frames else None
    except (OSError, DecodeError, ValueError):
        return None
    return None


def _tile(image: np.ndarray | None, box: tuple[float, float, float, float]) -> np.ndarray:
    tile = np.full((TILE, TILE, 3), 40, np.uint8)
    if image is None:
        return tile
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + GROW)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    h, w = image.shape[:2]
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    right, bottom = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
    crop = image[top:bottom, left:right]
    if crop.size == 0:
        return tile
    scale = TILE / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    resized = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    oy, ox = (TILE - resized.shape[0]) // 2, (TILE - resized.shape[1]) // 2
    tile[oy : oy + resized.shape[0], ox : ox + resized.shape[1]] = resized
    return tile


def _label(text: str, width: int) -> str:
    """Cut a label to what fits (about 7 px per character at this font size)."""
    fits = max(4, width // 7)
    return text if len(text) <= fits else text[: fits - 3] + "..."


def render(faces: Sequence[FaceRow], columns: int = COLUMNS) -> np.ndarray:
    """The sheet as a BGR image."""
    width, height = sheet_size(len(faces), columns)
    cols = width // TILE
    sheet = np.full((height, width, 3), 255, np.uint8)
    cache: dict[tuple[str, float | None], np.ndarray | None] = {}
    for i, face in enumerate(faces):
        key = (face.path, face.t)
        if key not in cache:
            cache = {key: _frame(face.path, face.t)}  # one original in memory at a time
        x, y = (i % cols) * TILE, (i // cols) * (TILE + LABEL_H)
        sheet[y : y + TILE, x : x + TILE] = _tile(cache[key], face.box)
        font = cv2.FONT_HERSHEY_SIMPLEX
        name = _label(Path(face.path).name, TILE)
        cv2.putText(sheet, name, (x + 3, y + TILE + 13), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        info = f"face {face.detection_id}" + (f" @{face.t:.0f}s" if face.t is not None else "")
        cv2.putText(sheet, info, (x + 3, y + TILE + 28), font, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    return sheet


def write(faces: Sequence[FaceRow], out: Path, columns: int = COLUMNS) -> tuple[int, int]:
    """Write the PNG; returns its (width, height)."""
    image = render(faces, columns)
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"cannot encode {out}")
    out.write_bytes(data.tobytes())
    return image.shape[1], image.shape[0]
