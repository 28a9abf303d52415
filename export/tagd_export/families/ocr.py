"""OCR: PaddleOCR PP-OCRv4 detection, angle classification and recognition.

The three ONNX files ship in the `rapidocr-onnxruntime==1.4.4` wheel, which is
downloaded (never installed: it pulls the non-headless OpenCV) and read as a
zip. The recognizer's character dictionary is not a file in 1.4.4: it is the
`character` entry of the rec model's ONNX metadata (6623 lines; the model's
6625 classes are CTC blank + those + space). It is written out as
`ppocr_keys_v4.txt` so the runtime needs no ONNX parser, and the rec entries
list it under `files` with its sha256.

Each model also gets an OpenVINO IR; this machine measures both engines at
batch 1 and the faster one becomes the task's default (published: det 117 ms
ORT vs 54 ms OpenVINO f32 at 736x992, rec 12 vs 6.6 ms per 48x320 crop).

The detector, the most expensive model tagd runs, also gets a static int8 IR
(NNCF, calibrated on made-up scenes with text: tagd_export.synthetic_scenes),
the default when its text masks agree with fp32's and it is faster here:
3.3x at 992x736 on a CPU with VNNI, 0.977 of RapidOCR's confident lines read
where fp32 reads 0.979 (bench/ocr.py). The recognizer stays fp32: static int8
of it was measured to lose words (QDQ: exact words 7/12 -> 2/12).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tagd.runtime.manifest import ModelSpec, sha256_of
from tagd_export.context import ExportContext, ExportError, read_image
from tagd_export.files import write_bytes
from tagd_export.wheels import fetch_wheel, read_member

NAME = "ocr"
TASK = "ocr"
DEFAULT = True
DESCRIPTION = "text detection, angle and recognition (PP-OCRv4 from rapidocr-onnxruntime)"

WHEEL = ("rapidocr-onnxruntime", "1.4.4")
LICENSE = "Apache-2.0"
KEYS_FILE = "ppocr_keys_v4.txt"
NORMALISE = "BGR, (x/255 - 0.5)/0.5, NCHW float32"
DB_THRESHOLD = 0.3  # a detector pixel above this is text


@dataclass(frozen=True)
class Part:
    key: str
    member: str  # path inside the wheel
    sha256: str  # of the member in 1.4.4, so a different file is refused
    name: str
    task: str
    input: tuple[int, int]  # width, height: the nominal size (the model is dynamic)
    preprocessing: str
    runs: int  # latency repetitions (det is slow, crops are fast)


PARTS = (
    Part(
        "det",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9",
        "ppocr-v4-det",
        "ocr-det",
        (992, 736),
        f"{NORMALISE}; resize so the short side is 736 (long side at most 2000), each side "
        "rounded to a multiple of 32; output N x 1 x H x W text probability (DB: threshold "
        "0.3, box score 0.5, unclip ratio 1.6)",
        3,
    ),
    Part(
        "cls",
        "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        "ppocr-mobile-v2-cls",
        "ocr-cls",
        (192, 48),
        f"{NORMALISE}; text-line crop resized to height 48 keeping its aspect (width at most "
        "192), zero-padded right to 192; output N x 2 softmax over [0, 180] degrees, rotate "
        "when 180 scores above 0.9",
        20,
    ),
    Part(
        "rec",
        "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b",
        "ppocr-v4-rec",
        "ocr-rec",
        (320, 48),
        f"{NORMALISE}; text-line crop resized to height 48 keeping its aspect, zero-padded "
        "right to max(320, 48 x widest aspect in the batch); output N x T x 6625 softmax, CTC "
        f"greedy: class 0 = blank, classes 1..6623 = the lines of {KEYS_FILE}, 6624 = space",
        20,
    ),
)


# The int8 detector: calibration scenes, and the least mean text-mask IoU with fp32
# it must keep (measured 0.92 on the eval text photos) to become the default.
CALIBRATION_SCENES = 48
MIN_MASK_IOU = 0.85
INT8_DET = "ppocr_v4_det_int8_openvino.xml"


def fetch(ctx: ExportContext) -> list[ModelSpec]:
    int8 = cannot_make_int8() is None
    if not int8:
        ctx.log(f"ocr: no int8 detector: {cannot_make_int8()}")
    return _build(ctx, fetch_wheel(ctx, *WHEEL), "both", int8=int8)


def cannot_make(spec: ModelSpec) -> str | None:
    """Why this environment cannot make `spec` (None: it can)."""
    return cannot_make_int8() if spec.file == INT8_DET else None


def cannot_make_int8() -> str | None:
    import importlib.util

    if importlib.util.find_spec("nncf") is None:
        return "it needs nncf (the export extra: pip install 'tagd[export]'); fp32 meanwhile"
    return None


def export(ctx: ExportContext, source: str | None, quantize: str, fmt: str) -> list[ModelSpec]:
    if quantize not in ("none", "int8") or (quantize == "int8" and fmt == "onnx"):
        raise ExportError(
            "ocr: fp32, plus (--quantize int8, OpenVINO only) a static int8 detector. "
            "Static int8 in onnxruntime (QDQ) was measured to lose too much: exact words "
            "7/12 -> 2/12; the recognizer stays fp32"
        )
    wheel = fetch_wheel(ctx, *WHEEL) if source is None else Path(source)
    if not wheel.is_file() or not wheel.name.startswith("rapidocr_onnxruntime-"):
        raise ExportError(
            f"--from {source}: give the rapidocr_onnxruntime-1.4.4 wheel (`pip download "
            "--no-deps rapidocr-onnxruntime==1.4.4`), or leave --from out to download it"
        )
    return _build(ctx, wheel, fmt, int8=quantize == "int8")


def _build(ctx: ExportContext, wheel: Path, fmt: str, int8: bool) -> list[ModelSpec]:
    from tagd_export.compare import with_openvino_twin

    specs = []
    for part in PARTS:
        onnx_path = _extract(ctx, wheel, part)
        extra = {KEYS_FILE: _write_keys(ctx, onnx_path)} if part.key == "rec" else {}
        spec = _spec(part, onnx_path, extra)
        inputs = lambda part=part: _inputs(ctx, part)  # noqa: E731 - bound per part
        built = with_openvino_twin(ctx.log, spec, onnx_path, inputs, part.runs, fmt)
        if part.key == "det" and int8:
            built = _with_int8_detector(ctx, part, built)
        specs.extend(built)
    return specs


def _with_int8_detector(ctx: ExportContext, part: Part, built: list[ModelSpec]) -> list[ModelSpec]:
    """The detector's specs plus its static int8 IR, made the default when its text
    masks agree with the fp32 IR's and it runs faster on this machine."""
    from tagd_export.compare import latency_ms
    from tagd_export.openvino_int8 import mask_agreement, quantize_ir
    from tagd_export.synthetic_scenes import scenes

    fp32 = next(s for s in built if s.variant.startswith("openvino"))
    source = ctx.models_dir / fp32.file
    dest = ctx.models_dir / INT8_DET
    quantize_ir(source, dest, [det_input(s) for s in scenes(CALIBRATION_SCENES, seed=0)])
    # Agreement on real text when the eval photos are here, else on other scenes.
    photos = [read_image(p) for p in ctx.eval_images("ocr/images", 11)] or scenes(8, seed=1)
    iou = mask_agreement(source, dest, [det_input(p) for p in photos], DB_THRESHOLD)
    width, height = part.input
    timing = normalise(_resize(photos[0], width, height))[None]
    fp32_ms = min(latency_ms(source, timing, part.runs) for _ in range(2))
    int8_ms = min(latency_ms(dest, timing, part.runs) for _ in range(2))
    chosen = iou >= MIN_MASK_IOU and int8_ms < fp32_ms
    ctx.log(
        f"{part.name}: int8 IR text-mask IoU {iou:.3f} with fp32 (at least {MIN_MASK_IOU}), "
        f"{int8_ms:.1f} ms vs {fp32_ms:.1f} ms: "
        + ("the default" if chosen else "kept, not the default")
    )
    binf = dest.with_suffix(".bin")
    int8 = replace(
        fp32,
        name=f"{part.name}-int8-openvino",
        variant="openvino-int8",
        default=chosen,
        file=dest.name,
        sha256=sha256_of(dest),
        files={binf.name: sha256_of(binf)},
        source=f"{fp32.source}; int8 by NNCF, calibrated on {CALIBRATION_SCENES} made-up scenes",
        metrics={"mask_iou_vs_fp32": round(iou, 4), "int8_ms": int8_ms, "fp32_ms": fp32_ms},
    )
    others = [replace(s, default=False) if chosen else s for s in built]
    return [*others, int8]


