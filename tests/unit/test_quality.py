"""Photo quality measures and scores on real photos degraded in known ways."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tagd.config import ConfigError, parse_settings
from tagd.media import quality
from tagd.policy.tags import TagPolicy
from tagd.records import Detection, Media

# Sharp photos of the dev set: a street scene and a portrait with a soft background.
SHARP = ("objects-coco128-train/images/000000000009.jpg", "faces/images/img1.jpg")


@pytest.fixture(params=SHARP)
def photo(request: pytest.FixtureRequest, shared: Path) -> np.ndarray:
    image = cv2.imread(str(shared / "eval" / request.param))
    assert image is not None
    # At the size it is judged at: noise added to a larger photo is averaged away
    # by the reduction, as it is on a screen.
    return quality.luma_and_colour(image)[0]


def _ev(image: np.ndarray, stops: float) -> np.ndarray:
    x = image.astype(np.float32) / 255
    linear = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4) * 2**stops
    x = np.clip(linear, 0, 1)
    x = np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)
    return np.clip(x * 255 + 0.5, 0, 255).astype(np.uint8)


def test_a_sharp_well_exposed_photo_gets_no_quality_label(photo: np.ndarray) -> None:
    scores = quality.scores(photo)
    assert set(scores) == set(quality.LABELS)
    assert all(s < 0.5 for s in scores.values()), scores


def test_each_degradation_raises_its_own_label(photo: np.ndarray) -> None:
    sigma = 3 * max(photo.shape[:2]) / 640
    kernel = np.zeros((21, 21), np.float32)
    kernel[10, :] = 1 / 21  # a horizontal shake
    rng = np.random.default_rng(0)
    cases = {
        "blurry": cv2.GaussianBlur(photo, (0, 0), sigma),
        "underexposed": _ev(photo, -2.5),
        "overexposed": _ev(photo, 2.5),
        "noisy": np.clip(photo + rng.normal(0, 20, photo.shape), 0, 255).astype(np.uint8),
        "low contrast": np.clip(photo * 0.3 + 90, 0, 255).astype(np.uint8),
    }
    for label, image in cases.items():
        scores = quality.scores(image)
        assert scores[label] >= 0.5, (label, scores)
    shaken = cv2.filter2D(photo, -1, kernel)
    assert quality.scores(shaken)["blurry"] >= 0.5


def test_the_same_photo_at_any_decode_size_is_judged_alike(photo: np.ndarray) -> None:
    """A 2000 px decode is brought down to about quality.SIZE: what is judged is the photo."""
    big = cv2.resize(photo, None, fx=2000 / max(photo.shape[:2]), fy=2000 / max(photo.shape[:2]))
    m = quality.measure(big)
    # Halved to 1000 px (the fast path), never above SIZE nor far below it.
    assert 0.9 * quality.SIZE <= max(quality.luma_and_colour(big)[1].shape) <= quality.SIZE
    assert 0 <= m.sharpness <= 1 and 0 <= m.balance <= 1


def test_tiny_flat_and_grey_images_give_scores_not_errors() -> None:
    for image in (np.zeros((8, 8, 3), np.uint8), np.full((300, 200, 3), 128, np.uint8)):
        scores = quality.scores(image)
        assert all(0.0 <= s <= 1.0 for s in scores.values())
    assert quality.scores(np.zeros((300, 200, 3), np.uint8))["underexposed"] >= 0.5


def test_quality_tags_follow_the_tag_rules() -> None:
    found = [
        Detection("blurry", 0.7, None),
        Detection("noisy", 0.3, None),
        Detection("underexposed", 0.55, None),
    ]
    media = Media(kind="image")
    settings = parse_settings(
        {"tags": {"quality": {"labels": {"underexposed": {"threshold": 0.6}}}}}
    )
    tags = TagPolicy(settings.tags).derive("quality", found, media)
    assert [t.name for t in tags] == ["AI|Quality|blurry"]


def test_a_misspelt_quality_label_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"tags\.quality\.labels\.blury: .*did you mean 'blurry'"):
        parse_settings({"tags": {"quality": {"labels": {"blury": {"threshold": 0.9}}}}})
    with pytest.raises(ConfigError, match=r"quality\.enabled"):
        parse_settings({"quality": {"enabled": "yes please"}})


def test_videos_get_no_quality_scores_photos_do(photo: np.ndarray) -> None:
    from tagd.analyzers.quality import PhotoQuality
    from tagd.pipeline import Loaded, _frames_for
    from tagd.records import WorkItem

    analyzer = PhotoQuality()
    item = WorkItem(1, "/x", "video", ())
    video = Loaded(item, "video", [photo, photo], [0.0, 2.0], [1.0, 1.0])
    still = Loaded(item, "image", [photo], [None], [1.0])
    assert _frames_for(analyzer, video) == []
    assert _frames_for(analyzer, still) == [0]
    assert len(analyzer.analyze([photo])[0]) == len(quality.LABELS)
