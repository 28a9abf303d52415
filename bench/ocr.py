"""OCR accuracy and speed: tagd's PP-OCRv4 analyzer next to RapidOCR, same files, same run.

Four sets:
- the dev ICDAR street scenes in ../shared/eval/ocr: word recall and
  precision (case-insensitive, punctuation at word ends ignored; a region
  marked `legible: false` counts neither way), and character accuracy
  (1 - edit distance / length) on the scanned document;
- hard cases made on the spot (bench/ocr_cases.py): dark and light text on
  transparent PNGs, thin single-line strips, long lines with spaces, small
  screenshots, rotated text, captions and watermarks over photos;
- a mixed library: COCO photos, most without text.

Against the reference, RapidOCR with its defaults (`RapidOCR()`, the same
PP-OCRv4 models): the share of its confident lines (score >= 0.8) that tagd
reads too, weighted by length, spaces ignored (a line counts the characters
of it found in tagd's text of that file: its length minus the edits to the
closest stretch of that text). Speed: images/s over every file, median of
--rounds whole passes, the engines in turn so that load drift on a shared
machine hits all alike. tagd reads each file as a scan does (tagd.media.image,
one decode at the size the analyzer asks for, the models the pipeline picks,
two files at once as its two inference lanes do); RapidOCR one file at a
time, each call on every core. RapidOCR is optional:
`pip install --no-deps rapidocr-onnxruntime==1.4.4 pyclipper shapely six`
(its opencv-python dependency is not needed next to the headless one).

Then candidate text gates (the detector at 320-640 px before the full pass):
the share of text-free photos each would skip and the recall left with it.

Targets: recall of RapidOCR's confident lines >= 0.97 at >= 3x its images/s,
ICDAR word recall >= 11/22.

    .venv/bin/python bench/ocr.py [--photos 100]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from ocr_cases import make_cases
from rapidfuzz.distance import Levenshtein

from tagd.analyzers.ocr import TextReader, build, det_size, letterbox, normalise
from tagd.config import OcrSettings, Settings
from tagd.media.image import decode_image
from tagd.paths import models_dir
from tagd.runtime.backends import inference_lanes
from tagd.runtime.manifest import load_manifest, prefer_engine

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO.parent / "shared" / "eval"
OCR = EVAL / "ocr"
COCO = EVAL / "objects-coco128-train" / "images"
DOCUMENT = "document_text.jpg"

# A finding: (text, (x0, y0, x1, y1)).
Read = list[tuple[str, tuple[float, float, float, float]]]


def norm_words(text: str) -> list[str]:
    out = []
    for w in text.casefold().split():
        w = re.sub(r"^\W+|\W+$", "", w)
        if w:
            out.append(w)
    return out


def score_image(found: Read, regions: list[dict]) -> tuple[int, int, int, int]:
    """(GT words matched, GT words, predicted words matched, predicted words counted)."""
    truth = Counter(w for r in regions if r["legible"] for w in norm_words(r["text"]))
    ignore = [np.array(r["poly"], np.float32).reshape(-1, 2) for r in regions if not r["legible"]]
    predicted = []
    for text, (x0, y0, x1, y1), *_ in found:
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        if any(cv2.pointPolygonTest(p, centre, False) >= 0 for p in ignore):
            continue  # read inside an unreadable region: neither a hit nor a miss
        predicted.extend(norm_words(text))
    hits = sum((Counter(predicted) & truth).values())
    return hits, sum(truth.values()), hits, len(predicted)


def substring_distance(line: str, text: str) -> int:
    """Fewest edits that turn `line` into some stretch of `text` (semi-global
    Levenshtein: free to start and end anywhere in `text`)."""
    if not line:
        return 0
    if not text:
        return len(line)
    t = np.frombuffer(text.encode("utf-32-le"), np.uint32)
    index = np.arange(len(t) + 1)
    row = np.zeros(len(t) + 1, np.int64)  # an empty prefix matches anywhere for free
    for i, ch in enumerate(np.frombuffer(line.encode("utf-32-le"), np.uint32), start=1):
        step = np.empty_like(row)
        step[0] = i
        step[1:] = np.minimum(row[:-1] + (t != ch), row[1:] + 1)
        # Insertions along the row: best[j] = min over k <= j of step[k] + (j - k).
        row = np.minimum.accumulate(step - index) + index
    return int(row.min())


def line_recall(reference: list[str], found: list[str]) -> tuple[int, int]:
    """(characters of the reference lines found, characters in them), spaces ignored."""
    text = "".join("".join(found).split())
    got = total = 0
    for line in reference:
        line = "".join(line.split())
        total += len(line)
        got += max(0, len(line) - substring_distance(line, text))
    return got, total


def decoded(path: Path, min_long_side: int) -> np.ndarray:
    """The frame tagd's scan would hand the analyzer."""
    return decode_image(path.read_bytes(), min_long_side=min_long_side).image


