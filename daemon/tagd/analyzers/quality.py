"""Photo quality: blurry, under/overexposed, low contrast, noisy. No model.

Measured on the pipeline's one decode (tagd.media.quality), a few ms a photo.
Findings are one score per label; tagd.policy.quality turns them into tags
under `AI|Quality` with the thresholds of [tags.quality]. Photos only: videos
are recorded as analysed, with no score.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tagd.analyzers import exported
from tagd.analyzers.base import Analyzer, Finding
from tagd.analyzers.registry import AnalyzerPlugin
from tagd.config import Settings
from tagd.media import quality as measures
from tagd.policy import quality as policy
from tagd.runtime.lifecycle import Builtin
from tagd.runtime.manifest import ModelSpec

MIN_LONG_SIDE = 960


def build(settings: Settings, specs: dict[str, ModelSpec], models_dir: Path) -> Analyzer | None:
    return PhotoQuality() if settings.quality.enabled else None


class PhotoQuality(Analyzer):
    name = "quality"
    # A sampled frame of a moving picture is often soft or dark on purpose, and
    # time ranges of "blurry" would only clutter a video's markers.
    videos = False

    def __init__(self) -> None:
        # A little under the size it judges at (larger decodes are brought down to
        # it): a 4000 px photo's 1/4-scale JPEG decode (1000 px) is enough.
        super().__init__(Builtin(self.name, measures.VERSION, MIN_LONG_SIDE))

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        return [
            [Finding(label, round(score, 4)) for label, score in measures.scores(image).items()]
            for image in images
        ]


PLUGIN = AnalyzerPlugin(
    name=PhotoQuality.name,
    rank=55,
    section="quality",
    build=build,
    derive=policy.derive,
    export_key="quality",
    export=exported.labels(PhotoQuality.name),
)
