"""Inference engines behind one small interface: onnxruntime and OpenVINO.

`auto` takes CUDA when onnxruntime has it, else the CPU engine of
onnxruntime, which is faster than OpenVINO f32 for the small CNNs here.
OpenVINO is forced to f32: it picks bf16 on AVX-512 CPUs without AMX and that
is 1.2-1.5x slower.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort

from tagd.config import RuntimeSettings
from tagd.runtime.manifest import ModelError


class Session(Protocol):
    engine: str
    input_name: str
    input_shape: tuple[int | str | None, ...]

    def run(self, batch: np.ndarray) -> list[np.ndarray]: ...


def cpu_threads(requested: int) -> int:
    if requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def inference_lanes(runtime: RuntimeSettings) -> int:
    """Batches analysed at once (runtime.lanes; 0: two on a CPU with two cores or
    more, one on a GPU or a single core).

    Two batches side by side, each model call on half the cores, do 12-24 % more
    photos a second than one batch on every core (bench/pipeline.py): a model
    on one thread wastes no time handing work between threads, and what one
    batch runs single-threaded (post-processing, Python) no longer leaves the
    other core idle. More lanes add memory (a batch of frames and activations
    each) for little more speed on the machines tagd runs on. With inference
    servers, as many lanes as they take requests at once."""
    if runtime.lanes > 0:
        return runtime.lanes
    if runtime.backend == "remote":
        from tagd.runtime.endpoints import lanes_for

        # A lane waits on the network: enough of them to fill every server's slots.
        return lanes_for(runtime.endpoints)
    if resolve_backend(runtime.backend) == "cuda":
        return 1
    return min(2, cpu_threads(0))


def model_threads(runtime: RuntimeSettings) -> int:
    """Threads per model call: runtime.threads, or the cores shared out over the lanes."""
    if runtime.threads > 0:
        return runtime.threads
    return max(1, cpu_threads(0) // inference_lanes(runtime))


def resolve_backend(backend: str) -> str:
    if backend != "auto":
        return backend
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return "cuda"
    return "cpu"


# Errors only: graph advice (a converter's weights listed as inputs warns once per
# weight, through the default logger) is for whoever converts the model, not for
# the daemon's log.
ort.set_default_logger_severity(3)


class OrtSession:
    def __init__(self, path: Path, threads: int, cuda: bool = False, spin: bool = False) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only (see below)
        # Spinning workers would steal the cores that decode the next photos; only a
        # model that dominates its analyzer's time (OCR) asks for them.
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        providers = ["CPUExecutionProvider"]
        if cuda:
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelError(
                    "runtime.backend = 'cuda' but onnxruntime has no CUDA provider "
                    "(install onnxruntime-gpu)"
                )
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self._session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ModelError(f"cannot load {path} in onnxruntime: {exc}") from None
        first = self._session.get_inputs()[0]
        self.engine = "cuda" if cuda else "cpu"
        self.input_name = first.name
        self.input_shape = tuple(first.shape)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, {self.input_name: batch})


_OPENVINO_LOCK = threading.Lock()
_core: object | None = None


def _openvino_core() -> Any:
    """The process's one OpenVINO Core: every compiled model shares its CPU plugin
    and task executors (a Core each would start a plugin each)."""
    global _core
    try:
        import openvino as ov
    except ImportError:
        raise ModelError("runtime.backend = 'openvino' but openvino is not installed") from None
    with _OPENVINO_LOCK:
        if _core is None:
            _core = ov.Core()
            # OpenVINO's bindings set up their numpy bridge on first use, inside a
            # once-guard that deadlocks when two threads reach it together (both
            # lanes' first infer, seen with the objects detector on OpenVINO): set
            # it up here, in one thread, before any session runs.
            ov.Tensor(np.zeros(1, np.float32))
        return _core


class OpenVinoSession:
    def __init__(self, path: Path, threads: int, streams: int = 1) -> None:
        core = _openvino_core()
        config: dict[str, object] = {"INFERENCE_PRECISION_HINT": "f32"}
        if streams > 1:
            # One stream per lane, each on its share of the threads: requests from
            # two lanes run side by side (a single stream runs them one after the
            # other: a one-thread model then serves two lanes at half speed).
            config |= {"NUM_STREAMS": streams, "INFERENCE_NUM_THREADS": threads * streams}
        else:
            config |= {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
        try:
            with _OPENVINO_LOCK:  # one compilation at a time (lanes load models together)
                self._compiled = core.compile_model(str(path), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelError(f"cannot load {path} in OpenVINO: {exc}") from None
        # One infer request per concurrent caller: a request holds its own input
        # and output tensors, so two threads must never share one.
        self._idle: list[object] = [self._compiled.create_infer_request()]
        self._idle_lock = threading.Lock()
        first = self._compiled.inputs[0]
        self.engine = "openvino"
        self.input_name = first.get_any_name()
        self.input_shape = tuple(
            d.get_length() if d.is_static else None for d in first.get_partial_shape()
        )

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        with self._idle_lock:
            request = self._idle.pop() if self._idle else self._compiled.create_infer_request()
        try:
            # Outputs come back as copies (share_outputs=False): the request may
            # serve another caller as soon as it is back in the pool.
            result = request.infer({0: batch}, share_outputs=False)  # type: ignore[attr-defined]
            return [result[out] for out in self._compiled.outputs]
        finally:
            with self._idle_lock:
                self._idle.append(request)


def run_batched(session: Session, batch: np.ndarray, batch_size: int) -> np.ndarray:
    """The first output for every row of `batch`, `batch_size` rows per call (one row
    per call for a file exported with a fixed batch of 1)."""
    step = 1 if session.input_shape[0] == 1 else max(1, batch_size)
    parts = [session.run(batch[i : i + step])[0] for i in range(0, len(batch), step)]
    return np.concatenate(parts)


def run_batched_outputs(session: Session, batch: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Every output for every row of `batch`, as run_batched runs it."""
    step = 1 if session.input_shape[0] == 1 else max(1, batch_size)
    parts = [session.run(batch[i : i + step]) for i in range(0, len(batch), step)]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]


def open_session(
    path: Path, backend: str, threads: int, spin: bool = False, streams: int = 1
) -> Session:
    """A session for `path` on `threads` threads per call, `streams` callers at once
    (onnxruntime shares its threads between concurrent calls by itself)."""
    engine = resolve_backend(backend)
    n = cpu_threads(threads)
    if engine == "openvino" or path.suffix == ".xml":  # an IR file runs on OpenVINO only
        return OpenVinoSession(path, n, streams)
    return OrtSession(path, n, cuda=engine == "cuda", spin=spin)
