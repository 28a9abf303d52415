"""Latency and accuracy of every model variant in a models dir, one table per family.

Usage: python bench/models.py [--models-dir DIR] [--families a,b] [--rounds N] [--runs N]

For each variant in manifest.toml (fp32 ONNX, int8, OpenVINO IR ...) whose
files are installed: milliseconds per image at batch 1 and batch 8 on the
runtime's own sessions (2 threads unless --threads), medians over runs that
alternate between the variants of one model, so a busy moment on a shared
machine costs them alike; ratios are against the fp32 ONNX variant of the
same model, measured in the same process. Then accuracy on ../shared/eval,
through the runtime analyzers, by task:

- objects: mAP@0.5 on objects-coco128-train (COCO 101-point AP, the code of
  bench/objects_accuracy.py), min score 0.001;
- classes: top-1 / top-5 on classes-imagenet-dev (100 ImageNet photos).

Other tasks print "-" until their owners add a function to ACCURACY (see the
HOOK comment): face pair verification and OCR character accuracy go there.
Families whose files are not installed are skipped, saying so.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import re
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from tagd.config import Settings
from tagd.paths import models_dir
from tagd.runtime.backends import Session, open_session
from tagd.runtime.manifest import ModelError, ModelSpec, load_manifest, verified_path
from tagd.runtime.model import ManagedModel

BENCH = Path(__file__).resolve().parent
EVAL = BENCH.parents[1] / "shared" / "eval"
BATCHES = (1, 8)
VARIANT_SUFFIX = re.compile(r"-(int8|fp16|openvino(-fp16|-int8)?)$")

# ---------------------------------------------------------------- accuracy per task

Accuracy = Callable[[ModelSpec, Path, Path, int], dict[str, float] | None]


def objects_map(spec: ModelSpec, models_dir: Path, eval_dir: Path, threads: int) -> dict | None:
    """mAP@0.5 (%) of the runtime detector on the 128 COCO dev photos."""
    data = eval_dir / "objects-coco128-train"
    if not (data / "images").is_dir():
        return None
    from tagd.analyzers.objects import ObjectDetector

    ap = _objects_accuracy()
    truth = _coco_truth(data)
    detector = ObjectDetector(
        _managed(spec, models_dir, threads), min_score=0.001, nms_iou=0.45, max_detections=100
    )
    boxes = []
    for path in sorted((data / "images").glob("*.jpg")):
        found = detector.analyze([cv2.imread(str(path))])[0]
        boxes += [ap.Box(path.stem, f.label, f.box, f.score) for f in found]
    return {"mAP@.5": ap.mean_ap(boxes, truth, 0.5)}


def _objects_accuracy():  # -> the bench/objects_accuracy.py module
    sys.path.insert(0, str(BENCH))  # bench/ holds scripts, not a package
    return importlib.import_module("objects_accuracy")


@functools.cache
def _coco_truth(data: Path) -> list:
    """Ground-truth boxes, read once for all variants."""
    return _objects_accuracy().load_truth(data)[0]


def imagenet_topk(spec: ModelSpec, models_dir: Path, eval_dir: Path, threads: int) -> dict | None:
    """Top-1 / top-5 (%) of the runtime classifier on classes-imagenet-dev."""
    from tagd.runtime.classifier import Classifier

    data = eval_dir / "classes-imagenet-dev"
    if not (data / "labels.json").is_file():
        return None
    truth = json.loads((data / "labels.json").read_text(encoding="utf-8"))["labels"]
    files = sorted(truth)
    classifier = Classifier(_managed(spec, models_dir, threads))
    found = classifier.classify([cv2.imread(str(data / "images" / f)) for f in files], k=5)
    hits = [[p.index for p in top] for top in found]
    expected = [truth[f]["class_index"] for f in files]
    return {
        "top-1": 100 * float(np.mean([h[0] == e for h, e in zip(hits, expected, strict=True)])),
        "top-5": 100 * float(np.mean([e in h for h, e in zip(hits, expected, strict=True)])),
    }


# HOOK: task -> accuracy function(spec, models_dir, eval_dir, threads) -> {metric: value} or
# None when its eval data is absent. Owners add theirs here: "faces" (pair verification on
# eval/faces), "ocr" (character accuracy on eval/ocr). Tasks without one print "-".
ACCURACY: dict[str, Accuracy] = {
    "objects": objects_map,
    "classes": imagenet_topk,
}


def _managed(spec: ModelSpec, models_dir: Path, threads: int) -> ManagedModel:
    return ManagedModel(spec, models_dir, backend="cpu", threads=threads, idle_unload=600)


# ---------------------------------------------------------------- latency


@dataclass
class Row:
    spec: ModelSpec
    ms: dict[int, float | None] = field(default_factory=dict)  # batch -> ms per image
    accuracy: dict[str, float] | None = None
    note: str = ""


def blob(spec: ModelSpec, session: Session, batch: int) -> np.ndarray:
    """Random input of the model's image size (CNN cost does not depend on pixel values)."""
    width, height = spec.input
    channels = session.input_shape[1] if isinstance(session.input_shape[1], int) else 3
    rng = np.random.default_rng(0)
    return rng.standard_normal((batch, channels, height, width)).astype(np.float32)


def fixed_batch(session: Session) -> bool:
    return session.input_shape[0] == 1


