"""The analyzers, discovered from the modules of this package.

An analyzer module declares one `PLUGIN = AnalyzerPlugin(...)`: its name (the
key of its results in the catalog), its config section, how to build it, how
its findings become tags and what `tagd export` shows for it. The pipeline,
the tag policy and the export read this registry, so adding an analyzer is
adding one module (and, for now, its section in tagd.config).

Modules are imported on the first call, not when this module is: the tag
policy imports the registry, and the analyzers import the policy's rules.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tagd.analyzers.base import Analyzer
    from tagd.catalog.catalog import Catalog
    from tagd.config import Settings
    from tagd.policy.tags import TagPolicy
    from tagd.records import Detection, Media, Tag
    from tagd.runtime.manifest import ModelSpec

Builder = Callable[["Settings", "dict[str, ModelSpec]", Path], "Analyzer | None"]
Deriver = Callable[["TagPolicy", "Sequence[Detection]", "Media"], "list[Tag]"]
Exporter = Callable[["Catalog", int], Any]


@dataclass(frozen=True)
class AnalyzerPlugin:
    name: str  # key of its results in the catalog (analyses, detections, tags' source)
    rank: int  # analyzers run, and show in the export, lowest rank first
    section: str  # attribute of its config section in Settings
    build: Builder  # the analyzer as configured, or None when switched off
    derive: Deriver | None = None  # findings -> tags; None: it makes no tags
    # The deriver reads stored embeddings (loading every face's vector just to
    # derive tags would be wasted work, so only rules that score vectors get them).
    needs_vectors: bool = False
    export_key: str | None = None  # its key in `tagd export`; None: not exported
    export: Exporter | None = None  # that key's value for one content

    def configured(self, settings: Settings) -> bool:
        """Whether the config has this analyzer's section (a new analyzer may run
        before its section exists: then it is off)."""
        return hasattr(settings, self.section)


@cache
def plugins() -> tuple[AnalyzerPlugin, ...]:
    """Every analyzer module's plugin, lowest rank first."""
    from tagd import analyzers

    found: dict[str, AnalyzerPlugin] = {}
    for info in pkgutil.iter_modules(analyzers.__path__):
        module = importlib.import_module(f"{analyzers.__name__}.{info.name}")
        plugin = getattr(module, "PLUGIN", None)
        if isinstance(plugin, AnalyzerPlugin):
            if plugin.name in found:
                raise RuntimeError(f"two analyzer modules are named {plugin.name!r}")
            found[plugin.name] = plugin
    return tuple(sorted(found.values(), key=lambda p: (p.rank, p.name)))


def plugin(name: str) -> AnalyzerPlugin | None:
    """The plugin of the analyzer whose results are stored under `name`."""
    return next((p for p in plugins() if p.name == name), None)


def build_analyzers(
    settings: Settings, specs: dict[str, ModelSpec], models_dir: Path
) -> list[Analyzer]:
    """The enabled analyzers in rank order, each with its (not yet loaded) models."""
    built = (
        p.build(*_runtime_of(p, settings, specs), models_dir)
        for p in plugins()
        if p.configured(settings)
    )
    return [a for a in built if a is not None]


def _runtime_of(
    plugin: AnalyzerPlugin, settings: Settings, specs: dict[str, ModelSpec]
) -> tuple[Settings, dict[str, ModelSpec]]:
    """The settings and models one analyzer is built with: those of the remote
    backend for an analyzer named in runtime.remote_analyzers (the ONNX
    variants, which every inference server runs)."""
    runtime = settings.runtime
    if plugin.section not in runtime.remote_analyzers or runtime.backend == "remote":
        return settings, specs
    from dataclasses import replace

    from tagd.runtime.manifest import prefer_engine

    remote = replace(settings, runtime=replace(runtime, backend="remote"))
    return remote, prefer_engine(specs, "remote")
