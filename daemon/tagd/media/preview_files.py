"""Where the previews (tagd.media.thumbnail) live, for whoever only serves them:
the API reads these files without importing a decoder."""

from __future__ import annotations

from pathlib import Path

LONG_SIDE = 320  # px: sharp in a grid on a phone or a 4K screen, ~10-20 KB
QUALITY = 80


def folder_for(catalog_path: Path) -> Path:
    """Where the previews of the catalog at `catalog_path` live."""
    return catalog_path.parent / "thumbs"


FACE_SIDE = 160  # px: a face in a people grid
FACE_MARGIN = 0.25  # of the box's size on each side: hair and chin in the picture


def path_for(folder: Path, content_id: int) -> Path:
    return folder / f"{content_id}.webp"


def face_path_for(folder: Path, detection_id: int) -> Path:
    return folder / "faces" / f"{detection_id}.webp"
