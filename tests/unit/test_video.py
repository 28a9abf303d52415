"""Tests for tagd.media.video: probing and interval sampling of real and synthetic clips."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import SHARED

from tagd.media.video import Frame, VideoError, probe_video, sample_frames

VIDEO_DIR = SHARED / "eval" / "video"
REAL_CLIPS = [
    "big_buck_bunny_0_30.webm",
    "chaplin.mp4",
    "example.mp4",
    "fire2.mp4",
    "no_duration.webm",
    "smpte-2997.mp4",
    "video_with_failing_audio.mp4",
]


@pytest.fixture(scope="module")
def video_dir() -> Path:
    if not VIDEO_DIR.is_dir():
        pytest.skip(f"real test videos not found at {VIDEO_DIR}")
    return VIDEO_DIR


def _clip(video_dir: Path, name: str) -> Path:
    path = video_dir / name
    if not path.is_file():
        pytest.skip(f"{name} missing from {video_dir}")
    return path


def _decode_all(path: Path) -> Iterator[tuple[float, av.VideoFrame]]:
    """Reference: every frame in order, straight from the decoder (no rotation)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        start = stream.start_time or 0
        for frame in container.decode(stream):
            yield float((frame.pts - start) * stream.time_base), frame


def _reference_samples(path: Path, interval: float) -> list[tuple[float, np.ndarray]]:
    """First frame at or after each multiple of interval, found the slow way."""
    out: list[tuple[float, np.ndarray]] = []
    target = 0.0
    for t, frame in _decode_all(path):
        if t >= target - 1e-3:
            out.append((t, frame.to_ndarray(format="bgr24")))
            target = (math.floor((t + 1e-3) / interval) + 1) * interval
    return out


def _assert_well_formed(frames: list[Frame], interval: float) -> None:
    assert frames, "no frames"
    times = [f.t for f in frames]
    assert times[0] < interval
    assert all(b > a for a, b in itertools.pairwise(times)), times
    for a, b in itertools.pairwise(times):
        assert 0.5 * interval < b - a < 1.5 * interval, times
    for f in frames:
        assert f.image.dtype == np.uint8
        assert f.image.ndim == 3 and f.image.shape[2] == 3
        assert f.image.flags.c_contiguous


# ----------------------------------------------------------------- real clips


@pytest.mark.parametrize("name", REAL_CLIPS)
def test_real_clip_sampling(video_dir: Path, name: str) -> None:
    path = _clip(video_dir, name)
    info = probe_video(path)
    frames = list(sample_frames(path, 2.0))
    _assert_well_formed(frames, 2.0)
    h, w = frames[0].image.shape[:2]
    assert (w, h) == (info.width, info.height)
    if info.duration is not None:
        assert frames[-1].t <= info.duration


def test_bbb_sparse_keyframes_give_distinct_exact_frames(video_dir: Path) -> None:
    path = _clip(video_dir, "big_buck_bunny_0_30.webm")
    frames = list(sample_frames(path, 2.0))
    # Seeking on sparse keyframes must not hand back the same picture twice.
    for a, b in itertools.pairwise(frames):
        assert np.abs(a.image.astype(np.int16) - b.image).mean() > 1.0, (a.t, b.t)
    # And every sample is exactly the frame a full decode finds for that target.
    reference = _reference_samples(path, 2.0)
    for frame, (t, image) in zip(frames, reference, strict=False):
        assert frame.t == pytest.approx(t, abs=1e-6)
        assert np.array_equal(frame.image, image)


def test_smpte_dense_keyframes_count_and_exactness(video_dir: Path) -> None:
    path = _clip(video_dir, "smpte-2997.mp4")
    info = probe_video(path)
    assert info.duration == pytest.approx(10.0, abs=0.2)
    assert (info.width, info.height, info.codec) == (1920, 1080, "h264")
    frames = list(sample_frames(path, 2.0))
    expected = info.duration / 2.0
    assert math.floor(expected) <= len(frames) <= math.floor(expected) + 1
    for frame, (t, image) in zip(frames, _reference_samples(path, 2.0), strict=True):
        assert frame.t == pytest.approx(t, abs=1e-6)
        assert np.array_equal(frame.image, image)


def test_no_duration_webm(video_dir: Path) -> None:
    path = _clip(video_dir, "no_duration.webm")
    info = probe_video(path)
    assert info.duration is None or info.duration > 0
    frames = list(sample_frames(path, 1.0))
    _assert_well_formed(frames, 1.0)
    assert len(frames) >= 3


