"""CLIP image embeddings: one L2-normalised vector per photo (per video frame).

The embedding is stored in the catalog's sqlite-vec table `vec_clip` and
serves three things: zero-shot tags (tagd.policy.clip_tags scores it against
prompt sets), similar-image search and text-to-image search. Nothing about
tags is decided here, so prompts can change without re-reading a photo.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tagd.analyzers.base import Analyzer, Finding
from tagd.analyzers.registry import AnalyzerPlugin
from tagd.config import Settings
from tagd.policy import clip_tags
from tagd.runtime.clip import TASK, ClipModel
from tagd.runtime.manifest import ModelSpec, default_for, resolve
from tagd.runtime.model import batched_options

log = logging.getLogger(__name__)


def build(settings: Settings, specs: dict[str, ModelSpec], models_dir: Path) -> Analyzer | None:
    """The clip analyzer, or None when it is off or (with model "auto") none is installed."""
    if not settings.clip.enabled:
        return None
    if settings.clip.model == "auto" and default_for(specs, TASK) is None:
        log.debug("clip: no CLIP model installed (`tagd models export clip`); skipped")
        return None
    spec = resolve(specs, TASK, settings.clip.model, "clip.model")
    model = ClipModel(spec, models_dir, **batched_options(settings.runtime))
    clip_tags.register(model)
    return ClipEmbedder(model)


class ClipEmbedder(Analyzer):
    name = "clip"

    def __init__(self, model: ClipModel) -> None:
        super().__init__(model)
        self.clip = model

    @property
    def model_sha256(self) -> str:
        # Image and text tower are one embedding space: a new export of either is a
        # new model.
        return self.clip.spec.all_files_sha256

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        embeddings = self.clip.encode_images(images)
        # The label names the model, so the policy knows which text tower scores it.
        return [[Finding(self.clip.spec.name, 1.0, vector=e)] for e in embeddings]


# Not exported: an embedding says nothing to a reader; its tags are under "tags".
PLUGIN = AnalyzerPlugin(
    name=ClipEmbedder.name,
    rank=40,
    section="clip",
    build=build,
    derive=clip_tags.derive,
    needs_vectors=True,  # prompts are scored against the stored embeddings
)
