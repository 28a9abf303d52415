"""PP-PicoDet-S (objects) and YuNet (faces): `tagd models fetch` installs both
offline from ../shared/models, they become the defaults of their tasks, and
their decodes give sensible boxes, landmarks and scores on real photos."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from conftest import SHARED, require_models

from tagd.analyzers.faces import FaceAnalyzer
from tagd.analyzers.objects import ObjectDetector
from tagd.cli.main import main
from tagd.config import Settings
from tagd.runtime.face_embedding import FaceEmbedder
from tagd.runtime.manifest import default_for, default_specs, load_manifest, verified_path
from tagd.runtime.model import ManagedModel

COCO = SHARED / "eval" / "objects-coco128-train"
FACES = SHARED / "eval" / "faces"
PHOTOS = ["000000000036.jpg", "000000000025.jpg", "000000000074.jpg", "000000000154.jpg"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """picodet, yunet and retinaface fetched through the CLI into a fresh folder."""
    pytest.importorskip("onnx")
    for source in ("picodet/picodet_s_416_coco.onnx", "yunet/yunet_n_dynamic.onnx"):
        if not (SHARED / "models" / source).is_file():
            pytest.skip(f"../shared/models/{source} is not present")
    tmp = tmp_path_factory.mktemp("detectors")
    config = tmp / "config.toml"
    config.write_text(f'[runtime]\nmodels_dir = "{tmp / "models"}"\n', encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGD_STATE_DIR", str(tmp / "state"))
        code = main(["--config", str(config), "models", "fetch", "--source",
                     str(SHARED / "models"), "--only", "retinaface", "--only", "picodet",
                     "--only", "yunet"])  # fmt: skip
    assert code == 0
    return tmp / "models"


def _detector(models: Path, name: str) -> ObjectDetector:
    spec = load_manifest(models)[name]
    model = ManagedModel(spec, models, backend="cpu", threads=2, idle_unload=60)
    return ObjectDetector(model, min_score=0.05, nms_iou=0.45, max_detections=100)


def _faces(models: Path, detector: str) -> FaceAnalyzer:
    """The faces analyzer with this detector (from `models`) and the installed embedder."""
    installed = require_models("dlib-face-resnet")
    embedder = FaceEmbedder(load_manifest(installed)["dlib-face-resnet"], installed)
    spec = load_manifest(models)[detector]
    model = ManagedModel(spec, models, backend="cpu", threads=2, idle_unload=60)
    return FaceAnalyzer(model, embedder, Settings().faces)


def _truth(name: str) -> set[str]:
    classes = (COCO / "classes.txt").read_text().split("\n")
    rows = (COCO / "labels" / f"{Path(name).stem}.txt").read_text().split("\n")
    return {classes[int(r.split()[0])] for r in rows if r.strip()}


def test_fetch_installs_both_as_their_tasks_defaults(models: Path) -> None:
    specs = load_manifest(models)
    shipped = default_specs()
    for name in ("picodet-s-416", "yunet-n"):
        verified_path(specs[name], models)
        assert specs[name].sha256 == shipped[name].sha256  # the conversion is reproducible
        assert specs[name].license == "Apache-2.0"
    verified_path(specs["picodet-s-416-openvino"], models)
    assert default_for(specs, "objects").family == "picodet"
    assert default_for(specs, "face-detection").family == "yunet"
    # RetinaFace stays installed, and selectable by name, but is no longer a default.
    assert not any(s.default for s in specs.values() if s.family == "retinaface")


def test_picodet_weights_are_constants_and_the_batch_is_free(models: Path) -> None:
    session = ort.InferenceSession(str(models / "picodet_s_416.onnx"))
    inputs = session.get_inputs()
    assert [i.name for i in inputs] == ["image"]  # 279 weight inputs dropped
    assert not isinstance(inputs[0].shape[0], int)


def test_picodet_finds_the_labelled_objects(models: Path) -> None:
    if not COCO.is_dir():
        pytest.skip("../shared/eval is not present")
    detector = _detector(models, "picodet-s-416")
    images = [cv2.imread(str(COCO / "images" / n)) for n in PHOTOS]
    results = detector.analyze(images)
    said = right = 0
    for name, found in zip(PHOTOS, results, strict=True):
        confident = {f.label for f in found if f.score >= 0.5}
        assert _truth(name) <= confident, (name, confident)  # every labelled class
        assert max(found, key=lambda f: f.score).label in _truth(name), name
        said, right = said + len(confident), right + len(confident & _truth(name))
    assert right / said >= 0.8  # (one cat that is a dog, on 000000000074.jpg)
    for image, found in zip(images, results, strict=True):
        h, w = image.shape[:2]
        for f in found:
            x0, y0, x1, y1 = f.box
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
            assert 0.05 <= f.score <= 1.0
    # A batch gives what one photo at a time gives.
    alone = [detector.analyze([image])[0] for image in images]
    for together, single in zip(results, alone, strict=True):
        assert [f.label for f in together] == [f.label for f in single]
        np.testing.assert_allclose([f.box for f in together], [f.box for f in single], atol=0.05)


def test_picodet_openvino_twin_finds_the_same_objects(models: Path) -> None:
    if not COCO.is_dir():
        pytest.skip("../shared/eval is not present")
    image = cv2.imread(str(COCO / "images" / PHOTOS[0]))
    ort_found = _detector(models, "picodet-s-416").analyze([image])[0]
    ov_found = _detector(models, "picodet-s-416-openvino").analyze([image])[0]
    strong = [f for f in ort_found if f.score >= 0.3]
    assert strong
    for f in strong:
        same = [g for g in ov_found if g.label == f.label and abs(g.score - f.score) < 1e-3]
        assert any(np.allclose(g.box, f.box, atol=1) for g in same), f


def test_yunet_faces_landmarks_and_scores(models: Path) -> None:
    if not FACES.is_dir():
        pytest.skip("../shared/eval/faces is not present")
    analyzer = _faces(models, "yunet-n")
    assert analyzer.min_score == 0.8  # YuNet's own threshold; RetinaFace's is 0.9
    index = json.loads((FACES / "identities.json").read_text(encoding="utf-8"))
    portraits = [files[0] for _, files in sorted(index["identities"].items())][:6]
    for name in portraits:
        found = analyzer.analyze([cv2.imread(str(FACES / "images" / name))])[0]
        assert len(found) == 1, name
        face = found[0]
        assert 0.8 <= face.score <= 1.0
        x0, y0, x1, y1 = face.box
        points = np.array(face.points).reshape(5, 2)
        assert ((points[:, 0] > x0) & (points[:, 0] < x1)).all(), name
        assert ((points[:, 1] > y0) & (points[:, 1] < y1)).all(), name
        # Eyes above the nose above the mouth; the subject's right eye on the image's left.
        assert points[:2, 1].max() < points[2, 1] < points[3:, 1].min(), name
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0], name
        assert face.vector is not None and face.vector.shape == (128,)
    counts = {
        name: len(analyzer.analyze([cv2.imread(str(FACES / "images" / name))])[0])
        for name in index["group_photos"]
    }
    assert counts == {"couple.jpg": 2, "selfie-many-people.jpg": 6}


def test_yunet_and_retinaface_put_faces_in_the_same_places(models: Path) -> None:
    """What lets people and names carry over when the detector changes (by IoU)."""
    if not FACES.is_dir():
        pytest.skip("../shared/eval/faces is not present")
    yunet, retina = _faces(models, "yunet-n"), _faces(models, "retinaface-mnet025")
    for name in ("img10.jpg", "img27.jpg", "couple.jpg"):
        image = cv2.imread(str(FACES / "images" / name))
        a, b = yunet.analyze([image])[0], retina.analyze([image])[0]
        assert len(a) == len(b), name
        for face in a:
            best = max(_iou(face.box, other.box) for other in b)
            assert best >= 0.7, (name, best)


def _iou(a: tuple[float, ...] | None, b: tuple[float, ...] | None) -> float:
    assert a is not None and b is not None
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(w, 0) * max(h, 0)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
