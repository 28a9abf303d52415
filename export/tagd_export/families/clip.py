"""CLIP: zero-shot concept tags and text -> image search, from a Hugging Face checkpoint.

No CLIP weights reach machines without the model hub, so there is nothing to
fetch: `tagd models export clip --from openai/clip-vit-base-patch32` (or a
local checkpoint folder) converts a transformers CLIPModel into

- `<name>_image.onnx`: pixel_values (N, 3, H, W) -> L2-normalised image embeds (N, D);
- `<name>_text.onnx`: input_ids (N, L) -> L2-normalised text embeds (N, D), L <= 77
  dynamic (the causal text tower needs no attention mask; see tagd.runtime.clip);
- `<name>_tokenizer.json`: the checkpoint's tokenizer for the `tokenizers` library;
- `<name>_config.json`: logit scale, context length, pad id and the image
  preprocessing (shorter side, bicubic, crop, mean, std) read from the checkpoint.

One manifest entry per variant (task "clip"): the image tower is `file`, the
rest are `files`, all with their sha256. `--quantize int8` applies dynamic int8
to the weight MatMuls of both towers (0.4-0.47x the fp32 time on a ViT-B/32
image tower). Every export is checked against the PyTorch model on real
photos and prompts; the numbers land in the manifest's metrics.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from tagd.runtime.manifest import ModelSpec
from tagd.runtime.vision import ImagePrep
from tagd_export import hf
from tagd_export.context import ExportContext, ExportError
from tagd_export.files import install_file, write_bytes

NAME = "clip"
TASK = "clip"
DEFAULT = False
DESCRIPTION = "CLIP image/text embeddings for zero-shot tags and search (export from a checkpoint)"

EXAMPLE = "openai/clip-vit-base-patch32"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
# Parity prompts: short and long ones, so padding inside a batch is exercised.
PROMPTS = (
    "a photo of a dog",
    "a photo of a cat",
    "a red double-decker bus driving down a busy city street in the rain",
    "food",
    "a person smiling at the camera",
    "a landscape with snowy mountains, a forest and a lake at sunset",
)
FP32_MIN_COSINE = 0.9999
INT8_MIN_COSINE = 0.98


def fetch(ctx: ExportContext) -> list[ModelSpec]:
    raise ExportError(
        "CLIP weights do not reach this machine (no model hub); "
        + hf.connected_steps(NAME, EXAMPLE)
    )


def export(ctx: ExportContext, source: str | None, quantize: str, fmt: str) -> list[ModelSpec]:
    if source is None:
        return fetch(ctx)
    if quantize not in ("none", "int8"):
        raise ExportError(f"--quantize {quantize}: CLIP exports as none (fp32) or int8")
    folder = hf.checkpoint_dir(ctx, source, NAME, EXAMPLE)
    model, tokenizer = _load(folder)
    prep = hf.image_prep(folder, _default_prep(model))
    base_name = hf.model_name(source, NAME)
    int8 = quantize == "int8"
    out = _Variant(ctx, base_name + ("-int8" if int8 else ""), "int8" if int8 else "fp32")
    with tempfile.TemporaryDirectory() as tmp:
        image, text = _export_towers(model, tokenizer, prep, Path(tmp), int8)
        out.metrics = _parity(ctx, model, tokenizer, prep, image, text)
        ctx.log(f"{out.name}: parity vs PyTorch {_fmt(out.metrics)}")
        floor = INT8_MIN_COSINE if int8 else FP32_MIN_COSINE
        if min(out.metrics["image_cosine"], out.metrics["text_cosine"]) < floor:
            raise ExportError(f"{out.name}: exported towers disagree with the checkpoint")
        onnx_files = [out.install(image, "image.onnx"), out.install(text, "text.onnx")]
    # One tokenizer file serves every variant of the checkpoint.
    tokenizer_file = f"{base_name.replace('-', '_')}_tokenizer.json"
    out.shas[tokenizer_file] = write_bytes(
        ctx.models_dir / tokenizer_file, _tokenizer_json(tokenizer)
    )
    out.config = _common_config(model, tokenizer, prep, source) | {"tokenizer": tokenizer_file}
    out.base = {
        "task": TASK,
        "family": NAME,
        "input": (prep.crop[1], prep.crop[0]),
        "preprocessing": prep.describe(),
        "license": hf.license_of(folder),
        "source": _origin(source, folder),
    }
    specs = [out.spec(*onnx_files)] if fmt in ("onnx", "both") else []
    if fmt in ("openvino", "both"):
        specs.append(_openvino(out, onnx_files))
        if fmt == "openvino":  # the ONNX files were only a step on the way
            for name in onnx_files:
                (ctx.models_dir / name).unlink(missing_ok=True)
    return [replace(s, default=i == 0) for i, s in enumerate(specs)]


@dataclass
class _Variant:
    """One variant's files as they are installed, and the manifest entry that names them."""

    ctx: ExportContext
    name: str
    variant: str
    shas: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    base: dict[str, Any] = field(default_factory=dict)

    @property
    def stem(self) -> str:
        return self.name.replace("-", "_")

    def install(self, staged: Path, suffix: str) -> str:
        name = f"{self.stem}_{suffix}"
        self.shas[name] = install_file(staged, self.ctx.models_dir / name)
        return name

    def spec(self, image_file: str, text_file: str) -> ModelSpec:
        """The image tower as `file`; text tower, tokenizer, config (and .bins) in `files`."""
        config_file = f"{self.stem}_config.json"
        config = self.config | {
            "image_model": image_file,
            "text_model": text_file,
            "variant": self.variant,
        }
        self.shas[config_file] = hf.write_json(self.ctx.models_dir / config_file, config)
        wanted = {text_file, config["tokenizer"], config_file}
        wanted |= {str(Path(f).with_suffix(".bin")) for f in (image_file, text_file)}
        files = {k: v for k, v in sorted(self.shas.items()) if k in wanted}
        return ModelSpec(
            name=self.name,
            variant=self.variant,
            file=image_file,
            sha256=self.shas[image_file],
            files=files,
            metrics=self.metrics,
            **self.base,
        )


