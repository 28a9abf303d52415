"""NudeNet 320n: 18 body-part classes (a YOLOv8n detector at 320 px).

`nudenet/320n.onnx` is read out of the PyPI wheel `nudenet==3.4.2` (never
installed). Its class names come from the `__labels` list in the wheel's
`nudenet/nudenet.py`, parsed with `ast` rather than imported, and are checked
against the `names` the ONNX metadata carries. The model must see faces
(FACE_FEMALE / FACE_MALE) on real portraits before it is installed. An
OpenVINO IR is written as well; the faster engine on this machine is default.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from tagd.runtime.manifest import ModelSpec, sha256_of
from tagd_export.context import ExportContext, ExportError, read_image
from tagd_export.face_photos import sample_images
from tagd_export.files import write_bytes
from tagd_export.wheels import fetch_wheel, read_member

NAME = "nudenet"
TASK = "nsfw"
DEFAULT = True
DESCRIPTION = "NSFW body parts, 18 classes incl. faces (NudeNet 320n from nudenet 3.4.2)"

WHEEL = ("nudenet", "3.4.2")
MODEL_MEMBER = "nudenet/320n.onnx"
LABELS_MEMBER = "nudenet/nudenet.py"
ONNX_SHA256 = "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f"
MODEL_NAME = "nudenet-320n"
INPUT = (320, 320)
# The wheel's metadata says MIT, but the LICENSE file it ships is the AGPL-3.0, and
# the weights are an Ultralytics YOLOv8 model whose metadata says AGPL-3.0 too.
LICENSE = "AGPL-3.0"
PREPROCESSING = (
    "pad bottom/right with black to a square, resize to 320x320, RGB, /255, NCHW float32; "
    "output N x 22 x 2100: rows cx, cy, w, h (input pixels), then the 18 class scores "
    "(no objectness); NudeNet keeps score >= 0.2 and applies NMS IoU 0.45"
)
FACE_LABELS = ("FACE_FEMALE", "FACE_MALE")


def fetch(ctx: ExportContext) -> list[ModelSpec]:
    return _build(ctx, fetch_wheel(ctx, *WHEEL), "both")


def export(ctx: ExportContext, source: str | None, quantize: str, fmt: str) -> list[ModelSpec]:
    if quantize != "none":
        raise ExportError("nudenet: only fp32 is offered; use --quantize none")
    wheel = fetch_wheel(ctx, *WHEEL) if source is None else Path(source)
    if not wheel.is_file() or not wheel.name.startswith("nudenet-"):
        raise ExportError(
            f"--from {source}: give the nudenet-3.4.2 wheel (`pip download --no-deps "
            "nudenet==3.4.2`), or leave --from out to download it"
        )
    return _build(ctx, wheel, fmt)


def _build(ctx: ExportContext, wheel: Path, fmt: str) -> list[ModelSpec]:
    from tagd_export.compare import with_openvino_twin

    out = ctx.models_dir / f"{MODEL_NAME.replace('-', '_')}.onnx"
    if write_bytes(out, read_member(wheel, MODEL_MEMBER)) != ONNX_SHA256:
        out.unlink()
        raise ExportError(f"{wheel.name}: {MODEL_MEMBER} is not the file nudenet 3.4.2 shipped")
    labels = labels_from_source(read_member(wheel, LABELS_MEMBER))
    _check_labels(out, labels)
    spec = ModelSpec(
        name=MODEL_NAME,
        task=TASK,
        family=NAME,
        variant="fp32",
        default=True,
        file=out.name,
        sha256=sha256_of(out),
        input=INPUT,
        preprocessing=PREPROCESSING,
        license=LICENSE,
        source=f"nudenet==3.4.2 (PyPI), {MODEL_MEMBER}",
        labels=labels,
        metrics=face_check(ctx, out, labels),
    )
    return with_openvino_twin(ctx.log, spec, out, lambda: _inputs(ctx), 20, fmt)


def _inputs(ctx: ExportContext) -> tuple[list[np.ndarray], np.ndarray]:
    batch = np.stack([prepare(im) for im in sample_images(ctx, 4)])
    return [batch], batch[:1]


def labels_from_source(source: bytes) -> tuple[str, ...]:
    """The `__labels = [...]` list of nudenet.py, without executing the module."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__labels" for t in node.targets
        ):
            labels = ast.literal_eval(node.value)
            if isinstance(labels, list) and all(isinstance(x, str) for x in labels):
                return tuple(labels)
    raise ExportError(f"{LABELS_MEMBER}: no `__labels = [...]` list of names found")


def _check_labels(onnx_path: Path, labels: tuple[str, ...]) -> None:
    """The names in the ONNX metadata and the model's class count agree with the list."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    names = ast.literal_eval(session.get_modelmeta().custom_metadata_map.get("names", "{}"))
    channels = session.get_outputs()[0].shape[1]
    if channels != 4 + len(labels) or (names and tuple(names.values()) != labels):
        raise ExportError(
            f"{onnx_path.name}: {len(labels)} labels from {LABELS_MEMBER} do not match the "
            f"model ({channels} output rows, metadata names {names})"
        )


def face_check(ctx: ExportContext, onnx_path: Path, labels: tuple[str, ...]) -> dict[str, float]:
    """Share of eval portraits where a face class scores >= 0.5 (raises below 75 %)."""
    import onnxruntime as ort

    photos = ctx.eval_images("faces/images", 8)
    if not photos:
        ctx.log(f"{MODEL_NAME}: eval faces absent, the face check is skipped")
        return {}
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    rows = [4 + labels.index(name) for name in FACE_LABELS]
    batch = np.stack([prepare(read_image(p)) for p in photos])
    scores = session.run(None, {session.get_inputs()[0].name: batch})[0][:, rows].max(axis=(1, 2))
    seen = float(np.mean(scores >= 0.5))
    if seen < 0.75:
        raise ExportError(f"{onnx_path.name} misses faces on portraits: scores {scores}")
    ctx.log(f"{MODEL_NAME}: a face class >= 0.5 on {seen:.0%} of {len(photos)} portraits")
    return {"portrait_face_seen": seen}


def prepare(image: np.ndarray, size: int = INPUT[0]) -> np.ndarray:
    """NudeNet's preprocessing: black pad to a square (bottom/right), resize, RGB, /255."""
    import cv2

    h, w = image.shape[:2]
    side = max(h, w)
    square = cv2.copyMakeBorder(image, 0, side - h, 0, side - w, cv2.BORDER_CONSTANT)
    rgb = cv2.resize(square, (size, size))[:, :, ::-1]
    return rgb.transpose(2, 0, 1).astype(np.float32) / 255
