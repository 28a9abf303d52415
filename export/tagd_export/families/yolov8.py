"""YOLOv8 / YOLO11 objects, exported through the user's own `ultralytics`.

Not a default: the weights live on GitHub releases (unreachable from offline
machines) and `ultralytics` drags in torchvision, so tagd never installs it.
Where the user has it, `tagd models export yolov8 --from yolov8n.pt` (or a
path to trained weights) runs Ultralytics' own ONNX exporter (dynamic batch
and size, opset 17), checks the file against the PyTorch model on real
photos and takes the class names from the model. PicoDet stays the default
for objects; `objects.model = "yolov8n"` runs this one (decoded by
tagd.analyzers.yolov8_head).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagd.runtime.manifest import ModelSpec, sha256_of
from tagd_export.context import ExportContext, ExportError
from tagd_export.files import install_file

NAME = "yolov8"
TASK = "objects"
DEFAULT = False
DESCRIPTION = "COCO objects with YOLOv8/YOLO11 (needs `pip install ultralytics`; --from yolov8n.pt)"

INPUT = (640, 640)
OPSET = 17
LICENSE = "AGPL-3.0"
PREPROCESSING = (
    "letterbox to 640x640 (tagd pads bottom-right), pad 114, RGB, /255, NCHW float32 "
    "(batch and size dynamic, multiples of 32); output N x (4 + classes) x 8400: cx, cy, "
    "w, h in input pixels, then class scores (no objectness); NMS afterwards"
)
HOW = (
    "install it where you convert models (`pip install ultralytics`; it pulls torchvision, "
    "so not into tagd's runtime environment), then run `tagd models export yolov8 --from "
    "yolov8n.pt` (or a path to your .pt); on a machine without internet first download "
    "yolov8n.pt from https://github.com/ultralytics/assets/releases on a connected one"
)


def fetch(ctx: ExportContext) -> list[ModelSpec]:
    raise ExportError(f"yolov8 is not fetched automatically (needs ultralytics): {HOW}")


def export(ctx: ExportContext, source: str | None, quantize: str, fmt: str) -> list[ModelSpec]:
    if quantize != "none":
        raise ExportError("yolov8: only fp32 is offered here; use --quantize none")
    try:
        from ultralytics import YOLO
    except ImportError:
        raise ExportError(f"yolov8 export needs the `ultralytics` package: {HOW}") from None
    model = YOLO(source or "yolov8n.pt")
    labels = tuple(str(model.names[i]) for i in range(len(model.names)))
    exported = Path(
        model.export(format="onnx", dynamic=True, opset=OPSET, imgsz=INPUT[1], simplify=True)
    )
    stem = Path(source or "yolov8n.pt").stem.replace("_", "-").lower()
    out = ctx.models_dir / f"{stem.replace('-', '_')}.onnx"
    install_file(exported, out)
    check = _parity_with_torch(ctx, model, out)
    ctx.log(f"{stem}: ONNX vs PyTorch cosine {check['cosine']:.6f}")
    if check["cosine"] < 0.9999:
        raise ExportError(f"{out.name} disagrees with the PyTorch model: {check}")
    spec = ModelSpec(
        name=stem,
        task=TASK,
        family=NAME,
        variant="fp32",
        default=False,  # PicoDet is the objects default; pick this one in the config
        file=out.name,
        sha256=sha256_of(out),
        input=INPUT,
        preprocessing=PREPROCESSING,
        license=LICENSE,
        source=f"Ultralytics {source or 'yolov8n.pt'}, exported with ultralytics (opset {OPSET})",
        labels=labels,
        metrics=check,
    )
    return _with_openvino(ctx, spec, out, fmt)


def _with_openvino(ctx: ExportContext, spec: ModelSpec, out: Path, fmt: str) -> list[ModelSpec]:
    from dataclasses import replace

    from tagd_export.compare import with_openvino_twin

    def inputs() -> tuple[list[np.ndarray], np.ndarray]:
        batch = _batch(ctx)
        return [batch], batch[:1]

    # Measured, but neither becomes the objects default over PicoDet.
    specs = with_openvino_twin(ctx.log, spec, out, inputs, 10, fmt)
    return [replace(s, default=False) for s in specs]


def _parity_with_torch(ctx: ExportContext, model: object, onnx_path: Path) -> dict[str, float]:
    import onnxruntime as ort
    import torch

    from tagd_export.onnx_tools import parity

    batch = _batch(ctx)
    network = model.model.float().eval()  # type: ignore[attr-defined]
    with torch.no_grad():
        reference = network(torch.from_numpy(batch))
    reference = reference[0] if isinstance(reference, list | tuple) else reference
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    exported = session.run(None, {session.get_inputs()[0].name: batch})[0]
    return parity(reference.numpy(), exported)


def _batch(ctx: ExportContext) -> np.ndarray:
    """Real COCO photos (noise when the eval set is absent), letterboxed as YOLOv8 wants."""
    import cv2

    paths = ctx.eval_images("objects-coco128-train/images", 2)
    images = [cv2.imread(str(p)) for p in paths] or [
        np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    ]
    return np.stack([_letterbox(im) for im in images])


def _letterbox(image: np.ndarray) -> np.ndarray:
    import cv2

    width, height = INPUT
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = round(w * scale), round(h * scale)
    canvas = np.full((height, width, 3), 114, np.uint8)
    top, left = (height - nh) // 2, (width - nw) // 2
    canvas[top : top + nh, left : left + nw] = cv2.resize(image, (nw, nh))
    return canvas[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255
