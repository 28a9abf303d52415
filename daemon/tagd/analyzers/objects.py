"""COCO objects with YOLOX: letterbox, one forward pass, grid decode, class-aware NMS."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tagd.analyzers import exported
from tagd.analyzers.base import Analyzer, Finding
from tagd.analyzers.registry import AnalyzerPlugin
from tagd.config import Settings
from tagd.policy import objects as policy
from tagd.runtime.backends import run_batched
from tagd.runtime.manifest import ModelSpec, resolve
from tagd.runtime.model import ManagedModel, model_for

log = logging.getLogger(__name__)

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
    """Cell offsets and strides for every output row, in the model's order."""
    grids, strides = [], []
    for stride in STRIDES:
        gh, gw = height // stride, width // stride
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        grids.append(np.stack((xs, ys), -1).reshape(-1, 2))
        strides.append(np.full((gh * gw, 1), stride))
    return np.concatenate(grids).astype(np.float32), np.concatenate(strides).astype(np.float32)


def build(settings: Settings, specs: dict[str, ModelSpec], models_dir: Path) -> Analyzer | None:
    """The objects analyzer as configured, or None when it is switched off."""
    if not settings.objects.enabled:
        return None
    spec = resolve(specs, "objects", settings.objects.model, "objects.model")
    unknown = sorted(set(settings.tags.objects.labels) - set(spec.labels))
    if unknown:
        log.warning(
            "tags.objects.labels: %s not a label of %s (see `tagd models list`); ignored",
            ", ".join(repr(u) for u in unknown),
            spec.name,
        )
    return ObjectDetector(
        model_for(spec, models_dir, settings.runtime),
        min_score=settings.objects.min_score,
        nms_iou=settings.objects.nms_iou,
        max_detections=settings.objects.max_detections,
    )


class ObjectDetector(Analyzer):
    name = "objects"
    model: ManagedModel  # runs sessions, not just the common lifecycle

    def __init__(
        self, model: ManagedModel, *, min_score: float, nms_iou: float, max_detections: int
    ) -> None:
        super().__init__(model)
        self.labels = model.spec.labels
        self.min_score = min_score
        self.nms_iou = nms_iou
        self.max_detections = max_detections
        self.width, self.height = model.spec.input
        self._grids, self._strides = make_grids(self.width, self.height)

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        prepared = [letterbox(im, self.width, self.height) for im in images]
        raw = self._infer(np.stack([p[0] for p in prepared]))
        return [
            self._decode(raw[i], ratio, images[i].shape[:2])
            for i, (_, ratio) in enumerate(prepared)
        ]

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        return run_batched(self.model.session(), batch, len(batch))

    def _decode(self, out: np.ndarray, ratio: float, shape: tuple[int, ...]) -> list[Finding]:
        cls = out[:, 5:].argmax(1)
        scores = out[:, 4] * out[np.arange(len(out)), 5 + cls]
        keep = scores >= self.min_score
        if not keep.any():
            return []
        out, cls, scores = out[keep], cls[keep], scores[keep]
        centre = (out[:, :2] + self._grids[keep]) * self._strides[keep]
        size = np.exp(out[:, 2:4]) * self._strides[keep]
        xywh = np.concatenate([centre - size / 2, size], 1) / ratio
        # No top_k here: OpenCV applies it to the candidates *before* suppression,
        # which keeps a hundred duplicates of the best objects and drops the rest.
        picked = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(), scores.tolist(), cls.tolist(), self.min_score, self.nms_iou
        )
        h, w = shape
        findings = []
        for i in np.asarray(picked, dtype=int).reshape(-1)[: self.max_detections]:
            x, y, bw, bh = xywh[i]
            box = (max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh))
            findings.append(Finding(self.labels[cls[i]], float(scores[i]), _floats(box)))
        return findings


def _floats(box: tuple[float, ...]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return x0, y0, x1, y1


PLUGIN = AnalyzerPlugin(
    name=ObjectDetector.name,
    rank=10,
    section="objects",
    build=build,
    derive=policy.derive,
    export_key="objects",
    export=exported.boxes(ObjectDetector.name),
)
