"""The model manifest: what each model is, where its files are, their checksums.

Two files make it. `default_models.toml`, shipped inside the package, describes
the default set (what `tagd models fetch` installs). `manifest.toml` in the
models folder (`<state dir>/models` unless `runtime.models_dir` says otherwise)
describes what is installed there: `tagd models fetch` and `tagd models export`
write it, and its entries replace the shipped ones of the same name. The
runtime refuses a file whose sha256 differs from its entry. One task (objects, faces, ...)
may have several variants (fp32, int8, OpenVINO IR); the one marked
`default = true` is what an analyzer configured with `model = "auto"` runs.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w


class ModelError(RuntimeError):
    """A model that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    file: str
    sha256: str
    input: tuple[int, int]  # width, height
    preprocessing: str = ""
    license: str = ""
    source: str = ""
    family: str = ""
    variant: str = "fp32"
    default: bool = False
    labels: tuple[str, ...] = ()
    # Other files the model needs (OpenVINO .bin, a character dictionary), name -> sha256.
    files: dict[str, str] = field(default_factory=dict)
    # What export measured (accuracy, latency), for `tagd models list`.
    metrics: dict[str, float] = field(default_factory=dict)
    fetch: tuple[str, ...] = ()

    @property
    def engine(self) -> str:
        return "openvino" if self.file.endswith(".xml") else "onnx"

    @property
    def all_files_sha256(self) -> str:
        """One digest over every file of the model (sorted: the manifest's order
        does not matter), for models whose other files shape the results too."""
        parts = sorted([self.sha256, *self.files.values()])
        return hashlib.sha256("".join(parts).encode()).hexdigest()


_REQUIRED = ("task", "file", "sha256", "input")


# The default set, shipped with the package (a checkout's models/ folder holds no
# manifest: what is installed lives beside the installed files).
DEFAULT_MANIFEST = Path(__file__).with_name("default_models.toml")


def default_specs() -> dict[str, ModelSpec]:
    """The default set as shipped."""
    return _read_manifest(DEFAULT_MANIFEST)


def installed_specs(models_dir: Path) -> dict[str, ModelSpec]:
    """What models_dir/manifest.toml says is installed there ({} before any fetch)."""
    try:
        return _read_manifest(models_dir / "manifest.toml")
    except FileNotFoundError:
        return {}


def load_manifest(models_dir: Path) -> dict[str, ModelSpec]:
    """The shipped default set overlaid with what is installed in models_dir: an
    installed entry replaces the default of its name, and an installed default
    for a task replaces the shipped default of that task."""
    specs = default_specs()
    installed = installed_specs(models_dir)
    tasks = {spec.task for spec in installed.values() if spec.default}
    specs = {
        name: replace(spec, default=False) if spec.task in tasks else spec
        for name, spec in specs.items()
    }
    specs.update(installed)
    return specs


def _read_manifest(path: Path) -> dict[str, ModelSpec]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ModelError(f"{path}: not UTF-8 text: {exc}") from None
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ModelError(f"{path}: cannot read it: {exc.strerror or exc}") from None
    return {name: _spec(name, entry, path) for name, entry in data.get("models", {}).items()}


def _spec(name: str, entry: dict[str, Any], path: Path) -> ModelSpec:
    missing = [key for key in _REQUIRED if key not in entry]
    if missing:
        raise ModelError(f"{path}: [models.{name}] is incomplete: missing {', '.join(missing)}")
    try:
        return ModelSpec(
            name=name,
            task=str(entry["task"]),
            file=str(entry["file"]),
            sha256=str(entry["sha256"]),
            input=(int(entry["input"][0]), int(entry["input"][1])),
            preprocessing=str(entry.get("preprocessing", "")),
            license=str(entry.get("license", "")),
            source=str(entry.get("source", "")),
            family=str(entry.get("family", "")),
            variant=str(entry.get("variant", "fp32")),
            default=bool(entry.get("default", False)),
            labels=tuple(str(x) for x in entry.get("labels", ())),
            files={str(k): str(v) for k, v in entry.get("files", {}).items()},
            metrics={str(k): float(v) for k, v in entry.get("metrics", {}).items()},
            fetch=tuple(str(x) for x in entry.get("fetch", ())),
        )
    except (TypeError, ValueError, IndexError) as exc:
        raise ModelError(f"{path}: [models.{name}] has a bad value: {exc}") from None


def default_for(specs: dict[str, ModelSpec], task: str) -> ModelSpec | None:
    """The variant marked default for a task (else the only one there is)."""
    candidates = [s for s in specs.values() if s.task == task]
    marked = [s for s in candidates if s.default]
    if marked:
        return marked[0]
    return candidates[0] if len(candidates) == 1 else None


