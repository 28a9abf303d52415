"""Inference engines behind one small interface: onnxruntime and OpenVINO.

`auto` takes CUDA when onnxruntime has it, else the CPU engine of
onnxruntime, which is faster than OpenVINO f32 for the small CNNs here.
OpenVINO is forced to f32: it picks bf16 on AVX-512 CPUs without AMX and that
is 1.2-1.5x slower.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

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


def resolve_backend(backend: str) -> str:
    if backend != "auto":
        return backend
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return "cuda"
    return "cpu"


class OrtSession:
    def __init__(self, path: Path, threads: int, cuda: bool = False, spin: bool = False) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
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


class OpenVinoSession:
    def __init__(self, path: Path, threads: int) -> None:
        try:
            import openvino as ov
        except ImportError:
            raise ModelError("runtime.backend = 'openvino' but openvino is not installed") from None
        core = ov.Core()
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads,
        }
        try:
            self._compiled = core.compile_model(str(path), "CPU", config)
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelError(f"cannot load {path} in OpenVINO: {exc}") from None
        self._request = self._compiled.create_infer_request()
        first = self._compiled.inputs[0]
        self.engine = "openvino"
        self.input_name = first.get_any_name()
        self.input_shape = tuple(
            d.get_length() if d.is_static else None for d in first.get_partial_shape()
        )

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        result = self._request.infer({0: batch})
        return [result[out] for out in self._compiled.outputs]


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


def open_session(path: Path, backend: str, threads: int, spin: bool = False) -> Session:
    engine = resolve_backend(backend)
    n = cpu_threads(threads)
    if engine == "openvino" or path.suffix == ".xml":  # an IR file runs on OpenVINO only
        return OpenVinoSession(path, n)
    return OrtSession(path, n, cuda=engine == "cuda", spin=spin)
