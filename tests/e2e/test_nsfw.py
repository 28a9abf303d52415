"""NSFW analyzer: off by default; when on, NudeNet boxes go through the tag policy.

The installed NudeNet 320n runs on real portraits from the shared faces set
(its FACE_FEMALE / FACE_MALE classes are the labels such photos can show).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import MISSING_MODELS, MODELS_DIR, SHARED

from tagd.analyzers.nsfw import NsfwDetector, letterbox
from tagd.config import NsfwTagSettings, Settings, TagRule, TagSettings
from tagd.policy import nsfw as nsfw_policy
from tagd.policy.tags import TagPolicy
from tagd.records import Detection, Media
from tagd.runtime.manifest import default_for, load_manifest
from tagd.runtime.model import ManagedModel

FACES = SHARED / "eval" / "faces" / "images"
PORTRAITS = ["img1.jpg", "img10.jpg"]


@pytest.fixture(scope="module")
def detector() -> NsfwDetector:
    spec = default_for(load_manifest(MODELS_DIR), "nsfw")
    if spec is None:
        pytest.skip(MISSING_MODELS.format(what="a NudeNet model"))
    model = ManagedModel(spec, MODELS_DIR, backend="cpu", threads=2, idle_unload=60)
    return NsfwDetector(model, min_score=0.2, nms_iou=0.45, max_detections=50)


def test_off_by_default():
    from tagd.pipeline import build_analyzers

    assert Settings().nsfw.enabled is False
    assert "nsfw" not in [a.name for a in build_analyzers(Settings(), MODELS_DIR)]


def test_letterbox_scales_and_pads_black_bottom_right():
    image = np.full((100, 200, 3), 255, np.uint8)
    tensor, ratio = letterbox(image, 320)
    assert tensor.shape == (3, 320, 320) and ratio == pytest.approx(1.6)
    assert tensor[:, :160, :].min() == pytest.approx(1.0)  # the photo, scaled to 320x160
    assert tensor[:, 160:, :].max() == 0.0  # black padding below


def test_decode_suppresses_duplicates_per_class_and_maps_boxes(detector: NsfwDetector):
    n = len(detector.labels)
    rows = np.zeros((4 + n, 5), np.float32)
    # Three overlapping boxes of class 1 (best 0.9), one far away of class 1, one of class 2
    # on top of the first: NMS keeps the best of the overlapping, and every class on its own.
    boxes = [(100, 100, 40, 40), (102, 101, 40, 40), (101, 99, 42, 40), (250, 250, 20, 20)]
    boxes.append((100, 100, 40, 40))
    for j, (box, cls, score) in enumerate(
        zip(boxes, [1, 1, 1, 1, 2], [0.9, 0.8, 0.7, 0.6, 0.5], strict=True)
    ):
        rows[:4, j] = box
        rows[4 + cls, j] = score
    found = detector.decode(rows, ratio=0.5, shape=(640, 640))
    assert [(f.label, round(f.score, 2)) for f in found] == [
        (detector.labels[1], 0.9),
        (detector.labels[1], 0.6),
        (detector.labels[2], 0.5),
    ]
    assert found[0].box == pytest.approx((160.0, 160.0, 240.0, 240.0))  # cx,cy,w,h / ratio


@pytest.mark.usefixtures("default_models")
def test_portraits_show_faces(detector: NsfwDetector):
    if not FACES.is_dir():
        pytest.skip(f"faces eval set {FACES} is absent")
    images = [cv2.imread(str(FACES / name)) for name in PORTRAITS]
    results = detector.analyze(images)
    for image, found in zip(images, results, strict=True):
        faces = [f for f in found if f.label.startswith("FACE_")]
        assert faces and faces[0].score >= 0.5, found
        x0, y0, x1, y1 = faces[0].box or (0, 0, 0, 0)
        h, w = image.shape[:2]
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h


def test_policy_thresholds_aliases_switches():
    media = Media(kind="image", width=100, height=100, duration=None)
    found = [
        Detection("FACE_FEMALE", 0.8, (0, 0, 10, 10)),
        Detection("FEET_EXPOSED", 0.55, (0, 0, 10, 10)),
        Detection("BELLY_EXPOSED", 0.3, (0, 0, 10, 10)),
    ]
    policy = TagPolicy(TagSettings())
    names = {t.name for t in nsfw_policy.derive(policy, found, media)}
    assert names == {"AI|NSFW|FACE_FEMALE", "AI|NSFW|FEET_EXPOSED"}
    rules = {
        "FACE_FEMALE": TagRule(enabled=False),
        "FEET_EXPOSED": TagRule(threshold=0.6),
        "BELLY_EXPOSED": TagRule(threshold=0.25, name="belly", parent="Adult|Body"),
    }
    policy = TagPolicy(TagSettings(nsfw=NsfwTagSettings(parent="X", labels=rules)))
    tags = nsfw_policy.derive(policy, found, media)
    assert [(t.name, t.score, t.source) for t in tags] == [("AI|Adult|Body|belly", 0.3, "nsfw")]


@pytest.mark.usefixtures("default_models")
def test_enabled_scan_stores_boxes_and_tags(tmp_path: Path, state_dir: Path, cli):
    if not FACES.is_dir():
        pytest.skip(f"faces eval set {FACES} is absent")
    if default_for(load_manifest(MODELS_DIR), "nsfw") is None:
        pytest.skip(MISSING_MODELS.format(what="a NudeNet model"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PORTRAITS:
        shutil.copyfile(FACES / name, photos / name)
    config = tmp_path / "c.toml"
    config.write_text(
        "[objects]\nenabled = false\n[ocr]\nenabled = false\n[faces]\nenabled = false\n"
        "[concepts]\nenabled = false\n[xmp]\nenabled = false\n[nsfw]\nenabled = true\n"
        '[tags.nsfw.labels.FACE_FEMALE]\nname = "woman"\n[tags.nsfw.labels.FACE_MALE]\n'
        'name = "man"\n',
        encoding="utf-8",
    )
    code, out, err = cli("--config", config, "scan", photos)
    assert code == 0 and "analysed 2 files" in out, out + err
    code, out, err = cli("--config", config, "export")
    rows = [json.loads(line) for line in out.splitlines()]
    for row in rows:
        faces = [d for d in row["nsfw"] if d["label"].startswith("FACE_")]
        assert faces and len(faces[0]["box"]) == 4
        tags = {t["name"] for t in row["tags"]}
        assert tags & {"AI|NSFW|woman", "AI|NSFW|man"}, tags
