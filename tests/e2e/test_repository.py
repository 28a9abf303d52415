"""`tagd models repository DIR`: the installed models as a KServe v2 model
repository (OpenVINO Model Server, Triton), checked with Triton's own config
schema (tritonclient's ModelConfig) and the models' own inputs and outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from conftest import MODELS_DIR, write_config
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tagd.runtime.kserve import model_version
from tagd.runtime.manifest import load_manifest, sha256_of
from tagd.runtime.pixels import OFFSET, PIXELS, SCALE, SUFFIX, Affine

pytestmark = pytest.mark.usefixtures("default_models")


def test_the_repository_holds_every_installed_model(tmp_path: Path, cli) -> None:
    repo = tmp_path / "repo"
    code, out, err = cli("models", "repository", repo)
    assert code == 0, err
    specs = {
        n: s
        for n, s in load_manifest(MODELS_DIR).items()
        if s.file.endswith((".onnx", ".xml")) and (MODELS_DIR / s.file).is_file()
    }
    # Every ONNX model takes one image (NCHW float32) here: each has its pixels twin.
    twins = {f"{n}{SUFFIX}": s for n, s in specs.items() if s.engine == "onnx"}
    served = specs | twins
    assert specs and sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted(served)
    ovms = json.loads((repo / "ovms_config.json").read_text())
    assert {c["config"]["name"] for c in ovms["model_config_list"]} == set(served)
    for c in ovms["model_config_list"]:
        version = model_version(served[c["config"]["name"]].sha256)
        assert [p.name for p in (repo / c["config"]["base_path"]).iterdir() if p.is_dir()] == [
            version
        ]
    assert set(load_manifest(repo)) == set(specs)  # tagd's entries travel along
    for name, spec in specs.items():
        folder = repo / name
        model = (
            folder
            / model_version(spec.sha256)
            / ("model.xml" if spec.engine == "openvino" else "model.onnx")
        )
        assert sha256_of(model) == spec.sha256, name
        config = text_format.Parse(
            (folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        assert config.name == name
        assert config.backend == ("openvino" if spec.engine == "openvino" else "onnxruntime")
        if spec.engine == "onnx":
            session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
            inputs = {i.name: i.shape for i in session.get_inputs()}
            assert {i.name for i in config.input} == set(inputs)
            for tensor in config.input:
                shape = inputs[tensor.name]
                tail = shape[1:] if config.max_batch_size else shape
                assert len(tensor.dims) == len(tail), (name, tensor.dims, shape)
                assert config.HasField("dynamic_batching") == (config.max_batch_size > 0)
    assert f"{len(served)} models in {repo}" in out


def test_a_pixels_twin_answers_as_its_model_does(tmp_path: Path, cli) -> None:
    """uint8 pixels, scale and offset into the twin give the model's outputs for
    pixels * scale + offset (the OCR map here, a dynamic-size input)."""
    repo = tmp_path / "repo"
    assert cli("models", "repository", repo)[0] == 0
    spec = load_manifest(MODELS_DIR)["ppocr-v4-det"]
    version = model_version(spec.sha256)
    plain = ort.InferenceSession(str(repo / spec.name / version / "model.onnx"))
    twin = ort.InferenceSession(str(repo / f"{spec.name}{SUFFIX}" / version / "model.onnx"))
    pixels = np.random.default_rng(0).integers(0, 256, (2, 3, 96, 160), dtype=np.uint8)
    affine = Affine((2 / 255,) * 3, (-1.0,) * 3)
    floats = pixels.astype(np.float32) * np.float32(2 / 255) - 1.0
    assert np.array_equal(affine.to_pixels(floats), pixels)  # exact back to pixels
    scale, offset = affine.tensors(2)
    (want,) = plain.run(None, {plain.get_inputs()[0].name: floats})
    (got,) = twin.run(None, {PIXELS: pixels, SCALE: scale, OFFSET: offset})
    np.testing.assert_allclose(got, want, atol=1e-5)
    padded = floats.copy()
    padded[..., -8:] = 0.0  # zero in float is pixel 127.5: not pixels
    assert affine.to_pixels(padded) is None


def test_a_damaged_model_is_refused_with_the_fix(tmp_path: Path, cli) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models, copy_function=shutil.copyfile)
    victim = next(s for s in load_manifest(models).values() if s.file.endswith(".onnx"))
    path = models / victim.file
    path.write_bytes(path.read_bytes()[:1000])
    config = write_config(tmp_path / "c.toml", f'[runtime]\nmodels_dir = "{models}"\n')
    code, _, err = cli("--config", config, "models", "repository", tmp_path / "repo")
    assert code == 2 and victim.name in err and "tagd models fetch" in err, err
