"""models/manifest.toml: what each model is, where its file is, and its checksum."""

from __future__ import annotations

import hashlib
import tomllib
from dataclasses import dataclass, field
from pathlib import Path


class ModelError(RuntimeError):
    """A model that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: str
    file: str
    sha256: str
    input: tuple[int, int]  # width, height
    preprocessing: str
    license: str
    source: str
    labels: tuple[str, ...] = ()
    fetch: tuple[str, ...] = field(default=())


def load_manifest(models_dir: Path) -> dict[str, ModelSpec]:
    path = models_dir / "manifest.toml"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"no model manifest at {path}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ModelError(f"{path}: invalid TOML: {exc}") from None
    specs = {}
    for name, entry in data.get("models", {}).items():
        try:
            specs[name] = ModelSpec(
                name=name,
                task=entry["task"],
                file=entry["file"],
                sha256=entry["sha256"],
                input=(int(entry["input"][0]), int(entry["input"][1])),
                preprocessing=entry.get("preprocessing", ""),
                license=entry.get("license", ""),
                source=entry.get("source", ""),
                labels=tuple(entry.get("labels", ())),
                fetch=tuple(entry.get("fetch", ())),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ModelError(f"{path}: [models.{name}] is incomplete: {exc!r}") from None
    return specs


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verified_path(spec: ModelSpec, models_dir: Path) -> Path:
    """The model file, after checking it is there and is the file the manifest names."""
    path = models_dir / spec.file
    if not path.is_file():
        raise ModelError(
            f"model {spec.name!r} is missing: {path} not found. Run `tagd models fetch` "
            f"(offline: `tagd models fetch --source DIR`). Source: {spec.source}"
        )
    actual = sha256_of(path)
    if actual != spec.sha256:
        raise ModelError(
            f"model {spec.name!r} at {path} has sha256 {actual}, manifest expects "
            f"{spec.sha256}: the file is damaged or a different version; "
            "run `tagd models fetch` again"
        )
    return path
