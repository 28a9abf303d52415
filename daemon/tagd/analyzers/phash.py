"""Perceptual hashes for near-duplicates: no model, about 1 ms a photo.

The hashes are computed from the pipeline's single decode (upright,
DCT-reduced) and go to the `hashes` table, one row per content: the plain
pHash and every stored variant (mirror, 90 % crops; see tagd.media.phash).
A video is represented by its middle sampled frame: a re-encode or a copy
of it is sampled at the same times and lands on the same picture, while
hashing every frame would make long static shots look like duplicates of
each other for little gain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagd.analyzers.base import Analyzer, Finding
from tagd.analyzers.registry import AnalyzerPlugin
from tagd.catalog.catalog import Catalog
from tagd.config import Settings
from tagd.media import phash as ph
from tagd.records import Detection
from tagd.runtime.lifecycle import Builtin
from tagd.runtime.manifest import ModelSpec

# 32×32 is what the hash reads; decoding at least twice that keeps the
# area-resize (the hash's low-pass) doing the smoothing, not libjpeg's 1/8 DCT.
MIN_LONG_SIDE = 64


def build(settings: Settings, specs: dict[str, ModelSpec], models_dir: Path) -> Analyzer | None:
    return PerceptualHash() if settings.duplicates.enabled else None


@dataclass(frozen=True)
class HashFinding(Finding):
    """A frame's hash set (uint64[phash.HASHES]) instead of a detection."""

    hashes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint64), compare=False)


class PerceptualHash(Analyzer):
    name = "phash"

    def __init__(self) -> None:
        super().__init__(Builtin(self.name, ph.VERSION, MIN_LONG_SIDE))

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        return [[HashFinding("phash", 1.0, hashes=ph.hash_set(image))] for image in images]

    def save(
        self,
        catalog: Catalog,
        content_id: int,
        detections: Sequence[Detection],
        findings: Sequence[Sequence[Finding]],
    ) -> None:
        # No detection rows: a hash is not a thing in the picture. The analysis
        # is still recorded so the content is not queued again.
        catalog.save_analysis(content_id, self.name, self.model_sha256, [])
        frames = [f for frame in findings for f in frame if isinstance(f, HashFinding)]
        if not frames:
            return
        hashes = frames[len(frames) // 2].hashes
        catalog.save_hashes(
            content_id, ph.to_signed(int(hashes[0])), hashes.astype("<u8").tobytes()
        )


def exported(catalog: Catalog, content_id: int) -> str | None:
    """The plain 64-bit pHash as 16 hex digits (null when not hashed)."""
    plain = catalog.phash(content_id)
    return f"{ph.to_unsigned(plain):016x}" if plain is not None else None


# No tags: `tagd dupes` and `tagd similar` read the hashes.
PLUGIN = AnalyzerPlugin(
    name=PerceptualHash.name,
    rank=60,
    section="duplicates",
    build=build,
    export_key="phash",
    export=exported,
)
