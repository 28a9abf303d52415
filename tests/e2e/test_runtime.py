"""Model runtime: manifest, checksums, engines, lazy load and idle unload."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS_DIR, require_models

from tagd.runtime.backends import open_session, resolve_backend
from tagd.runtime.manifest import ModelError, load_manifest, verified_path
from tagd.runtime.model import ManagedModel

SPEC = load_manifest(MODELS_DIR)["yolox-nano"]


@pytest.fixture
def model_file() -> Path:
    path = require_models("yolox-nano") / SPEC.file
    return path


def test_manifest_describes_the_default_model():
    assert SPEC.task == "objects"
    assert SPEC.input == (416, 416)
    assert len(SPEC.labels) == 80 and SPEC.labels[0] == "person"
    assert len(SPEC.sha256) == 64


def test_missing_model_says_how_to_get_it(tmp_path: Path):
    with pytest.raises(ModelError, match="tagd models fetch"):
        verified_path(SPEC, tmp_path)


def test_damaged_model_is_refused(tmp_path: Path, model_file: Path):
    damaged = tmp_path / SPEC.file
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sha256"):
        verified_path(SPEC, tmp_path)


def test_bad_manifest_is_a_clear_error(tmp_path: Path):
    (tmp_path / "manifest.toml").write_text('[models.x]\ntask = "objects"\n')
    with pytest.raises(ModelError, match=r"\[models.x\] is incomplete"):
        load_manifest(tmp_path)


def test_lazy_load_and_idle_unload(tmp_path: Path, model_file: Path):
    shutil.copy(model_file, tmp_path / SPEC.file)
    model = ManagedModel(SPEC, tmp_path, backend="cpu", threads=1, idle_unload=60)
    assert not model.loaded
    session = model.session()
    assert model.loaded and model.session() is session
    assert not model.unload_if_idle()  # just used
    import time

    assert model.unload_if_idle(now=time.monotonic() + 61)
    assert not model.loaded
    assert model.session() is not session  # loads again on demand


def test_openvino_and_onnxruntime_agree(model_file: Path):
    pytest.importorskip("openvino")
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 416, 416)).astype(np.float32)
    ort_out = open_session(model_file, "cpu", 2).run(x)[0]
    ov_session = open_session(model_file, "openvino", 2)
    assert ov_session.engine == "openvino"
    ov_out = ov_session.run(x)[0]
    assert ov_out.shape == ort_out.shape == (1, 3549, 85)
    np.testing.assert_allclose(ov_out, ort_out, rtol=1e-3, atol=1e-3)


def test_backend_choice():
    assert resolve_backend("cpu") == "cpu"
    assert resolve_backend("auto") in ("cpu", "cuda")


def test_cuda_without_provider_is_a_clear_error(model_file: Path):
    if resolve_backend("auto") == "cuda":
        pytest.skip("this machine has CUDA")
    with pytest.raises(ModelError, match="onnxruntime-gpu"):
        open_session(model_file, "cuda", 1)


def test_two_lanes_start_on_openvino_together_without_a_deadlock() -> None:
    """Lanes' first OpenVINO calls at the same moment, each time in a fresh process
    (OpenVINO's bindings once hung there: tagd.runtime.backends._openvino_core)."""
    import subprocess
    import sys

    folder = require_models("yunet-n-openvino")
    xml = verified_path(load_manifest(folder)["yunet-n-openvino"], folder)
    code = (
        "import sys, threading, numpy as np\n"
        "from pathlib import Path\n"
        "from tagd.runtime.backends import OpenVinoSession\n"
        "session = OpenVinoSession(Path(sys.argv[1]), 1, streams=8)\n"
        "start = threading.Barrier(8)\n"
        "def lane():\n"
        "    x = np.zeros((1, 3, 64, 64), np.float32)\n"
        "    start.wait()\n"
        "    session.run(x)\n"
        "lanes = [threading.Thread(target=lane) for _ in range(8)]\n"
        "[t.start() for t in lanes]\n"
        "[t.join() for t in lanes]\n"
        "print('both ran')\n"
    )
    for _ in range(8):  # the hang, when there, struck about one start in ten
        done = subprocess.run(
            [sys.executable, "-c", code, str(xml)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0 and "both ran" in done.stdout, done.stderr
