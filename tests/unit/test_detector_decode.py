"""The PicoDet and YuNet decodes on made-up outputs, against hand-computed boxes."""

from __future__ import annotations

import numpy as np
import pytest

from tagd.analyzers import picodet_head, yunet_decode
from tagd.analyzers.picodet_head import PicoDetHead

SIZE = 416
LEVELS = [(8, 52), (16, 26), (32, 13), (64, 7)]  # stride, cells per side (ceil(416 / s))


def _picodet_outputs() -> tuple[list[np.ndarray], list[np.ndarray]]:
    scores = [np.zeros((side * side, 80), np.float32) for _, side in LEVELS]
    boxes = [np.zeros((side * side, 32), np.float32) for _, side in LEVELS]
    return scores, boxes


def _one_hot_bins(left: int, top: int, right: int, bottom: int) -> np.ndarray:
    """Box logits whose softmax puts (almost) all weight on the given bins."""
    out = np.zeros((4, 8), np.float32)
    for side, b in enumerate((left, top, right, bottom)):
        out[side, b] = 50.0
    return out.reshape(-1)


def test_picodet_cell_centre_and_distances() -> None:
    scores, boxes = _picodet_outputs()
    # stride 16, row 3, col 5: centre (5.5 * 16, 3.5 * 16) = (88, 56)
    cell = 3 * 26 + 5
    scores[1][cell, 7] = 0.9  # truck
    boxes[1][cell] = _one_hot_bins(2, 1, 3, 4)
    found = PicoDetHead(SIZE, SIZE).candidates([*scores, *boxes], min_score=0.5)
    assert found.classes.tolist() == [7]
    assert found.scores.tolist() == pytest.approx([0.9])
    x, y, w, h = found.xywh[0]
    # left 2, top 1, right 3, bottom 4 strides from the centre
    assert (x, y, w, h) == pytest.approx((88 - 32, 56 - 16, 5 * 16, 5 * 16), abs=1e-3)


def test_picodet_expectation_over_bins_and_several_classes_per_cell() -> None:
    scores, boxes = _picodet_outputs()
    cell = 0  # stride 64, first cell: centre (32, 32)
    scores[3][cell, [0, 16]] = [0.6, 0.7]  # person and dog from one cell
    logits = np.zeros(32, np.float32)  # uniform bins: expectation 3.5 per side
    boxes[3][cell] = logits
    found = PicoDetHead(SIZE, SIZE).candidates([*scores, *boxes], min_score=0.5)
    assert sorted(found.classes.tolist()) == [0, 16]
    for x, y, w, h in found.xywh:
        assert (x, y, w, h) == pytest.approx((32 - 224, 32 - 224, 448, 448), abs=1e-3)


def test_picodet_keeps_the_best_candidates_only() -> None:
    scores, boxes = _picodet_outputs()
    scores[0][:, :] = np.linspace(0.01, 0.02, 52 * 52 * 80).reshape(-1, 80)
    found = PicoDetHead(SIZE, SIZE).candidates([*scores, *boxes], min_score=0.001)
    assert len(found.scores) == picodet_head.TOP_K
    assert found.scores.min() >= np.sort(scores[0].ravel())[-picodet_head.TOP_K]


def test_picodet_refuses_outputs_of_another_size() -> None:
    scores, boxes = _picodet_outputs()
    with pytest.raises(ValueError, match="cells"):
        PicoDetHead(320, 320).candidates([*scores, *boxes], min_score=0.5)


def test_picodet_input_is_stretched_rgb_normalised() -> None:
    image = np.zeros((100, 300, 3), np.uint8)
    image[:] = (255, 0, 0)  # pure blue in BGR
    chw, scale = PicoDetHead(SIZE, SIZE).prepare(image)
    assert chw.shape == (3, SIZE, SIZE) and scale == pytest.approx((SIZE / 300, SIZE / 100))
    red, green, blue = chw[:, 200, 200]
    assert red == pytest.approx((0 - 0.485) / 0.229, abs=1e-4)
    assert blue == pytest.approx((1 - 0.406) / 0.225, abs=1e-4)
    assert green == pytest.approx((0 - 0.456) / 0.224, abs=1e-4)


