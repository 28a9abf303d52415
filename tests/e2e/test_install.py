"""tagd installed as a package, the way a user outside the repository does it:
the wheel built from this tree, installed into a fresh virtualenv, models
fetched into the state dir, a scan of real photos, the checkout untouched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COCO_IMAGES, REPO, SHARED

# Families that convert weights with the export extra (torch); the others ship
# ready ONNX files, or are converted with onnx alone (a dependency), and install
# without it.
CONVERTED = ("efficientnet",)
READY = ("dlib-face", "nudenet", "ocr", "picodet", "retinaface", "yolox", "yunet")


def _run(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=False, **kwargs
    )


def _git_status() -> str:
    done = _run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=all"])
    if done.returncode != 0:
        pytest.skip(f"not a git checkout: {done.stderr.strip()}")
    return done.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv outside the repository with the wheel of this tree
    installed, without the export extra."""
    if not (SHARED / "models").is_dir() or not COCO_IMAGES.is_dir():
        pytest.skip(f"{SHARED} lacks models/ or the COCO photos")
    base = tmp_path_factory.mktemp("install")
    wheels = base / "wheels"
    built = _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", wheels, REPO],
        timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("tagd-*.whl")
    env_dir = base / "venv"
    assert _run([sys.executable, "-m", "venv", env_dir]).returncode == 0
    installed = _run([env_dir / "bin" / "pip", "install", "--quiet", wheel], timeout=600)
    if installed.returncode != 0 and "No matching distribution" in installed.stderr:
        pytest.skip(f"the dependencies cannot be had here: {installed.stderr.strip()[-300:]}")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return env_dir


def _env(state: Path) -> dict[str, str]:
    """A user's environment: only the state dir chosen, no models folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAGD_")}
    return env | {"TAGD_STATE_DIR": str(state)}


def test_a_wheel_installs_models_into_the_state_dir_and_tags_photos(
    venv: Path, tmp_path: Path
) -> None:
    before = _git_status()
    tagd = venv / "bin" / "tagd"
    state = tmp_path / "state"
    work = tmp_path / "cwd"  # run from outside the repository
    work.mkdir()

    # The package carries its default set, documented config and service unit.
    share = venv / "share" / "tagd"
    assert (share / "config.toml").is_file() and (share / "tagd.service").is_file()
    listed = _run([tagd, "models", "list"], cwd=work, env=_env(state))
    assert listed.returncode == 0, listed.stderr
    assert f"models in {state / 'models'}" in listed.stdout and "missing" in listed.stdout

    # Without the export extra: the ready ONNX families, one line for each other.
    fetch = [tagd, "models", "fetch", "--source", SHARED / "models"]
    first = _run(fetch, cwd=work, env=_env(state), timeout=600)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "Traceback" not in first.stdout + first.stderr
    for name in CONVERTED:
        (line,) = [x for x in first.stdout.splitlines() if x.startswith(f"MISSING  {name}:")]
        assert "pip install 'tagd[export]'" in line and "until then tagd runs without" in line
    for name in READY:
        assert f"MISSING  {name}" not in first.stdout
    assert (state / "models" / "manifest.toml").is_file()
    assert (state / "models" / "yolox_nano.onnx").is_file()
    # PicoDet's ONNX file cleaned, dlib's face model converted: onnx is enough.
    assert (state / "models" / "picodet_s_416.onnx").is_file()
    assert (state / "models" / "picodet_s_416_openvino.xml").is_file()
    assert (state / "models" / "dlib_face_resnet_v1.onnx").is_file()
    assert (state / "models" / "yunet_n.onnx").is_file()
    assert not (state / "models" / "efficientnet_lite0.onnx").exists()

    # A scan with the default analyzers, from the installed models: those whose
    # model needs the export extra stay off, and say why; the others tag the
    # photos. (tests/e2e/test_efficientnet.py converts that model with the extra.)
    library = tmp_path / "library"
    library.mkdir()
    for photo in sorted(COCO_IMAGES.glob("*.jpg"))[:3]:
        (library / photo.name).write_bytes(photo.read_bytes())
    scan = _run([tagd, "scan", library], cwd=work, env=_env(state), timeout=600)
    assert scan.returncode == 0, scan.stdout + scan.stderr
    assert "analysed 3 files" in scan.stdout, scan.stdout
    assert "concepts: off until its model is made: " in scan.stderr
    assert "pip install 'tagd[export]'" in scan.stderr
    exported = _run([tagd, "export"], cwd=work, env=_env(state))
    assert exported.returncode == 0, exported.stderr
    assert '"objects": [{' in exported.stdout and '"concepts": [{' not in exported.stdout
    doctor = _run([tagd, "doctor"], cwd=work, env=_env(state))
    assert "analyzer concepts: off until its model is made: " in doctor.stdout, doctor.stdout
    verify = _run([tagd, "models", "verify"], cwd=work, env=_env(state))
    assert f"ok       yolox-nano: {state / 'models' / 'yolox_nano.onnx'}" in verify.stdout

    assert _git_status() == before  # nothing written into the checkout
    assert not (REPO / "models" / "manifest.toml").exists()


def test_make_scan_succeeds_when_only_some_files_fail(tmp_path: Path, make_jpeg) -> None:
    """A library with one broken file: the summary names it, and the make target
    (the README's first command) does not end in `make: *** Error 1`."""
    if not (REPO / ".venv" / "bin" / "tagd").is_file():
        pytest.skip("no .venv in the checkout (make setup)")
    library = tmp_path / "library"
    make_jpeg(library / "good.jpg", 320, 240)
    (library / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    env = os.environ | {"TAGD_STATE_DIR": str(tmp_path / "state")}
    config = tmp_path / "config.toml"
    config.write_text("[xmp]\nenabled = false\n", encoding="utf-8")
    env["TAGD_CONFIG"] = str(config)
    done = _run(["make", "-C", REPO, "scan", f"LIBRARY={library}"], env=env, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "analysed 1 file " in done.stdout and "; 1 failed" in done.stdout, done.stdout
    assert "broken.jpg" in done.stdout + done.stderr
    assert "Error" not in done.stderr