def time_variants(rows: list[Row], models_dir: Path, threads: int, rounds: int, runs: int) -> None:
    """Fill row.ms: each batch size measured round-robin over the variants of one model."""
    sessions: list[Session | None] = []
    for row in rows:
        try:
            sessions.append(open_session(models_dir / row.spec.file, "cpu", threads))
        except ModelError as exc:
            sessions.append(None)
            row.note = f"cannot run here: {str(exc)[:80]}"
    for batch in BATCHES:
        live = [
            (row, s, blob(row.spec, s, batch))
            for row, s in zip(rows, sessions, strict=True)
            if s is not None and not (batch > 1 and fixed_batch(s))
        ]
        for row, s in zip(rows, sessions, strict=True):
            if s is not None and batch > 1 and fixed_batch(s):
                row.ms[batch] = None  # the file takes one image per call
        times: dict[int, list[float]] = defaultdict(list)
        try:
            for _, s, x in live:  # warm-up: first calls allocate and pick kernels
                s.run(x)
            for _ in range(rounds):
                for i, (_, s, x) in enumerate(live):
                    for _ in range(runs):
                        start = time.perf_counter()
                        s.run(x)
                        times[i].append(time.perf_counter() - start)
        except Exception as exc:  # a model whose input is not an image (a text tower)
            for row, _, _ in live:
                row.note = row.note or f"latency not measured: {str(exc)[:80]}"
            continue
        for i, (row, _, _) in enumerate(live):
            row.ms[batch] = statistics.median(times[i]) * 1000 / batch


# ---------------------------------------------------------------- report


def group_rows(specs: list[ModelSpec], models_dir: Path) -> dict[str, dict[str, list[Row]]]:
    """family -> model (name without its variant suffix) -> rows; uninstalled ones left out."""
    groups: dict[str, dict[str, list[Row]]] = defaultdict(lambda: defaultdict(list))
    for spec in specs:
        try:
            verified_path(spec, models_dir)
        except ModelError:
            continue
        base = VARIANT_SUFFIX.sub("", spec.name)
        groups[spec.family or spec.task][base].append(Row(spec))
    return groups


def reference(rows: list[Row]) -> Row | None:
    """The fp32 ONNX variant the ratios are against."""
    onnx = [r for r in rows if r.spec.engine == "onnx"]
    fp32 = [r for r in onnx if r.spec.variant == "fp32"]
    return (fp32 or onnx or [None])[0]


def print_family(family: str, models: dict[str, list[Row]]) -> None:
    print(f"\n== {family} ==")
    head = f"  {'variant':<34} {'engine':<9}"
    for batch in BATCHES:
        head += f" {f'b{batch} ms/img':>11} {'x fp32':>6}"
    print(head + "  accuracy")
    for rows in models.values():
        ref = reference(rows)
        for row in rows:
            mark = "*" if row.spec.default else " "
            line = f" {mark}{row.spec.name:<34} {row.spec.engine:<9}"
            for batch in BATCHES:
                line += _cell(row.ms.get(batch), ref.ms.get(batch) if ref else None, batch, row)
            print(f"{line}  {_accuracy(row)}{'  ' + row.note if row.note else ''}")


def _cell(ms: float | None, ref_ms: float | None, batch: int, row: Row) -> str:
    if ms is None:
        return f" {'fixed b1' if batch in row.ms else '-':>11} {'':>6}"
    ratio = f"{ms / ref_ms:.2f}" if ref_ms else "-"
    return f" {ms:11.2f} {ratio:>6}"


def _accuracy(row: Row) -> str:
    if row.accuracy is None:
        return "-"
    return " ".join(f"{k} {v:.1f}" for k, v in row.accuracy.items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, default=models_dir(Settings()))
    parser.add_argument("--eval-dir", type=Path, default=EVAL)
    parser.add_argument("--families", help="comma-separated families (default: all installed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6, help="alternations between variants")
    parser.add_argument("--runs", type=int, default=3, help="timed calls per variant per round")
    args = parser.parse_args(argv)
    try:
        specs = list(load_manifest(args.models_dir).values())
    except ModelError as exc:
        print(f"no models to benchmark: {exc}")
        return 0
    wanted = set(args.families.split(",")) if args.families else None
    groups = group_rows(specs, args.models_dir)
    for family in sorted({s.family or s.task for s in specs}):
        if wanted is not None and family not in wanted:
            continue
        if family not in groups:
            print(f"\n== {family} ==\n  skipped: no variant's files are installed in "
                  f"{args.models_dir} (run `tagd models fetch`)")  # fmt: skip
            continue
        start = time.perf_counter()
        for rows in groups[family].values():
            time_variants(rows, args.models_dir, args.threads, args.rounds, args.runs)
            for row in rows:
                measure = ACCURACY.get(row.spec.task)
                if measure is not None and args.eval_dir.is_dir():
                    row.accuracy = measure(row.spec, args.models_dir, args.eval_dir, args.threads)
        print_family(family, groups[family])
        print(f"  ({time.perf_counter() - start:.0f} s)")
    if not args.eval_dir.is_dir():
        print(f"\nno evaluation data at {args.eval_dir}: accuracy not measured")
    print("\n* = the task's default; ms per image, medians; x fp32 = ratio to the fp32 ONNX file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
