"""The perceptual hash set: its fast area resize gives cv2's INTER_AREA levels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tagd.media import phash as ph


def _reference(image: np.ndarray) -> np.ndarray:
    """The hash set as defined: each window resized by cv2 INTER_AREA, then DCT."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    out = np.empty(ph.HASHES, np.uint64)
    for i, (x, y) in enumerate(ph.WINDOWS):
        small = cv2.resize(ph._window(grey, x, y), (ph.SIZE, ph.SIZE), interpolation=cv2.INTER_AREA)
        coefficients = cv2.dct(small.astype(np.float32))[: ph.LOW, : ph.LOW]
        out[2 * i] = ph._bits(coefficients)
        out[2 * i + 1] = ph._bits(coefficients * ph._MIRROR_SIGN)
    return out


def test_hash_set_equals_the_per_window_resize(coco_dir: Path) -> None:
    differing = total = 0
    for path in sorted(coco_dir.glob("*.jpg"))[:6]:
        photo = cv2.imread(str(path))
        # A frame as large as the faces analyzer has it decoded, odd sizes, a thumbnail.
        for size in ((2000, 1500), (1279, 851), (60, 45)):
            image = cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC)
            fast, reference = ph.hash_set(image), _reference(image)
            differing += int(np.bitwise_count(fast ^ reference).sum())
            total += 64 * ph.HASHES
    # Rounding ties may move one level of one cell now and then: a bit at most.
    assert differing <= total // 10_000


def test_a_grey_image_hashes_like_its_colour_twin(coco_dir: Path) -> None:
    photo = cv2.resize(cv2.imread(str(next(coco_dir.glob("*.jpg")))), (1600, 1200))
    grey = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    assert np.array_equal(ph.hash_set(photo), ph.hash_set(grey))
