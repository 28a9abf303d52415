"""The DINOv2 analyzer: image embeddings into sqlite-vec, read by `tagd similar`.

No DINOv2 weights reach this machine: the model is a tiny randomly initialised
Dinov2Model of the real architecture, exported by `tagd models export dinov2`
as a user would export facebook/dinov2-small. A random network still maps a
resized copy of a photo next to the photo, which is what is checked.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from tagd.analyzers.dinov2 import ImageEmbeddings
from tagd.catalog.catalog import Catalog
from tagd.config import Settings, parse_settings
from tagd.dupes import similar_by_embedding
from tagd.pipeline import Pipeline
from tagd.runtime.image_embedding import ImageEmbedder
from tagd.runtime.lifecycle import ModelLifecycle
from tagd.runtime.manifest import load_manifest
from tagd.scan.index import index_roots, make_walker


@pytest.fixture(scope="module")
def dino_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("torch", reason="export needs torch (pip install 'tagd[export]')")
    pytest.importorskip("transformers", reason="export needs transformers")
    pytest.importorskip("onnx", reason="export needs onnx")
    from test_clip_dinov2 import save_tiny_dinov2

    from tagd.cli.main import main

    root = tmp_path_factory.mktemp("dinov2")
    models, ckpt = root / "models", root / "tiny-dinov2"
    save_tiny_dinov2(ckpt)
    config = root / "config.toml"
    config.write_text(f'[runtime]\nmodels_dir = "{models}"\n', encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TAGD_STATE_DIR", str(root / "state"))
        args = ["--config", str(config), "models", "export", "dinov2", "--from", str(ckpt)]
        assert main([*args, "--quantize", "none", "--format", "onnx"]) == 0
    return models


def _embedder(models: Path) -> ImageEmbedder:
    (spec,) = [s for s in load_manifest(models).values() if s.task == "image-embedding"]
    return ImageEmbedder(spec, models, backend="cpu", threads=2, idle_unload=60)


def _library(folder: Path, photos: list[Path]) -> Path:
    """The photos, plus a half-size re-encoded copy of the first (in name order),
    copied an hour ago (not still being copied: no settle wait)."""
    folder.mkdir()
    for p in photos:
        (folder / p.name).write_bytes(p.read_bytes())
    first = cv2.imread(str(min(photos, key=lambda p: p.name)))
    small = cv2.resize(first, (first.shape[1] // 2, first.shape[0] // 2))
    cv2.imwrite(str(folder / "copy.jpg"), small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    old = time.time() - 3600
    for p in folder.iterdir():
        os.utime(p, (old, old))
    return folder


def test_off_by_default() -> None:
    from tagd.analyzers.dinov2 import build

    assert build(Settings(), {}, Path("models")) is None


def test_the_config_section_turns_it_on(dino_models: Path) -> None:
    from tagd.analyzers.dinov2 import build

    specs = load_manifest(dino_models)
    settings = parse_settings({"dinov2": {"enabled": True}})
    built = build(settings, specs, dino_models)
    assert isinstance(built, ImageEmbeddings)
    assert build(parse_settings({"dinov2": {"enabled": False}}), specs, dino_models) is None


def test_pipeline_stores_embeddings_that_similar_ranks_by(
    tmp_path: Path, dino_models: Path, coco_photos: Callable[..., list[Path]]
) -> None:
    lib = _library(tmp_path / "lib", coco_photos(4))
    settings = parse_settings({"library": {"roots": [str(lib)]}})
    analyzer = ImageEmbeddings(_embedder(dino_models))
    assert all(isinstance(m, ModelLifecycle) for m in analyzer.models)
    with Catalog(tmp_path / "catalog.db") as catalog:
        index_roots(catalog, make_walker(settings), [str(lib)], [])
        pipeline = Pipeline(catalog, settings, [analyzer], prefixes=[str(lib)])
        report = pipeline.run()
        assert report.done == 5 and report.failed == 0, report
        assert pipeline.pending_count() == 0  # keyed by content and model: not again

        original = next(p for p in sorted(lib.iterdir()) if p.name != "copy.jpg")
        record = catalog.file_by_path(str(original))
        assert record is not None and record.content_id
        found = catalog.detections(record.content_id, "dinov2", with_vectors=True)
        assert [d.label for d in found] == [analyzer.embedder.spec.name]
        vector = found[0].vector
        assert vector is not None and vector.shape == (analyzer.embedder.embed_dim,)
        assert abs(float(np.linalg.norm(vector)) - 1) < 1e-4
        assert catalog.tags(record.content_id) == []  # embeddings make no tags

        result = similar_by_embedding(catalog, record.content_id, 3)
    assert result is not None
    used, hits = result
    assert used == "dinov2"  # looked at before CLIP and before the hashes
    assert Path(hits[0].path).name == "copy.jpg", hits
    assert hits[0].score < hits[1].score

    # Idle: the session goes, and comes back on the next use.
    assert analyzer.model.loaded
    assert analyzer.model.unload_if_idle(time.monotonic() + 3600)
    assert not analyzer.model.loaded


def test_a_new_export_reruns_only_this_analyzer(dino_models: Path) -> None:
    analyzer = ImageEmbeddings(_embedder(dino_models))
    spec = analyzer.embedder.spec
    assert analyzer.model_sha256 not in (spec.sha256, *spec.files.values())
    image = np.full((60, 80, 3), 127, np.uint8)
    (findings,) = analyzer.analyze([image])
    assert len(findings) == 1 and findings[0].vector is not None and findings[0].box is None
