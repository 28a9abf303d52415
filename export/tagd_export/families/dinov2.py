"""DINOv2: image embeddings for "similar photos" and near-duplicates, from a checkpoint.

No DINOv2 weights reach machines without the model hub, so there is nothing
to fetch: `tagd models export dinov2 --from facebook/dinov2-small` (or a local
checkpoint folder) converts a transformers Dinov2Model into one ONNX file,
pixel_values (N, 3, 224, 224) -> (N, D), plus a JSON config with the
preprocessing read from the checkpoint (shorter side 256, bicubic, centre crop
224, ImageNet mean/std for the official ones).

The embedding is the CLS token after the final layer norm (transformers'
`pooler_output`), L2-normalised in the graph: the token DINOv2's own k-NN
retrieval evaluation uses, and one vector per photo for sqlite-vec. The
spatial size is fixed at the crop (the position embeddings are interpolated
once, at export); the batch is dynamic. `--quantize int8` applies dynamic
int8 to the weight MatMuls.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from tagd.runtime.manifest import ModelSpec
from tagd.runtime.vision import ImagePrep
from tagd_export import hf
from tagd_export.context import ExportContext, ExportError
from tagd_export.files import install_file

NAME = "dinov2"
TASK = "image-embedding"
DEFAULT = False
DESCRIPTION = "DINOv2 image embeddings for similar photos (export from a checkpoint)"

EXAMPLE = "facebook/dinov2-small"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_PREP = ImagePrep(256, (224, 224), IMAGENET_MEAN, IMAGENET_STD)
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.98


def fetch(ctx: ExportContext) -> list[ModelSpec]:
    raise ExportError(
        "DINOv2 weights do not reach this machine (no model hub); "
        + hf.connected_steps(NAME, EXAMPLE)
    )


def export(ctx: ExportContext, source: str | None, quantize: str, fmt: str) -> list[ModelSpec]:
    if source is None:
        return fetch(ctx)
    if quantize not in ("none", "int8"):
        raise ExportError(f"--quantize {quantize}: DINOv2 exports as none (fp32) or int8")
    folder = hf.checkpoint_dir(ctx, source, NAME, EXAMPLE)
    model = _load(folder)
    prep = hf.image_prep(folder, DEFAULT_PREP)
    name = hf.model_name(source, NAME) + ("-int8" if quantize == "int8" else "")
    stem = name.replace("-", "_")
    with tempfile.TemporaryDirectory() as tmp:
        staged = _export(model, prep, Path(tmp), quantize == "int8")
        metrics = _parity(ctx, model, prep, staged)
        ctx.log(f"{name}: parity vs PyTorch: worst cosine {metrics['cosine']:.6f}, "
                f"max |diff| {metrics['max_abs_diff']:.2e}")  # fmt: skip
        floor = INT8_MIN_COSINE if quantize == "int8" else FP32_MIN_COSINE
        if metrics["cosine"] < floor:
            raise ExportError(
                f"{name}: the exported model disagrees with the checkpoint: {metrics}"
            )
        onnx_sha = install_file(staged, ctx.models_dir / f"{stem}.onnx")
    config = {
        "family": NAME,
        "source": source,
        "embed_dim": int(model.config.hidden_size),
        "pooling": "cls-layernorm-l2",
        "image": prep.to_dict(),
    }
    base = ModelSpec(
        name=name,
        task=TASK,
        family=NAME,
        variant="int8" if quantize == "int8" else "fp32",
        file=f"{stem}.onnx",
        sha256=onnx_sha,
        input=(prep.crop[1], prep.crop[0]),
        preprocessing=prep.describe(),
        license=hf.license_of(folder),
        source=_origin(source, folder),
        metrics=metrics,
    )
    specs = []
    if fmt in ("onnx", "both"):
        specs.append(_with_config(ctx, base, stem, config))
    if fmt in ("openvino", "both"):
        ov = hf.to_openvino_pair(
            ctx.models_dir / base.file, ctx.models_dir / f"{stem}_openvino.xml"
        )
        xml = f"{stem}_openvino.xml"
        ov_spec = replace(base, name=f"{name}-openvino", variant=f"openvino-{base.variant}",
                          file=xml, sha256=ov.pop(xml), files=ov)  # fmt: skip
        specs.append(_with_config(ctx, ov_spec, f"{stem}_openvino", config))
        if fmt == "openvino":
            (ctx.models_dir / base.file).unlink(missing_ok=True)
    return [replace(s, default=i == 0) for i, s in enumerate(specs)]


def _with_config(
    ctx: ExportContext, spec: ModelSpec, stem: str, config: dict[str, Any]
) -> ModelSpec:
    config_file = f"{stem}_config.json"
    sha = hf.write_json(ctx.models_dir / config_file, config | {"model": spec.file})
    return replace(spec, files=dict(sorted({**spec.files, config_file: sha}.items())))


def _load(folder: Path) -> Any:
    try:
        from transformers import Dinov2Model
    except ImportError:
        raise ExportError(
            "exporting DINOv2 needs torch and transformers: pip install 'tagd[export]'"
        ) from None
    hf.quiet_transformers()
    try:
        return Dinov2Model.from_pretrained(str(folder), attn_implementation="eager").eval()
    except (OSError, ValueError) as exc:
        raise ExportError(
            f"{folder}: not a DINOv2 checkpoint transformers can load: {exc}"
        ) from None


def _embedder(model: Any) -> Any:
    import torch

    class Embedder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.dinov2 = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            cls = self.dinov2(pixel_values=pixel_values).pooler_output
            return cls / cls.norm(dim=-1, keepdim=True)

    return Embedder().eval()


def _export(model: Any, prep: ImagePrep, tmp: Path, int8: bool) -> Path:
    import torch

    path = tmp / "dinov2.onnx"
    pixels = torch.zeros((2, 3, *prep.crop), dtype=torch.float32)
    hf.export_onnx(_embedder(model), pixels, path, ["pixel_values"], "embeddings",
                   {"pixel_values": {0: "batch"}})  # fmt: skip
    if not int8:
        return path
    hf.quantize_int8(path, tmp / "dinov2_int8.onnx")
    return tmp / "dinov2_int8.onnx"


def _parity(ctx: ExportContext, model: Any, prep: ImagePrep, onnx_path: Path) -> dict[str, float]:
    import torch

    pixels = prep.prepare(hf.parity_images(ctx))
    with torch.no_grad():
        reference = _embedder(model)(torch.from_numpy(pixels)).numpy()
    return hf.worst_row(reference, hf.session_run(onnx_path, {"pixel_values": pixels}))


def _origin(source: str, folder: Path) -> str:
    if Path(source).expanduser().is_dir():
        return f"local Hugging Face DINOv2 checkpoint {folder.resolve()}"
    return f"Hugging Face {source} (https://huggingface.co/{source})"
