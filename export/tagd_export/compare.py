"""ONNX Runtime against OpenVINO on the same model: parity and batch-1 latency.

Families whose weights come ready-made as ONNX also write an OpenVINO IR and
let this machine decide which engine is the task's default: the published
ratios (PP-OCR about 2x faster in OpenVINO f32, small detectors slower) depend
on the CPU. Both engines are opened exactly as the runtime opens them
(tagd.runtime.backends), one after the other and never side by side, because
two busy engines in one process slow each other down.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tagd.runtime.manifest import ModelSpec, sha256_of
from tagd_export.context import ExportError
from tagd_export.onnx_tools import parity

# Cosine below this between the engines means the IR is not the same model.
MIN_COSINE = 0.9999
# OpenVINO must win by this much to become the default: ORT is the runtime's usual
# engine and loads faster, and a near tie would flip with every noisy measurement.
OPENVINO_MARGIN = 0.95


@dataclass(frozen=True)
class EngineComparison:
    parity: dict[str, float]  # worst cosine and largest |diff| over all inputs and outputs
    onnx_ms: float
    openvino_ms: float
    load: float  # 1-minute load average when measured: busy machines favour ORT

    @property
    def faster(self) -> str:
        return "openvino" if self.openvino_ms < OPENVINO_MARGIN * self.onnx_ms else "onnx"

    def metrics(self) -> dict[str, float]:
        return {
            "openvino_cosine": self.parity["cosine"],
            "openvino_max_abs_diff": self.parity["max_abs_diff"],
            "onnx_ms": round(self.onnx_ms, 2),
            "openvino_ms": round(self.openvino_ms, 2),
            "load_avg_1min": round(self.load, 2),
        }

    def describe(self) -> str:
        busy = _busy(self.load)
        return (
            f"OpenVINO vs ORT cosine {self.parity['cosine']:.6f}, max |diff| "
            f"{self.parity['max_abs_diff']:.2e}; batch-1 latency ORT {self.onnx_ms:.1f} ms, "
            f"OpenVINO {self.openvino_ms:.1f} ms -> {self.faster} counts as faster"
            + (f" (machine busy, load {self.load:.1f}: fetch again when idle)" if busy else "")
        )


def _busy(load: float) -> bool:
    """More runnable work than cores: OpenVINO's worker threads then lose more than
    ORT's (measured here: PP-OCR rec 2x faster in OpenVINO idle, slower at load 7)."""
    from tagd.runtime.backends import cpu_threads

    return load > cpu_threads(0)


def _open(path: Path, threads: int):  # -> tagd.runtime.backends.Session
    from tagd.runtime.backends import OpenVinoSession, OrtSession

    return OpenVinoSession(path, threads) if path.suffix == ".xml" else OrtSession(path, threads)


def outputs(path: Path, batches: Sequence[np.ndarray], threads: int = 0) -> list[list[np.ndarray]]:
    """Every output of the model for each batch, on the engine its suffix names."""
    from tagd.runtime.backends import cpu_threads

    session = _open(path, cpu_threads(threads))
    return [[np.array(o) for o in session.run(batch)] for batch in batches]


def agreement(reference: Path, candidate: Path, batches: Sequence[np.ndarray]) -> dict[str, float]:
    """Worst parity of candidate against reference over all batches and outputs."""
    ref = outputs(reference, batches)
    new = outputs(candidate, batches)
    checks = [
        parity(a, b) for ra, rb in zip(ref, new, strict=True) for a, b in zip(ra, rb, strict=True)
    ]
    return {
        "cosine": min(c["cosine"] for c in checks),
        "max_abs_diff": max(c["max_abs_diff"] for c in checks),
    }


def latency_ms(path: Path, batch: np.ndarray, runs: int, threads: int = 0) -> float:
    """Median wall time of one call, after warm-up (OpenVINO compiles per shape)."""
    from tagd.runtime.backends import cpu_threads

    session = _open(path, cpu_threads(threads))
    for _ in range(2):
        session.run(batch)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(batch)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def compare(
    onnx_path: Path, xml_path: Path, batches: Sequence[np.ndarray], timing: np.ndarray, runs: int
) -> EngineComparison:
    """Parity on `batches`; latency on `timing`, measured in turns (A B A B A B) so that
    drift on a shared machine hits both engines alike. The best round counts: other
    load only ever adds time, so the minimum is the closest to the model's own cost."""
    check = agreement(onnx_path, xml_path, batches)
    load = os.getloadavg()[0]
    onnx_ms, ov_ms = [], []
    for _ in range(3):
        onnx_ms.append(latency_ms(onnx_path, timing, runs))
        ov_ms.append(latency_ms(xml_path, timing, runs))
    return EngineComparison(check, min(onnx_ms), min(ov_ms), load)


def variants(
    spec: ModelSpec, xml: Path, comparison: EngineComparison | None, fmt: str
) -> list[ModelSpec]:
    """The ONNX spec and/or its OpenVINO twin, the measured faster one the default.

    fmt is "onnx", "openvino" or "both"; with one format that one is the default.
    A twin whose outputs differ from the ONNX model's is refused.
    """
    if comparison is not None and comparison.parity["cosine"] < MIN_COSINE:
        raise ExportError(
            f"{spec.name}: the OpenVINO IR disagrees with the ONNX model ({comparison.parity})"
        )
    measured = comparison.metrics() if comparison else {}
    unmeasured_or_slower = comparison is None or comparison.faster == "onnx"
    onnx_default = fmt == "onnx" or (fmt == "both" and unmeasured_or_slower)
    onnx = replace(spec, default=onnx_default, metrics={**spec.metrics, **measured})
    binf = xml.with_suffix(".bin")
    openvino = replace(
        onnx,
        name=f"{spec.name}-openvino",
        variant=f"openvino-{spec.variant}",
        default=not onnx_default,
        file=xml.name,
        sha256=sha256_of(xml),
        files={binf.name: sha256_of(binf), **spec.files},
    )
    if fmt == "onnx":
        return [onnx]
    if fmt == "openvino":  # the ONNX file stays: an earlier entry may still name it
        return [openvino]
    return [onnx, openvino]


def with_openvino_twin(
    log: Callable[[str], None],
    spec: ModelSpec,
    onnx_path: Path,
    inputs: Callable[[], tuple[list[np.ndarray], np.ndarray]],
    runs: int,
    fmt: str,
) -> list[ModelSpec]:
    """The ONNX spec, plus (unless fmt is "onnx") its OpenVINO IR measured against it.

    `inputs` gives (parity batches, timing batch); it runs only when there is an IR
    to compare, so an ONNX-only export reads no eval photos.
    """
    from tagd_export.onnx_tools import to_openvino

    if fmt == "onnx":
        return [spec]
    xml = onnx_path.with_name(f"{onnx_path.stem}_openvino.xml")
    to_openvino(onnx_path, xml)
    batches, timing = inputs()
    comparison = compare(onnx_path, xml, batches, timing, runs)
    log(f"{spec.name}: {comparison.describe()}")
    return variants(spec, xml, comparison, fmt)
