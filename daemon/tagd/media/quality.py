"""How good a photo is as a photo: sharpness, exposure, contrast and noise.

Everything is measured on the pipeline's one decode, brought to at most
`SIZE` px on the long side, so a photo is judged as it looks on a screen, not
at 100 %: a 24 MP frame a little soft at full size is not "blurry".

Sharpness is the no-reference "blur effect" measure (Crete et al. 2007): blur
a picture again and see how much of its pixel-to-pixel variation survives. A
sharp picture loses much of it, a blurred one little. It is a ratio, so it does
not depend on the picture's contrast, and it is taken in four directions
(0°, 45°, 90°, 135°) per cell of a grid:

- a photo is as sharp as its sharpest cells: a portrait with a sharp face and
  a soft background is sharp, as photographers judge it;
- motion blur removes detail along one direction only, so the weakest
  direction of those sharpest cells is what is scored.

The measurements become scores in [0, 1] through small logistic models fitted
by `bench/quality.py --fit` on degraded copies of real photos (Gaussian and
motion blur, ±2 EV, noise, haze); the fitted weights are the constants below.
Raw scores are stored, and the tag rules ([tags.quality]) set the thresholds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Bump when a measurement or a weight changes: stored scores are then redone.
VERSION = "3"
SIZE = 1024  # long side the photo is judged at (at most)
_NEAR = 0.9  # halving down to 90 % of SIZE is close enough, and far cheaper
_DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1))  # (dy, dx): 0°, 45°, 90°, 135°
_REBLUR = 9  # length of the line blur that "blurs again"
_CELL = 32  # px; sharpness cells are 32 and 64 px squares
_TEXTURE = 2.0  # mean grey-level step below which a cell is flat (sky, a wall)
_N = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)  # noise kernel


@dataclass(frozen=True)
class Measures:
    """What is measured on one photo (luma in 0-255 grey levels)."""

    sharpness: float  # worst direction of the sharpest 64 px cells, 0 (flat) - 1
    balance: float  # weakest / strongest direction on the sharpest 32 px cells
    mean: float
    q: dict[float, float]  # luma percentiles: 0.1, 1, 5, 10, 25, 50, 95, 99, 99.9
    clipped: float  # share of pixels with a channel at 250 or more
    bright: float  # share of pixels with a channel at 230 or more
    clipped_areas: float  # share of 16 px blocks clipped all over
    colour_clipped: float  # clipped in a channel but not in all: blown colours
    midtones: float  # share of pixels with luma in 60-200
    # Blown colour, what overexposure does to a coloured surface: one or two
    # channels clipped while another stays below 200 ...
    part_clipped: float
    # ... and bright pixels that are still strongly coloured (max - min > 60).
    bright_colour: float
    noise: float  # sigma of the noise in flat parts, grey levels


# Logistic weights per label: (bias, {measure: weight}). `log_` measures are
# log(1 + value). Fitted by bench/quality.py --fit; the bias is shifted so that
# 0.5 is the operating point chosen there.
_MODELS: dict[str, tuple[float, dict[str, float]]] = {
    "blurry": (35.204, {"sharpness": -7.3739, "balance": -34.878}),
    "underexposed": (129.65, {"log_q99.9": -22.343, "log_mean": -4.1328}),
    "overexposed": (
        -6.1698,
        {
            "log_q0.1": -1.4804,
            "log_q1": 1.7747,
            "log_q5": -0.97835,
            "log_q10": 1.409,
            "log_q25": -0.52432,
            "log_mean": 2.0792,
            "clipped": 38.101,
            "bright": -19.19,
            "clipped_areas": -18.818,
            "colour_clipped": -2.1174,
            "midtones": -3.2198,
            "log_part_clipped": 3.3284,
            "log_bright_colour": -2.2603,
        },
    ),
    "low contrast": (
        50.52,
        {
            "spread": 0.014223,
            "log_q1": 8.3791,
            "log_q5": 1.2812,
            "log_q95": -8.4076,
            "log_q99": -9.6749,
        },
    ),
    "noisy": (-7.0011, {"noise": 0.63188}),
}
LABELS = tuple(_MODELS)


def luma_and_colour(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The image at most SIZE px on its long side (BGR), and its luma as float32."""
    # Halvings take OpenCV's fast 2 x 2 path (a quarter of the time of one area
    # resize to an odd size): a 12 MP photo's 2000 px decode is judged at 1000 px.
    while max(image.shape[:2]) >= 2 * SIZE * _NEAR:
        image = cv2.resize(image, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    scale = SIZE / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image, cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)


