"""YOLOX objects on real photos: letterbox, decode, NMS, boxes in original pixels."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED, require_models

from tagd.analyzers.objects import ObjectDetector
from tagd.analyzers.yolox_head import letterbox, make_grids
from tagd.config import TagGroupSettings, TagRule, TagSettings
from tagd.media.image import decode_image
from tagd.policy.tags import TagPolicy
from tagd.records import Detection
from tagd.runtime.manifest import load_manifest
from tagd.runtime.model import ManagedModel

COCO = SHARED / "eval" / "objects-coco128-train"


@pytest.fixture(scope="module")
def detector() -> ObjectDetector:
    models = require_models("yolox-nano")
    spec = load_manifest(models)["yolox-nano"]
    model = ManagedModel(spec, models, backend="cpu", threads=2, idle_unload=60)
    return ObjectDetector(model, min_score=0.05, nms_iou=0.45, max_detections=100)


def _labels(name: str) -> set[str]:
    classes = (COCO / "classes.txt").read_text().split("\n")
    rows = (COCO / "labels" / f"{Path(name).stem}.txt").read_text().split("\n")
    return {classes[int(r.split()[0])] for r in rows if r.strip()}


def test_letterbox_pads_bottom_right_with_114():
    image = np.full((100, 200, 3), 7, np.uint8)
    chw, ratio = letterbox(image, 416, 416)
    assert chw.shape == (3, 416, 416) and ratio == pytest.approx(2.08)
    assert chw[:, 0, 0].tolist() == [7, 7, 7]
    assert chw[:, 415, 415].tolist() == [114, 114, 114]


def test_grids_cover_all_strides():
    grids, strides = make_grids(416, 416)
    assert len(grids) == len(strides) == 52 * 52 + 26 * 26 + 13 * 13 == 3549
    assert grids[-1].tolist() == [12, 12] and strides[-1, 0] == 32


def test_finds_the_labelled_objects_in_real_photos(detector: ObjectDetector):
    if not COCO.is_dir():
        pytest.skip("../shared/eval is not present")
    names = ["000000000036.jpg", "000000000025.jpg", "000000000074.jpg", "000000000154.jpg"]
    images = [cv2.imread(str(COCO / "images" / n)) for n in names]
    results = detector.analyze(images)
    for name, image, found in zip(names, images, results, strict=True):
        confident = {f.label for f in found if f.score >= 0.5}
        assert confident, f"nothing found in {name}"
        assert confident <= _labels(name) | {"person"}, (name, confident, _labels(name))
        h, w = image.shape[:2]
        for f in found:
            x0, y0, x1, y1 = f.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h


def test_reduced_decode_boxes_match_full_decode(detector: ObjectDetector):
    if not COCO.is_dir():
        pytest.skip("../shared/eval is not present")
    photo = cv2.imread(str(COCO / "images" / "000000000036.jpg"))
    big = cv2.resize(photo, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    reduced = decode_image(data, min_long_side=416)
    full = decode_image(data, min_long_side=416, reduced=False)
    assert reduced.scale > 1 and full.scale == 1
    best = []
    for decoded in (reduced, full):
        top = max(detector.analyze([decoded.image])[0], key=lambda f: f.score)
        best.append((top.label, np.array(top.box) * decoded.scale))
    assert best[0][0] == best[1][0]
    assert np.abs(best[0][1] - best[1][1]).max() < 0.03 * max(big.shape)


def test_tag_policy_thresholds_aliases_parents():
    group = TagGroupSettings(
        parent="Objects",
        threshold=0.5,
        labels={
            "person": TagRule(threshold=0.8, name="people", parent="People"),
            "tie": TagRule(enabled=False),
        },
    )
    policy = TagPolicy(TagSettings(root="AI", objects=group))
    box = (0.0, 0.0, 1.0, 1.0)
    dets = [
        Detection("dog", 0.6, box),
        Detection("dog", 0.9, box),
        Detection("cat", 0.4, box),
        Detection("person", 0.7, box),
        Detection("tie", 0.99, box),
    ]
    assert [(t.name, t.score) for t in policy.object_tags(dets)] == [("AI|Objects|dog", 0.9)]
    dets.append(Detection("person", 0.85, box))
    names = [t.name for t in policy.object_tags(dets)]
    assert names == ["AI|Objects|dog", "AI|People"]  # "people" only repeats its parent
    assert TagPolicy(TagSettings()).fingerprint != policy.fingerprint
