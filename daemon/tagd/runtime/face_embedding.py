"""128-d face descriptors (dlib's face recognition ResNet as ONNX/OpenVINO). No dlib.

A manifest entry of task "face-embedding" maps N x 3 x 150 x 150 float32 RGB
chips (0-255, aligned like dlib.get_face_chip: tagd.media.facechip) to N raw
128-d descriptors; dlib's input scaling is inside the model. The descriptors
are *not* L2-normalised: dlib's decision rule is on raw Euclidean distance,
same person when below 0.6 (`SAME_PERSON_DISTANCE`; the network was trained
with that threshold, and it gives 99.38 % on LFW per dlib). Their norms sit
close to 1 anyway, so cosine similarity is usable for ranking too.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tagd.media.facechip import (
    CHIP_PADDING,
    CHIP_SIZE,
    face_chip_dlib5,
    face_chip_retinaface,
)
from tagd.runtime.backends import run_batched
from tagd.runtime.endpoints import EndpointPool
from tagd.runtime.manifest import ModelSpec
from tagd.runtime.model import HoldsModel, ManagedModel, require_task
from tagd.runtime.pixels import Affine

TASK = "face-embedding"
DIM = 128
SAME_PERSON_DISTANCE = 0.6


class FaceEmbedder(HoldsModel):
    def __init__(
        self,
        spec: ModelSpec,
        models_dir: Path,
        *,
        backend: str = "cpu",
        threads: int = 0,
        idle_unload: float = 300.0,
        batch_size: int = 8,
        streams: int = 1,
        remote: EndpointPool | None = None,
        local_fallback: bool = True,
    ) -> None:
        require_task(spec, TASK)
        self.spec = spec
        self.batch_size = max(1, batch_size)
        self.size = spec.input[0]
        self.model = ManagedModel(
            spec,
            models_dir,
            backend=backend,
            threads=threads,
            idle_unload=idle_unload,
            streams=streams,
            remote=remote,
            local_fallback=local_fallback,
        )
        self.model.pixels = Affine.raw()  # chips of 8-bit pixels, 0-255 as they are

    def embed(self, chips: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Raw descriptors (N, 128) float32 of aligned RGB uint8 chips (size x size x 3)."""
        if len(chips) == 0:
            return np.zeros((0, DIM), np.float32)
        for chip in chips:
            if chip.shape != (self.size, self.size, 3):
                raise ValueError(f"expected {self.size}x{self.size}x3 chips, got {chip.shape}")
        batch = np.ascontiguousarray(np.stack(chips).transpose(0, 3, 1, 2), np.float32)
        out = run_batched(self.model.session(), batch, self.batch_size)
        return out.astype(np.float32, copy=False)

    def embed_faces(
        self, image: np.ndarray, landmarks: Sequence[np.ndarray], scheme: str = "retinaface"
    ) -> np.ndarray:
        """Descriptors of the faces in one RGB image, each given by 5 landmarks (x, y):
        `retinaface` (eye centres, nose tip, mouth corners) or `dlib5` (dlib's shape)."""
        align = {"retinaface": face_chip_retinaface, "dlib5": face_chip_dlib5}.get(scheme)
        if align is None:
            raise ValueError(f"unknown landmark scheme {scheme!r}")
        chips = [align(image, np.asarray(p), self.size, CHIP_PADDING) for p in landmarks]
        return self.embed(chips)


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between descriptors (broadcasting); < 0.6: same person."""
    return np.linalg.norm(np.asarray(a, np.float32) - np.asarray(b, np.float32), axis=-1)


def same_person(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return distance(a, b) < SAME_PERSON_DISTANCE


__all__ = ["CHIP_SIZE", "DIM", "SAME_PERSON_DISTANCE", "TASK", "FaceEmbedder", "distance"]
