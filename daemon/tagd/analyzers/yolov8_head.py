"""YOLOv8 / YOLO11's input and output (Ultralytics' ONNX export, `tagd models export
yolov8`).

Input: RGB / 255, fitted top-left into the model's size and padded with 114
(Ultralytics centres the image; the network does not care where the padding
is, and top-left keeps the mapping back a plain scale). Output: (4 + classes)
x anchors: centre x, centre y, width, height in input pixels, then one score
per class (no objectness); an anchor proposes its best class.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tagd.analyzers.object_head import Candidates
from tagd.analyzers.yolox_head import letterbox
from tagd.runtime.pixels import Affine


class Yolov8Head:
    pixels = Affine((1 / 255,) * 3, (0.0,) * 3)

    def __init__(self, width: int, height: int) -> None:
        self.width, self.height = width, height

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        chw, ratio = letterbox(image, self.width, self.height)
        chw = chw[::-1] * np.float32(1 / 255)  # BGR -> RGB, 0-1
        return np.ascontiguousarray(chw), (ratio, ratio)

    def candidates(self, outputs: Sequence[np.ndarray], min_score: float) -> Candidates:
        rows = outputs[0].T  # anchors x (4 + classes)
        cls = rows[:, 4:].argmax(1)
        scores = rows[np.arange(len(rows)), 4 + cls]
        keep = scores >= min_score
        rows, cls, scores = rows[keep], cls[keep], scores[keep]
        xywh = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, 2:4]], 1)
        return Candidates(xywh, scores, cls)
