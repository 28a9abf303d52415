"""DINOv2 image embeddings: one L2-normalised vector per photo (per video frame).

The embedding goes to the catalog's sqlite-vec table `vec_dinov2`, where
`tagd similar` looks first (tagd.dupes.IMAGE_EMBEDDINGS): DINOv2 is trained
for what a picture looks like, so its neighbours are the same scene or
object from another angle, a crop or an edit, rather than the same subject
in general (CLIP). It makes no tags.

Off unless asked for (`[dinov2] enabled = true`), and then only when a model
is installed: no weights travel in a package, so a user exports one on a
connected machine (`tagd models export dinov2 --from facebook/dinov2-small`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tagd.analyzers.base import Analyzer, Finding
from tagd.analyzers.registry import AnalyzerPlugin
from tagd.config import Settings
from tagd.runtime.image_embedding import TASK, ImageEmbedder
from tagd.runtime.manifest import ModelSpec, default_for, resolve
from tagd.runtime.model import batched_options

log = logging.getLogger(__name__)
SECTION = "dinov2"


def build(settings: Settings, specs: dict[str, ModelSpec], models_dir: Path) -> Analyzer | None:
    """The DINOv2 analyzer, or None when it is off or (with model "auto") none is
    installed. A config without the section has it off."""
    cfg = getattr(settings, SECTION, None)
    if cfg is None or not cfg.enabled:
        return None
    if cfg.model == "auto" and default_for(specs, TASK) is None:
        log.info("dinov2: no image-embedding model installed (`tagd models export dinov2`)")
        return None
    spec = resolve(specs, TASK, cfg.model, f"{SECTION}.model")
    embedder = ImageEmbedder(spec, models_dir, **batched_options(settings.runtime))
    return ImageEmbeddings(embedder)


class ImageEmbeddings(Analyzer):
    name = "dinov2"

    def __init__(self, embedder: ImageEmbedder) -> None:
        super().__init__(embedder)
        self.embedder = embedder

    @property
    def model_sha256(self) -> str:
        # The network and its recorded preprocessing (the JSON config) make the
        # vectors together: a new export of either re-runs this analyzer.
        return self.embedder.spec.all_files_sha256

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        embeddings = self.embedder.embed(images)
        # The label names the model that made the vector (as CLIP's does).
        return [[Finding(self.embedder.spec.name, 1.0, vector=e)] for e in embeddings]


# No tags and nothing in the export: `tagd similar` reads the stored vectors.
PLUGIN = AnalyzerPlugin(name=ImageEmbeddings.name, rank=45, section=SECTION, build=build)
