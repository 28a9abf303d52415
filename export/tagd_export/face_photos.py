"""Real faces to check a face detector on before it is installed: a few single-face
photos (one per person) and the group photos of the eval set."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tagd_export.context import ExportContext, ExportError, read_image


def face_check(
    ctx: ExportContext, name: str, onnx_path: Path, count: Callable[[np.ndarray], int]
) -> dict[str, float]:
    """Faces `count` finds on labelled photos; raises when the model misses them
    (fewer than 3 in 4 portraits with exactly one face, or a group photo with < 2)."""
    photos = labelled_photos(ctx)
    if photos is None:
        ctx.log(f"{name}: eval faces absent, the face check is skipped")
        return {}
    singles, groups = photos
    single_counts = [count(read_image(p)) for p in singles]
    group_counts = [count(read_image(p)) for p in groups]
    one = sum(c == 1 for c in single_counts) / len(single_counts)
    if one < 0.75 or any(c < 2 for c in group_counts):
        raise ExportError(
            f"{onnx_path.name} does not find faces: single-face photos {single_counts}, "
            f"group photos {group_counts}"
        )
    ctx.log(f"{name}: exactly one face on {one:.0%} of portraits, groups {group_counts}")
    return {"single_face_exact": one, "group_faces_min": float(min(group_counts, default=0))}


def labelled_photos(ctx: ExportContext) -> tuple[list[Path], list[Path]] | None:
    """A few single-face photos (one per person) and the group photos."""
    index = ctx.eval_dir / "faces" / "identities.json" if ctx.eval_dir else None
    if index is None or not index.is_file():
        return None
    data = json.loads(index.read_text(encoding="utf-8"))
    folder = index.parent / "images"
    singles = [folder / files[0] for _, files in sorted(data["identities"].items())][:8]
    return singles, [folder / name for name in data.get("group_photos", [])]


def sample_images(ctx: ExportContext, limit: int) -> list[np.ndarray]:
    """Some face photos for parity and timing (noise when the eval set is absent)."""
    images = [read_image(p) for p in ctx.eval_images("faces/images", limit)]
    return images or [np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)]
