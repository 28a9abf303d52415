"""`tagd models repository DIR`: the installed models as a model repository that
OpenVINO Model Server and NVIDIA Triton both load (KServe v2 servers).

    DIR/<model>/<version>/model.onnx    (or model.xml + model.bin for OpenVINO IR)
    DIR/<model>/config.pbtxt            Triton: backend, inputs, outputs, dynamic batching
    DIR/<model>-pixels/...              an ONNX image model with uint8 input (tagd.runtime.pixels)
    DIR/ovms_config.json                OVMS: every model, by its folder
    DIR/manifest.toml                   tagd's entries of these models (labels, preprocessing)

Files are hard links where the repository is on the same file system, copies
otherwise, and every one is checked against the manifest's sha256 first (the
installed file) and after (the repository's). Inputs and outputs, their types
and whether the batch axis is free come from the model file itself. The
version number comes from the sha256 (tagd.runtime.kserve.model_version): tagd
asks servers for that version, so a server with another file of a model is
never used for it.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from tagd.runtime import pixels
from tagd.runtime.kserve import model_version
from tagd.runtime.manifest import ModelError, ModelSpec, sha256_of, verified_path, write_manifest

MAX_BATCH = 8  # Triton's max_batch_size for models with a free batch axis

_ORT_TYPES = {
    "tensor(float)": "TYPE_FP32",
    "tensor(float16)": "TYPE_FP16",
    "tensor(uint8)": "TYPE_UINT8",
    "tensor(int8)": "TYPE_INT8",
    "tensor(int32)": "TYPE_INT32",
    "tensor(int64)": "TYPE_INT64",
    "tensor(bool)": "TYPE_BOOL",
}
_OV_TYPES = {
    "f32": "TYPE_FP32",
    "f16": "TYPE_FP16",
    "u8": "TYPE_UINT8",
    "i8": "TYPE_INT8",
    "i32": "TYPE_INT32",
    "i64": "TYPE_INT64",
    "boolean": "TYPE_BOOL",
}


@dataclass(frozen=True)
class Tensor:
    name: str
    data_type: str  # Triton's TYPE_...
    dims: tuple[int, ...]  # -1 for a free axis, the batch axis included


@dataclass(frozen=True)
class Written:
    name: str
    folder: Path
    backend: str  # "onnxruntime" or "openvino"
    batched: bool
    spec: str  # the manifest entry it serves (a "-pixels" twin: its model's)


def model_io(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    """The inputs and outputs of a model file (ONNX, or OpenVINO IR for .xml)."""
    return _openvino_io(path) if path.suffix == ".xml" else _onnx_io(path)


def _onnx_io(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def tensors(items: list) -> list[Tensor]:  # type: ignore[type-arg]
        out = []
        for t in items:
            dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in t.shape)
            out.append(Tensor(t.name, _ORT_TYPES.get(t.type, "TYPE_FP32"), dims))
        return out

    return tensors(session.get_inputs()), tensors(session.get_outputs())


def _openvino_io(path: Path) -> tuple[list[Tensor], list[Tensor]]:
    import openvino as ov

    model = ov.Core().read_model(str(path))

    def tensors(ports: list) -> list[Tensor]:  # type: ignore[type-arg]
        out = []
        for port in ports:
            dims = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
            kind = _OV_TYPES.get(port.get_element_type().get_type_name(), "TYPE_FP32")
            out.append(Tensor(port.get_any_name(), kind, dims))
        return out

    return tensors(model.inputs), tensors(model.outputs)


def triton_config(name: str, backend: str, inputs: list[Tensor], outputs: list[Tensor]) -> str:
    """config.pbtxt: with a free batch axis on every tensor, Triton batches
    requests itself (dynamic batching) and the dims leave that axis out."""
    batched = all(t.dims and t.dims[0] == -1 for t in [*inputs, *outputs])

    def block(kind: str, tensors: list[Tensor]) -> str:
        entries = []
        for t in tensors:
            dims = t.dims[1:] if batched else t.dims
            entries.append(
                f'  {{\n    name: "{t.name}"\n    data_type: {t.data_type}\n'
                f"    dims: [ {', '.join(str(d) for d in dims)} ]\n  }}"
            )
        return f"{kind} [\n" + ",\n".join(entries) + "\n]\n"

    text = f'name: "{name}"\nbackend: "{backend}"\nmax_batch_size: {MAX_BATCH if batched else 0}\n'
    text += block("input", inputs) + block("output", outputs)
    if batched:
        text += "dynamic_batching { }\n"
    return text


def _place(source: Path, target: Path, sha256: str) -> None:
    """A hard link to (or a copy of) a verified file, verified again."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
    if sha256_of(target) != sha256:
        target.unlink()
        raise ModelError(f"{target}: the copy does not match its sha256; nothing kept")


