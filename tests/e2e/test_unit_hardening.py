"""systemd/tagd.service's sandbox: its exposure score, and `tagd scan` with the
real models under the unit's system call filter, built with libseccomp the way
systemd builds it (tests/seccomp_jail.py), so no running systemd is needed."""

from __future__ import annotations

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COCO_IMAGES, PERSON_PHOTO, REPO, TESTS, write_config
from seccomp_jail import libseccomp

UNIT = REPO / "systemd" / "tagd.service"
JAIL = TESTS / "seccomp_jail.py"
# `systemd-analyze security` rates 0 (locked down) to 10; 3.3 before the
# system call filter, ProtectProc= and UMask= went in (1.8 after).
MAX_EXPOSURE = 2.0

needs_systemd_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed"
)


def unit_setting(key: str) -> str | None:
    """The last value of `key` in the unit (as systemd reads it: the last one wins)."""
    values = re.findall(rf"^{key}=(.*)$", UNIT.read_text(), re.MULTILINE)
    return values[-1].strip() if values else None


@needs_systemd_analyze
def test_unit_exposure_stays_low(tmp_path: Path) -> None:
    unit = tmp_path / "tagd.service"
    unit.write_text(UNIT.read_text().replace("/opt/tagd", str(REPO)))
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    if "--offline" in done.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd 252")
    found = re.search(r"Overall exposure level for tagd\.service: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE, done.stdout


def jailed_scan(
    tmp_path: Path, backend: str, *, allow: str | None, mdwe: bool
) -> subprocess.CompletedProcess[str]:
    """`tagd scan` of one real photo, objects only, under the given filters."""
    lib = tmp_path / backend / "lib"
    lib.mkdir(parents=True)
    shutil.copyfile(COCO_IMAGES / PERSON_PHOTO, lib / PERSON_PHOTO)
    off = "".join(f"[{name}]\nenabled = false\n" for name in ("ocr", "faces", "concepts", "clip"))
    config = write_config(
        tmp_path / backend / "config.toml", off + f'[runtime]\nbackend = "{backend}"\n'
    )
    jail = [sys.executable, str(JAIL)]
    if mdwe:
        jail.append("--mdwe")
    if allow is not None:
        # SystemCallErrorNumber=: the errno refused calls get (else systemd kills).
        error = getattr(errno, unit_setting("SystemCallErrorNumber") or "EPERM")
        jail += ["--allow", allow, "--errno", str(error)]
    env = os.environ | {
        "TAGD_STATE_DIR": str(tmp_path / backend / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "xdg"),
    }
    env.pop("TAGD_CONFIG", None)
    command = [*jail, "--", sys.executable, "-m", "tagd", "--config", str(config), "scan", lib]
    return subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.usefixtures("default_models")
@needs_systemd_analyze
@pytest.mark.skipif(libseccomp() is None, reason="libseccomp is not installed")
@pytest.mark.parametrize("backend", ["cpu", "openvino"])
def test_both_engines_run_under_the_units_system_call_filter(
    tmp_path: Path, coco_dir: Path, backend: str
) -> None:
    """SystemCallFilter= (and MemoryDenyWriteExecute=, if the unit sets it) must
    not break either engine: a real scan finds the person and writes the sidecar."""
    allow = unit_setting("SystemCallFilter")
    assert allow, "the unit sets no SystemCallFilter="
    mdwe = unit_setting("MemoryDenyWriteExecute") == "yes"
    done = jailed_scan(tmp_path, backend, allow=allow, mdwe=mdwe)
    assert done.returncode == 0, done.stderr
    assert "analysed 1 file (" in done.stdout and "; 0 failed" in done.stdout, done.stdout
    assert "sidecars written: 1" in done.stdout
    assert "AI|Objects|person" in (tmp_path / backend / "lib" / f"{PERSON_PHOTO}.xmp").read_text()


@pytest.mark.usefixtures("default_models")
@needs_systemd_analyze
@pytest.mark.skipif(libseccomp() is None, reason="libseccomp is not installed")
def test_write_xor_execute_is_off_because_openvino_needs_it(tmp_path: Path, coco_dir: Path) -> None:
    """The unit leaves MemoryDenyWriteExecute= off, as its comment says, because
    OpenVINO's CPU plugin generates code at run time; onnxruntime does not care.
    Should OpenVINO stop needing it, this fails: then the unit can set it."""
    if unit_setting("MemoryDenyWriteExecute") == "yes":
        pytest.skip("the unit sets MemoryDenyWriteExecute=yes (the test above covers it)")
    onnx = jailed_scan(tmp_path, "cpu", allow=None, mdwe=True)
    assert onnx.returncode == 0, onnx.stderr
    openvino = jailed_scan(tmp_path, "openvino", allow=None, mdwe=True)
    assert openvino.returncode == 2 and "OpenVINO" in openvino.stderr, openvino.stderr