def _openvino(onnx: _Variant, onnx_files: list[str]) -> ModelSpec:
    """The same towers as OpenVINO IR, in an entry of their own."""
    out = replace(onnx, name=f"{onnx.name}-openvino", variant=f"openvino-{onnx.variant}")
    out.shas = dict(onnx.shas)
    xml_files = []
    for onnx_file, part in zip(onnx_files, ("image", "text"), strict=True):
        xml = f"{out.stem}_{part}.xml"
        out.shas |= hf.to_openvino_pair(out.ctx.models_dir / onnx_file, out.ctx.models_dir / xml)
        xml_files.append(xml)
    return out.spec(*xml_files)


def _load(folder: Path) -> tuple[Any, Any]:
    try:
        from transformers import AutoTokenizer, CLIPModel
    except ImportError:
        raise ExportError(
            "exporting CLIP needs torch and transformers: pip install 'tagd[export]'"
        ) from None
    hf.quiet_transformers()
    try:
        # Eager attention traces to plain MatMul/Softmax, which int8 and every engine handle.
        model = CLIPModel.from_pretrained(str(folder), attn_implementation="eager").eval()
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as exc:
        raise ExportError(f"{folder}: not a CLIP checkpoint transformers can load: {exc}") from None
    if getattr(tokenizer, "backend_tokenizer", None) is None:
        raise ExportError(f"{folder}: the tokenizer has no `tokenizers` form (tokenizer.json)")
    return model, tokenizer


def _default_prep(model: Any) -> ImagePrep:
    """OpenAI's transform at the checkpoint's resolution, for folders without a preprocessor."""
    size = int(model.config.vision_config.image_size)
    return ImagePrep(size, (size, size), OPENAI_MEAN, OPENAI_STD)