def prefer_engine(specs: dict[str, ModelSpec], backend: str) -> dict[str, ModelSpec]:
    """Each task's default on the engine the runtime uses.

    The manifest marks the variant fetch measured fastest on this machine:
    onnxruntime for YOLOX, RetinaFace and EfficientNet, OpenVINO for the OCR
    models (and only OpenVINO has the int8 OCR detector). "auto" on a CPU runs
    those: two engines side by side cost nothing with the inference lanes
    (onnxruntime's workers do not spin there), and the analysis process ends
    when idle, OpenVINO's memory with it (bench/pipeline.py, 12 MP photos:
    15.1 photos/s against 13.1 with everything on OpenVINO and 10.3 with
    everything on onnxruntime).
    "cpu" and CUDA mean onnxruntime, "openvino" OpenVINO: each default moves to
    its twin there (the same variant, else the task's fp32).
    """
    from tagd.runtime.backends import resolve_backend

    if backend == "auto" and resolve_backend(backend) == "cpu":
        return dict(specs)
    engine = "openvino" if backend == "openvino" else "onnx"
    out = dict(specs)
    for spec in specs.values():
        if not spec.default or spec.engine == engine:
            continue
        base = spec.variant.removeprefix("openvino-")
        wanted = f"openvino-{base}" if engine == "openvino" else base
        family = [
            s for s in specs.values()
            if s.task == spec.task and s.family == spec.family and s.engine == engine
        ]  # fmt: skip
        twins = sorted(family, key=lambda s: (s.variant != wanted, s.variant != "fp32"))
        if twins:
            out[spec.name] = replace(spec, default=False)
            out[twins[0].name] = replace(twins[0], default=True)
    return out


def resolve(specs: dict[str, ModelSpec], task: str, name: str, key: str) -> ModelSpec:
    """The spec for a config value: a manifest name, or "auto" for the default."""
    spec = default_for(specs, task) if name == "auto" else specs.get(name)
    if spec is None or spec.task != task:
        known = ", ".join(sorted(s.name for s in specs.values() if s.task == task)) or "none"
        raise ModelError(
            f"{key} = {name!r}: no such {task} model in the manifest (installed: {known}); "
            "run `tagd models fetch`"
        )
    return spec


def write_manifest(models_dir: Path, entries: Iterable[ModelSpec], header: str = "") -> Path:
    """Merge entries into models_dir/manifest.toml, what is installed there (same
    name replaces), atomically. The shipped default set is never written."""
    path = models_dir / "manifest.toml"
    try:
        current = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        current = {}
    models: dict[str, Any] = dict(current.get("models", {}))
    new = list(entries)
    for spec in new:
        if spec.default:  # one default per task
            for other in models.values():
                if other.get("task") == spec.task:
                    other["default"] = False
        models[spec.name] = _entry(spec)
    text = tomli_w.dumps({"models": dict(sorted(models.items()))}, multiline_strings=False)
    models_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=models_dir, prefix=".manifest.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(header or _HEADER)
        out.write(text)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600; the service user must read it
    os.replace(tmp, path)
    return path


def _entry(spec: ModelSpec) -> dict[str, Any]:
    entry = asdict(spec)
    del entry["name"]
    entry["input"] = list(spec.input)
    entry["labels"] = list(spec.labels)
    entry["fetch"] = list(spec.fetch)
    return {k: v for k, v in entry.items() if v not in ((), [], {}, "")}


_HEADER = """\
# Models tagd can run, written by `tagd models fetch` and `tagd models export`.
# Every file is checked against its sha256 when it is loaded. Keys: task (the
# analyzer that uses it), family, variant, default (what `model = "auto"`
# picks for the task), file, sha256, files (other files it needs, with their
# sha256), input [width, height], preprocessing, labels (output classes in
# index order), license, source (where the weights come from), metrics (what
# export measured).

"""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_path(spec: ModelSpec, models_dir: Path) -> Path:
    """The model file, after checking it and its companions are the files the manifest names."""
    for name, expected in [(spec.file, spec.sha256), *spec.files.items()]:
        path = models_dir / name
        if not path.is_file():
            raise ModelError(
                f"model {spec.name!r} is missing: {path} not found. Run `tagd models fetch` "
                f"(offline: `tagd models fetch --source DIR`). Source: {spec.source}"
            )
        actual = sha256_of(path)
        if actual != expected:
            raise ModelError(
                f"model {spec.name!r}: {path} has sha256 {actual}, manifest expects "
                f"{expected}: the file is damaged or a different version; "
                "run `tagd models fetch` again"
            )
    return models_dir / spec.file
