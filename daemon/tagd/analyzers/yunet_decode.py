"""YuNet (libfacedetection) pre- and post-processing: anchor-free, per-cell decode.

Input is BGR 0-255 (no normalisation), N x 3 x H x W with H and W multiples of
32. For each stride 8/16/32 the network gives, per cell of the (H/s) x (W/s)
grid in row-major order, a class score, an objectness (both probabilities),
a box (dx, dy, log w, log h) and five landmarks (dx, dy each), all relative to
the cell's top-left corner in units of the stride. A face's score is the
geometric mean of class score and objectness, as OpenCV's FaceDetectorYN
computes it; overlapping faces are suppressed at IoU 0.3.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from tagd.analyzers import grid
from tagd.analyzers.face_boxes import Faces, nms
from tagd.runtime.pixels import Affine

STRIDES = (8, 16, 32)
# The score above which a detection counts as a face unless faces.min_score says
# otherwise (bench/faces.py measures the trade-off).
MIN_SCORE = 0.8
NMS_IOU = 0.3
MAX_FACES = 200


@lru_cache(maxsize=8)
def cells(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corner (col, row) and stride of every output row, in the model's order."""
    out = grid.cells(width, height, STRIDES)
    for array in out:
        array.flags.writeable = False  # shared by the cache
    return out


PIXELS = Affine.raw()  # BGR 0-255 as they are (tagd.runtime.pixels)


def prepare(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float]:
    """Fit a BGR image into width x height (top-left, aspect kept, black padding);
    CHW float32 0-255 and the scale applied."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    canvas = np.zeros((height, width, 3), np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1).astype(np.float32), scale


def decode_outputs(
    outputs: Sequence[np.ndarray], width: int, height: int, min_score: float
) -> Faces:
    """One image's 12 outputs (cls, obj, bbox, kps for each stride; no batch axis) as
    faces in input pixels."""
    if width % STRIDES[-1] or height % STRIDES[-1]:
        raise ValueError(f"YuNet needs sides that are multiples of 32, not {width}x{height}")
    levels = len(STRIDES)
    cls, obj, bbox, kps = (np.concatenate(outputs[i * levels : (i + 1) * levels]) for i in range(4))
    corner, stride = cells(width, height)
    if len(cls) != len(corner):
        raise ValueError(f"{len(cls)} predictions, but {len(corner)} cells for {width}x{height}")
    scores = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
    keep = np.flatnonzero(scores >= min_score)
    corner, stride, scores = corner[keep], stride[keep, None], scores[keep]
    bbox, kps = bbox[keep], kps[keep]
    centres = (corner + bbox[:, :2]) * stride
    sizes = np.exp(bbox[:, 2:]) * stride
    boxes = np.hstack((centres - sizes / 2, centres + sizes / 2))
    points = (corner[:, None, :] + kps.reshape(-1, 5, 2)) * stride[:, :, None]
    picked = nms(boxes, scores, NMS_IOU)[:MAX_FACES]
    return Faces(boxes[picked], scores[picked], points[picked])
