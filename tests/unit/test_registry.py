"""Analyzers as plugins: each module declares itself, and the pipeline, the tag policy
and the export read the registry; every model wrapper has one lifecycle."""

from __future__ import annotations

import pkgutil

from tagd import analyzers
from tagd.analyzers.registry import AnalyzerPlugin, plugin, plugins
from tagd.cli.export_cmd import keys
from tagd.config import Settings, TagSettings
from tagd.paths import models_dir
from tagd.pipeline import build_analyzers
from tagd.policy.tags import TagPolicy
from tagd.records import Detection, Media
from tagd.runtime.lifecycle import Builtin, ModelLifecycle


def test_every_analyzer_module_is_found_once_in_rank_order() -> None:
    found = plugins()
    names = [p.name for p in found]
    assert len(names) == len(set(names))
    assert {
        "objects",
        "ocr",
        "concepts",
        "clip",
        "dinov2",
        "nsfw",
        "phash",
        "faces",
        "quality",
    } <= set(names)
    assert [p.rank for p in found] == sorted(p.rank for p in found)
    modules = {m.name for m in pkgutil.iter_modules(analyzers.__path__)}
    # Modules without a PLUGIN are the analyzers' shared code, not analyzers.
    assert {"base", "registry", "exported", "retinaface_decode"} <= modules
    assert plugin("nope") is None and isinstance(plugin("objects"), AnalyzerPlugin)


def test_a_section_the_config_lacks_keeps_its_analyzer_off() -> None:
    settings = Settings()
    for p in plugins():
        if p.configured(settings):
            assert hasattr(getattr(settings, p.section), "enabled"), p.name
    dinov2 = plugin("dinov2")
    assert dinov2 is not None
    assert dinov2.build(settings, {}, models_dir(settings)) is None  # off by default
    assert "dinov2" not in [a.name for a in build_analyzers(settings, models_dir(settings))]


def test_builtin_model_has_the_lifecycle_and_nothing_to_load() -> None:
    model = Builtin("phash", "3", 64)
    assert isinstance(model, ModelLifecycle)
    assert model.spec.sha256 == "builtin:3" and model.spec.input == (64, 64)
    model.check()
    model.unload()
    assert not model.loaded and not model.unload_if_idle(0.0)


def test_export_keys_come_from_the_plugins() -> None:
    exported = keys()
    assert next(iter(exported)) == "segments"  # the tags' time ranges, whatever made them
    assert set(exported) == {
        "segments",
        "objects",
        "text",
        "concepts",
        "nsfw",
        "phash",
        "faces",
        "quality",
        "vlm",
    }
    for p in plugins():
        if p.export_key:
            assert exported[p.export_key] is p.export


def test_policy_derives_through_the_plugin_of_each_analyzer() -> None:
    policy = TagPolicy(TagSettings())
    photo = Media("image", 100, 100)
    dog = [Detection("dog", 0.9, (1.0, 2.0, 30.0, 40.0))]
    assert [t.name for t in policy.derive("objects", dog, photo)] == ["AI|Objects|dog"]
    # Hashes and embeddings make no tags; unknown analyzers neither.
    assert policy.derive("phash", dog, photo) == []
    assert policy.derive("dinov2", dog, photo) == []
    assert policy.derive("nope", dog, photo) == []
    needs = {p.name for p in plugins() if p.needs_vectors}
    assert needs == {"clip"}
