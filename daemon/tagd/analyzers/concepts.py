"""Concepts: the ImageNet classifier's top-k class probabilities, stored for the taxonomy,
and the photo's general image embedding.

Findings are whole-image (box None) class probabilities; the tag policy
(tagd.policy.concepts) adds them up into tags like "dog", "beach" or "pizza".
Storing a few more classes than any one tag needs keeps tag scores honest
when the taxonomy or thresholds change later without a re-run.

The same forward pass gives the 1280 pooled features the classifier reads:
kept as int8 in sqlite-vec (`vec_concepts`, 1280 bytes a photo or frame),
they find similar photos and teach new tags (tagd.teach) without running a
model again. A model file exported without them (older exports) gives none.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tagd.analyzers import exported
from tagd.analyzers.base import Analyzer, Finding
from tagd.analyzers.registry import AnalyzerPlugin
from tagd.config import Settings
from tagd.embedding import EMBEDDING, embedding_int8
from tagd.policy import concepts as policy
from tagd.policy.concepts import class_keys, imagenet_classes
from tagd.runtime.classifier import PIXELS, Classifier, softmax
from tagd.runtime.manifest import ModelSpec, resolve
from tagd.runtime.model import ManagedModel, model_for

log = logging.getLogger(__name__)
TASK = "classes"


def build(settings: Settings, specs: dict[str, ModelSpec], models_dir: Path) -> Analyzer | None:
    if not settings.concepts.enabled:
        return None
    spec = resolve(specs, TASK, settings.concepts.model, "concepts.model")
    if spec.labels != imagenet_classes():
        # The taxonomy is written for ImageNet-1k indices; raw classes are still stored.
        log.warning(
            "concepts.model = %r: its classes are not ImageNet-1k's; "
            "taxonomy tags will not match (add your own under [tags.concepts.taxonomy])",
            spec.name,
        )
    return ConceptClassifier(
        model_for(spec, models_dir, settings.runtime),
        top_k=settings.concepts.top_k,
        min_score=settings.concepts.min_score,
        batch_size=settings.runtime.batch_size,
    )


class ConceptClassifier(Analyzer):
    name = "concepts"
    model: ManagedModel  # runs sessions, not just the common lifecycle

    def __init__(
        self, model: ManagedModel, *, top_k: int, min_score: float, batch_size: int = 8
    ) -> None:
        super().__init__(model)
        model.pixels = PIXELS
        self.classifier = Classifier(model, batch_size)
        self.keys = class_keys(model.spec.labels)
        self.top_k = top_k
        self.min_score = min_score

    @property
    def min_long_side(self) -> int:
        # The centre crop is 0.875 of the shorter side: ask for enough pixels that a
        # 4:3 photo's crop still covers the 224 input without enlarging.
        return round(max(self.model.spec.input) / 0.875 * 4 / 3)

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        logits, features = self.classifier.outputs(images)
        probs = softmax(logits)
        k = min(self.top_k, probs.shape[1]) if len(probs) else 0
        out = []
        for i, row in enumerate(probs):
            best = np.argsort(-row, kind="stable")[:k]
            found = [Finding(self.keys[j], float(row[j])) for j in best if row[j] >= self.min_score]
            if features is not None:
                found.append(Finding(EMBEDDING, 1.0, vector=embedding_int8(features[i])))
            out.append(found)
        return out


PLUGIN = AnalyzerPlugin(
    name=ConceptClassifier.name,
    rank=30,
    section="concepts",
    build=build,
    derive=policy.derive,
    # The raw ImageNet classes; the taxonomy's tags are under "tags".
    export_key="concepts",
    export=exported.labels(ConceptClassifier.name, skip=EMBEDDING),
)