def test_failing_audio_is_ignored(video_dir: Path) -> None:
    path = _clip(video_dir, "video_with_failing_audio.mp4")
    frames = list(sample_frames(path, 2.0))
    _assert_well_formed(frames, 2.0)
    assert len(frames) >= 5


def test_rotation_metadata_is_applied(video_dir: Path) -> None:
    # fire2.mp4 carries a 180 degree display matrix.
    path = _clip(video_dir, "fire2.mp4")
    first = next(iter(sample_frames(path, 2.0)))
    raw = next(_decode_all(path))[1].to_ndarray(format="bgr24")
    assert np.array_equal(first.image, np.rot90(raw, 2))


def test_min_long_side_scales_down_only(video_dir: Path) -> None:
    path = _clip(video_dir, "smpte-2997.mp4")
    small = next(iter(sample_frames(path, 5.0, min_long_side=320)))
    assert small.image.shape == (180, 320, 3)
    full = next(iter(sample_frames(path, 5.0, min_long_side=4000)))
    assert full.image.shape == (1080, 1920, 3)


def test_max_frames(video_dir: Path) -> None:
    path = _clip(video_dir, "big_buck_bunny_0_30.webm")
    assert len(list(sample_frames(path, 1.0, max_frames=3))) == 3


# ----------------------------------------------------------------- bad input


def _yields_or_video_error(path: Path) -> list[Frame]:
    """Frames up to wherever the file breaks, or VideoError; nothing else allowed."""
    try:
        frames = list(sample_frames(path, 2.0))
    except VideoError:
        return []
    times = [f.t for f in frames]
    assert all(b > a for a, b in itertools.pairwise(times))
    return frames


def test_empty_file(video_dir: Path) -> None:
    path = _clip(video_dir, "empty.mp4")
    with pytest.raises(VideoError, match="zero-byte file"):
        list(sample_frames(path, 2.0))
    with pytest.raises(VideoError, match="zero-byte file"):
        probe_video(path)


def test_text_file_named_mp4(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("this is not a video\n" * 50)
    with pytest.raises(VideoError, match="cannot open"):
        list(sample_frames(path, 2.0))
    with pytest.raises(VideoError):
        probe_video(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(VideoError):
        list(sample_frames(tmp_path / "nope.mp4", 2.0))


@pytest.mark.parametrize("name", ["smpte-2997.mp4", "chaplin.mp4", "big_buck_bunny_0_30.webm"])
def test_truncated_copy(video_dir: Path, tmp_path: Path, name: str) -> None:
    data = _clip(video_dir, name).read_bytes()
    path = tmp_path / f"cut_{name}"
    path.write_bytes(data[: int(len(data) * 0.3)])
    frames = _yields_or_video_error(path)
    full = probe_video(video_dir / name).duration or math.inf
    assert all(f.t < full for f in frames)


# ----------------------------------------------------------------- synthetic clips


def _write_clip(
    path: Path, times_ms: list[int], *, size: tuple[int, int] = (64, 32), rotation: int = 0
) -> None:
    """A small MPEG-4 clip; frame i is shown at times_ms[i], red bar along the top."""
    width, height = size
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        if rotation:
            stream.set_display_rotation(rotation)
        for i, ms in enumerate(times_ms):
            image = np.full((height, width, 3), 20 + 7 * i, np.uint8)
            image[: height // 4, :] = (0, 0, 255)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_rotated_synthetic_clip_is_upright(tmp_path: Path) -> None:
    path = tmp_path / "rot90.mp4"
    _write_clip(path, [i * 100 for i in range(20)], rotation=90)
    info = probe_video(path)
    assert (info.width, info.height) == (32, 64)
    image = next(iter(sample_frames(path, 1.0))).image
    assert image.shape == (64, 32, 3)
    # Turned 90 degrees counter-clockwise: the top bar ends up on the left.
    assert image[:, :4, 2].mean() > 200 > image[:, -4:, 2].mean()


def test_variable_frame_rate_uses_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    _write_clip(path, [0, 100, 200, 2500, 2600, 5000, 5100, 5200])
    times = [f.t for f in sample_frames(path, 1.0)]
    # Targets 0, 1, 2 s: 0.0 then 2.5 (first frame after the gap, once only),
    # then 3, 4, 5 s all map to 5.0; the tail 5.2 is too close to repeat.
    assert times == pytest.approx([0.0, 2.5, 5.0], abs=1e-3)
