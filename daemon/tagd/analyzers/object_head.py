"""What an object detector family's input/output module provides to the objects
analyzer (tagd.analyzers.objects): one per family, named <family>_head.py.

A head turns a BGR image into the network's input and the network's outputs
for that image into scored, classed candidate boxes in input pixels; the
analyzer batches, suppresses overlaps (per class) and maps boxes back to the
image. A new detector family is one new head module plus its line in
tagd.analyzers.objects.HEADS.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tagd.runtime.pixels import Affine


@dataclass(frozen=True)
class Candidates:
    xywh: np.ndarray  # K x 4, top-left x, y, width, height in input pixels
    scores: np.ndarray  # K
    classes: np.ndarray  # K, index into the model's labels


class ObjectHead(Protocol):
    # How the input's floats come from 8-bit pixels (tagd.runtime.pixels).
    pixels: Affine

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
        """CHW float32 input for one BGR image, and the input pixels per image pixel
        along x and y."""
        ...

    def candidates(self, outputs: Sequence[np.ndarray], min_score: float) -> Candidates:
        """One image's outputs (each without the batch axis) as candidate boxes scoring
        at least min_score, before suppression."""
        ...
