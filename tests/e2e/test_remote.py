"""runtime.backend = "remote": the models run on real KServe v2 servers (MLServer
from PyPI, serving `tagd models repository`'s ONNX files) on 127.0.0.1.

- The findings equal local inference on the same files (objects, faces, OCR,
  concepts).
- A server killed mid-scan loses and duplicates nothing: the other one takes
  its requests, every file is analysed once.
- A slow server gets proportionally less work.
- With every server down, the scan falls back to the CPU here, or (with
  runtime.local_fallback = false) stops with a clear error and stores nothing.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import COCO_IMAGES, SHARED, write_config
from kserve_server import KServeServer, free_port, onnx_models
from test_end_to_end import db_rows

pytestmark = pytest.mark.usefixtures("default_models")

OCR_PHOTOS = SHARED / "eval" / "ocr" / "images"
FACE_PHOTOS = SHARED / "eval" / "faces" / "images"
# Analyzers with models that run on the servers, and what runs here anyway.
MODELS_ON = "[objects]\n[ocr]\n[faces]\n[concepts]\n"
OFF = (
    "[clip]\nenabled = false\n[dinov2]\nenabled = false\n[nsfw]\nenabled = false\n"
    "[duplicates]\nenabled = false\n[quality]\nenabled = false\n"
)


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The installed models' ONNX files as `tagd models repository` writes them."""
    from tagd.cli.main import main

    repo = tmp_path_factory.mktemp("repository")
    assert main(["models", "repository", str(repo)]) == 0
    return onnx_models(repo)


@pytest.fixture
def kserve(tmp_path: Path) -> Iterator[Callable[..., KServeServer]]:
    """kserve(name, models, delay=0.0): a started server, stopped after the test
    (whatever the test did to it)."""
    started: list[KServeServer] = []

    def start(name: str, models: dict[str, Path], delay: float = 0.0) -> KServeServer:
        server = KServeServer(tmp_path / name, models, delay)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


def library(folder: Path, coco_photos, n_coco: int, extra: bool = True) -> Path:
    coco_photos(n_coco, dest=folder)
    if extra:
        for source in (OCR_PHOTOS / "document_text.jpg", FACE_PHOTOS / "couple.jpg"):
            shutil.copyfile(source, folder / source.name)
    return folder


def config(tmp_path: Path, lib: Path, runtime: str, *, analyzers: str = MODELS_ON) -> Path:
    return write_config(
        tmp_path / f"config-{abs(hash(runtime))}.toml",
        f'[library]\nroots = ["{lib}"]\n[xmp]\nenabled = false\n'
        f"{analyzers}{OFF}[runtime]\n{runtime}",
    )


def remote(*servers: KServeServer, extra: str = "") -> str:
    lines = 'backend = "remote"\nbatch_size = 1\n' + extra
    for server in servers:
        lines += f'[[runtime.endpoints]]\nurl = "{server.url}"\nmax_concurrent = 2\n'
    return lines


def scan_and_export(cli, conf: Path, state: Path, monkeypatch) -> dict[str, dict[str, Any]]:
    monkeypatch.setenv("TAGD_STATE_DIR", str(state))
    code, out, err = cli("--config", conf, "scan")
    assert code == 0, out + err
    code, out, err = cli("--config", conf, "export")
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    return {Path(r["path"]).name: r for r in rows}


def close(a: Any, b: Any, path: str = "") -> None:
    """Equal, numbers within 1e-4."""
    if isinstance(a, float) or isinstance(b, float):
        assert math.isclose(a, b, abs_tol=1e-4), (path, a, b)
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), (path, len(a), len(b))
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    else:
        assert a == b, (path, a, b)


