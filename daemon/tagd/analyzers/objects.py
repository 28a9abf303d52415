"""COCO objects: the chosen detector's input, one batched forward pass, its decode
(tagd.analyzers.<family>_head), then class-aware NMS and boxes in image pixels."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from tagd.analyzers import exported
from tagd.analyzers.base import Analyzer, Finding
from tagd.analyzers.object_head import ObjectHead
from tagd.analyzers.picodet_head import PicoDetHead
from tagd.analyzers.registry import AnalyzerPlugin
from tagd.analyzers.yolov8_head import Yolov8Head
from tagd.analyzers.yolox_head import YoloxHead
from tagd.config import Settings
from tagd.policy import objects as policy
from tagd.runtime.backends import run_batched_outputs
from tagd.runtime.manifest import ModelError, ModelSpec, resolve
from tagd.runtime.model import ManagedModel, model_for

log = logging.getLogger(__name__)

# Each detector family's input and output, by the manifest's `family`.
HEADS: dict[str, Callable[[int, int], ObjectHead]] = {
    "yolox": YoloxHead,
    "picodet": PicoDetHead,
    "yolov8": Yolov8Head,
}


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
        self.head = head_for(model.spec)
        model.pixels = self.head.pixels

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        prepared = [self.head.prepare(im) for im in images]
        outputs = self._infer(np.stack([p[0] for p in prepared]))
        return [
            self._decode([out[i] for out in outputs], scale, images[i].shape[:2])
            for i, (_, scale) in enumerate(prepared)
        ]

    def _infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return run_batched_outputs(self.model.session(), batch, len(batch))

    def _decode(
        self, outputs: list[np.ndarray], scale: tuple[float, float], shape: tuple[int, ...]
    ) -> list[Finding]:
        found = self.head.candidates(outputs, self.min_score)
        if not len(found.scores):
            return []
        xywh = found.xywh / np.array([scale[0], scale[1], scale[0], scale[1]], np.float32)
        # No top_k here: OpenCV applies it to the candidates *before* suppression,
        # which keeps a hundred duplicates of the best objects and drops the rest.
        picked = cv2.dnn.NMSBoxesBatched(
            xywh.tolist(),
            found.scores.tolist(),
            found.classes.tolist(),
            self.min_score,
            self.nms_iou,
        )
        h, w = shape
        findings = []
        for i in np.asarray(picked, dtype=int).reshape(-1)[: self.max_detections]:
            x, y, bw, bh = xywh[i]
            box = (max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh))
            label = self.labels[found.classes[i]]
            findings.append(Finding(label, float(found.scores[i]), _floats(box)))
        return findings


def head_for(spec: ModelSpec) -> ObjectHead:
    """The decode for a model's family (YOLOX for files that name none)."""
    make = HEADS.get(spec.family or "yolox")
    if make is None:
        raise ModelError(
            f"{spec.name}: tagd cannot decode a {spec.family!r} detector "
            f"(known families: {', '.join(HEADS)})"
        )
    return make(*spec.input)


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
