"""Small ONNX graph edits and the parity numbers every export prints."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def parity(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Max absolute difference and cosine similarity of two outputs."""
    a = np.asarray(reference, np.float64).ravel()
    b = np.asarray(candidate, np.float64).ravel()
    cosine = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))
    return {"max_abs_diff": float(np.abs(a - b).max()), "cosine": cosine}


def dynamic_batch(src: Path, dest: Path) -> int:
    """Make axis 0 of inputs and outputs symbolic; returns the Reshapes patched.

    Files exported with a fixed batch of 1 also bake the 1 into Reshape shape
    constants; a leading 1 there becomes 0, ONNX for "copy the input's dim".
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(src))
    shapes = {n.input[1] for n in model.graph.node if n.op_type == "Reshape"}
    patched = 0
    for init in model.graph.initializer:
        if init.name in shapes and numpy_helper.to_array(init).ravel()[:1].tolist() == [1]:
            patched += 1
            shape = numpy_helper.to_array(init).copy()
            shape[0] = 0
            init.CopyFrom(numpy_helper.from_array(shape, init.name))
    del model.graph.value_info[:]  # stale fixed shapes would fight the new axis
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_param = "N"
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))
    return patched


def drop_weight_inputs(src: Path, dest: Path) -> int:
    """Remove graph inputs that only name initializers, and unused initializers;
    returns the inputs removed.

    Some converters (Paddle2ONNX) list every weight as an overridable input. The
    values stay the same, but a runtime must then treat them as variables and
    cannot fold them into the convolutions (about 2x slower for PicoDet here).
    """
    import onnx

    model = onnx.load(str(src))
    graph = model.graph
    weights = {init.name for init in graph.initializer}
    real = [value for value in graph.input if value.name not in weights]
    dropped = len(graph.input) - len(real)
    del graph.input[:]
    graph.input.extend(real)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    onnx.checker.check_model(model)
    onnx.save(model, str(dest))
    return dropped


def to_openvino(src: Path, dest_xml: Path, fp16: bool = False) -> tuple[Path, Path]:
    """Convert an ONNX file to OpenVINO IR (.xml + .bin)."""
    import openvino as ov

    model = ov.convert_model(str(src))
    dest_xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(dest_xml), compress_to_fp16=fp16)
    return dest_xml, dest_xml.with_suffix(".bin")
