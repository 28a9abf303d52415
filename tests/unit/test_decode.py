"""Decoding photos: reduced JPEG decode, orientation, formats, bad input."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tagd.media.image import DecodeError, decode_image, read_header, reduction
from tagd.media.sniff import kind_of_format, sniff


def _gradient(width: int, height: int) -> np.ndarray:
    """A BGR test image: a red left half, so orientation can be checked."""
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = (0, 0, 255)
    image[:, width // 2 :] = (255, 255, 255)
    return image


def _jpeg(image: np.ndarray, orientation: int | None = None, quality: int = 92) -> bytes:
    pil = Image.fromarray(image[:, :, ::-1])
    buf = io.BytesIO()
    if orientation is None:
        pil.save(buf, "JPEG", quality=quality)
    else:
        exif = pil.getexif()
        exif[0x0112] = orientation
        pil.save(buf, "JPEG", quality=quality, exif=exif)
    return buf.getvalue()


def _encode(image: np.ndarray, ext: str) -> bytes:
    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    ("size", "need", "factor"),
    [((4000, 3000), 416, 8), ((1600, 1200), 416, 2), ((640, 480), 416, 1), ((3329, 100), 416, 8)],
)
def test_reduction_picks_the_smallest_scale_that_covers_the_model(size, need, factor):
    assert reduction(*size, need) == factor
    assert -(-max(size) // factor) >= need


def test_reduced_jpeg_decode_is_smaller_and_covers_the_input():
    data = _jpeg(_gradient(4000, 3000))
    decoded = decode_image(data, min_long_side=416)
    assert decoded.image.shape == (375, 500, 3)
    assert (decoded.width, decoded.height) == (4000, 3000)
    assert decoded.scale == pytest.approx(8.0)
    full = decode_image(data, min_long_side=416, reduced=False)
    assert full.image.shape == (3000, 4000, 3)


@pytest.mark.parametrize("reduced", [True, False])
def test_exif_orientation_is_applied(reduced):
    # Orientation 6: the camera was turned; the upright photo is portrait, red on top.
    data = _jpeg(_gradient(1600, 800), orientation=6)
    decoded = decode_image(data, min_long_side=400, reduced=reduced)
    h, w = decoded.image.shape[:2]
    assert h > w
    assert (decoded.width, decoded.height) == (800, 1600)
    top, bottom = decoded.image[h // 8, w // 2], decoded.image[-h // 8, w // 2]
    assert top[2] > 200 and top[0] < 60  # red
    assert bottom.min() > 200  # white
    assert decoded.scale == pytest.approx(800 / w)


@pytest.mark.parametrize("ext", [".png", ".webp", ".tiff", ".bmp"])
def test_other_formats_decode(ext):
    data = _encode(_gradient(900, 600), ext)
    decoded = decode_image(data, min_long_side=416)
    assert (decoded.width, decoded.height) == (900, 600)
    assert decoded.image.shape[2] == 3
    assert max(decoded.image.shape[:2]) >= 416


def test_gif_first_frame_and_heic():
    frames = [Image.new("RGB", (320, 240), c) for c in ("red", "blue")]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    decoded = decode_image(buf.getvalue(), min_long_side=100)
    assert decoded.format == "gif"
    assert decoded.image[120, 160].tolist() == [0, 0, 255]  # the first (red) frame

    pillow_heif = pytest.importorskip("pillow_heif")
    heif = pillow_heif.from_pillow(Image.fromarray(_gradient(640, 480)[:, :, ::-1]))
    out = io.BytesIO()
    try:
        heif.save(out, quality=90)
    except (ValueError, RuntimeError) as exc:  # a wheel built without an HEVC encoder
        pytest.skip(f"cannot encode HEIC here: {exc}")
    decoded = decode_image(out.getvalue(), min_long_side=416)
    assert decoded.format == "heif"
    assert (decoded.width, decoded.height) == (640, 480)


@pytest.mark.parametrize(
    ("ink", "background"), [((0, 0, 0), 255), ((255, 240, 0), 0)], ids=["dark", "light"]
)
@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_transparent_pixels_get_the_background_that_shows_the_rest(ink, background, fmt):
    # What transparent pixels hold is left over (black here): it must not show.
    rgba = np.zeros((60, 80, 4), np.uint8)
    rgba[20:40, 10:70, :3] = ink
    rgba[20:40, 10:70, 3] = 255
    rgba[20:40, 70:72, :3] = ink
    rgba[20:40, 70:72, 3] = 128  # an anti-aliased edge: half of each
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, fmt, lossless=True)
    decoded = decode_image(buf.getvalue(), min_long_side=10)
    bgr = decoded.image
    assert read_header(buf.getvalue()).alpha
    assert bgr[5, 5].tolist() == [background] * 3
    assert bgr[30, 30].tolist() == list(ink[::-1])
    half = [round((c * 128 + background * 127) / 255) for c in ink[::-1]]
    assert np.abs(bgr[30, 70].astype(int) - half).max() <= 1


def test_an_opaque_png_keeps_its_pixels():
    image = _gradient(90, 60)
    assert not read_header(_encode(image, ".png")).alpha
    assert np.array_equal(decode_image(_encode(image, ".png"), min_long_side=90).image, image)


def test_truncated_jpeg_is_an_error():
    data = _jpeg(_gradient(1200, 900))
    with pytest.raises(DecodeError, match="truncated JPEG"):
        decode_image(data[: len(data) * 2 // 3], min_long_side=416)


def test_data_after_end_of_image_is_fine():
    # Motion photos append a video after the JPEG's end-of-image marker.
    data = _jpeg(_gradient(1200, 900)) + b"\x00\x00\x00\x18ftypmp42" + bytes(5000)
    assert decode_image(data, min_long_side=416).width == 1200


def test_decompression_bomb_is_refused_before_decoding():
    data = _encode(np.zeros((3000, 3000, 3), np.uint8), ".png")
    with pytest.raises(DecodeError, match=r"decode\.max_pixels"):
        decode_image(data, min_long_side=416, max_pixels=1_000_000)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "zero-byte"),
        (b"hello, this is not a photo at all\n", "not a decodable image"),
        (b"\xff\xd8\xff\xe0" + bytes(200), "corrupt"),
    ],
)
def test_bad_bytes_give_a_reason(data, reason):
    with pytest.raises(DecodeError, match=reason):
        decode_image(data, min_long_side=416)


def test_sniff_recognises_content_not_extension(tmp_path: Path):
    assert sniff(_jpeg(_gradient(10, 10))) == "jpeg"
    assert sniff(_encode(_gradient(10, 10), ".png")) == "png"
    assert sniff(_encode(_gradient(10, 10), ".webp")) == "webp"
    assert sniff(b"\x00\x00\x00\x20ftypisom") == "mp4"
    assert sniff(b"\x00\x00\x00\x18ftypheic") == "heif"
    assert sniff(b"\x1a\x45\xdf\xa3") == "matroska"
    assert kind_of_format("mp4") == "video" and kind_of_format("png") == "image"
    assert sniff(b"plain text") is None
    assert read_header(_jpeg(_gradient(64, 32))).width == 64