def tagd_engine(reader: TextReader) -> Callable[[Path], Read]:
    def run(path: Path) -> Read:
        image = decoded(path, reader.min_long_side)
        return [(f.text or "", f.box) for f in reader.analyze([image])[0] if f.box]

    return run


def rapid_engine() -> Callable[[Path], Read] | None:
    try:
        from rapidocr_onnxruntime import RapidOCR
    except ImportError:
        return None
    engine = RapidOCR()

    def run(path: Path) -> Read:
        result, _ = engine(str(path))
        out: Read = []
        for quad, text, score in result or []:
            xs = [p[0] for p in quad]
            ys = [p[1] for p in quad]
            out.append((text, (min(xs), min(ys), max(xs), max(ys)), float(score)))
        return out

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100, help="COCO photos in the mix")
    parser.add_argument("--models", type=Path, default=models_dir(Settings()))
    parser.add_argument("--rounds", type=int, default=3, help="timed passes (median)")
    parser.add_argument(
        "--cases", type=Path, default=Path(tempfile.gettempdir()) / "tagd-bench-ocr-cases"
    )
    args = parser.parse_args()
    if not OCR.is_dir() or not COCO.is_dir():
        print(f"skipped: eval data {EVAL} is absent")
        return 0
    truth = json.loads((OCR / "ground_truth.json").read_text(encoding="utf-8"))["images"]
    text_images = sorted(OCR / "images" / name for name in truth)
    photos = sorted(COCO.glob("*.jpg"))[: args.photos]
    cases = make_cases(args.cases, sorted(COCO.glob("*.jpg")))

    installed = load_manifest(args.models)
    onnx = Settings(
        ocr=OcrSettings(
            det_model="ppocr-v4-det", cls_model="ppocr-mobile-v2-cls", rec_model="ppocr-v4-rec"
        )
    )
    engines: dict[str, Callable[[Path], Read]] = {}
    readers: dict[str, TextReader] = {}
    for label, settings in (("tagd", Settings()), ("tagd, fp32 ORT only", onnx)):
        # What the pipeline runs: each task's default on the configured engine.
        reader = build(settings, prefer_engine(installed, settings.runtime.backend), args.models)
        assert isinstance(reader, TextReader)
        readers[label] = reader
        engines[label] = tagd_engine(reader)
    rapid = rapid_engine()
    if rapid is None:
        print("note: rapidocr_onnxruntime is not installed; tagd only, no recall of its lines")
    else:
        engines[REFERENCE] = rapid

    for run in engines.values():  # load models, first-shape compile
        run(text_images[1])

    files = text_images + cases + photos
    lanes = inference_lanes(Settings().runtime)
    # Whole passes, engines in turn, so load drift on a shared machine hits all alike.
    # tagd reads `lanes` files at once, as the scan's inference lanes do; RapidOCR
    # one after the other, each call on every core.
    seconds: dict[str, list[float]] = {k: [] for k in engines}
    reads: dict[str, dict[Path, Read]] = {}
    for _ in range(args.rounds):
        for name, run in engines.items():
            start = time.perf_counter()
            if name in readers:
                with ThreadPoolExecutor(lanes) as pool:
                    found = list(pool.map(run, files))
            else:
                found = [run(p) for p in files]
            seconds[name].append(time.perf_counter() - start)
            reads[name] = dict(zip(files, found, strict=True))
    rates = {name: len(files) / statistics.median(s) for name, s in seconds.items()}

    print(
        f"{len(text_images)} OCR dev images, {len(cases)} hard cases, {len(photos)} COCO "
        f"photos, {len(os.sched_getaffinity(0))} cores; machine shared: compare ratios\n"
    )
    dev_table(engines, reads, rates, truth, text_images)
    if rapid is not None:
        groups = {"ICDAR + document": text_images, "COCO photos": photos}
        for path in cases:
            groups.setdefault(path.stem.rsplit("-", 1)[0], []).append(path)
        groups["all files"] = files
        recall_table(engines, reads, rates, groups)
        gate_table(readers["tagd"], files, photos, reads)
    for label, reader in readers.items():
        print(f"{label}: stage runs {reader.runs}")
    return 0


GATE_SIDES = (320, 416, 512, 640)


