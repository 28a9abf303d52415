"""What the embedding models (CLIP, DINOv2) share: their config file and image preprocessing.

An exported embedding model carries a small JSON config next to its ONNX
files (named in the manifest's `files`, so its sha256 is checked like theirs).
It records what the export found in the checkpoint: the image preprocessing,
and for CLIP the text tower, tokenizer and logit scale.

Preprocessing reproduces the Hugging Face image processors (PIL backend) and
OpenAI's CLIP transform exactly: shorter side to `resize_shortest_edge` with
PIL's antialiased bicubic filter, centre crop, RGB, x/255, (x - mean) / std.
OpenCV's INTER_CUBIC has no antialiasing and drifts from what the weights
were trained on, so PIL does the resize (it costs ~1 ms on the reduced decode).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from tagd.runtime.manifest import ModelError, ModelSpec, verified_path
from tagd.runtime.pixels import Affine

CONFIG_SUFFIX = "_config.json"
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class ImagePrep:
    resize_shortest_edge: int
    crop: tuple[int, int]  # height, width
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bicubic"
    rescale: float = 1 / 255

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImagePrep:
        prep = cls(
            resize_shortest_edge=int(data["resize_shortest_edge"]),
            crop=(int(data["crop"][0]), int(data["crop"][1])),
            mean=tuple(float(x) for x in data["mean"]),  # type: ignore[arg-type]
            std=tuple(float(x) for x in data["std"]),  # type: ignore[arg-type]
            resample=str(data.get("resample", "bicubic")),
            rescale=float(data.get("rescale", 1 / 255)),
        )
        if prep.resample not in _RESAMPLE:
            raise ValueError(f"resample {prep.resample!r} is not one of {sorted(_RESAMPLE)}")
        if prep.resize_shortest_edge < max(prep.crop):
            raise ValueError("resize_shortest_edge is smaller than the crop")
        return prep

    @property
    def pixels(self) -> Affine:
        """This preprocessing's pixels -> floats, for inference servers (tagd.runtime.pixels)."""
        return Affine.normalise(self.mean, self.std, self.rescale)

    def to_dict(self) -> dict[str, Any]:
        return {
            "resize_shortest_edge": self.resize_shortest_edge,
            "crop": list(self.crop),
            "mean": list(self.mean),
            "std": list(self.std),
            "resample": self.resample,
            "rescale": self.rescale,
        }

    def describe(self) -> str:
        h, w = self.crop
        return (
            f"RGB, shorter side to {self.resize_shortest_edge} ({self.resample}, PIL), "
            f"centre crop {w}x{h}, x*{self.rescale:.6g}, mean {list(self.mean)}, "
            f"std {list(self.std)}, NCHW float32"
        )

    def prepare(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """BGR uint8 images (any size) -> NCHW float32 batch."""
        return np.stack([self._one(im) for im in images])

    def _one(self, bgr: np.ndarray) -> np.ndarray:
        if bgr.ndim == 2:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
        else:
            rgb = cv2.cvtColor(bgr[..., :3], cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        new_h, new_w = self._resized(h, w)
        resized = Image.fromarray(rgb).resize((new_w, new_h), resample=_RESAMPLE[self.resample])
        pixels = np.asarray(resized)
        ch, cw = self.crop
        top, left = (new_h - ch) // 2, (new_w - cw) // 2  # floor, as transformers' centre crop
        pixels = pixels[top : top + ch, left : left + cw].astype(np.float32) * np.float32(
            self.rescale
        )
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        return ((pixels - mean) / std).transpose(2, 0, 1)

    def _resized(self, h: int, w: int) -> tuple[int, int]:
        """Shorter side to the target; the longer one truncated, as torchvision/transformers do."""
        size = self.resize_shortest_edge
        if w <= h:
            return int(size * h / w), size
        return size, int(size * w / h)


def config_name(spec: ModelSpec) -> str:
    names = [name for name in spec.files if name.endswith(CONFIG_SUFFIX)]
    if len(names) != 1:
        raise ModelError(
            f"model {spec.name!r}: the manifest must list exactly one *{CONFIG_SUFFIX} in files "
            f"(found {names or 'none'}); export it again with `tagd models export {spec.family}`"
        )
    return names[0]


def companion(spec: ModelSpec, name: str) -> ModelSpec:
    """A spec for one file the manifest lists in `files` (checked on its own, with its .bin)."""
    if name not in spec.files:
        raise ModelError(f"model {spec.name!r}: {name} is not among the manifest's files")
    binary = str(Path(name).with_suffix(".bin"))
    extra = {binary: spec.files[binary]} if name.endswith(".xml") and binary in spec.files else {}
    return replace(
        spec, name=f"{spec.name}:{name}", file=name, sha256=spec.files[name], files=extra
    )


def main_file_spec(spec: ModelSpec) -> ModelSpec:
    """The spec's own model file with only its weights companion (an OpenVINO .bin)."""
    binary = str(Path(spec.file).with_suffix(".bin"))
    has_bin = spec.file.endswith(".xml") and binary in spec.files
    extra = {binary: spec.files[binary]} if has_bin else {}
    return replace(spec, files=extra)


def load_config(spec: ModelSpec, models_dir: Path) -> dict[str, Any]:
    """The model's JSON config, after its sha256 check."""
    path = verified_path(companion(spec, config_name(spec)), models_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"model {spec.name!r}: cannot read {path}: {exc}") from None
    if not isinstance(data, dict):
        raise ModelError(f"model {spec.name!r}: {path} is not a JSON object")
    return data


def image_prep(spec: ModelSpec, config: dict[str, Any]) -> ImagePrep:
    try:
        return ImagePrep.from_dict(config["image"])
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelError(
            f"model {spec.name!r}: bad image preprocessing in its config: {exc}"
        ) from None


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
