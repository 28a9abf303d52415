"""PP-PicoDet's input and output (PaddleDetection's ONNX export, legacy ESNet head).

Input: RGB, the whole image resized to the model's square size (no letterbox:
PicoDet was trained on stretched images; bicubic, as Paddle resizes), x / 255
then ImageNet mean and std. Outputs, for strides 8/16/32/64 with
ceil(size / stride)^2 cells each, row-major: four class-score maps N x 80
(already sigmoid), then four box maps N x 32: for each side (left, top, right,
bottom) a distribution over 8 bins whose expectation, times the stride, is the
distance from the cell centre ((col + 0.5) * stride, (row + 0.5) * stride).
A cell may propose several classes, as Paddle's multiclass NMS allows.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from tagd.analyzers import grid
from tagd.analyzers.object_head import Candidates
from tagd.runtime.pixels import Affine

STRIDES = (8, 16, 32, 64)
BINS = 8  # reg_max 7: distances 0..7 strides
MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32)
STD_RGB = np.array([0.229, 0.224, 0.225], np.float32)
# The most candidates suppression looks at, best first (Paddle's nms_top_k): at a
# low min_score thousands of weak (cell, class) pairs would only cost time.
TOP_K = 1000


def make_cells(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (x, y) in input pixels and strides, for every output row in order."""
    corners, strides = grid.cells(width, height, STRIDES, ceil=True)
    return (corners + 0.5) * strides[:, None], strides


class PicoDetHead:
    pixels = Affine.normalise(tuple(MEAN_RGB.tolist()), tuple(STD_RGB.tolist()))

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height
        self._centres, self._strides = make_cells(width, height)
        # (x / 255 - mean) / std as one multiply-add per channel.
        self._scale = (1.0 / (255.0 * STD_RGB)).reshape(3, 1, 1)
        self._shift = (-MEAN_RGB / STD_RGB).reshape(3, 1, 1)

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        h, w = image.shape[:2]
        resized = cv2.resize(image, (self.width, self.height), interpolation=cv2.INTER_CUBIC)
        # order="C": astype would keep the HWC memory order of its view, and the two
        # passes below over that strided array cost 5x more (1.6 vs 0.3 ms).
        chw = resized[:, :, ::-1].transpose(2, 0, 1).astype(np.float32, order="C")
        chw *= self._scale
        chw += self._shift
        return chw, (self.width / w, self.height / h)

    def candidates(self, outputs: Sequence[np.ndarray], min_score: float) -> Candidates:
        levels = len(STRIDES)
        scores = np.concatenate(outputs[:levels])
        if len(scores) != len(self._centres):
            raise ValueError(
                f"{len(scores)} cells in the outputs, but {len(self._centres)} for "
                f"{self.width}x{self.height}"
            )
        cells, classes = np.nonzero(scores >= min_score)
        picked = scores[cells, classes]
        if len(picked) > TOP_K:
            top = np.argpartition(-picked, TOP_K)[:TOP_K]
            cells, classes, picked = cells[top], classes[top], picked[top]
        unique, where = np.unique(cells, return_inverse=True)
        dist = np.concatenate(outputs[levels:])[unique].reshape(-1, 4, BINS)
        dist = np.exp(dist - dist.max(-1, keepdims=True))
        sides = (dist @ np.arange(BINS, dtype=np.float32)) / dist.sum(-1)
        sides *= self._strides[unique, None]
        centres = self._centres[unique]
        top_left = centres - sides[:, :2]
        size = sides[:, :2] + sides[:, 2:]
        xywh = np.concatenate([top_left, size], 1)[where]
        return Candidates(xywh, picked.astype(np.float32), classes)
