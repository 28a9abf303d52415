"""Hugging Face checkpoints -> ONNX: what the CLIP and DINOv2 families share.

A source is a local checkpoint folder (config.json, weights, tokenizer and
preprocessor files, as `save_pretrained` or `hf download` leave them) or a hub
id, which is downloaded into the export cache first: only a connected machine
can do that, and everywhere else the error says which commands to run there.
torch, transformers and onnx are imported inside the functions that need them.
"""

from __future__ import annotations

import json
import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagd.runtime.vision import ImagePrep
from tagd_export.context import ExportContext, ExportError
from tagd_export.files import write_bytes

OPSET = 17
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHTS = ("*.safetensors", "pytorch_model.bin")
_METADATA = ("*.json", "*.txt", "*.model", "README.md")


def connected_steps(family: str, example: str) -> str:
    """The commands that get a checkpoint onto a machine without hub access."""
    return (
        "either, on a machine with internet: `pip install 'tagd[export]'` and "
        f"`tagd models export {family} --from {example}` (add `--quantize int8` for about "
        "half the CPU time), then copy its models/ files and manifest.toml entries here; "
        f"or there `hf download {example} --local-dir DIR` (huggingface_hub), copy DIR "
        f"here and run `tagd models export {family} --from DIR`"
    )


def checkpoint_dir(ctx: ExportContext, source: str, family: str, example: str) -> Path:
    """A local folder with the checkpoint named by `source` (a path or a hub id)."""
    path = Path(source).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ExportError(f"--from {source}: no config.json there (not a checkpoint folder)")
        return path
    if path.exists() or not _HUB_ID.match(source):
        raise ExportError(
            f"--from {source}: not a checkpoint folder nor a hub id like {example}; "
            + connected_steps(family, example)
        )
    return _download(ctx, source, family)


def _download(ctx: ExportContext, repo_id: str, family: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise ExportError(
            f"--from {repo_id}: downloading needs huggingface_hub (pip install 'tagd[export]'); "
            + connected_steps(family, repo_id)
        ) from None
    cache = ctx.cache_dir / "huggingface"
    try:
        folder = Path(snapshot_download(repo_id, cache_dir=cache, allow_patterns=[*_METADATA]))
        for pattern in _WEIGHTS:  # safetensors when the repo has them, else the pickle
            snapshot_download(repo_id, cache_dir=cache, allow_patterns=[pattern])
            if any(folder.glob(pattern)):
                break
    except Exception as exc:  # offline, proxy, unknown repo: huggingface_hub has many types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(
            f"--from {repo_id}: cannot download it here ({first}); "
            + connected_steps(family, repo_id)
        ) from None
    if not any(folder.glob(p) for p in _WEIGHTS):
        raise ExportError(f"--from {repo_id}: the repository has no PyTorch weights")
    return folder


def model_name(source: str, family: str) -> str:
    """A manifest name: openai/clip-vit-base-patch32 -> clip-vit-base-patch32."""
    stem = Path(source.rstrip("/")).name.lower()
    stem = re.sub(r"[^a-z0-9.]+", "-", stem).strip("-") or family
    return stem if stem.startswith(family) else f"{family}-{stem}"


def license_of(folder: Path) -> str:
    """The `license:` of the model card's front matter (empty when there is none)."""
    card = folder / "README.md"
    text = card.read_text(encoding="utf-8", errors="replace") if card.is_file() else ""
    match = re.search(r"^license:\s*(\S+)", text.split("\n---", 1)[0], re.MULTILINE)
    return match.group(1) if match and text.startswith("---") else ""


