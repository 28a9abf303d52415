"""The default analyzers as built from the installed models: in the registry's
order, every model behind the one lifecycle, verified without being loaded."""

from __future__ import annotations

from pathlib import Path

from tagd.analyzers.registry import plugins
from tagd.config import Settings
from tagd.pipeline import build_analyzers
from tagd.runtime.lifecycle import ModelLifecycle


def test_built_analyzers_match_their_plugins_and_models_share_one_lifecycle(
    default_models: Path,
) -> None:
    built = build_analyzers(Settings(), default_models)
    by_rank = [p.name for p in plugins() if p.name in {a.name for a in built}]
    assert [a.name for a in built] == by_rank  # the registry's order
    assert {"objects", "ocr", "concepts", "phash", "faces"} <= set(by_rank)
    for analyzer in built:
        assert analyzer.models
        for model in analyzer.models:
            assert isinstance(model, ModelLifecycle), (analyzer.name, model)
            assert model.spec.sha256 and not model.loaded
            model.check()  # verified without loading anything
            assert not model.unload_if_idle() and not model.loaded
