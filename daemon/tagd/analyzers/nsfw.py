"""NSFW body parts with NudeNet 320n (a YOLOv8n head): letterbox, decode, class-aware NMS.

Off by default (`[nsfw] enabled = false`): it is for people who ask for it,
e.g. Stash libraries. Findings are boxes with NudeNet's 18 labels
(FEMALE_BREAST_EXPOSED, FACE_MALE, ...); tagd.policy.nsfw turns them into
tags under `AI|NSFW` with per-label thresholds, aliases and switches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tagd.analyzers import exported
from tagd.analyzers.base import Analyzer, Finding
from tagd.analyzers.registry import AnalyzerPlugin
from tagd.config import Settings
from tagd.policy import nsfw as policy
from tagd.runtime.manifest import ModelSpec, resolve
from tagd.runtime.model import ManagedModel, model_for
from tagd.runtime.pixels import Affine

TASK = "nsfw"


def build(settings: Settings, specs: dict[str, ModelSpec], models_dir: Path) -> Analyzer | None:
    if not settings.nsfw.enabled:
        return None
    spec = resolve(specs, TASK, settings.nsfw.model, "nsfw.model")
    return NsfwDetector(
        model_for(spec, models_dir, settings.runtime),
        min_score=settings.nsfw.min_score,
        nms_iou=settings.nsfw.nms_iou,
        max_detections=settings.nsfw.max_detections,
    )


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    """NudeNet's preprocessing: scale to fit a size x size square, pad bottom/right
    with black, RGB, /255, CHW float32. Returns the tensor and the scale applied.

    Scaling first and padding after is the same picture as NudeNet's pad-then-resize,
    without building a full-size padded copy of a large photo."""
    h, w = image.shape[:2]
    ratio = size / max(h, w)
    nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
    canvas = np.zeros((size, size, 3), np.uint8)
    shrink = ratio < 1
    canvas[:nh, :nw] = cv2.resize(
        image, (nw, nh), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )
    rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    return rgb.transpose(2, 0, 1).astype(np.float32) * np.float32(1 / 255), ratio


class NsfwDetector(Analyzer):
    name = "nsfw"
    model: ManagedModel  # runs sessions, not just the common lifecycle

    def __init__(
        self, model: ManagedModel, *, min_score: float, nms_iou: float, max_detections: int
    ) -> None:
        super().__init__(model)
        model.pixels = Affine((1 / 255,) * 3, (0.0,) * 3)  # RGB / 255 (tagd.runtime.pixels)
        self.labels = model.spec.labels
        self.size = model.spec.input[0]
        self.min_score = min_score
        self.nms_iou = nms_iou
        self.max_detections = max_detections

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        if not images:
            return []
        prepared = [letterbox(im, self.size) for im in images]
        raw = self._infer(np.stack([p[0] for p in prepared]))
        return [
            self.decode(raw[i], ratio, images[i].shape[:2]) for i, (_, ratio) in enumerate(prepared)
        ]

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        session = self.model.session()
        if session.input_shape[0] == 1 and len(batch) > 1:
            return np.concatenate([session.run(batch[i : i + 1])[0] for i in range(len(batch))])
        return session.run(batch)[0]

    def decode(self, out: np.ndarray, ratio: float, shape: tuple[int, ...]) -> list[Finding]:
        """One image's (4 + classes) x anchors output -> findings in the image's pixels."""
        rows = out.T  # anchors x (cx, cy, w, h, class scores...); no objectness in YOLOv8
        scores_all = rows[:, 4:]
        cls = scores_all.argmax(1)
        scores = scores_all[np.arange(len(rows)), cls]
        keep = scores >= self.min_score
        if not keep.any():
            return []
        rows, cls, scores = rows[keep], cls[keep], scores[keep]
        xywh = np.concatenate([rows[:, :2] - rows[:, 2:4] / 2, rows[:, 2:4]], 1) / ratio
        # No top_k: OpenCV applies it to the candidates *before* suppression.
        picked = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), scores.tolist(), cls.tolist(), self.min_score, self.nms_iou
        )
        h, w = shape
        findings = []
        order = np.asarray(picked, dtype=int).reshape(-1)
        order = order[np.argsort(-scores[order], kind="stable")][: self.max_detections]
        for i in order:
            x, y, bw, bh = (float(v) for v in xywh[i])
            box = (max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh))
            findings.append(Finding(self.labels[cls[i]], float(scores[i]), box))
        return findings


PLUGIN = AnalyzerPlugin(
    name=NsfwDetector.name,
    rank=50,
    section="nsfw",
    build=build,
    derive=policy.derive,
    export_key="nsfw",
    export=exported.boxes(NsfwDetector.name),
)
