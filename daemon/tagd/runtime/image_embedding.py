"""Image embeddings for similarity and near-duplicates (DINOv2). No torch.

A manifest entry of task "image-embedding": `file` is the ONNX (or OpenVINO)
model, which maps a preprocessed batch to one L2-normalised vector per image
(for DINOv2: the final-layer-normed CLS token); `files` holds its JSON config
with the preprocessing recorded at export. Cosine similarity is then a dot
product.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagd.runtime.endpoints import EndpointPool
from tagd.runtime.manifest import ModelSpec
from tagd.runtime.model import HoldsModel, ManagedModel, require_task
from tagd.runtime.vision import ImagePrep, image_prep, l2_normalise, load_config, main_file_spec

TASK = "image-embedding"


class ImageEmbedder(HoldsModel):
    def __init__(
        self,
        spec: ModelSpec,
        models_dir: Path,
        *,
        backend: str = "cpu",
        threads: int = 0,
        idle_unload: float = 300.0,
        batch_size: int = 16,
        streams: int = 1,
        remote: EndpointPool | None = None,
        local_fallback: bool = True,
    ) -> None:
        require_task(spec, TASK)
        self.spec = spec
        self.models_dir = models_dir
        self.batch_size = batch_size
        self.model = ManagedModel(
            main_file_spec(spec),
            models_dir,
            backend=backend,
            threads=threads,
            idle_unload=idle_unload,
            streams=streams,
            remote=remote,
            local_fallback=local_fallback,
        )
        self._lock = threading.Lock()
        self._config: dict[str, Any] | None = None
        self._prep: ImagePrep | None = None

    def config(self) -> dict[str, Any]:
        with self._lock:
            if self._config is None:
                config = load_config(self.spec, self.models_dir)
                self._prep = image_prep(self.spec, config)
                self.model.pixels = self._prep.pixels
                self._config = config
            return self._config

    def check(self) -> None:
        self.config()
        super().check()

    @property
    def embed_dim(self) -> int:
        return int(self.config().get("embed_dim", 0))

    def embed(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """L2-normalised embeddings (N, D) of BGR uint8 images."""
        self.config()
        assert self._prep is not None
        if not images:
            return np.zeros((0, self.embed_dim), np.float32)
        parts = []
        for start in range(0, len(images), self.batch_size):
            batch = self._prep.prepare(images[start : start + self.batch_size])
            parts.append(self.model.session().run(batch)[0])
        return l2_normalise(np.concatenate(parts))
