"""Text in photos (signs, captions, watermarks) with PP-OCRv4: detect, orient, read.

Three models run in a row. The detector (DB) turns the photo into a text
probability map; connected regions become rotated boxes, expanded ("unclip")
because DB is trained on shrunken text kernels. Each box is cut out upright,
the angle classifier turns upside-down lines around, and the recognizer reads
it (CTC, greedy). Detection is by far the most expensive stage, so it runs
once per photo at a bounded size (`ocr.max_side`), and a photo where it finds
no text never reaches the classifier or the recognizer: photos without
writing cost one detector pass.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import pyclipper

from tagd.analyzers import exported
from tagd.analyzers.base import Analyzer, Finding
from tagd.analyzers.registry import AnalyzerPlugin
from tagd.config import OcrSettings, Settings
from tagd.policy import ocr as policy
from tagd.runtime.lifecycle import ModelLifecycle
from tagd.runtime.manifest import ModelError, ModelSpec, resolve
from tagd.runtime.model import ManagedModel, model_for
from tagd.runtime.pixels import Affine

KEYS_FILE = "ppocr_keys_v4.txt"
STRIDE = 32  # the detector's input sides must be multiples of this
# An image this thin (height at most THIN_HEIGHT, or wider than THIN_RATIO times
# its height) is one line of text at most: see letterbox().
THIN_HEIGHT = 30
THIN_RATIO = 8
CLS_BATCH = 6
CLS_PIECES = 4  # windows a long line is judged on by the angle classifier
REC_BATCH = 6
REC_PAD = 32  # recognizer input widths are rounded up to this: lines batch only so padded
_DILATE = np.ones((2, 2), np.uint8)  # as PaddleOCR: joins letters split by one pixel


def build(settings: Settings, specs: dict[str, ModelSpec], models_dir: Path) -> Analyzer | None:
    """The OCR analyzer as configured, or None when it is switched off."""
    cfg = settings.ocr
    if not cfg.enabled:
        return None
    det = resolve(specs, "ocr-det", cfg.det_model, "ocr.det_model")
    rec = resolve(specs, "ocr-rec", cfg.rec_model, "ocr.rec_model")
    cls = resolve(specs, "ocr-cls", cfg.cls_model, "ocr.cls_model") if cfg.angle else None
    keys = [name for name in rec.files if name.endswith(".txt")]
    if not keys:
        raise ModelError(f"{rec.name}: the manifest lists no character dictionary under files")
    rt = settings.runtime
    # Detection and recognition are the costliest models in tagd and run many
    # small ops in a row: spinning ONNX Runtime workers save them 15-20 % (OCR on a
    # mixed library: 2.8-3.0x RapidOCR's speed without, 3.0-3.1x with).
    return TextReader(
        model_for(det, models_dir, rt, spin=True),
        model_for(rec, models_dir, rt, spin=True),
        model_for(cls, models_dir, rt) if cls else None,
        keys=models_dir / keys[0],
        settings=cfg,
    )


class TextReader(Analyzer):
    name = "ocr"
    model: ManagedModel  # runs sessions, not just the common lifecycle

    def __init__(
        self,
        det: ManagedModel,
        rec: ManagedModel,
        cls: ManagedModel | None,
        *,
        keys: Path,
        settings: OcrSettings,
    ) -> None:
        super().__init__(det)
        self.rec = rec
        self.cls = cls
        for model in (det, rec, cls):
            if model is not None:
                model.pixels = PIXELS
        self.keys_path = keys
        self.settings = settings
        self.video_interval = settings.video_interval
        self._alphabet: list[str] | None = None
        # Counters for benchmarks and tests: how often each stage ran.
        self.runs = {"det": 0, "cls": 0, "rec": 0}

    @property
    def models(self) -> list[ModelLifecycle]:
        return [m for m in (self.model, self.rec, self.cls) if m is not None]

    @property
    def model_sha256(self) -> str:
        # Results are valid for this exact trio of models (and the dictionary).
        parts = [self.model.spec.sha256, self.rec.spec.sha256, *self.rec.spec.files.values()]
        if self.cls is not None:
            parts.append(self.cls.spec.sha256)
        return hashlib.sha256(":".join(parts).encode()).hexdigest()

    @property
    def min_long_side(self) -> int:
        return self.settings.max_side

    def analyze(self, images: Sequence[np.ndarray]) -> list[list[Finding]]:
        return [self.read(image) for image in images]

    # ------------------------------------------------------------ stages

    def read(self, image: np.ndarray) -> list[Finding]:
        padded, top = letterbox(image)
        quads = self.detect(padded)
        if not quads:
            return []  # the gate: no text region, no classifier, no recognizer
        crops = [crop_quad(padded, q) for q in quads]
        if self.cls is not None:
            crops = self._orient(crops)
        texts = self.recognise(crops)
        findings = []
        for quad, (text, score) in zip(quads, texts, strict=True):
            text = text.strip()
            if not text or score < self.settings.min_score:
                continue
            quad = quad - np.array([0, top], np.float32)  # back into the image's pixels
            quad[:, 1] = np.clip(quad[:, 1], 0, image.shape[0])
            xs, ys = quad[:, 0], quad[:, 1]
            box = (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))
            points = tuple(float(round(v, 1)) for v in quad.reshape(-1))
            # The score is the recognizer's confidence: the detector's box score
            # says "something like text", not whether it was read right.
            findings.append(Finding("text", float(score), box, points, text))
        return findings

    def detect(self, image: np.ndarray) -> list[np.ndarray]:
        """Text quads (4 x 2, clockwise from top-left, image pixels), top-to-bottom."""
        h, w = image.shape[:2]
        rw, rh = det_size(w, h, self.settings.max_side, self.settings.min_side)
        resized = cv2.resize(image, (rw, rh), interpolation=cv2.INTER_LINEAR)
        prob = self.model.session().run(normalise(resized)[None])[0][0, 0]
        self.runs["det"] += 1
        return db_boxes(
            prob,
            w,
            h,
            thresh=self.settings.det_threshold,
            box_thresh=self.settings.box_threshold,
            unclip_ratio=self.settings.unclip_ratio,
            min_size=self.settings.min_text_size,
        )

    def _orient(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Turn lines the angle classifier finds upside down.

        The classifier sees a 4:1 window: a long line squeezed into it is a
        smear it calls upside down as often as not (a 20:1 line turned and
        then read as nothing). A long line is judged instead on up to
        CLS_PIECES windows of its own height along it, their votes averaged."""
        assert self.cls is not None
        width, height = self.cls.spec.input
        pieces, owner = [], []
        for index, crop in enumerate(crops):
            for piece in _windows(crop, width / height):
                pieces.append(line_input(piece, width, height))
                owner.append(index)
        session = self.cls.session()
        votes = np.zeros((len(crops), 2), np.float32)
        for start in range(0, len(pieces), CLS_BATCH):
            probs = session.run(np.stack(pieces[start : start + CLS_BATCH]))[0]
            self.runs["cls"] += 1
            for i, p in zip(owner[start : start + CLS_BATCH], probs, strict=True):
                votes[i] += p[:2]
        out = list(crops)
        for i, vote in enumerate(votes):
            mean = vote / max(1, owner.count(i))
            if int(mean.argmax()) == 1 and float(mean[1]) > self.settings.angle_threshold:
                out[i] = cv2.rotate(crops[i], cv2.ROTATE_180)
        return out

    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, mean character confidence) per crop, in order.

        Each line is read at its own width: lines batched together are padded to
        the widest, and the recognizer, which looks along the whole line, then
        runs words together (the spaces of a long line vanish next to a longer
        one). Only lines within REC_PAD pixels of the same width share a run."""
        alphabet = self.alphabet()
        width, height = self.rec.spec.input
        session = self.rec.session()
        widths = [
            max(width, -(-math.ceil(height * c.shape[1] / max(1, c.shape[0])) // REC_PAD) * REC_PAD)
            for c in crops
        ]
        out: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        groups: dict[int, list[int]] = {}
        for i, w in enumerate(widths):
            groups.setdefault(w, []).append(i)
        for batch_w, members in sorted(groups.items()):
            for start in range(0, len(members), REC_BATCH):
                idx = members[start : start + REC_BATCH]
                batch = np.stack([line_input(crops[i], batch_w, height) for i in idx])
                probs = session.run(batch)[0]
                self.runs["rec"] += 1
                for row, i in zip(probs, idx, strict=True):
                    out[i] = ctc_greedy(row, alphabet)
        return out

    def alphabet(self) -> list[str]:
        if self._alphabet is None:
            keys = self.keys_path.read_text(encoding="utf-8").splitlines()
            self._alphabet = ["", *keys, " "]  # CTC blank first, space last (PP-OCR)
        return self._alphabet


# ---------------------------------------------------------------- helpers


def det_size(width: int, height: int, max_side: int, min_side: int) -> tuple[int, int]:
    """Detector input size, both sides multiples of 32: the short side brought to
    min_side (small images are enlarged: the detector misses text only a few
    pixels tall), unless the long side would then pass max_side."""
    ratio = min_side / min(width, height)
    if max(width, height) * ratio > max_side:
        ratio = max_side / max(width, height)
    rw = max(STRIDE, round(width * ratio / STRIDE) * STRIDE)
    rh = max(STRIDE, round(height * ratio / STRIDE) * STRIDE)
    return rw, rh


def letterbox(image: np.ndarray) -> tuple[np.ndarray, int]:
    """A thin strip of text (a banner, a cut-out line) with room added above and
    below, and how many rows were added on top. The detector, trained on
    photos and pages, finds nothing or pieces in an image barely taller than its
    text; the strip padded to a height of at least a quarter of its width (and
    60 px) reads whole."""
    h, w = image.shape[:2]
    if h > THIN_HEIGHT and w <= THIN_RATIO * h:
        return image, 0
    top = (max(w // THIN_RATIO, THIN_HEIGHT) * 2 - h) // 2
    # The strip's own background colour: no edge for the detector to see.
    edge = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    colour = [int(v) for v in np.median(edge.reshape(-1, image.shape[2]), axis=0)]
    padded = cv2.copyMakeBorder(image, top, top, 0, 0, cv2.BORDER_CONSTANT, value=colour)
    return padded, top


# normalise() as pixels -> floats (tagd.runtime.pixels).
PIXELS = Affine((2 / 255,) * 3, (-1.0,) * 3)


def normalise(image: np.ndarray) -> np.ndarray:
    """BGR uint8 HWC -> (x/255 - 0.5)/0.5 CHW float32, as PaddleOCR trained."""
    return (image.astype(np.float32) * (2 / 255) - 1.0).transpose(2, 0, 1)


def db_boxes(
    prob: np.ndarray,
    width: int,
    height: int,
    *,
    thresh: float,
    box_thresh: float,
    unclip_ratio: float,
    min_size: float,
    max_candidates: int = 1000,
) -> list[np.ndarray]:
    """DB post-processing: probability map -> text quads in a width x height image."""
    mh, mw = prob.shape
    mask = cv2.dilate((prob > thresh).astype(np.uint8), _DILATE)
    contours, _ = cv2.findContours(mask, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    sx, sy = width / mw, height / mh
    quads = []
    for contour in contours[:max_candidates]:
        if len(contour) < 4:
            continue
        quad, short = mini_box(contour.reshape(-1, 2))
        if short < 3:
            continue
        score = box_score(prob, quad)
        if score < box_thresh:
            continue
        grown = unclip(quad, unclip_ratio)
        if grown is None:
            continue
        quad, short = mini_box(grown)
        # min_size is in detector-input pixels: text smaller than that is unreadable.
        if short < min_size + 2:
            continue
        quad[:, 0] = np.clip(np.round(quad[:, 0] * sx), 0, width)
        quad[:, 1] = np.clip(np.round(quad[:, 1] * sy), 0, height)
        if np.linalg.norm(quad[0] - quad[1]) <= 3 or np.linalg.norm(quad[0] - quad[3]) <= 3:
            continue
        quads.append(quad)
    order = sorted(range(len(quads)), key=lambda i: (quads[i][0, 1], quads[i][0, 0]))
    return [quads[i] for i in _reading_order(quads, order)]


def _reading_order(quads: list[np.ndarray], order: list[int]) -> list[int]:
    """Top to bottom; boxes on one line (tops within 10 px) left to right."""
    out = list(order)
    for i in range(len(out) - 1):
        for j in range(i, -1, -1):
            a, b = quads[out[j]], quads[out[j + 1]]
            if abs(b[0, 1] - a[0, 1]) < 10 and b[0, 0] < a[0, 0]:
                out[j], out[j + 1] = out[j + 1], out[j]
            else:
                break
    return out


def mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
    """Minimum-area rectangle as 4 points clockwise from top-left; its short side."""
    rect = cv2.minAreaRect(points.astype(np.float32))
    box = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    left = sorted(box[:2], key=lambda p: p[1])
    right = sorted(box[2:], key=lambda p: p[1])
    quad = np.array([left[0], right[0], right[1], left[1]], np.float32)
    return quad, float(min(rect[1]))


def box_score(prob: np.ndarray, quad: np.ndarray) -> float:
    """Mean text probability inside the quad (over its bounding rectangle's pixels)."""
    h, w = prob.shape
    x0 = int(np.clip(np.floor(quad[:, 0].min()), 0, w - 1))
    x1 = int(np.clip(np.ceil(quad[:, 0].max()), 0, w - 1))
    y0 = int(np.clip(np.floor(quad[:, 1].min()), 0, h - 1))
    y1 = int(np.clip(np.ceil(quad[:, 1].max()), 0, h - 1))
    mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
    shifted = (quad - np.array([x0, y0], np.float32)).astype(np.int32)
    cv2.fillPoly(mask, [shifted], 1)
    return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])


