"""What every analyzer is: a model, the input size it needs, raw results out.

Analyzers never decide tags. They return raw findings (labels, scores, boxes
in the pixels of the image they were given); the pipeline maps boxes to the
original's pixels and stores them, and the tag policy derives tags later.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from tagd.runtime.lifecycle import ModelLifecycle

if TYPE_CHECKING:
    from tagd.catalog.catalog import Catalog
    from tagd.records import Detection


@dataclass(frozen=True)
class Finding:
    label: str
    score: float
    box: tuple[float, float, float, float] | None = None  # x0, y0, x1, y1 in the image's pixels
    points: tuple[float, ...] = ()  # landmarks x0, y0, x1, y1, ... in the image's pixels
    text: str | None = None  # recognised text
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)  # embedding


class Deferred(Exception):
    """An analyzer cannot give findings for this batch now (a remote service that
    answered nonsense, or none that is up): nothing is stored for it, and its
    files are analysed again at the next scan. The other analyzers' findings are
    kept."""


class Analyzer(ABC):
    name: str  # key of its results in the catalog and the export
    # Seconds between the video frames this analyzer looks at; 0 = every sampled
    # frame. Expensive analyzers (OCR) skip frames: on-screen text rarely changes
    # every two seconds, and it is what sets the pace of a video scan.
    video_interval: float = 0.0
    # Whether it looks at videos at all (False: photos only; a video's analysis
    # is still recorded, with nothing found).
    videos: bool = True

    def __init__(self, model: ModelLifecycle) -> None:
        self.model = model

    @property
    def model_sha256(self) -> str:
        return self.model.spec.sha256

    @property
    def models(self) -> list[ModelLifecycle]:
        """Every model this analyzer runs (checked at start, unloaded when idle)."""
        return [self.model]

    @property
    def min_long_side(self) -> int:
        """The decode must give at least this many pixels on the long side."""
        return max(self.model.spec.input)

    @abstractmethod
    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        """Findings for each BGR image, in order."""

    def save(
        self,
        catalog: Catalog,
        content_id: int,
        detections: Sequence[Detection],
        findings: Sequence[Sequence[Finding]],
    ) -> None:
        """Store one content's results, inside the batch's transaction. An analyzer
        whose results have a table of their own (hashes) overrides this; `findings`
        are the raw ones per frame, `detections` the same in the original's pixels."""
        catalog.save_analysis(content_id, self.name, self.model_sha256, detections)