def _towers(model: Any) -> tuple[Any, Any]:
    import torch

    def features(out: Any) -> Any:  # transformers 5 returns an output object, 4 a tensor
        embeds = out if isinstance(out, torch.Tensor) else out.pooler_output
        return embeds / embeds.norm(dim=-1, keepdim=True)

    class Image(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            return features(self.clip.get_image_features(pixel_values=pixel_values))

    class Text(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.clip = model

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return features(self.clip.get_text_features(input_ids=input_ids))

    return Image().eval(), Text().eval()


def _export_towers(
    model: Any, tokenizer: Any, prep: ImagePrep, tmp: Path, int8: bool
) -> tuple[Path, Path]:
    import torch

    image_tower, text_tower = _towers(model)
    pixels = torch.zeros((2, 3, *prep.crop), dtype=torch.float32)
    ids = tokenizer(list(PROMPTS[:2]), padding=True, return_tensors="pt")["input_ids"]
    image, text = tmp / "image.onnx", tmp / "text.onnx"
    hf.export_onnx(image_tower, pixels, image, ["pixel_values"], "image_embeds",
                   {"pixel_values": {0: "batch"}})  # fmt: skip
    hf.export_onnx(text_tower, ids, text, ["input_ids"], "text_embeds",
                   {"input_ids": {0: "batch", 1: "sequence"}})  # fmt: skip
    if not int8:
        return image, text
    hf.quantize_int8(image, tmp / "image_int8.onnx")
    hf.quantize_int8(text, tmp / "text_int8.onnx")
    return tmp / "image_int8.onnx", tmp / "text_int8.onnx"


def _parity(
    ctx: ExportContext, model: Any, tokenizer: Any, prep: ImagePrep, image: Path, text: Path
) -> dict[str, float]:
    """The ONNX towers vs the checkpoint run as transformers runs it (with its attention mask)."""
    import torch

    pixels = prep.prepare(hf.parity_images(ctx))
    tokens = tokenizer(list(PROMPTS), padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=torch.from_numpy(pixels), **tokens)
    ref_img, ref_txt = out.image_embeds.numpy(), out.text_embeds.numpy()
    onnx_img = hf.session_run(image, {"pixel_values": pixels})
    onnx_txt = hf.session_run(text, {"input_ids": tokens["input_ids"].numpy()})
    scale = float(model.logit_scale.detach().exp())
    img, txt = hf.worst_row(ref_img, onnx_img), hf.worst_row(ref_txt, onnx_txt)
    probs = np.abs(_softmax(scale * ref_img @ ref_txt.T) - _softmax(scale * onnx_img @ onnx_txt.T))
    return {
        "image_cosine": img["cosine"],
        "text_cosine": txt["cosine"],
        "zero_shot_max_abs_diff": float(probs.max()),
    }


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def _common_config(model: Any, tokenizer: Any, prep: ImagePrep, source: str) -> dict[str, Any]:
    text_config = model.config.text_config
    context = int(text_config.max_position_embeddings)
    if 0 < (tokenizer.model_max_length or 0) < context:
        context = int(tokenizer.model_max_length)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    return {
        "family": NAME,
        "source": source,
        "embed_dim": int(model.config.projection_dim),
        "logit_scale": float(math.exp(float(model.logit_scale.detach()))),
        "context_length": context,
        "pad_token_id": int(pad_id),
        "bos_token_id": int(tokenizer.bos_token_id),
        "eos_token_id": int(tokenizer.eos_token_id),
        "image": prep.to_dict(),
    }


def _tokenizer_json(tokenizer: Any) -> bytes:
    """The backend tokenizer without padding/truncation state: the runtime sets its own."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    backend.no_padding()
    backend.no_truncation()
    return backend.to_str().encode()


def _origin(source: str, folder: Path) -> str:
    if Path(source).expanduser().is_dir():
        return f"local Hugging Face CLIP checkpoint {folder.resolve()}"
    return f"Hugging Face {source} (https://huggingface.co/{source})"


def _fmt(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.6f}" for k, v in metrics.items())
