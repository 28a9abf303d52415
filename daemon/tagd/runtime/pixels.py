"""Pixels on the wire: a model's input sent as uint8, a quarter of its float32 bytes.

Every image model here takes float32 that is, channel by channel, an affine
map of 8-bit pixels: x = pixel * scale + offset (x / 255 and an ImageNet
mean and std for the detector, (x / 255 - 0.5) / 0.5 for OCR, raw 0-255 for
the face models). `tagd models repository` writes, next to each ONNX model,
a "-pixels" twin that takes the uint8 pixels and that scale and offset and
does the map itself before the original graph. An analyzer declares its map
(`ManagedModel.pixels`); before sending, the batch is turned back into
pixels and checked exact, so a tensor that is not one (padding with a value
off the grid, say) goes as float32 to the original model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

SUFFIX = "-pixels"
PIXELS, SCALE, OFFSET = "tagd_pixels", "tagd_scale", "tagd_offset"


@dataclass(frozen=True)
class Affine:
    """x = pixel * scale + offset, per channel (NCHW)."""

    scale: tuple[float, ...]
    offset: tuple[float, ...]

    @classmethod
    def normalise(
        cls, mean: tuple[float, ...], std: tuple[float, ...], rescale: float = 1 / 255
    ) -> Affine:
        """(pixel * rescale - mean) / std."""
        return cls(
            tuple(rescale / s for s in std), tuple(-m / s for m, s in zip(mean, std, strict=True))
        )

    @classmethod
    def raw(cls, channels: int = 3) -> Affine:
        return cls((1.0,) * channels, (0.0,) * channels)

    def to_pixels(self, batch: np.ndarray) -> np.ndarray | None:
        """The uint8 pixels this float32 NCHW batch was made from, or None when it
        was not made from pixels by this map (then it goes as it is)."""
        channels = len(self.scale)
        if batch.ndim != 4 or batch.shape[1] != channels or batch.dtype != np.float32:
            return None
        scale = np.asarray(self.scale, np.float32).reshape(1, channels, 1, 1)
        offset = np.asarray(self.offset, np.float32).reshape(1, channels, 1, 1)
        # In place, two temporaries in all: this runs on every batch sent (a 416 px
        # batch of 4 in 4.4 ms; 6.4 with a new array per step).
        levels = batch - offset
        levels *= 1 / scale
        np.rint(levels, out=levels)
        if levels.size == 0 or levels.min() < 0 or levels.max() > 255:
            return None
        back = levels * scale
        back += offset
        back -= batch
        # Within a hundredth of a level: the same pixel, off only by float rounding.
        if float(np.abs(back, out=back).max()) > 0.01 * float(np.abs(scale).min()):
            return None
        return levels.astype(np.uint8)

    def tensors(self, rows: int) -> tuple[np.ndarray, np.ndarray]:
        """scale and offset as the pixels model takes them: one row per input row."""
        channels = len(self.scale)
        shape = (rows, channels, 1, 1)
        scale = np.broadcast_to(np.asarray(self.scale, np.float32).reshape(1, -1, 1, 1), shape)
        offset = np.broadcast_to(np.asarray(self.offset, np.float32).reshape(1, -1, 1, 1), shape)
        return np.ascontiguousarray(scale), np.ascontiguousarray(offset)


def write_pixels_model(source: Path, target: Path) -> bool:
    """The "-pixels" twin of an ONNX model with one float32 NCHW image input:
    inputs tagd_pixels (uint8, the same shape), tagd_scale and tagd_offset
    (float32, N x C x 1 x 1). False (nothing written) for any other model."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {w.name for w in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    if len(inputs) != 1:
        return False
    first = inputs[0]
    tensor = first.type.tensor_type
    dims = list(tensor.shape.dim)
    if tensor.elem_type != TensorProto.FLOAT or len(dims) != 4 or dims[1].dim_value <= 0:
        return False
    name = first.name
    batch = dims[0].dim_value if dims[0].dim_value > 0 else (dims[0].dim_param or "N")
    shape = [d.dim_value if d.dim_value > 0 else (d.dim_param or None) for d in dims]
    channels = dims[1].dim_value
    floated = f"{PIXELS}_float"
    scaled = f"{PIXELS}_scaled"
    graph.input.remove(first)
    graph.input.insert(0, helper.make_tensor_value_info(PIXELS, TensorProto.UINT8, shape))
    for extra in (SCALE, OFFSET):
        info = helper.make_tensor_value_info(extra, TensorProto.FLOAT, [batch, channels, 1, 1])
        graph.input.insert(1, info)
    head = [
        helper.make_node("Cast", [PIXELS], [floated], to=TensorProto.FLOAT),
        helper.make_node("Mul", [floated, SCALE], [scaled]),
        helper.make_node("Add", [scaled, OFFSET], [name]),
    ]
    for node in reversed(head):
        graph.node.insert(0, node)
    onnx.checker.check_model(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(target))
    return True