def _extract(ctx: ExportContext, wheel: Path, part: Part) -> Path:
    data = read_member(wheel, part.member)
    out = ctx.models_dir / f"{part.name.replace('-', '_')}.onnx"
    if write_bytes(out, data) != part.sha256:
        out.unlink()
        raise ExportError(
            f"{wheel.name}: {part.member} is not the file rapidocr-onnxruntime 1.4.4 shipped "
            f"(sha256 differs from {part.sha256})"
        )
    return out


def _write_keys(ctx: ExportContext, rec: Path) -> str:
    """The dictionary from the rec model's metadata, one character a line; its sha256."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(rec), providers=["CPUExecutionProvider"])
    characters = session.get_modelmeta().custom_metadata_map["character"].splitlines()
    classes = session.get_outputs()[0].shape[-1]
    if len(characters) + 2 != classes:  # + CTC blank in front, + space at the end
        raise ExportError(
            f"{rec.name}: {len(characters)} dictionary characters do not fit {classes} classes"
        )
    return write_bytes(ctx.models_dir / KEYS_FILE, ("\n".join(characters) + "\n").encode())


def _spec(part: Part, path: Path, files: dict[str, str]) -> ModelSpec:
    wheel = f"{WHEEL[0]}=={WHEEL[1]}"
    return ModelSpec(
        name=part.name,
        task=part.task,
        family=NAME,
        variant="fp32",
        default=True,
        file=path.name,
        sha256=sha256_of(path),
        files=files,
        input=part.input,
        preprocessing=part.preprocessing,
        license=LICENSE,
        source=f"PaddleOCR {Path(part.member).name} from the PyPI wheel {wheel}",
        labels=("0", "180") if part.key == "cls" else (),
    )


# Inputs for parity (real text where the eval set is present) and for timing.


def _inputs(ctx: ExportContext, part: Part) -> tuple[list[np.ndarray], np.ndarray]:
    images = [read_image(p) for p in ctx.eval_images("ocr/images", 2)]
    if not images:
        ctx.log("ocr: eval set absent, parity is checked on noise")
        noise = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
        images = [noise]
    if part.key == "det":
        batches = [det_input(im) for im in images]
        width, height = part.input
        return batches, normalise(_resize(images[0], width, height))[None]
    crops = _crops(ctx) or [im[:64, :256] for im in images]
    width, height = part.input
    batch = np.stack([line_input(c, width, height) for c in crops[:16]])
    return [batch], batch[:1]


def det_input(image: np.ndarray, short_side: int = 736, long_max: int = 2000) -> np.ndarray:
    """Short side to 736 (rapidocr's limit; larger photos are scaled down too, which
    rapidocr does not do), long side at most 2000, both rounded to multiples of 32."""
    h, w = image.shape[:2]
    ratio = min(short_side / min(h, w), long_max / max(h, w))
    rh = max(32, round(int(h * ratio) / 32) * 32)
    rw = max(32, round(int(w * ratio) / 32) * 32)
    return normalise(_resize(image, rw, rh))[None]


def line_input(crop: np.ndarray, width: int, height: int) -> np.ndarray:
    """A text line at the model's height, aspect kept, zero-padded on the right."""
    h, w = crop.shape[:2]
    new_w = min(width, math.ceil(height * w / h))
    out = np.zeros((3, height, width), np.float32)
    out[:, :, :new_w] = normalise(_resize(crop, new_w, height))
    return out


def normalise(image: np.ndarray) -> np.ndarray:
    return ((image.astype(np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    return cv2.resize(image, (width, height))


def _crops(ctx: ExportContext) -> list[np.ndarray]:
    """Legible text lines cut out of the eval photos by their ground-truth boxes."""
    truth = ctx.eval_dir / "ocr" / "ground_truth.json" if ctx.eval_dir else None
    if truth is None or not truth.is_file():
        return []
    crops = []
    for name, regions in sorted(json.loads(truth.read_text(encoding="utf-8"))["images"].items()):
        image = read_image(truth.parent / "images" / name)
        for region in regions:
            if not region.get("poly"):  # whole-page text without boxes
                continue
            xs, ys = region["poly"][0::2], region["poly"][1::2]
            x0, y0, x1, y1 = max(0, min(xs)), max(0, min(ys)), max(xs), max(ys)
            if region["legible"] and x1 - x0 >= 8 and y1 - y0 >= 8:
                crops.append(image[y0:y1, x0:x1])
    return crops
