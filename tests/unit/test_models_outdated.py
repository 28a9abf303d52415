"""`tagd models fetch` converts a family again when this tagd ships another ONNX
conversion of one of its models (EfficientNet gained an image-features output),
and never because an OpenVINO IR differs (those vary by OpenVINO version)."""

from __future__ import annotations

import dataclasses

from tagd.cli.models_cmd import _outdated
from tagd.runtime.manifest import default_specs


def test_a_new_onnx_conversion_is_outdated_an_ir_never() -> None:
    shipped = default_specs()
    onnx = shipped["efficientnet-lite0-int8"]
    ir = shipped["efficientnet-lite0-openvino"]
    assert onnx.engine == "onnx" and ir.engine == "openvino"
    assert not _outdated([onnx, ir])
    older = dataclasses.replace(onnx, sha256="0" * 64)
    assert _outdated([older, ir])
    assert not _outdated([onnx, dataclasses.replace(ir, sha256="0" * 64)])
    # A model this tagd does not ship (exported by the user) is the user's.
    mine = dataclasses.replace(onnx, name="my-classifier", sha256="1" * 64)
    assert not _outdated([mine])
