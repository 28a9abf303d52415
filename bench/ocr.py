"""OCR accuracy and speed: tagd's PP-OCRv4 analyzer next to RapidOCR, same files, same run.

Accuracy on ../shared/eval/ocr: word recall and precision over the ICDAR
street scenes (case-insensitive, punctuation at word ends ignored; a region
marked `legible: false` counts neither way: words read inside one are not
false positives), and character accuracy (1 - edit distance / length) on the
scanned document. Speed: images/s over a mixed library, the OCR set plus 100
COCO photos; each image runs through every engine in turn so load drift on a
shared machine hits all of them alike. RapidOCR (`rapidocr_onnxruntime`) is
optional: `pip install --no-deps rapidocr-onnxruntime==1.4.4 pyclipper shapely
six` (its opencv-python dependency is not needed next to the headless one).

    .venv/bin/python bench/ocr.py [--photos 100]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from rapidfuzz.distance import Levenshtein

from tagd.analyzers.ocr import TextReader, build
from tagd.config import OcrSettings, Settings
from tagd.paths import models_dir
from tagd.runtime.manifest import load_manifest

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
    for text, (x0, y0, x1, y1) in found:
        centre = ((x0 + x1) / 2, (y0 + y1) / 2)
        if any(cv2.pointPolygonTest(p, centre, False) >= 0 for p in ignore):
            continue  # read inside an unreadable region: neither a hit nor a miss
        predicted.extend(norm_words(text))
    hits = sum((Counter(predicted) & truth).values())
    return hits, sum(truth.values()), hits, len(predicted)


def tagd_engine(reader: TextReader) -> Callable[[Path], Read]:
    def run(path: Path) -> Read:
        image = cv2.imread(str(path))
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
        for quad, text, _score in result or []:
            xs = [p[0] for p in quad]
            ys = [p[1] for p in quad]
            out.append((text, (min(xs), min(ys), max(xs), max(ys))))
        return out

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=100, help="COCO photos in the mix")
    parser.add_argument("--models", type=Path, default=models_dir(Settings()))
    args = parser.parse_args()
    if not OCR.is_dir() or not COCO.is_dir():
        print(f"skipped: eval data {EVAL} is absent")
        return 0
    truth = json.loads((OCR / "ground_truth.json").read_text(encoding="utf-8"))["images"]
    text_images = sorted(OCR / "images" / name for name in truth)
    photos = sorted(COCO.glob("*.jpg"))[: args.photos]

    specs = load_manifest(args.models)
    onnx = Settings(
        ocr=OcrSettings(
            det_model="ppocr-v4-det", cls_model="ppocr-mobile-v2-cls", rec_model="ppocr-v4-rec"
        )
    )
    engines: dict[str, Callable[[Path], Read]] = {}
    readers: dict[str, TextReader] = {}
    for label, settings in (("tagd (OpenVINO, 960)", Settings()), ("tagd (ORT, 960)", onnx)):
        reader = build(settings, specs, args.models)
        assert isinstance(reader, TextReader)
        readers[label] = reader
        engines[label] = tagd_engine(reader)
    rapid = rapid_engine()
    if rapid is None:
        print("note: rapidocr_onnxruntime is not installed; tagd only")
    else:
        engines["RapidOCR 1.4.4"] = rapid

    warm = text_images[1]
    for run in engines.values():  # load models, first-shape compile
        run(warm)

    files = text_images + photos
    times: dict[str, dict[Path, float]] = {k: {} for k in engines}
    reads: dict[str, dict[Path, Read]] = {k: {} for k in engines}
    for path in files:
        for name, run in engines.items():
            start = time.perf_counter()
            reads[name][path] = run(path)
            times[name][path] = time.perf_counter() - start

    ref = "RapidOCR 1.4.4" if rapid else next(iter(engines))
    total_ref = sum(times[ref].values())
    print(
        f"{len(text_images)} OCR images + {len(photos)} COCO photos; machine shared: compare ratios"
    )
    head = (
        "engine",
        "word recall",
        "word prec.",
        "doc char acc",
        "text img ms (median)",
        "photo ms (median)",
        "images/s",
        "speed vs ref",
    )
    print(" | ".join(head))
    print(" | ".join("---" for _ in head))
    for name in engines:
        hit = gt = phit = pred = 0
        for image in text_images:
            if image.name == DOCUMENT:
                continue
            h, g, ph, p = score_image(reads[name][image], truth[image.name])
            hit, gt, phit, pred = hit + h, gt + g, phit + ph, pred + p
        doc_truth = " ".join(r["text"] for r in truth.get(DOCUMENT, []))
        doc_read = " ".join(t for t, _ in reads[name].get(OCR / "images" / DOCUMENT, []))
        char_acc = 1 - Levenshtein.distance(doc_read, doc_truth) / max(1, len(doc_truth))
        total = sum(times[name].values())
        print(
            f"{name} | {hit}/{gt} = {hit / max(gt, 1):.2f} | {phit}/{pred} = "
            f"{phit / max(pred, 1):.2f} | {char_acc:.3f} | "
            f"{statistics.median(times[name][p] for p in text_images) * 1000:.0f} | "
            f"{statistics.median(times[name][p] for p in photos) * 1000:.0f} | "
            f"{len(files) / total:.2f} | {total_ref / total:.2f}x"
        )
    for label, reader in readers.items():
        print(f"{label}: stage runs {reader.runs}")
    for name in engines:
        with_text = [p.name for p in photos if reads[name][p]]
        print(
            f"{name}: text found in {len(with_text)}/{len(photos)} COCO photos: "
            + ", ".join(with_text[:12])
            + (" ..." if len(with_text) > 12 else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
