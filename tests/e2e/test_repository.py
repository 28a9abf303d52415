"""`tagd models repository DIR`: the installed models as a KServe v2 model
repository (OpenVINO Model Server, Triton), checked with Triton's own config
schema (tritonclient's ModelConfig) and the models' own inputs and outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnxruntime as ort
import pytest
from conftest import MODELS_DIR, write_config
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from tagd.runtime.kserve import model_version
from tagd.runtime.manifest import load_manifest, sha256_of

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
    assert specs and sorted(p.name for p in repo.iterdir() if p.is_dir()) == sorted(specs)
    ovms = json.loads((repo / "ovms_config.json").read_text())
    assert {c["config"]["name"] for c in ovms["model_config_list"]} == set(specs)
    for c in ovms["model_config_list"]:
        version = model_version(specs[c["config"]["name"]].sha256)
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
    assert f"{len(specs)} models in {repo}" in out


def test_a_damaged_model_is_refused_with_the_fix(tmp_path: Path, cli) -> None:
    models = tmp_path / "models"
    shutil.copytree(MODELS_DIR, models, copy_function=shutil.copyfile)
    victim = next(s for s in load_manifest(models).values() if s.file.endswith(".onnx"))
    path = models / victim.file
    path.write_bytes(path.read_bytes()[:1000])
    config = write_config(tmp_path / "c.toml", f'[runtime]\nmodels_dir = "{models}"\n')
    code, _, err = cli("--config", config, "models", "repository", tmp_path / "repo")
    assert code == 2 and victim.name in err and "tagd models fetch" in err, err