def unclip(quad: np.ndarray, ratio: float) -> np.ndarray | None:
    """Grow a shrunken text kernel back by area * ratio / perimeter (DB's offset)."""
    area = abs(cv2.contourArea(quad))
    length = cv2.arcLength(quad, True)
    if length == 0:
        return None
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(quad.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    grown = offset.Execute(area * ratio / length)
    if not grown:
        return None
    return np.array(grown[0], np.float32)


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """The text line under a quad, warped to an upright rectangle."""
    w = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    h = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    w, h = max(w, 1), max(h, 1)
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    matrix = cv2.getPerspectiveTransform(quad.astype(np.float32), target)
    crop = cv2.warpPerspective(
        image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if h / w >= 1.5:  # a vertical line of text: read it turned
        crop = np.rot90(crop)
    return crop


def _windows(crop: np.ndarray, aspect: float) -> list[np.ndarray]:
    """The crop itself when it is at most twice `aspect` (width / height), else
    up to CLS_PIECES windows of that aspect spread evenly along it."""
    h, w = crop.shape[:2]
    span = max(1, round(h * aspect))
    if w <= 2 * span:
        return [crop]
    count = min(CLS_PIECES, math.ceil(w / span))
    starts = np.linspace(0, w - span, count).round().astype(int)
    return [crop[:, x : x + span] for x in starts]


def line_input(crop: np.ndarray, width: int, height: int) -> np.ndarray:
    """A text line at the model's height, aspect kept, zero-padded right to `width`."""
    h, w = crop.shape[:2]
    new_w = max(1, min(width, math.ceil(height * w / max(1, h))))
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :new_w] = normalise(cv2.resize(crop, (new_w, height)))
    return out


def ctc_greedy(probs: np.ndarray, alphabet: list[str]) -> tuple[str, float]:
    """Best class per step, repeats merged, blanks dropped; score = mean kept prob."""
    best = probs.argmax(axis=1)
    conf = probs[np.arange(len(best)), best]
    keep = best != 0
    keep[1:] &= best[1:] != best[:-1]
    if not keep.any():
        return "", 0.0
    text = "".join(alphabet[i] for i in best[keep])
    return text, float(conf[keep].mean())


PLUGIN = AnalyzerPlugin(
    name=TextReader.name,
    rank=20,
    section="ocr",
    build=build,
    derive=policy.text_tags,
    export_key="text",
    export=exported.texts(TextReader.name),
)
