"""The cell grids of anchor-free detector heads (YOLOX, PicoDet, YuNet): for each
stride, the (column, row) of every cell, row-major, one stride after the other."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def cells(
    width: int, height: int, strides: Sequence[int], *, ceil: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """(column, row) of every output row (N x 2) and its stride (N), float32. Grids are
    size // stride cells a side, or ceil(size / stride) where the network pads."""
    corners, per_cell = [], []
    for stride in strides:
        rows = math.ceil(height / stride) if ceil else height // stride
        cols = math.ceil(width / stride) if ceil else width // stride
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        corners.append(np.stack((xs, ys), -1).reshape(-1, 2))
        per_cell.append(np.full(rows * cols, stride))
    return np.concatenate(corners).astype(np.float32), np.concatenate(per_cell).astype(np.float32)
