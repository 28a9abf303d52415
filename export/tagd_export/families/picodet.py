"""PP-PicoDet-S 416: COCO-80 objects, PaddleDetection's official ONNX export.

COCO val mAP 30.6 against YOLOX-nano's 25.8, at about 1.6x its time here. The
file (legacy ESNet, release 2.3) comes offline from ../shared/models/picodet/.
Paddle2ONNX lists every weight as a graph input, which keeps runtimes from
folding them (twice the time on these CPUs); fetch drops those inputs and the
unused initializers, and makes the batch axis symbolic (its Reshapes bake in
a batch of 1). The outputs must equal the source file's on real photos before
anything is installed; an OpenVINO IR is written and this machine measures
which engine is faster.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from tagd.runtime.manifest import ModelSpec, sha256_of
from tagd_export.context import ExportContext, ExportError
from tagd_export.families.yolox import COCO_LABELS
from tagd_export.files import install_file

NAME = "picodet"
TASK = "objects"
DEFAULT = True
DESCRIPTION = "COCO-80 objects (PP-PicoDet-S 416, PaddleDetection's ONNX export)"

S416_SHA256 = "cdab77bdde16e4f76bec734c4e5791801d1739e4c7ec1995e0e110e04300d0c2"
S416_SOURCE = (
    "PP-PicoDet-S 416 COCO, PaddleDetection release 2.3 official ONNX export "
    "(picodet_s_416_coco.onnx); offline: ../shared/models/picodet/picodet_s_416_coco.onnx"
)
MODEL_NAME = "picodet-s-416"
PREPROCESSING = (
    "whole image resized to 416x416 (bicubic, no letterbox), RGB, x / 255 then ImageNet "
    "mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225), NCHW float32; outputs: "
    "4 sigmoid class-score maps N x 80 then 4 box maps N x 32 for strides 8/16/32/64 "
    "(tagd.analyzers.picodet_head)"
)
LICENSE = "Apache-2.0"
INPUT = (416, 416)
# Outputs must match the source file this closely (they are the same weights).
MIN_COSINE = 0.99999


def fetch(ctx: ExportContext) -> list[ModelSpec]:
    source = ctx.find_source("picodet/picodet_s_416_coco.onnx", sha256=S416_SHA256)
    if source is None:
        raise ExportError(
            "picodet_s_416_coco.onnx (sha256 cdab77bd...) not found in any source folder. "
            "On a connected machine download PaddleDetection's "
            "https://paddledet.bj.bcebos.com/deploy/third_engine/picodet_s_416_coco.onnx, put "
            "it in DIR/picodet/ and run `tagd models fetch --source DIR`"
        )
    return convert(ctx, source, MODEL_NAME, S416_SOURCE, "both")


def export(ctx: ExportContext, source: str | None, quantize: str, fmt: str) -> list[ModelSpec]:
    if quantize != "none":
        raise ExportError("picodet: only fp32 is offered; use --quantize none")
    if source is None:
        source_path = ctx.find_source("picodet/picodet_s_416_coco.onnx", sha256=S416_SHA256)
        if source_path is None:
            return fetch(ctx)
        return convert(ctx, source_path, MODEL_NAME, S416_SOURCE, fmt)
    path = Path(source)
    if not path.is_file() or path.suffix != ".onnx":
        raise ExportError(
            f"--from {source}: give a PicoDet .onnx exported by PaddleDetection for a "
            "square input, without its post-processing (8 outputs: 4 score maps, 4 box maps)"
        )
    name = "picodet-" + path.stem.removeprefix("picodet_").replace("_coco", "").replace("_", "-")
    return convert(ctx, path, name, f"PicoDet ONNX from {path.name}", fmt)


def cannot_make(spec: ModelSpec) -> str | None:
    """Why `spec` cannot be made here (fetch then does not count it as missing)."""
    if spec.engine == "onnx" and not _have_onnx():
        return "cleaning the ONNX file needs onnx (pip install 'tagd[export]')"
    return None


def _have_onnx() -> bool:
    import importlib.util

    return importlib.util.find_spec("onnx") is not None


def convert(ctx: ExportContext, source: Path, name: str, origin: str, fmt: str) -> list[ModelSpec]:
    """The cleaned, batchable ONNX file (and its OpenVINO twin), equal to the source;
    without the onnx package, the OpenVINO IR alone (OpenVINO reads the weight
    inputs as the constants they are)."""
    if not _have_onnx():
        ctx.log(f"{name}: onnx is not installed (the export extra): OpenVINO IR only")
        return [_openvino_only(ctx, source, name, origin)]
    from tagd_export.compare import with_openvino_twin
    from tagd_export.onnx_tools import drop_weight_inputs, dynamic_batch

    out = ctx.models_dir / f"{name.replace('-', '_')}.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        cleaned = Path(tmp) / "cleaned.onnx"
        staged = Path(tmp) / out.name
        dropped = drop_weight_inputs(source, cleaned)
        patched = dynamic_batch(cleaned, staged)
        size = _input_size(staged)
        batch = _batch(ctx, size)
        check = _parity(source, staged, batch)
        ctx.log(
            f"{name}: {dropped} weight inputs dropped, {patched} reshapes made batchable; "
            f"outputs vs source: cosine {check['cosine']:.7f}, max |diff| "
            f"{check['max_abs_diff']:.2e}"
        )
        if check["cosine"] < MIN_COSINE:
            raise ExportError(f"{name}: the cleaned model disagrees with its source: {check}")
        sha = install_file(staged, out)
    spec = _spec(name, out, sha, size, origin, check)
    return with_openvino_twin(ctx.log, spec, out, lambda: ([batch], batch[:1]), 15, fmt)


def _openvino_only(ctx: ExportContext, source: Path, name: str, origin: str) -> ModelSpec:
    """The source converted by OpenVINO (batch 1), checked against the source."""
    from tagd_export.compare import agreement
    from tagd_export.onnx_tools import to_openvino

    xml, binf = to_openvino(source, ctx.models_dir / f"{name.replace('-', '_')}_openvino.xml")
    size = _input_size(source)
    check = agreement(source, xml, [b[None] for b in _batch(ctx, size)])
    ctx.log(f"{name}: OpenVINO IR vs source cosine {check['cosine']:.7f}")
    if check["cosine"] < MIN_COSINE:
        raise ExportError(f"{name}: the OpenVINO IR disagrees with its source: {check}")
    spec = _spec(name, xml, sha256_of(xml), size, origin, check)
    return replace(
        spec,
        name=f"{name}-openvino",
        variant="openvino-fp32",
        files={binf.name: sha256_of(binf)},
    )


def _spec(
    name: str, file: Path, sha: str, size: tuple[int, int], origin: str, check: dict[str, float]
) -> ModelSpec:
    return ModelSpec(
        name=name,
        task=TASK,
        family=NAME,
        variant="fp32",
        default=True,
        file=file.name,
        sha256=sha,
        input=size,
        preprocessing=PREPROCESSING,
        license=LICENSE,
        source=origin,
        labels=COCO_LABELS,
        metrics=check,
    )


def _input_size(path: Path) -> tuple[int, int]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the source's weight inputs warn once per weight
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0]
    height, width = shape.shape[2], shape.shape[3]
    if not isinstance(height, int) or not isinstance(width, int) or height != width:
        raise ExportError(f"{path.name}: expected a square fixed input, got {shape.shape}")
    return int(width), int(height)


def _batch(ctx: ExportContext, size: tuple[int, int]) -> np.ndarray:
    """Real photos as the runtime prepares them (noise when the eval set is absent)."""
    import cv2

    from tagd.analyzers.picodet_head import PicoDetHead

    head = PicoDetHead(*size)
    photos = ctx.eval_images("objects-coco128-train/images", 4)
    images = [cv2.imread(str(p)) for p in photos] or [
        np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    ]
    return np.stack([head.prepare(im)[0] for im in images])


def _parity(source: Path, converted: Path, batch: np.ndarray) -> dict[str, float]:
    """Every output of both files, one photo per call (the source has a batch of 1)."""
    import onnxruntime as ort

    from tagd_export.onnx_tools import parity

    options = ort.SessionOptions()
    options.log_severity_level = 3  # the source's weight inputs warn once per weight
    sessions = [
        ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"])
        for p in (source, converted)
    ]
    ref, new = (
        [s.run(None, {s.get_inputs()[0].name: batch[i : i + 1]}) for i in range(len(batch))]
        for s in sessions
    )
    pairs = [
        parity(a, b)
        for ref_out, new_out in zip(ref, new, strict=True)
        for a, b in zip(ref_out, new_out, strict=True)
    ]
    return {
        "cosine": min(p["cosine"] for p in pairs),
        "max_abs_diff": max(p["max_abs_diff"] for p in pairs),
    }