def _yunet_outputs(width: int, height: int) -> list[list[np.ndarray]]:
    """cls, obj, bbox, kps per stride, all zero."""
    rows = [(height // s) * (width // s) for s in yunet_decode.STRIDES]
    return [[np.zeros((n, k), np.float32) for n in rows] for k in (1, 1, 4, 10)]


def test_yunet_score_box_and_landmarks() -> None:
    cls, obj, bbox, kps = _yunet_outputs(64, 64)
    # stride 16 grid is 4 x 4; row 2, col 1
    cell = 2 * 4 + 1
    cls[1][cell], obj[1][cell] = 0.9, 0.9
    bbox[1][cell] = [0.5, 0.25, np.log(2.0), 0.0]  # centre (1.5, 2.25) cells, 32 x 16 px
    kps[1][cell] = [0.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.0, 1.0, 1.0, 1.0]
    faces = yunet_decode.decode_outputs([*cls, *obj, *bbox, *kps], 64, 64, min_score=0.8)
    assert len(faces) == 1
    assert faces.scores[0] == pytest.approx(0.9)  # sqrt(0.9 * 0.9)
    np.testing.assert_allclose(faces.boxes[0], [24 - 16, 36 - 8, 24 + 16, 36 + 8], atol=1e-4)
    np.testing.assert_allclose(
        faces.landmarks[0], [[16, 32], [32, 32], [24, 40], [16, 48], [32, 48]], atol=1e-4
    )


def test_yunet_threshold_and_suppression() -> None:
    cls, obj, bbox, kps = _yunet_outputs(64, 64)
    cls[0][0], obj[0][0] = 1.0, 0.81  # score 0.9, stride 8, cell (0, 0)
    cls[0][1], obj[0][1] = 1.0, 0.64  # score 0.8, the next cell, 8 px right
    bbox[0][:2, 2:] = np.log(4.0)  # 32 x 32 boxes: IoU of the two = 24 / 40 = 0.6
    outputs = [*cls, *obj, *bbox, *kps]
    assert len(yunet_decode.decode_outputs(outputs, 64, 64, min_score=0.85)) == 1
    assert len(yunet_decode.decode_outputs(outputs, 64, 64, min_score=0.5)) == 1  # NMS 0.3
    bbox[0][1, :2] = [4.0, 0.0]  # 32 px further right: no overlap
    assert len(yunet_decode.decode_outputs(outputs, 64, 64, min_score=0.5)) == 2


def test_yunet_needs_sides_divisible_by_32() -> None:
    with pytest.raises(ValueError, match="multiples of 32"):
        yunet_decode.decode_outputs([np.zeros((0, 1))] * 12, 100, 64, min_score=0.5)


def test_yolov8_centre_size_and_best_class() -> None:
    from tagd.analyzers.yolov8_head import Yolov8Head

    out = np.zeros((4 + 80, 10), np.float32)
    out[:4, 3] = [100, 50, 40, 20]  # anchor 3: centre (100, 50), 40 x 20
    out[4 + 2, 3], out[4 + 5, 3] = 0.3, 0.8  # car 0.3, bus 0.8: the bus
    found = Yolov8Head(640, 640).candidates([out], min_score=0.25)
    assert found.classes.tolist() == [5] and found.scores.tolist() == pytest.approx([0.8])
    np.testing.assert_allclose(found.xywh[0], [80, 40, 40, 20])
    image = np.zeros((320, 640, 3), np.uint8)
    image[:] = (0, 0, 255)  # red in BGR
    chw, scale = Yolov8Head(640, 640).prepare(image)
    assert scale == (1.0, 1.0) and chw[:, 0, 0].tolist() == [1.0, 0.0, 0.0]
    assert chw[:, 639, 0].tolist() == pytest.approx([114 / 255] * 3)  # padding below
