"""64-bit DCT perceptual hashes (pHash) of a photo, its mirror and its 90 % crops.

A few lines of OpenCV instead of the `imagehash` package: cv2 is already a
dependency (imagehash adds SciPy and PyWavelets for one transform), the whole
set below costs 1-3 ms an image (see _shrunk_windows), and it hashes the very array tagd decoded
once (upright, DCT-reduced), with no second decode through Pillow.

One hash: luma, area-resize to 32×32 (the low-pass that makes it blind to
scale, JPEG noise and re-encoding), 2-D DCT, the 8×8 lowest frequencies, one
bit per coefficient: above the median of the 63 AC terms or not. Bit i is
coefficient (row i // 8, column i % 8).

What one hash does not survive, and what is stored for it (measured on the
dev photos, `bench/dupes.py`):
- a left-right mirror changes every odd-column coefficient's sign: the
  mirrored hash is the same DCT with those signs flipped (no second
  transform). Storing it keeps all 64 bits; a flip-invariant hash (even
  columns or magnitudes only) would throw half of them away.
- a 10 % crop moves everything: distance 10–30 bits, as far as unrelated
  photos. So every photo also stores the hashes of its 90 % windows on a
  5×5 grid of offsets (0, 2.5, … 10 %); a crop of the photo lands within
  1.25 % of one of them (≤ 8 bits, typically 2–4).
Two photos match when the plain hash of one is near any stored hash of the
other: WINDOWS × 2 hashes, packed as little-endian uint64, index 0 the plain
hash and index 1 its mirror.
"""

from __future__ import annotations

import numpy as np

VERSION = "dct32-8x8-median-crop90x25-v1"  # stands in for a model sha256
SIZE = 32
LOW = 8
CROP = 0.9  # window side as a fraction of the photo's
_OFFSETS = np.linspace(0.0, 1.0 - CROP, 5)
WINDOWS: tuple[tuple[float, float], ...] = (
    (-1.0, -1.0),  # the whole photo
    *((float(x), float(y)) for y in _OFFSETS for x in _OFFSETS),
)
HASHES = 2 * len(WINDOWS)
# Odd horizontal frequencies flip sign under a left-right mirror.
_MIRROR_SIGN = np.tile(np.where(np.arange(LOW) % 2 == 1, -1.0, 1.0), (LOW, 1)).astype(np.float32)
_WEIGHTS = np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64))


def _bits(coefficients: np.ndarray) -> np.uint64:
    flat = coefficients.ravel()
    median = np.median(flat[1:])  # the DC term is brightness, not structure
    return np.bitwise_or.reduce(np.where(flat > median, _WEIGHTS, np.uint64(0)))


def _window(grey: np.ndarray, x: float, y: float) -> np.ndarray:
    if x < 0:
        return grey
    h, w = grey.shape
    cw, ch = max(1, round(w * CROP)), max(1, round(h * CROP))
    x0, y0 = round(w * x), round(h * y)
    return grey[y0 : y0 + ch, x0 : x0 + cw]


def hash_set(image: np.ndarray) -> np.ndarray:
    """Every stored hash of a BGR (or grey) image: uint64[HASHES], [0] plain, [1] mirror."""
    # Here, not at the top: the API compares stored hashes without OpenCV.
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    out = np.empty(HASHES, np.uint64)
    for i, small in enumerate(_shrunk_windows(grey)):
        coefficients = cv2.dct(small)[:LOW, :LOW]
        out[2 * i] = _bits(coefficients)
        out[2 * i + 1] = _bits(coefficients * _MIRROR_SIGN)
    return out


def _shrunk_windows(grey: np.ndarray) -> list[np.ndarray]:
    """Each window of WINDOWS area-resized to SIZE×SIZE (float32 holding whole
    levels), as cv2.resize(INTER_AREA) makes it.

    An area resize averages each output cell's rectangle of the source, pixels
    cut by its edges counted by the part inside. Over an integral image (the
    sum of every pixel above and left of a point) the sum inside any rectangle
    is four lookups, and at fractional corners the integral is exactly its
    bilinear interpolation. One integral image then serves all 26 windows:
    2 ms for a 2000×1500 frame, where 26 calls of cv2.resize take 110 ms (the
    frame is that large when faces are on)."""
    import cv2

    h, w = grey.shape
    cw, ch = max(1, round(w * CROP)), max(1, round(h * CROP))
    if min(cw, ch) < 2 * SIZE:  # a thumbnail: cheap either way, and no upscaling here
        return [
            cv2.resize(_window(grey, x, y), (SIZE, SIZE), interpolation=cv2.INTER_AREA).astype(
                np.float32
            )
            for x, y in WINDOWS
        ]
    # Float64 sums are exact here (a 200 MP frame sums to < 2^36).
    integral = cv2.integral(grey, sdepth=cv2.CV_64F)
    out = []
    for x, y in WINDOWS:
        left, top, width, height = (0, 0, w, h) if x < 0 else (round(w * x), round(h * y), cw, ch)
        corners = _integral_at(
            integral,
            top + np.arange(SIZE + 1) * (height / SIZE),
            left + np.arange(SIZE + 1) * (width / SIZE),
        )
        sums = corners[1:, 1:] - corners[:-1, 1:] - corners[1:, :-1] + corners[:-1, :-1]
        # cv2 rounds its uint8 result: the same levels, so the same hashes.
        means = np.rint(sums * (SIZE * SIZE / (width * height)))
        out.append(np.clip(means, 0, 255).astype(np.float32))
    return out


def _integral_at(integral: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The integral image at every (y, x) of the grid ys × xs, fractional positions
    interpolated bilinearly."""
    rows, cols = integral.shape[0] - 1, integral.shape[1] - 1
    i = np.minimum(ys.astype(np.intp), rows - 1)
    j = np.minimum(xs.astype(np.intp), cols - 1)
    fy, fx = (ys - i)[:, None], (xs - j)[None, :]
    top = integral[np.ix_(i, j)] * (1 - fx) + integral[np.ix_(i, j + 1)] * fx
    bottom = integral[np.ix_(i + 1, j)] * (1 - fx) + integral[np.ix_(i + 1, j + 1)] * fx
    return top * (1 - fy) + bottom * fy


def phash(image: np.ndarray) -> int:
    """The plain 64-bit pHash of the whole image."""
    return int(hash_set(image)[0])


def distance(plain: int | np.uint64, stored: np.ndarray) -> int:
    """Bits between a plain hash and the closest of another photo's stored hashes."""
    return int(np.bitwise_count(np.asarray(stored, np.uint64) ^ np.uint64(plain)).min())


def match_distance(a: np.ndarray, b: np.ndarray) -> tuple[int, bool]:
    """(distance, mirrored) between two photos' hash sets, in either direction."""
    da = np.bitwise_count(b ^ a[0])
    db = np.bitwise_count(a ^ b[0])
    best = da if da.min() <= db.min() else db
    index = int(best.argmin())
    return int(best[index]), index % 2 == 1


def to_signed(value: int) -> int:
    """An unsigned 64-bit hash as SQLite's signed INTEGER."""
    return value - (1 << 64) if value >= 1 << 63 else value


def to_unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value
