"""The export framework: family discovery, the manifest writer, and YOLOX's fetch."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from tagd.cli.main import main
from tagd.runtime.manifest import (
    ModelError,
    ModelSpec,
    installed_specs,
    load_manifest,
    prefer_engine,
    resolve,
    verified_path,
    write_manifest,
)
from tagd.runtime.model import ManagedModel
from tagd_export.context import ExportContext, ExportError
from tagd_export.registry import all_families, family


def _spec(name: str, task: str = "objects", default: bool = False) -> ModelSpec:
    return ModelSpec(name=name, task=task, file=f"{name}.onnx", sha256="0" * 64,
                     input=(8, 8), default=default)  # fmt: skip


def test_families_are_discovered_with_their_interface():
    families = all_families()
    assert "yolox" in families
    for module in families.values():
        assert isinstance(module.NAME, str) and isinstance(module.DEFAULT, bool)
        assert callable(module.fetch) and callable(module.export)
    with pytest.raises(ExportError, match="unknown model family"):
        family("no-such-family")


def test_manifest_writer_merges_and_keeps_one_default_per_task(tmp_path: Path):
    write_manifest(tmp_path, [_spec("a", default=True), _spec("b"), _spec("f", "faces", True)])
    write_manifest(tmp_path, [_spec("c", default=True)])
    specs = installed_specs(tmp_path)
    assert sorted(specs) == ["a", "b", "c", "f"]
    assert [s.name for s in specs.values() if s.default] == ["c", "f"]
    assert resolve(specs, "objects", "auto", "objects.model").name == "c"
    assert resolve(specs, "objects", "b", "objects.model").name == "b"
    with pytest.raises(ModelError, match=r"objects.model = 'f'"):
        resolve(specs, "objects", "f", "objects.model")


def test_runtime_never_imports_export_tools():
    import subprocess
    import sys

    code = (
        "import sys, tagd.pipeline, tagd.cli.main, tagd_export.registry as r; r.all_families();"
        "heavy = {'torch', 'transformers', 'onnx', 'dlib'} & set(sys.modules);"
        "print(sorted(heavy)); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def yolox_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("onnx")
    if not (SHARED / "models" / "yolox" / "yolox_nano.onnx").is_file():
        pytest.skip("../shared/models/yolox is not present")
    out = tmp_path_factory.mktemp("models")
    ctx = ExportContext(
        models_dir=out,
        cache_dir=out / "cache",
        sources=[SHARED / "models"],
        eval_dir=SHARED / "eval" if (SHARED / "eval").is_dir() else None,
    )
    write_manifest(out, family("yolox").fetch(ctx))
    return out


def test_yolox_fetch_makes_a_batchable_verified_model(yolox_models: Path):
    specs = load_manifest(yolox_models)
    nano = specs["yolox-nano"]
    assert nano.default and nano.metrics["cosine"] > 0.9999
    assert len(nano.labels) == 80
    verified_path(nano, yolox_models)
    model = ManagedModel(nano, yolox_models, backend="cpu", threads=2, idle_unload=60)
    session = model.session()
    assert session.input_shape[0] in ("N", None)
    batch = np.random.default_rng(1).uniform(0, 255, (3, 3, 416, 416)).astype(np.float32)
    together = session.run(batch)[0]
    alone = np.concatenate([session.run(batch[i : i + 1])[0] for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-3)


def test_openvino_variant_matches_onnx(yolox_models: Path):
    specs = load_manifest(yolox_models)
    ov_spec = specs["yolox-nano-openvino"]
    assert ov_spec.engine == "openvino" and not ov_spec.default
    verified_path(ov_spec, yolox_models)  # checks the .bin too
    x = np.random.default_rng(2).uniform(0, 255, (2, 3, 416, 416)).astype(np.float32)
    onnx_out = ManagedModel(specs["yolox-nano"], yolox_models, backend="cpu", threads=2,
                            idle_unload=60).session().run(x)[0]  # fmt: skip
    ov_out = ManagedModel(ov_spec, yolox_models, backend="cpu", threads=2,
                          idle_unload=60).session().run(x)[0]  # fmt: skip
    np.testing.assert_allclose(ov_out, onnx_out, rtol=1e-3, atol=1e-2)


def test_fetch_without_source_says_what_to_do(tmp_path: Path, monkeypatch, capsys):
    monkeypatch.setenv("TAGD_STATE_DIR", str(tmp_path / "state"))
    config = tmp_path / "c.toml"
    config.write_text(f'[runtime]\nmodels_dir = "{tmp_path / "models"}"\n')
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(["--config", str(config), "models", "fetch", "--only", "yolox",
                 "--source", str(empty)])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 1
    assert "MISSING  yolox" in out and "--source DIR" in out


def test_fetch_skips_what_is_installed_and_verified(
    yolox_models: Path, tmp_path: Path, monkeypatch, capsys
):
    """`make scan` fetches before every scan: installed models are only verified;
    a damaged file or --force converts again."""
    models = tmp_path / "models"
    shutil.copytree(yolox_models, models, ignore=shutil.ignore_patterns("cache"))
    monkeypatch.setenv("TAGD_STATE_DIR", str(tmp_path / "state"))
    config = tmp_path / "c.toml"
    config.write_text(f'[runtime]\nmodels_dir = "{models}"\n')
    fetch = ["--config", str(config), "models", "fetch", "--only", "yolox",
             "--source", str(SHARED / "models")]  # fmt: skip
    assert main(fetch) == 0
    assert "ok       yolox: installed, 2 model(s) verified" in capsys.readouterr().out
    with (models / "yolox_nano.onnx").open("r+b") as f:  # damaged
        f.seek(1000)
        f.write(b"\0\0\0\0")
    assert main(fetch) == 0
    out = capsys.readouterr().out
    assert "installed" not in out and "ok       yolox-nano (fp32)" in out
    verified_path(load_manifest(models)["yolox-nano"], models)
    assert main([*fetch, "--force"]) == 0
    assert "ok       yolox-nano (fp32)" in capsys.readouterr().out


def test_runtime_engine_picks_the_twin_of_the_default():
    common = {"task": "ocr-det", "family": "ocr", "input": (8, 8)}
    onnx = ModelSpec(name="det", file="det.onnx", sha256="0" * 64, variant="fp32", **common)
    ov = ModelSpec(
        name="det-openvino",
        file="det.xml",
        sha256="1" * 64,
        variant="openvino-fp32",
        default=True,
        **common,
    )
    specs = {"det": onnx, "det-openvino": ov}
    on_ort = prefer_engine(specs, "cpu")
    assert resolve(on_ort, "ocr-det", "auto", "ocr.det_model").name == "det"
    # "auto" on a CPU runs what fetch measured fastest here.
    measured = prefer_engine(specs, "auto")
    assert resolve(measured, "ocr-det", "auto", "ocr.det_model").name == "det-openvino"
    on_ov = prefer_engine(specs, "openvino")
    assert resolve(on_ov, "ocr-det", "auto", "ocr.det_model").name == "det-openvino"
    # A default without a twin on the wanted engine stays.
    alone = prefer_engine({"det-openvino": ov}, "cpu")
    assert resolve(alone, "ocr-det", "auto", "ocr.det_model").name == "det-openvino"


def test_an_openvino_only_default_stays_on_auto_and_gives_way_on_cpu():
    common = {"task": "ocr-det", "family": "ocr", "input": (8, 8)}
    specs = {
        "det": ModelSpec(name="det", file="d.onnx", sha256="0" * 64, variant="fp32", **common),
        "det-openvino": ModelSpec(
            name="det-openvino", file="d.xml", sha256="1" * 64, variant="openvino-fp32", **common
        ),
        "det-int8-openvino": ModelSpec(
            name="det-int8-openvino",
            file="d8.xml",
            sha256="2" * 64,
            variant="openvino-int8",
            default=True,
            **common,
        ),
    }
    picked = {
        backend: resolve(prefer_engine(specs, backend), "ocr-det", "auto", "x").name
        for backend in ("auto", "openvino", "cpu")
    }
    # No onnxruntime int8 of it: "auto" on a CPU keeps the fastest, "cpu" means
    # onnxruntime and gets its fp32.
    assert picked == {"auto": "det-int8-openvino", "openvino": "det-int8-openvino", "cpu": "det"}
