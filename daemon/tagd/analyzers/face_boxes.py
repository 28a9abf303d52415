"""What every face detector's decode gives: boxes, scores and five landmarks per
face, and the greedy suppression they share."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Faces:
    """Detections in input-image pixels: boxes x0 y0 x1 y1, scores, landmarks 5 x (x, y)
    (right eye, left eye, nose, right and left mouth corner, as seen from the subject)."""

    boxes: np.ndarray  # K x 4
    scores: np.ndarray  # K
    landmarks: np.ndarray  # K x 5 x 2

    def __len__(self) -> int:
        return len(self.scores)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best first."""
    order = np.argsort(-scores, kind="stable")
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    kept = []
    while order.size:
        best, rest = order[0], order[1:]
        kept.append(best)
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        overlap = inter / (areas[best] + areas[rest] - inter + 1e-9)
        order = rest[overlap <= iou]
    return np.array(kept, dtype=np.int64)
