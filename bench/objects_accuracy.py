"""Object detection accuracy of `tagd scan`, per detector, against a plain YOLOX reference.

Usage: python bench/objects_accuracy.py [--runs N]

Copies ../shared/eval/objects-coco128-train/images to a temp folder, runs
`tagd scan` (CLI, temp state dir, min_score 0.001, no sidecars) and
`tagd export --format jsonl`, then scores the exported boxes against the YOLO
labels: COCO-style 101-point interpolated AP per class, averaged over the
classes present in the labels, at IoU 0.5 and over 0.5:0.95. The same metric
is computed for a reference written here without tagd: cv2.imread, YOLOX
letterbox, onnxruntime, grid decode, numpy class-aware NMS. A third row runs
the reference's raw outputs through OpenCV's NMSBoxesBatched with top_k set,
which prunes candidates before suppression and loses objects: a reminder of
why tagd's NMS call must not set it.
Every installed detector (YOLOX-nano, PP-PicoDet-S) is scanned the same way
and printed side by side; a second table scores what users see, the tags: per
photo, the labels detected at or above a score threshold against the labelled
ones (micro precision and recall over all photos).
Exits 1 when tagd's YOLOX and the reference differ by more than 0.5 mAP@0.5 points.
Timings: median of --runs runs of each, measured in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from tagd.config import Settings
from tagd.paths import models_dir

REPO = Path(__file__).resolve().parents[1]
EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
DATA = EVAL / "objects-coco128-train"
MODEL = models_dir(Settings()) / "yolox_nano.onnx"

SIZE = 416
STRIDES = (8, 16, 32)
MIN_SCORE = 0.001
NMS_IOU = 0.45
MAX_DETS = 100
MAX_DIFF_POINTS = 0.5
IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_POINTS = np.linspace(0.0, 1.0, 101)

DETECTORS = ("yolox-nano", "picodet-s-416")
TAG_THRESHOLDS = (0.3, 0.4, 0.5, 0.6)

CONFIG = f"""
[objects]
model = "{{model}}"
min_score = {MIN_SCORE}
nms_iou = {NMS_IOU}
max_detections = {MAX_DETS}

[xmp]
enabled = false