def _version_folder(repo: Path, name: str, sha256: str) -> Path:
    """<repo>/<name>/<version>, older versions removed: servers load every numbered
    folder, and Triton serves only the highest number by default."""
    folder = repo / name
    if folder.is_dir():
        for old in folder.iterdir():
            if old.is_dir() and old.name.isdigit() and old.name != model_version(sha256):
                shutil.rmtree(old)
    return folder / model_version(sha256)


def write_model(spec: ModelSpec, models_dir: Path, repo: Path) -> list[Written]:
    """One model's folder (its verified files and Triton config), and for an ONNX
    image model its "-pixels" twin (tagd.runtime.pixels)."""
    source = verified_path(spec, models_dir)  # raises on a missing or damaged file
    folder = repo / spec.name
    version = _version_folder(repo, spec.name, spec.sha256)
    if spec.engine == "openvino":
        _place(source, version / "model.xml", spec.sha256)
        for other, sha in spec.files.items():
            if other.endswith(".bin"):
                _place(models_dir / other, version / "model.bin", sha)
        inputs, outputs = model_io(version / "model.xml")
        backend = "openvino"
    else:
        _place(source, version / "model.onnx", spec.sha256)
        inputs, outputs = model_io(version / "model.onnx")
        backend = "onnxruntime"
    written = [_configure(spec.name, folder, backend, inputs, outputs, spec.name)]
    twin = spec.name + pixels.SUFFIX
    twin_file = _version_folder(repo, twin, spec.sha256) / "model.onnx"
    if backend == "onnxruntime" and pixels.write_pixels_model(source, twin_file):
        inputs, outputs = model_io(twin_file)
        written.append(_configure(twin, repo / twin, backend, inputs, outputs, spec.name))
    elif (repo / twin).is_dir():
        shutil.rmtree(repo / twin)
    return written


def _configure(
    name: str, folder: Path, backend: str, inputs: list[Tensor], outputs: list[Tensor], spec: str
) -> Written:
    config = triton_config(name, backend, inputs, outputs)
    (folder / "config.pbtxt").write_text(config, encoding="utf-8")
    return Written(name, folder, backend, "max_batch_size: 0" not in config, spec)


def write_repository(
    specs: dict[str, ModelSpec], models_dir: Path, repo: Path
) -> tuple[list[Written], list[tuple[str, str]]]:
    """Every installed model that a KServe v2 server can run (ONNX and OpenVINO IR),
    and what was left out and why."""
    written: list[Written] = []
    skipped: list[tuple[str, str]] = []
    repo.mkdir(parents=True, exist_ok=True)
    for spec in sorted(specs.values(), key=lambda s: s.name):
        if not spec.file.endswith((".onnx", ".xml")):
            skipped.append((spec.name, "not an ONNX or OpenVINO IR model"))
            continue
        if not (models_dir / spec.file).is_file():
            skipped.append((spec.name, "not installed"))
            continue
        written += write_model(spec, models_dir, repo)
    # base_path relative to the config file: the repository can be mounted anywhere.
    config = {
        "model_config_list": [{"config": {"name": w.name, "base_path": w.name}} for w in written]
    }
    (repo / "ovms_config.json").write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    kept = [specs[w.name] for w in written if w.name == w.spec]
    write_manifest(repo, kept, header="# The models of this repository (tagd models repository).\n")
    return written, skipped
