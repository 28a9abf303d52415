"""RetinaFace (mobilenet0.25) pre- and post-processing: priors, box/landmark decode, NMS.

The network predicts, for every prior box, offsets of the face box and of five
landmarks plus a face/background softmax. Priors follow the original
Pytorch_Retinaface PriorBox (clip off): for each stride 8/16/32, a
ceil(H/stride) x ceil(W/stride) grid, row-major, with two square sizes per
cell ([16, 32], [64, 128], [256, 512] px). Offsets are scaled by the
variances 0.1 (centres) and 0.2 (log sizes). Input is BGR minus the
(104, 117, 123) means, in any size: the priors are built for the size used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from tagd.analyzers.face_boxes import Faces, nms
from tagd.runtime.pixels import Affine

MIN_SIZES = ((16, 32), (64, 128), (256, 512))
STEPS = (8, 16, 32)
VARIANCES = (0.1, 0.2)
MEAN_BGR = (104.0, 117.0, 123.0)
PIXELS = Affine((1.0,) * 3, tuple(-m for m in MEAN_BGR))  # tagd.runtime.pixels
# The score above which a detection counts as a face unless faces.min_score says
# otherwise (bench/faces.py measures the trade-off).
MIN_SCORE = 0.9
NMS_IOU = 0.4


@lru_cache(maxsize=8)
def priors(width: int, height: int) -> np.ndarray:
    """P x 4 prior boxes (cx, cy, w, h), normalised to the input size, in output order."""
    out = []
    for step, sizes in zip(STEPS, MIN_SIZES, strict=True):
        rows, cols = math.ceil(height / step), math.ceil(width / step)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        centres = np.stack(((xs + 0.5) * step / width, (ys + 0.5) * step / height), -1)
        centres = np.repeat(centres.reshape(-1, 2), len(sizes), axis=0)
        wh = np.array([(s / width, s / height) for s in sizes])
        out.append(np.hstack((centres, np.tile(wh, (rows * cols, 1)))))
    result = np.concatenate(out).astype(np.float32)
    result.flags.writeable = False  # shared by the cache
    return result


def prepare(image: np.ndarray, width: int, height: int) -> tuple[np.ndarray, float]:
    """Fit a BGR image into width x height (top-left, aspect kept), subtract the means;
    CHW float32 and the scale applied. The padding is the mean colour, i.e. 0 after."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    # Pad with the mean colour, so the padding is 0 once the means are subtracted;
    # blobFromImage subtracts and goes to CHW float32 in one C++ pass.
    canvas = np.empty((height, width, 3), np.uint8)
    canvas[:] = MEAN_BGR
    canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    blob = cv2.dnn.blobFromImage(canvas, 1.0, (width, height), MEAN_BGR, swapRB=False)
    return blob[0], scale


def decode(
    loc: np.ndarray,
    conf: np.ndarray,
    landmarks: np.ndarray,
    width: int,
    height: int,
    *,
    min_score: float = 0.9,
    nms_iou: float = 0.4,
    max_faces: int = 200,
) -> Faces:
    """One image's outputs (P x 4, P x 2, P x 10) to faces in input pixels."""
    anchors = priors(width, height)
    if len(anchors) != len(loc):
        raise ValueError(f"{len(loc)} predictions, but {len(anchors)} priors for {width}x{height}")
    scores = conf[:, 1]
    keep = np.flatnonzero(scores >= min_score)
    anchors, loc, landmarks, scores = anchors[keep], loc[keep], landmarks[keep], scores[keep]
    scale = np.array([width, height], np.float32)
    centres = anchors[:, :2] + loc[:, :2] * VARIANCES[0] * anchors[:, 2:]
    sizes = anchors[:, 2:] * np.exp(loc[:, 2:] * VARIANCES[1])
    boxes = np.hstack((centres - sizes / 2, centres + sizes / 2)) * np.tile(scale, 2)
    points = (
        anchors[:, None, :2] + landmarks.reshape(-1, 5, 2) * VARIANCES[0] * anchors[:, None, 2:]
    )
    picked = nms(boxes, scores, nms_iou)[:max_faces]
    return Faces(boxes[picked], scores[picked], points[picked] * scale)


def decode_outputs(
    outputs: Sequence[np.ndarray], width: int, height: int, min_score: float
) -> Faces:
    """One image's outputs (loc, conf, landmarks; no batch axis) as faces in input pixels."""
    return decode(outputs[0], outputs[1], outputs[2], width, height, min_score=min_score,
                  nms_iou=NMS_IOU)  # fmt: skip