# Objects only: the other analyzers would add time, not change the boxes.
[ocr]
enabled = false
[concepts]
enabled = false
[faces]
enabled = false
[duplicates]
enabled = false
"""


@dataclass(frozen=True)
class Box:
    image: str  # file stem
    label: str
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in upright pixels
    score: float = 1.0


@dataclass
class Variant:
    name: str
    boxes: list[Box]
    seconds: float | None = None  # median per run
    note: str = ""


# ---------------------------------------------------------------- ground truth


def load_truth(data: Path) -> tuple[list[Box], list[str]]:
    names = (data / "classes.txt").read_text(encoding="utf-8").splitlines()
    truth: list[Box] = []
    images = sorted((data / "images").glob("*.jpg"))
    report_unpaired(images, sorted((data / "labels").glob("*.txt")))
    for image in images:
        height, width = cv2.imread(str(image)).shape[:2]
        label_file = data / "labels" / f"{image.stem}.txt"
        lines = label_file.read_text().splitlines() if label_file.exists() else []
        for line in filter(None, (ln.split() for ln in lines)):
            cls, cx, cy, w, h = int(line[0]), *map(float, line[1:5])
            box = ((cx - w / 2) * width, (cy - h / 2) * height,
                   (cx + w / 2) * width, (cy + h / 2) * height)  # fmt: skip
            truth.append(Box(image.stem, names[cls], box))
    return truth, names


def report_unpaired(images: list[Path], labels: list[Path]) -> None:
    no_labels = sorted({p.stem for p in images} - {p.stem for p in labels})
    no_image = sorted({p.stem for p in labels} - {p.stem for p in images})
    if no_labels:
        print(f"images without labels (all their detections are false positives): {no_labels}")
    if no_image:
        print(f"label files without an image (ignored): {no_image}")


# ---------------------------------------------------------------- COCO-style AP


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in a (N,4) with every box in b (M,4), xyxy."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_a = (a[:, 2:] - a[:, :2]).prod(1)
    area_b = (b[:, 2:] - b[:, :2]).prod(1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-12)


def match_image(dets: list[Box], gts: list[Box], threshold: float) -> list[tuple[float, bool]]:
    """(score, true positive) per detection, greedy by score, best unmatched IoU (COCO)."""
    dets = sorted(dets, key=lambda d: -d.score)
    if not gts:
        return [(d.score, False) for d in dets]
    det_xyxy = np.array([d.box for d in dets]).reshape(-1, 4)
    ious = iou_matrix(det_xyxy, np.array([g.box for g in gts]))
    taken = np.zeros(len(gts), bool)
    out = []
    for i, det in enumerate(dets):
        row = np.where(taken, -1.0, ious[i])
        best = int(row.argmax())
        hit = row[best] >= threshold
        taken[best] |= hit
        out.append((det.score, bool(hit)))
    return out


def average_precision(matches: list[tuple[float, bool]], n_truth: int) -> float:
    """101-point interpolated AP (pycocotools' recipe)."""
    if not matches:
        return 0.0
    order = sorted(matches, key=lambda m: -m[0])
    tp = np.cumsum([m[1] for m in order])
    fp = np.cumsum([not m[1] for m in order])
    recall = tp / n_truth
    precision = tp / np.maximum(tp + fp, np.finfo(float).eps)
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone envelope
    idx = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = precision[np.minimum(idx, len(precision) - 1)]
    return float(np.where(idx < len(precision), sampled, 0.0).mean())


def mean_ap(dets: list[Box], truth: list[Box], threshold: float) -> float:
    gt_by: dict[tuple[str, str], list[Box]] = defaultdict(list)
    for g in truth:
        gt_by[(g.label, g.image)].append(g)
    det_by: dict[tuple[str, str], list[Box]] = defaultdict(list)
    for d in dets:
        det_by[(d.label, d.image)].append(d)
    classes = sorted({g.label for g in truth})
    aps = []
    for label in classes:
        keys = {k for k in (*gt_by, *det_by) if k[0] == label}
        matches = [
            m for k in keys for m in match_image(det_by.get(k, []), gt_by.get(k, []), threshold)
        ]
        aps.append(average_precision(matches, sum(len(gt_by.get(k, [])) for k in keys)))
    return float(np.mean(aps)) * 100


# ---------------------------------------------------------------- tagd (CLI)


def tagd(args: list[str], state: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"TAGD_STATE_DIR": str(state), "TAGD_MODELS_DIR": str(MODEL.parent)}
    cmd = [sys.executable, "-m", "tagd", "--config", str(config), *args]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode not in (0, 1):
        sys.exit(f"`tagd {' '.join(args)}` failed ({done.returncode}):\n{done.stderr}")
    return done


def run_tagd(
    images: Path, work: Path, config: Path, runs: int, model: str
) -> tuple[Variant, float]:
    """Scan with a fresh state dir each run; export the last one."""
    times, analyse = [], []
    for run in range(runs):
        state = work / f"{model}-state{run}"
        start = time.perf_counter()
        scan = tagd(["scan", str(images)], state, config)
        times.append(time.perf_counter() - start)
        found = re.search(r"analysed \d+ files .* in ([\d.]+) s", scan.stdout)
        analyse.append(float(found.group(1)) if found else float("nan"))
    out = work / f"{model}-export.jsonl"
    tagd(["export", "--format", "jsonl", "-o", str(out)], state, config)
    boxes, errors = parse_export(out)
    note = f"{errors} files not ok" if errors else ""
    name = f"tagd scan, {model}"
    return Variant(name, boxes, statistics.median(times), note), statistics.median(analyse)


def parse_export(path: Path) -> tuple[list[Box], int]:
    boxes, errors = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        item = json.loads(line)
        errors += item["status"] != "ok"
        stem = Path(item["path"]).stem
        boxes += [Box(stem, o["label"], tuple(o["box"]), o["score"]) for o in item["objects"]]
    return boxes, errors


# ---------------------------------------------------------------- plain reference


def preprocess(image: np.ndarray) -> tuple[np.ndarray, float]:
    """YOLOX letterbox: top-left, pad 114, BGR 0-255 float32, NCHW."""
    h, w = image.shape[:2]
    ratio = min(SIZE / h, SIZE / w)
    resized = cv2.resize(image, (int(w * ratio), int(h * ratio)), interpolation=cv2.INTER_LINEAR)
    padded = np.full((SIZE, SIZE, 3), 114, np.uint8)
    padded[: resized.shape[0], : resized.shape[1]] = resized
    return np.ascontiguousarray(padded.transpose(2, 0, 1), np.float32)[None], ratio


def grid_decode(out: np.ndarray) -> np.ndarray:
    """(N, 85) raw rows -> xyxy in letterbox pixels, objectness, class probs."""
    grids, strides = [], []
    for stride in STRIDES:
        side = SIZE // stride
        xv, yv = np.meshgrid(np.arange(side), np.arange(side))
        grids.append(np.stack((xv, yv), 2).reshape(-1, 2))
        strides.append(np.full((side * side, 1), stride))
    grid, stride = np.concatenate(grids), np.concatenate(strides)
    xy = (out[:, :2] + grid) * stride
    wh = np.exp(out[:, 2:4]) * stride
    return np.concatenate([xy - wh / 2, xy + wh / 2, out[:, 4:]], 1)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy single-class NMS; indices kept, best first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        order = rest[iou_matrix(boxes[best : best + 1], boxes[rest])[0] <= threshold]
    return keep


def numpy_nms(boxes: np.ndarray, scores: np.ndarray, cls: np.ndarray) -> np.ndarray:
    keep = [np.flatnonzero(cls == c)[nms(boxes[cls == c], scores[cls == c], NMS_IOU)]
            for c in np.unique(cls)]  # fmt: skip
    kept = np.concatenate(keep) if keep else np.zeros(0, int)
    return kept[np.argsort(-scores[kept], kind="stable")][:MAX_DETS]


def opencv_nms(boxes: np.ndarray, scores: np.ndarray, cls: np.ndarray) -> np.ndarray:
    """NMSBoxesBatched with top_k = max detections: prunes before suppressing."""
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1)
    picked = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), scores.tolist(), cls.tolist(), MIN_SCORE, NMS_IOU, top_k=MAX_DETS
    )
    return np.asarray(picked, int).reshape(-1)[:MAX_DETS]


NmsFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def postprocess(
    raw: np.ndarray, ratio: float, shape: tuple[int, ...], stem: str, names: list[str], pick: NmsFn
) -> list[Box]:
    rows = grid_decode(raw)
    cls = rows[:, 5:].argmax(1)
    scores = rows[:, 4] * rows[np.arange(len(rows)), 5 + cls]
    keep = scores >= MIN_SCORE
    boxes, scores, cls = rows[keep, :4] / ratio, scores[keep], cls[keep]
    h, w = shape
    boxes = np.clip(boxes, 0, [w, h, w, h])
    return [Box(stem, names[cls[i]], tuple(map(float, boxes[i])), float(scores[i]))
            for i in pick(boxes, scores, cls)]  # fmt: skip


def run_reference(
    images: list[Path], names: list[str], pick: NmsFn
) -> tuple[list[Box], list[tuple[np.ndarray, float, tuple[int, ...], str]]]:
    """Full reference run (session load included); also returns raw outputs."""
    session = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    feed = session.get_inputs()[0].name
    boxes, raws = [], []
    for path in images:
        image = cv2.imread(str(path))
        blob, ratio = preprocess(image)
        raw = session.run(None, {feed: blob})[0][0]
        raws.append((raw, ratio, image.shape[:2], path.stem))
        boxes += postprocess(raw, ratio, image.shape[:2], path.stem, names, pick)
    return boxes, raws


def reference_variants(images: list[Path], names: list[str], runs: int) -> list[Variant]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        boxes, raws = run_reference(images, names, numpy_nms)
        times.append(time.perf_counter() - start)
    cv_boxes = [b for raw in raws for b in postprocess(*raw, names, opencv_nms)]
    return [
        Variant("reference (numpy NMS)", boxes, statistics.median(times)),
        Variant("reference + cv2 NMS top_k=100", cv_boxes, note="top_k prunes before NMS"),
    ]


# ---------------------------------------------------------------- report