def gate_table(
    reader: TextReader, files: list[Path], photos: list[Path], reads: dict[str, dict[Path, Read]]
) -> None:
    """Text gates tagd could put before detection: the detector itself at a small
    size, the photo skipped when no pixel reaches the text threshold. For each:
    its cost, the share of text-free COCO photos it would skip, and the recall of
    RapidOCR's lines left when skipped files lose what tagd read in them."""
    session = reader.model.session()
    frames = {p: letterbox(decoded(p, reader.min_long_side))[0] for p in files}
    found = {p: line_recall(confident(reads[REFERENCE][p]), [r[0] for r in reads["tagd"][p]])
             for p in files}  # fmt: skip
    total = sum(t for _, t in found.values())
    kept = sum(g for g, _ in found.values())
    free = [p for p in photos if not confident(reads[REFERENCE][p])]

    def detector_ms(side: int, min_side: int) -> tuple[float, dict[Path, float]]:
        peak, times = {}, []
        for p, frame in frames.items():
            h, w = frame.shape[:2]
            rw, rh = det_size(w, h, side, min_side)
            batch = normalise(cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_AREA))[None]
            start = time.perf_counter()
            peak[p] = float(session.run(batch)[0].max())
            times.append(time.perf_counter() - start)
        return statistics.median(times) * 1000, peak

    full_ms, _ = detector_ms(reader.settings.max_side, reader.settings.min_side)
    print(f"\ntext gates (the detector at a small size; full detection {full_ms:.1f} ms):")
    print("| gate long side | ms | text-free COCO photos skipped | recall with the gate |")
    print("| --- | --- | --- | --- |")
    for side in GATE_SIDES:
        ms, peak = detector_ms(side, side)
        skip = {p for p, v in peak.items() if v < reader.settings.det_threshold}
        lost = sum(found[p][0] for p in skip)
        print(
            f"| {side} | {ms:.1f} | {len([p for p in free if p in skip])}/{len(free)} | "
            f"{(kept - lost) / max(total, 1):.3f} (without: {kept / max(total, 1):.3f}) |"
        )


REFERENCE = "RapidOCR()"
CONFIDENT = 0.8


def confident(read: Read) -> list[str]:
    return [r[0] for r in read if len(r) > 2 and r[2] >= CONFIDENT]  # type: ignore[misc]


def recall_table(
    engines: dict[str, Callable[[Path], Read]],
    reads: dict[str, dict[Path, Read]],
    rates: dict[str, float],
    groups: dict[str, list[Path]],
) -> None:
    names = [n for n in engines if n != REFERENCE]
    print(f"\nrecall of {REFERENCE}'s confident lines (score >= {CONFIDENT}), by length:")
    print("| set | files | " + " | ".join(names) + " |")
    print("| --- | --- |" + " --- |" * len(names))
    for group, paths in groups.items():
        cells = []
        for name in names:
            got = total = 0
            for p in paths:
                g, t = line_recall(confident(reads[REFERENCE][p]), [r[0] for r in reads[name][p]])
                got, total = got + g, total + t
            cells.append(f"{got / max(total, 1):.3f} ({total} chars)")
        print(f"| {group} | {len(paths)} | " + " | ".join(cells) + " |")
    speeds = [f"{rates[n] / rates[REFERENCE]:.2f}x" for n in names]
    print("| images/s vs reference, all files | |" + "".join(f" {s} |" for s in speeds))


def dev_table(
    engines: dict[str, Callable[[Path], Read]],
    reads: dict[str, dict[Path, Read]],
    rates: dict[str, float],
    truth: dict[str, list[dict]],
    text_images: list[Path],
) -> None:
    head = ("engine", "ICDAR word recall", "word prec.", "doc char acc", "images/s, all files")
    print("| " + " | ".join(head) + " |")
    print("|" + " --- |" * len(head))
    for name in engines:
        hit = gt = phit = pred = 0
        for image in text_images:
            if image.name == DOCUMENT:
                continue
            h, g, ph, p = score_image(reads[name][image], truth[image.name])
            hit, gt, phit, pred = hit + h, gt + g, phit + ph, pred + p
        doc_truth = " ".join(r["text"] for r in truth.get(DOCUMENT, []))
        doc_read = " ".join(r[0] for r in reads[name].get(OCR / "images" / DOCUMENT, []))
        char_acc = 1 - Levenshtein.distance(doc_read, doc_truth) / max(1, len(doc_truth))
        print(
            f"| {name} | {hit}/{gt} = {hit / max(gt, 1):.2f} | {phit}/{pred} = "
            f"{phit / max(pred, 1):.2f} | {char_acc:.3f} | {rates[name]:.2f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
