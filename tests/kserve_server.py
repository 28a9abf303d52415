"""Real KServe v2 inference servers for the tests: MLServer (from PyPI, in its own
virtualenv, build/mlserver) serving the ONNX files of `tagd models repository`
with the small runtime in tests/kserve/onnx_runtime.py.

MLServer pins its own web stack, so it lives in a virtualenv of its own;
`make test` creates it (and `mlserver_bin()` does when a test runs first).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / "build" / "mlserver"
RUNTIME = Path(__file__).parent / "kserve" / "onnx_runtime.py"


def mlserver_bin() -> Path:
    binary = VENV / "bin" / "mlserver"
    if not binary.exists():
        subprocess.run(["make", "-C", str(REPO), "mlserver"], check=True, capture_output=True)
    return binary


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def onnx_models(repository: Path) -> dict[str, Path]:
    """name -> model.onnx of a repository written by `tagd models repository`."""
    out = {}
    for folder in sorted(p for p in repository.iterdir() if p.is_dir()):
        files = list(folder.glob("*/model.onnx"))
        if files:
            out[folder.name] = files[0]
    return out


class KServeServer:
    """One MLServer process on 127.0.0.1 serving `models` (name -> model.onnx)."""

    def __init__(self, folder: Path, models: dict[str, Path], delay: float = 0.0) -> None:
        self.folder = folder
        self.models = models
        self.delay = delay
        self.grpc_port = free_port()
        self.log = folder / "served.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"grpc://127.0.0.1:{self.grpc_port}"

    def start(self, timeout: float = 90) -> KServeServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(RUNTIME, self.folder / RUNTIME.name)
        settings = {
            "http_port": free_port(),
            "grpc_port": self.grpc_port,
            "metrics_port": free_port(),
            "host": "127.0.0.1",
            # One process: MLServer's worker pool crashes under uvloop here.
            "parallel_workers": 0,
            # OCR's detector input is 5 MB; MLServer's default limit is 4.
            "grpc_max_message_length": 2**30,
        }
        (self.folder / "settings.json").write_text(json.dumps(settings))
        for name, onnx in self.models.items():
            (self.folder / name).mkdir(exist_ok=True)
            model = {
                "name": name,
                "implementation": "onnx_runtime.OnnxModel",
                "parameters": {"uri": str(onnx), "version": onnx.parent.name},
            }
            (self.folder / name / "model-settings.json").write_text(json.dumps(model))
        env = dict(os.environ, TAGD_KSERVE_DELAY=str(self.delay), TAGD_KSERVE_LOG=str(self.log))
        env.pop("PYTHONPATH", None)
        with open(self.folder / "server.out", "wb") as out:
            self.process = subprocess.Popen(
                [str(mlserver_bin()), "start", str(self.folder)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        return self

    def _wait_ready(self, timeout: float) -> None:
        from tritonclient.grpc import InferenceServerClient

        client = InferenceServerClient(f"127.0.0.1:{self.grpc_port}")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"MLServer exited: {self.output()[-3000:]}")
                try:
                    if client.is_server_ready() and all(
                        client.is_model_ready(n, p.parent.name) for n, p in self.models.items()
                    ):
                        return
                except Exception:  # not listening yet
                    pass
                time.sleep(0.2)
            raise RuntimeError(f"MLServer not ready in {timeout} s: {self.output()[-3000:]}")
        finally:
            client.close()

    def output(self) -> str:
        path = self.folder / "server.out"
        return path.read_text(errors="replace") if path.exists() else ""

    def served(self) -> Counter[str]:
        """Rows served, by model."""
        rows: Counter[str] = Counter()
        for name, count, _ in self._log():
            rows[name] += count
        return rows

    def busy(self) -> Counter[str]:
        """Seconds spent serving, by model (the server works on one request at a time)."""
        seconds: Counter[str] = Counter()
        for name, _, spent in self._log():
            seconds[name] += spent  # type: ignore[assignment]
        return seconds

    def _log(self) -> list[tuple[str, int, float]]:
        if not self.log.exists():
            return []
        out = []
        for line in self.log.read_text().splitlines():
            name, count, spent = line.split()
            out.append((name, int(count), float(spent)))
        return out

    def kill(self) -> None:
        """SIGKILL: the machine is gone, mid-request or not."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
