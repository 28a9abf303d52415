"""Faces: detector boxes and 5 landmarks, dlib-aligned chips, 128-d descriptors.

The detector is YuNet or RetinaFace (`faces.detector`); each family's input
and decode live in tagd.analyzers.<family>_decode, listed in DECODERS.

Two sizes matter and they are different on purpose. The detector runs on the
photo fitted into `faces.detect_size` (640 px on the long side, aspect kept:
about 10 ms here), which finds faces down to roughly 16 px at that scale. The
chips the descriptor network sees are cut from the decoded photo, which is
`faces.decode_size` pixels long (1280 by default, see `min_long_side`): a face
that covers 40 px of a 640-px detector input still has 80 px of real detail
for its 150-px chip, instead of being blown up from 40. Landmarks are scaled
back from the detector input to the decoded photo before cutting.

Findings: label "face", the detector's score, the box and the five landmarks
(eye centres, nose tip, mouth corners) in the decoded photo's pixels, and the
raw dlib descriptor as the vector (stored in sqlite-vec's `vec_faces`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np

from tagd.analyzers import retinaface_decode, yunet_decode
from tagd.analyzers.base import Analyzer, Finding
from tagd.analyzers.face_boxes import Faces
from tagd.analyzers.registry import AnalyzerPlugin
from tagd.catalog.catalog import Catalog
from tagd.config import FacesSettings, Settings
from tagd.media.facechip import CHIP_PADDING, face_chip_retinaface
from tagd.people import store
from tagd.policy.people import person_tags
from tagd.records import Detection
from tagd.runtime.face_embedding import FaceEmbedder
from tagd.runtime.lifecycle import ModelLifecycle
from tagd.runtime.manifest import ModelError, ModelSpec, resolve
from tagd.runtime.model import ManagedModel, batched_options, model_for

STRIDE = 32  # the detectors' FPNs need input sides divisible by their largest stride
LABEL = "face"
# Each detector family's input and decode, by the manifest's `family`: a module
# with prepare(image, w, h) -> (CHW, scale) and decode_outputs(outputs, w, h, min_score).
DECODERS: dict[str, ModuleType] = {
    "retinaface": retinaface_decode,
    "yunet": yunet_decode,
}


def build(settings: Settings, specs: dict[str, ModelSpec], models_dir: Path) -> Analyzer | None:
    """The faces analyzer as configured, or None when it is switched off."""
    cfg = settings.faces
    if not cfg.enabled:
        return None
    emb = resolve(specs, "face-embedding", cfg.embedder, "faces.embedder")
    det = resolve(specs, "face-detection", cfg.detector, "faces.detector")
    # Each on the engine fetch measured faster (tagd.runtime.manifest.prefer_engine):
    # with the inference lanes, an OpenVINO model beside onnxruntime ones costs
    # nothing (bench/pipeline.py: PicoDet on OpenVINO with YuNet on onnxruntime
    # 14.2 photos/s, both on onnxruntime 14.1).
    rt = settings.runtime
    embedder = FaceEmbedder(emb, models_dir, **batched_options(rt))
    return FaceAnalyzer(model_for(det, models_dir, rt), embedder, cfg)


def input_size(width: int, height: int, long_side: int) -> tuple[int, int, float]:
    """Detector input (w, h), multiples of STRIDE, for an image fitted into long_side;
    and the scale from image to input. Small images are not enlarged."""
    scale = min(1.0, long_side / max(width, height))
    w = max(STRIDE, math.ceil(width * scale / STRIDE) * STRIDE)
    h = max(STRIDE, math.ceil(height * scale / STRIDE) * STRIDE)
    return w, h, scale


def decoder_for(spec: ModelSpec) -> ModuleType:
    """The input and decode of a face detector's family (RetinaFace for files that
    name none)."""
    decoder = DECODERS.get(spec.family or "retinaface")
    if decoder is None:
        raise ModelError(
            f"{spec.name}: tagd cannot decode a {spec.family!r} face detector "
            f"(known families: {', '.join(DECODERS)})"
        )
    return decoder


class FaceAnalyzer(Analyzer):
    name = "faces"
    model: ManagedModel  # runs sessions, not just the common lifecycle

    def __init__(self, detector: ManagedModel, embedder: FaceEmbedder, cfg: FacesSettings) -> None:
        super().__init__(detector)
        self.embedder = embedder
        self.cfg = cfg
        self.decoder = decoder_for(detector.spec)
        detector.pixels = self.decoder.PIXELS
        self.min_score = cfg.min_score if cfg.min_score is not None else self.decoder.MIN_SCORE

    @property
    def model_sha256(self) -> str:
        # Results depend on both networks: a new detector or embedder re-runs faces.
        both = f"{self.model.spec.sha256}:{self.embedder.spec.sha256}".encode()
        return hashlib.sha256(both).hexdigest()

    @property
    def models(self) -> list[ModelLifecycle]:
        return [self.model, self.embedder.model]

    @property
    def min_long_side(self) -> int:
        return max(self.cfg.decode_size, self.cfg.detect_size)

    def detect(self, image: np.ndarray) -> Faces:
        """Faces in one BGR image, in that image's pixels."""
        h, w = image.shape[:2]
        in_w, in_h, _ = input_size(w, h, self.cfg.detect_size)
        chw, scale = self.decoder.prepare(image, in_w, in_h)
        outputs = self.model.session().run(chw[None])
        found = self.decoder.decode_outputs([out[0] for out in outputs], in_w, in_h, self.min_score)
        boxes = found.boxes / scale
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep = sides >= self.cfg.min_size
        return Faces(boxes[keep], found.scores[keep], found.landmarks[keep] / scale)

    def save(
        self,
        catalog: Catalog,
        content_id: int,
        detections: Sequence[Detection],
        findings: Sequence[Sequence[Finding]],
    ) -> None:
        # A new detector or embedder re-analyses every face, which replaces the face
        # rows; the people they belonged to (named by hand or found by clustering)
        # move to the new face at the same place, so an upgrade costs no one a name.
        before = catalog.face_assignments(content_id, store.ANALYZER)
        ids = catalog.save_analysis(content_id, self.name, self.model_sha256, detections)
        if before:
            store.carry_over(catalog, before, list(zip(ids, detections, strict=True)))

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        detected = [self.detect(image) for image in images]
        chips = []
        for image, faces in zip(images, detected, strict=True):
            for points in faces.landmarks:
                chip = face_chip_retinaface(
                    image, points, self.embedder.size, CHIP_PADDING, fast=True
                )
                chips.append(cv2.cvtColor(chip, cv2.COLOR_BGR2RGB))  # dlib's net wants RGB
        vectors = self.embedder.embed(chips)  # one batched call for the whole batch
        out, pos = [], 0
        for faces in detected:
            findings = []
            for box, score, points in zip(faces.boxes, faces.scores, faces.landmarks, strict=True):
                findings.append(
                    Finding(
                        LABEL,
                        float(score),
                        (float(box[0]), float(box[1]), float(box[2]), float(box[3])),
                        tuple(float(v) for v in points.reshape(-1)),
                        vector=vectors[pos],
                    )
                )
                pos += 1
            out.append(findings)
        return out


PLUGIN = AnalyzerPlugin(
    name=FaceAnalyzer.name,
    rank=70,
    section="faces",
    build=build,
    derive=person_tags,
    export_key="faces",
    export=store.export_faces,
)