@pytest.fixture(scope="module")
def local_export(tmp_path_factory) -> dict[str, dict[str, Any]]:
    """The same library analysed on this machine (onnxruntime, the same files)."""
    from tagd.cli.main import main

    root = tmp_path_factory.mktemp("local")
    lib = root / "lib"
    lib.mkdir()
    for name in sorted(p.name for p in COCO_IMAGES.glob("*.jpg"))[:4]:
        shutil.copyfile(COCO_IMAGES / name, lib / name)
    for source in (OCR_PHOTOS / "document_text.jpg", FACE_PHOTOS / "couple.jpg"):
        shutil.copyfile(source, lib / source.name)
    conf = config(root, lib, 'backend = "cpu"\n')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TAGD_STATE_DIR", str(root / "state"))
        assert main(["--config", str(conf), "scan"]) == 0
        out = root / "export.jsonl"
        assert main(["--config", str(conf), "export", "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    return {Path(r["path"]).name: r for r in rows}


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("path", "analysed_at")}


def test_remote_findings_equal_local_ones(
    tmp_path: Path, repository, local_export, coco_photos, cli, monkeypatch, kserve
) -> None:
    server = kserve("server", repository)
    lib = library(tmp_path / "lib", coco_photos, 4)
    got = scan_and_export(cli, config(tmp_path, lib, remote(server)), tmp_path / "s", monkeypatch)
    assert got.keys() == local_export.keys()
    for name, row in got.items():
        close(comparable(row), comparable(local_export[name]), name)
    # Each analyzer with a model did its work on the server, and found things.
    # Image inputs went as uint8 pixels to the "-pixels" twins; what is not made
    # of pixels alone (a text line padded with float zeros) went as float32.
    served = server.served()
    for model in ("picodet-s-416", "yunet-n", "dlib-face-resnet", "ppocr-v4-det"):
        assert served[f"{model}-pixels"] > 0 and not served[model], served
    assert served["ppocr-v4-rec"] > 0, served
    assert any(m.startswith("efficientnet-lite0") for m in served), served  # concepts
    assert any(r["objects"] for r in got.values())
    assert got["couple.jpg"]["faces"] and got["document_text.jpg"]["text"]


OBJECTS_ONLY = (
    "[objects]\n[ocr]\nenabled = false\n[faces]\nenabled = false\n[concepts]\nenabled = false\n"
)
DETECTOR = "picodet-s-416"


def kill_when_served(server: KServeServer, rows: int, done: threading.Event) -> None:
    while not done.is_set() and server.served()[DETECTOR] < rows:
        time.sleep(0.01)
    server.kill()


def test_a_server_killed_mid_scan_loses_and_duplicates_nothing(
    tmp_path: Path, repository, coco_photos, cli, monkeypatch, kserve
) -> None:
    models = {DETECTOR: repository[DETECTOR]}
    # Each row takes the servers a while: the kill lands mid-request.
    a = kserve("a", models, delay=0.05)
    b = kserve("b", models, delay=0.05)
    lib = library(tmp_path / "lib", coco_photos, 16, extra=False)
    local = scan_and_export(
        cli, config(tmp_path, lib, 'backend = "cpu"\n', analyzers=OBJECTS_ONLY),
        tmp_path / "local", monkeypatch,
    )  # fmt: skip
    conf = config(
        tmp_path, lib, remote(a, b, extra="local_fallback = false\n"), analyzers=OBJECTS_ONLY
    )
    done = threading.Event()
    killer = threading.Thread(target=kill_when_served, args=(a, 4, done))
    killer.start()
    try:
        got = scan_and_export(cli, conf, tmp_path / "remote", monkeypatch)
    finally:
        done.set()
        killer.join()
    assert a.process is not None and a.process.poll() is not None  # it died mid-scan
    served_a, served_b = a.served()[DETECTOR], b.served()[DETECTOR]
    assert 4 <= served_a < 16 and served_b > 0
    # Every photo once: at most the two requests A held when it died run twice.
    assert 16 <= served_a + served_b <= 18, (served_a, served_b)
    assert got.keys() == local.keys()
    for name, row in got.items():
        close(comparable(row), comparable(local[name]), name)


def test_a_slow_server_gets_proportionally_less_work(
    tmp_path: Path, repository, coco_photos, cli, monkeypatch, kserve
) -> None:
    models = {DETECTOR: repository[DETECTOR]}
    fast = kserve("fast", models)
    slow = kserve("slow", models, delay=0.5)
    lib = library(tmp_path / "lib", coco_photos, 24, extra=False)
    scan_and_export(
        cli, config(tmp_path, lib, remote(fast, slow), analyzers=OBJECTS_ONLY),
        tmp_path / "s", monkeypatch,
    )  # fmt: skip
    rows_fast, rows_slow = fast.served()[DETECTOR], slow.served()[DETECTOR]
    assert rows_fast + rows_slow == 24
    # The slow one works several times slower (its own seconds per row): it gets
    # work, less of it. (With servers this fast the client here is the bottleneck:
    # the fast one gets all it can take, the slow one what is left when it is full.)
    speed_fast = rows_fast / fast.busy()[DETECTOR]
    speed_slow = rows_slow / slow.busy()[DETECTOR]
    assert speed_slow < speed_fast / 4, (speed_fast, speed_slow)
    assert 1 <= rows_slow <= 24 // 4, (rows_fast, rows_slow)


def test_every_server_down_falls_back_here_or_stops_cleanly(
    tmp_path: Path, coco_photos, cli, monkeypatch
) -> None:
    nowhere = f"grpc://127.0.0.1:{free_port()}"
    lib = library(tmp_path / "lib", coco_photos, 2, extra=False)
    runtime = f'backend = "remote"\n[[runtime.endpoints]]\nurl = "{nowhere}"\n'
    here = scan_and_export(
        cli, config(tmp_path, lib, runtime, analyzers=OBJECTS_ONLY), tmp_path / "a", monkeypatch
    )
    assert len(here) == 2 and any(r["objects"] for r in here.values())

    strict = runtime.replace("backend", "local_fallback = false\nbackend")
    monkeypatch.setenv("TAGD_STATE_DIR", str(tmp_path / "b"))
    code, out, err = cli("--config", config(tmp_path, lib, strict, analyzers=OBJECTS_ONLY), "scan")
    assert code == 2, out + err
    assert "no inference server can run picodet-s-416" in err and nowhere in err, err
    assert "wait for the next scan" in err
    assert db_rows(tmp_path / "b", "SELECT COUNT(*) FROM analyses") == [(0,)]

    # tagd doctor says which server is down, and why.
    code, out, _ = cli("--config", config(tmp_path, lib, strict, analyzers=OBJECTS_ONLY), "doctor")
    assert code == 1 and f"PROBLEM: inference server {nowhere}" in out, out