def print_table(variants: list[Variant], truth: list[Box], runs: int) -> float:
    """Print the table; returns tagd's mAP@0.5 minus the reference's, in points."""
    print(f"\n{len(truth)} labelled boxes; times are medians of {runs} runs\n")
    head = f"{'variant':<31} {'mAP@.5':>7} {'mAP@.5:.95':>10} {'boxes':>6} {'diff':>6} {'s/run':>7}"
    print(head)
    print("-" * len(head))
    scores = [mean_ap(v.boxes, truth, 0.5) for v in variants]
    for variant, score in zip(variants, scores, strict=True):
        coco = np.mean([mean_ap(variant.boxes, truth, t) for t in IOU_THRESHOLDS])
        secs = f"{variant.seconds:7.2f}" if variant.seconds is not None else f"{'-':>7}"
        print(
            f"{variant.name:<31} {score:7.2f} {coco:10.2f} {len(variant.boxes):6d} "
            f"{score - scores[1]:+6.2f} {secs}  {variant.note}"
        )
    return scores[0] - scores[1]


def tag_scores(boxes: list[Box], truth: list[Box], threshold: float) -> tuple[float, float]:
    """Micro precision and recall of per-photo label sets at a score threshold."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for g in truth:
        wanted[g.image].add(g.label)
    found: dict[str, set[str]] = defaultdict(set)
    for b in boxes:
        if b.score >= threshold:
            found[b.image].add(b.label)
    images = set(wanted) | set(found)
    hits = sum(len(found[i] & wanted[i]) for i in images)
    said = sum(len(found[i]) for i in images)
    real = sum(len(wanted[i]) for i in images)
    return hits / max(said, 1), hits / max(real, 1)


def print_tags(variants: list[Variant], truth: list[Box]) -> None:
    print("\ntags per photo (labels at or above the threshold vs the labelled ones)\n")
    head = f"{'detector':<31}" + "".join(f"  P@{t:.1f}  R@{t:.1f}" for t in TAG_THRESHOLDS)
    print(head)
    print("-" * len(head))
    for variant in variants:
        cells = [tag_scores(variant.boxes, truth, t) for t in TAG_THRESHOLDS]
        print(f"{variant.name:<31}" + "".join(f"  {p:5.3f}  {r:5.3f}" for p, r in cells))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each (default 3)")
    args = parser.parse_args(argv)
    if not (DATA / "images").is_dir():
        print(f"no evaluation data at {DATA}; nothing to benchmark")
        return 0
    if not MODEL.is_file():
        print(f"{MODEL} missing: run `tagd models fetch` first")
        return 0
    truth, names = load_truth(DATA)
    with tempfile.TemporaryDirectory(prefix="tagd-objects-") as tmp:
        work = Path(tmp)
        images = work / "images"
        shutil.copytree(DATA / "images", images)
        scans: list[tuple[Variant, float]] = []
        for model in installed_detectors():
            config = work / f"{model}.toml"
            config.write_text(CONFIG.format(model=model), encoding="utf-8")
            scans.append(run_tagd(images, work, config, args.runs, model))
        refs = reference_variants(sorted(images.glob("*.jpg")), names, args.runs)
    ours = scans[0][0]
    diff = print_table([ours, *refs, *(v for v, _ in scans[1:])], truth, args.runs)
    print_tags([v for v, _ in scans], truth)
    print()
    for variant, analyse_s in scans:
        print(
            f"{variant.name}: wall {variant.seconds:.2f} s per run (CLI start-up, index, model "
            f"load, analysis; its own analyse phase {analyse_s:.2f} s) vs reference "
            f"{refs[0].seconds:.2f} s: {(variant.seconds or 0) / (refs[0].seconds or 1):.2f}x"
        )
    if abs(diff) > MAX_DIFF_POINTS:
        print(f"FAIL: tagd differs from the reference by {diff:+.2f} mAP@0.5 points "
              f"(limit {MAX_DIFF_POINTS})")  # fmt: skip
        return 1
    print(f"OK: tagd within {MAX_DIFF_POINTS} mAP@0.5 points of the reference ({diff:+.2f})")
    return 0


def installed_detectors() -> list[str]:
    """The detectors of DETECTORS that `tagd models fetch` installed, YOLOX first."""
    from tagd.runtime.manifest import installed_specs

    specs = installed_specs(MODEL.parent)
    missing = [name for name in DETECTORS if name not in specs]
    if missing:
        print(f"not installed (run `tagd models fetch`): {', '.join(missing)}")
    return [name for name in DETECTORS if name in specs]


if __name__ == "__main__":
    sys.exit(main())
