"""YuNet-n: face boxes and five landmarks (libfacedetection.train, dynamic-input ONNX).

WIDER Face val AP on hard faces 0.811 against RetinaFace mobilenet0.25's
about 0.738, in half its time here. The file comes offline from
../shared/models/yunet/ and is installed as it is (it already takes any batch
and any size that is a multiple of 32), after finding faces on real photos
with the runtime's own decode (tagd.analyzers.yunet_decode). An OpenVINO IR is
written next to it and this machine measures which engine is faster.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagd.runtime.manifest import ModelSpec
from tagd_export.context import ExportContext, ExportError
from tagd_export.face_photos import face_check, sample_images
from tagd_export.files import install_file

NAME = "yunet"
TASK = "face-detection"
DEFAULT = True
DESCRIPTION = "face boxes + 5 landmarks (YuNet-n from libfacedetection.train)"

N_SHA256 = "104ee26c71d5c270ce79a6b3dced91c91013260d29a6bf18f9296c5b8c4c2b12"
N_SOURCE = (
    "YuNet-n, ShiqiYu/libfacedetection.train (yunet_n_dynamic.onnx); offline: "
    "../shared/models/yunet/yunet_n_dynamic.onnx"
)
MODEL_NAME = "yunet-n"
INPUT = (640, 480)  # width, height: nominal; any multiple of 32 works
LICENSE = "Apache-2.0"
PREPROCESSING = (
    "BGR 0-255, NCHW float32, H and W multiples of 32 (fit top-left, black padding); "
    "outputs cls, obj, bbox, kps for strides 8/16/32, (H/s) x (W/s) cells row-major: "
    "score sqrt(cls * obj), centre (cell + d) * s, size exp(d) * s, landmarks "
    "(cell + d) * s; NMS IoU 0.3 (tagd.analyzers.yunet_decode)"
)


def fetch(ctx: ExportContext) -> list[ModelSpec]:
    source = ctx.find_source("yunet/yunet_n_dynamic.onnx", sha256=N_SHA256)
    if source is None:
        raise ExportError(
            "yunet_n_dynamic.onnx (sha256 104ee26c...) not found in any source folder. On a "
            "connected machine download it from github.com/ShiqiYu/libfacedetection.train "
            "(onnx/yunet_n_dynamic.onnx), put it in DIR/yunet/ and run "
            "`tagd models fetch --source DIR`"
        )
    return convert(ctx, source, MODEL_NAME, N_SOURCE, "both")


def export(ctx: ExportContext, source: str | None, quantize: str, fmt: str) -> list[ModelSpec]:
    if quantize != "none":
        raise ExportError("yunet: only fp32 is offered; use --quantize none")
    if source is None:
        found = ctx.find_source("yunet/yunet_n_dynamic.onnx", sha256=N_SHA256)
        return fetch(ctx) if found is None else convert(ctx, found, MODEL_NAME, N_SOURCE, fmt)
    path = Path(source)
    if path.suffix != ".onnx" or not path.is_file():
        raise ExportError(
            f"--from {source}: give a YuNet .onnx with dynamic input (e.g. "
            "yunet_s_dynamic.onnx): input N x 3 x H x W; cls, obj, bbox, kps per stride"
        )
    name = "yunet-" + path.stem.removeprefix("yunet_").removesuffix("_dynamic").replace("_", "-")
    return convert(ctx, path, name, f"YuNet ONNX from {path.name}", fmt)


def convert(ctx: ExportContext, source: Path, name: str, origin: str, fmt: str) -> list[ModelSpec]:
    """Check on real faces, install, then the ONNX and OpenVINO variants."""
    import onnxruntime as ort

    from tagd_export.compare import with_openvino_twin

    out = ctx.models_dir / f"{name.replace('-', '_')}.onnx"
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    if len(session.get_outputs()) != 12:
        raise ExportError(f"{source.name}: expected YuNet's 12 outputs (cls, obj, bbox, kps x 3)")
    found = face_check(ctx, name, source, lambda image: count_faces(session, image))
    sha = install_file(source, out)
    spec = ModelSpec(
        name=name,
        task=TASK,
        family=NAME,
        variant="fp32",
        default=True,
        file=out.name,
        sha256=sha,
        input=INPUT,
        preprocessing=PREPROCESSING,
        license=LICENSE,
        source=origin,
        metrics=found,
    )
    batch = np.stack([prepare_nominal(im) for im in sample_images(ctx, 4)])
    return with_openvino_twin(ctx.log, spec, out, lambda: ([batch], batch[:1]), 15, fmt)


def prepare_nominal(image: np.ndarray) -> np.ndarray:
    from tagd.analyzers.yunet_decode import prepare

    return prepare(image, *INPUT)[0]


def count_faces(session: object, image: np.ndarray) -> int:
    """Faces an onnxruntime session of the model finds on one BGR photo (nominal size)."""
    from tagd.analyzers.yunet_decode import MIN_SCORE, decode_outputs

    name = session.get_inputs()[0].name  # type: ignore[attr-defined]
    outputs = session.run(None, {name: prepare_nominal(image)[None]})  # type: ignore[attr-defined]
    return len(decode_outputs([o[0] for o in outputs], *INPUT, min_score=MIN_SCORE))
