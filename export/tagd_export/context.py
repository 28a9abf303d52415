"""What every family's fetch and export get: where to read, cache and write."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagd.runtime.manifest import sha256_of


class ExportError(RuntimeError):
    """A model that cannot be produced here; the message says what to do instead."""


@dataclass
class ExportContext:
    models_dir: Path  # where model files and manifest.toml go
    cache_dir: Path  # downloaded wheels and intermediate files
    sources: list[Path] = field(default_factory=list)  # local folders with weights
    eval_dir: Path | None = None  # real labelled media for parity, calibration, accuracy
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr)

    def find_source(self, *relative: str, sha256: str | None = None) -> Path | None:
        """The first local file at one of `relative` under a source folder (sha checked)."""
        for folder in self.sources:
            for rel in relative:
                candidate = folder / rel
                if candidate.is_file() and (sha256 is None or sha256_of(candidate) == sha256):
                    return candidate
        return None

    def eval_images(self, subset: str, limit: int) -> list[Path]:
        """Real photos for calibration and parity (empty when the eval set is absent)."""
        if self.eval_dir is None:
            return []
        folder = self.eval_dir / subset
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".jpg", ".png"))
        return files[:limit]


def read_image(path: Path) -> np.ndarray:
    """A BGR photo of the eval set, or ExportError naming it."""
    import cv2

    image = cv2.imread(str(path))
    if image is None:
        raise ExportError(f"cannot read {path}")
    return image