def quiet_transformers() -> None:
    """No per-checkpoint progress bars in `tagd models export` output."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def image_prep(folder: Path, default: ImagePrep) -> ImagePrep:
    """The checkpoint's preprocessor_config.json as tagd's ImagePrep (defaults fill gaps)."""
    path = folder / "preprocessor_config.json"
    if not path.is_file():
        return default
    data = json.loads(path.read_text(encoding="utf-8"))
    size = data.get("size", default.resize_shortest_edge)
    if isinstance(size, dict):
        if "shortest_edge" not in size:
            raise ExportError(f"{path}: only shortest-edge resizing is supported, got {size}")
        size = size["shortest_edge"]
    crop = data.get("crop_size", {"height": default.crop[0], "width": default.crop[1]})
    if isinstance(crop, int):
        crop = {"height": crop, "width": crop}
    if data.get("do_center_crop") is False or data.get("do_resize") is False:
        raise ExportError(f"{path}: processors without resize + centre crop are not supported")
    resample = {2: "bilinear", 3: "bicubic"}.get(int(data.get("resample", 3)))
    if resample is None:
        raise ExportError(f"{path}: resample {data.get('resample')} is not bilinear or bicubic")
    return ImagePrep(
        resize_shortest_edge=int(size),
        crop=(int(crop["height"]), int(crop["width"])),
        mean=tuple(float(x) for x in data.get("image_mean", default.mean)),  # type: ignore[arg-type]
        std=tuple(float(x) for x in data.get("image_std", default.std)),  # type: ignore[arg-type]
        resample=resample,
        rescale=float(data.get("rescale_factor", default.rescale)),
    )


def export_onnx(
    module: Any,
    example: Any,
    dest: Path,
    inputs: Sequence[str],
    output: str,
    dynamic: dict[str, dict[int, str]],
) -> None:
    """TorchScript-based export (opset 17): the dynamo exporter trips on transformers' masks."""
    import torch

    dest.parent.mkdir(parents=True, exist_ok=True)
    # The tracer warns about every shape check in transformers' code; the parity check
    # that follows every export is what shows the trace is right.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(dest),
            input_names=list(inputs),
            output_names=[output],
            dynamic_axes={**dynamic, output: {0: "batch"}},
            opset_version=OPSET,
            dynamo=False,
        )


def quantize_int8(src: Path, dest: Path) -> None:
    """Dynamic int8 on the weight MatMuls (0.4-0.5x the time of fp32 on a ViT-B/32)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    # It logs every skipped MatMul, and advice about a pre-pass that changes nothing here.
    root.setLevel(max(level, logging.ERROR))
    try:
        quantize_dynamic(
            str(src),
            str(dest),
            op_types_to_quantize=["MatMul"],
            weight_type=QuantType.QInt8,
            # Activation x activation products (attention) stay fp32: they cost accuracy.
            extra_options={"MatMulConstBOnly": True},
        )
    finally:
        root.setLevel(level)


def write_json(dest: Path, data: dict[str, Any]) -> str:
    return write_bytes(dest, (json.dumps(data, indent=1, sort_keys=True) + "\n").encode())


def parity_images(ctx: ExportContext, count: int = 4) -> list[np.ndarray]:
    """Real photos for parity checks (coloured noise of odd sizes when the eval set is absent)."""
    import cv2

    paths = ctx.eval_images("classes-imagenet-dev", count) or ctx.eval_images(
        "objects-coco128-train/images", count
    )
    images = [im for im in (cv2.imread(str(p)) for p in paths) if im is not None]
    if images:
        return images
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((300, 400), (512, 320))]


def session_run(path: Path, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def worst_row(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Per-row cosine (the embeddings' own measure): the worst one, and the max |diff|."""
    a = np.asarray(reference, np.float64)
    b = np.asarray(candidate, np.float64)
    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
    return {"max_abs_diff": float(np.abs(a - b).max()), "cosine": float(cos.min())}


def to_openvino_pair(src: Path, dest_xml: Path) -> dict[str, str]:
    """OpenVINO IR of one ONNX file: {xml name: sha256, bin name: sha256}."""
    from tagd.runtime.manifest import sha256_of
    from tagd_export.onnx_tools import to_openvino

    try:
        xml, binf = to_openvino(src, dest_xml)
    except Exception as exc:  # OpenVINO's converter raises its own error types
        raise ExportError(f"OpenVINO cannot convert {src.name}: {exc}") from None
    return {xml.name: sha256_of(xml), binf.name: sha256_of(binf)}
