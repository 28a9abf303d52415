"""YOLOX's input and output: letterbox, then a grid decode of one N x 85 output.

Input: BGR 0-255, fitted top-left into the model's size and padded with 114
(as YOLOX was trained), no normalisation. Output rows follow strides 8/16/32,
row-major: (dx, dy, log w, log h, objectness, 80 class probabilities); the
centre is (cell + d) * stride, the size exp(log) * stride, and a row's score
is objectness x its best class.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from tagd.analyzers import grid
from tagd.analyzers.object_head import Candidates
from tagd.runtime.pixels import Affine

STRIDES = (8, 16, 32)
PAD_VALUE = 114


def letterbox(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float]:
    """Scale to fit, pad bottom/right with 114 (as YOLOX was trained); CHW float32."""
    h, w = image.shape[:2]
    ratio = min(width / w, height / h)
    nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
    canvas = np.full((height, width, 3), PAD_VALUE, np.uint8)
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas.transpose(2, 0, 1).astype(np.float32), ratio


def make_grids(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell offsets and strides (N x 1) for every output row, in the model's order."""
    corners, strides = grid.cells(width, height, STRIDES)
    return corners, strides[:, None]


class YoloxHead:
    pixels = Affine.raw()

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._grids, self._strides = make_grids(width, height)

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        chw, ratio = letterbox(image, self.width, self.height)
        return chw, (ratio, ratio)

    def candidates(self, outputs: Sequence[np.ndarray], min_score: float) -> Candidates:
        out = outputs[0]
        cls = out[:, 5:].argmax(1)
        scores = out[:, 4] * out[np.arange(len(out)), 5 + cls]
        keep = scores >= min_score
        out, cls, scores = out[keep], cls[keep], scores[keep]
        centre = (out[:, :2] + self._grids[keep]) * self._strides[keep]
        size = np.exp(out[:, 2:4]) * self._strides[keep]
        return Candidates(np.concatenate([centre - size / 2, size], 1), scores, cls)