def _step(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """|a(p + (dy, dx)) - a(p)| for every p whose neighbours exist in all four
    directions (rows 0..h-2, columns 1..w-2), so every direction's map is aligned."""
    h, w = a.shape
    return cv2.absdiff(a[dy : h - 1 + dy, 1 + dx : w - 1 + dx], a[: h - 1, 1 : w - 1])


def _line_blur(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """The mean of the _REBLUR pixels on a line through each pixel."""
    if dy == 0:
        return cv2.blur(a, (_REBLUR, 1))
    if dx == 0:
        return cv2.blur(a, (1, _REBLUR))
    kernel = np.zeros((_REBLUR, _REBLUR), np.float32)
    c = _REBLUR // 2
    for i in range(-c, c + 1):
        kernel[c + i * dy, c + i * dx] = 1.0 / _REBLUR
    return cv2.filter2D(a, -1, kernel)


def _cells(a: np.ndarray, cell: int) -> np.ndarray:
    """Mean of each cell x cell block (the partial ones at the edges dropped)."""
    gh, gw = a.shape[0] // cell, a.shape[1] // cell
    return cv2.resize(a[: gh * cell, : gw * cell], (gw, gh), interpolation=cv2.INTER_AREA)


def _top(values: np.ndarray, share: float) -> np.ndarray:
    """The largest values: `share` of them, at least 3 (all when fewer)."""
    flat = np.sort(values.ravel())[::-1]
    return flat[: min(flat.size, max(3, int(share * flat.size)))]


def sharpness(luma: np.ndarray) -> tuple[float, float]:
    """(worst-direction sharpness of the sharpest 64 px cells, direction balance
    of the sharpest 32 px cells); 0 and 1 for a picture too small or flat."""
    if min(luma.shape) < 2 * _CELL:
        return 0.0, 1.0
    steps, kept = [], []  # per direction: summed steps, and what survives the re-blur
    for dy, dx in _DIRECTIONS:
        step = _step(luma, dy, dx)
        lost = cv2.subtract(step, _step(_line_blur(luma, dy, dx), dy, dx))
        cv2.threshold(lost, 0, 0, cv2.THRESH_TOZERO, dst=lost)
        steps.append(_cells(step, _CELL))
        kept.append(_cells(lost, _CELL))
    s32, k32 = np.stack(steps), np.stack(kept)  # direction x rows x columns
    # 64 px cells: 2 x 2 blocks of 32 px ones.
    gh, gw = s32.shape[1] // 2 * 2, s32.shape[2] // 2 * 2
    s64 = s32[:, :gh, :gw].reshape(4, gh // 2, 2, gw // 2, 2).mean((2, 4))
    k64 = k32[:, :gh, :gw].reshape(4, gh // 2, 2, gw // 2, 2).mean((2, 4))
    worst = (k64 / np.maximum(s64, 1e-6)).min(0)
    textured64 = s64.sum(0) / 4 > _TEXTURE
    sharp = float(_top(np.where(textured64, worst, 0.0), 0.02).mean()) if s64.size else 0.0
    mean32 = (k32 / np.maximum(s32, 1e-6)).mean(0)
    textured32 = s32.sum(0) / 4 > _TEXTURE
    scored = np.where(textured32, mean32, 0.0)
    threshold = _top(scored, 0.05)[-1]
    best = textured32 & (scored >= threshold)
    per_direction = k32[:, best].sum(1) / np.maximum(s32[:, best].sum(1), 1e-6)
    balance = float(per_direction.min() / max(float(per_direction.max()), 1e-6))
    return sharp, balance


def noise_sigma(luma: np.ndarray) -> float:
    """Immerkær's fast noise estimate on the flatter half of the picture, away
    from black and white, where clipping hides the noise."""
    h, w = luma.shape
    if min(h, w) < 3:
        return 0.0
    response = cv2.absdiff(cv2.filter2D(luma, -1, _N)[1:-1, 1:-1], 0)
    inner = luma[1:-1, 1:-1]
    gradient = cv2.add(
        cv2.absdiff(luma[1:-1, 2:], luma[1:-1, : w - 2]),
        cv2.absdiff(luma[2:, 1:-1], luma[: h - 2, 1:-1]),
    )
    usable = cv2.inRange(inner, 16.5, 239.5)
    if cv2.countNonZero(usable) < 64:
        return 0.0
    # The median from every 4th row and column: as good, a tenth of the work.
    sample = gradient[::4, ::4][usable[::4, ::4] > 0]
    middle = float(np.median(sample)) if sample.size else float(np.median(gradient))
    flat = cv2.bitwise_and(usable, cv2.inRange(gradient, -1.0, middle))
    if not cv2.countNonZero(flat):
        return 0.0
    return float(math.sqrt(math.pi / 2) / 6 * cv2.mean(response, flat)[0])


def _percentiles(luma: np.ndarray, levels: tuple[float, ...]) -> dict[float, float]:
    """Luma percentiles from a 256-bin histogram (a sort of a megapixel is 30x slower)."""
    grey = np.clip(luma + 0.5, 0, 255).astype(np.uint8)
    counts = cv2.calcHist([grey], [0], None, [256], [0, 256]).ravel()
    cumulative = np.cumsum(counts) / max(float(counts.sum()), 1.0)
    return {p: float(np.searchsorted(cumulative, p / 100)) for p in levels}


def measure(image: np.ndarray) -> Measures:
    """Every measure of one BGR image."""
    colour, luma = luma_and_colour(image)
    sharp, balance = sharpness(luma)
    # The ends matter most: a photo -2 EV under has nothing bright (its 99.9th
    # percentile stops near 137 of 255), one +2 EV over nothing dark.
    q = _percentiles(luma, (0.1, 1, 5, 10, 25, 50, 95, 99, 99.9))
    b, g, r = cv2.split(colour)
    top = cv2.max(cv2.max(b, g), r)
    low = cv2.min(cv2.min(b, g), r)
    # Masks as OpenCV's 0/255 images: counted by countNonZero, several times
    # faster than numpy's boolean arithmetic on a megapixel.
    clipped = _at_least(top, 250)
    # 16 px blocks clipped all over: their mean clip mask is 255.
    whole = _cells(clipped.astype(np.float32), 16) if min(top.shape) >= 16 else None
    some = cv2.bitwise_or(cv2.bitwise_or(_at_least(b, 250), _at_least(g, 250)), _at_least(r, 250))
    every = cv2.bitwise_and(
        cv2.bitwise_and(_at_least(b, 250), _at_least(g, 250)), _at_least(r, 250)
    )
    part = cv2.bitwise_and(cv2.bitwise_and(some, cv2.bitwise_not(every)), _below(low, 200))
    coloured = cv2.bitwise_and(_at_least(cv2.subtract(top, low), 61), _at_least(top, 240))
    grey = np.clip(luma + 0.5, 0, 255).astype(np.uint8)
    return Measures(
        sharpness=sharp,
        balance=balance,
        mean=float(luma.mean()),
        q=q,
        clipped=_share(clipped),
        bright=_share(_at_least(top, 230)),
        clipped_areas=float((whole >= 254.9).mean()) if whole is not None and whole.size else 0.0,
        colour_clipped=_share(cv2.bitwise_and(clipped, _below(low, 235))),
        midtones=_share(cv2.inRange(grey, 60, 200)),
        part_clipped=_share(part),
        bright_colour=_share(coloured),
        noise=noise_sigma(luma),
    )


def _at_least(channel: np.ndarray, level: int) -> np.ndarray:
    return cv2.threshold(channel, level - 1, 255, cv2.THRESH_BINARY)[1]


def _below(channel: np.ndarray, level: int) -> np.ndarray:
    return cv2.threshold(channel, level - 1, 255, cv2.THRESH_BINARY_INV)[1]


def _share(mask: np.ndarray) -> float:
    return cv2.countNonZero(mask) / max(mask.size, 1)


def inputs(m: Measures) -> dict[str, float]:
    """The named inputs the logistic models read."""
    out = {
        "sharpness": m.sharpness,
        "balance": m.balance,
        "clipped": m.clipped,
        "bright": m.bright,
        "clipped_areas": m.clipped_areas,
        "colour_clipped": m.colour_clipped,
        "midtones": m.midtones,
        # Shares near 0 tell most: on a log scale.
        "log_part_clipped": math.log(m.part_clipped + 1e-3),
        "log_bright_colour": math.log(m.bright_colour + 1e-3),
        "noise": m.noise,
        "log_mean": math.log1p(m.mean),
        "spread": m.q[95] - m.q[5],
    }
    out.update({f"log_q{p:g}": math.log1p(v) for p, v in m.q.items()})
    return out


def score(label: str, values: dict[str, float]) -> float:
    bias, weights = _MODELS[label]
    z = bias + sum(w * values[name] for name, w in weights.items())
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))


def scores(image: np.ndarray) -> dict[str, float]:
    """Each quality label's score in [0, 1] for one BGR image."""
    values = inputs(measure(image))
    return {label: score(label, values) for label in _MODELS}
