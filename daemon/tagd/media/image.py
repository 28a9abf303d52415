"""Decode a photo once, upright, at the smallest size the models need.

JPEGs are decoded with libjpeg's DCT scaling (1/2, 1/4, 1/8), which skips most
of the work for a 12 MP photo when the largest model input is 416 px. OpenCV
applies the EXIF orientation during that decode; the original upright size
comes from the header (Pillow reads it without decoding pixels), so boxes can
be reported in the original's pixels. Formats OpenCV cannot read (HEIC, GIF)
go through Pillow. Every failure is a DecodeError with a reason a person can
act on.
"""

from __future__ import annotations

import io
import re
import threading
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from tagd.media.raw import HEAD as RAW_HEAD
from tagd.media.raw import RawError, decode_raw, raw_format
from tagd.media.sniff import describe, sniff

_heif: bool | None = None  # pillow-heif registered with Pillow; None: not tried yet
_heif_lock = threading.Lock()


def _heif_ready() -> bool:
    """Register pillow-heif on the first HEIC/HEIF file, not at import: its codecs
    (libheif, x265) cost a few MB in every tagd whose library has none. Optional:
    without it those files get a clear error."""
    global _heif
    with _heif_lock:  # decode workers may meet their first HEIC together
        if _heif is None:
            try:
                import pillow_heif

                pillow_heif.register_heif_opener()
                _heif = True
            except ImportError:  # pragma: no cover - depends on the platform's wheels
                _heif = False
        return _heif


# Our own max_pixels guard replaces Pillow's, which would warn or raise first.
Image.MAX_IMAGE_PIXELS = None

REDUCED_FLAGS = {
    1: cv2.IMREAD_COLOR,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_CV2_FORMATS = {"jpeg", "png", "tiff", "bmp", "webp"}
# Pillow modes with an alpha channel (a palette's transparent colour is in info).
_ALPHA_MODES = {"RGBA", "LA", "La", "RGBa", "PA"}
# A JPEG marker that can end entropy-coded data (not stuffing 0x00, not RSTn).
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


class DecodeError(Exception):
    """A file that cannot be decoded; the message is the reason shown to people."""


@dataclass(frozen=True)
class DecodedImage:
    image: np.ndarray  # BGR uint8, upright
    width: int  # upright size of the original
    height: int
    format: str

    @property
    def scale(self) -> float:
        """Original pixels per decoded pixel."""
        return self.width / self.image.shape[1]


@dataclass(frozen=True)
class Header:
    format: str
    width: int  # upright
    height: int
    alpha: bool = False  # transparent pixels (an alpha channel or a transparent colour)


def read_header(data: bytes) -> Header:
    fmt = sniff(data[:32])
    if fmt == "heif" and not _heif_ready():
        raise DecodeError("HEIC/HEIF image but pillow-heif is not installed")
    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1) if fmt in ("jpeg", "tiff", "webp") else 1
            alpha = im.mode in _ALPHA_MODES or "transparency" in im.info
    except UnidentifiedImageError:
        if fmt:  # the magic says what it should be, but the header is broken
            raise DecodeError(f"corrupt {fmt.upper()} header") from None
        raise DecodeError(f"not a decodable image ({describe(data[:16])})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DecodeError(f"corrupt image header: {exc}") from None
    if orientation in (5, 6, 7, 8):  # 90° rotations swap the axes
        width, height = height, width
    return Header(fmt or "unknown", width, height, alpha)


def reduction(width: int, height: int, min_long_side: int) -> int:
    """The largest DCT scale (1, 2, 4, 8) whose result still covers min_long_side."""
    long_side = max(width, height)
    for factor in (8, 4, 2):
        if -(-long_side // factor) >= min_long_side:  # libjpeg rounds up
            return factor
    return 1


def decode_image(
    data: bytes,
    *,
    min_long_side: int,
    reduced: bool = True,
    max_pixels: int = 200_000_000,
    name: str | None = None,
) -> DecodedImage:
    """`name` (the file's name or path) helps tell a TIFF-based RAW whose content
    does not say it is one; what the bytes hold decides everything else."""
    if not data:
        raise DecodeError("zero-byte file")
    raw = raw_format(data[:RAW_HEAD], name)
    if raw is not None:
        return _decode_raw(data, raw, min_long_side, reduced, max_pixels)
    header = read_header(data)
    pixels = header.width * header.height
    if pixels > max_pixels:
        raise DecodeError(
            f"image is {header.width}x{header.height} = {pixels:,} pixels, above "
            f"decode.max_pixels ({max_pixels:,}); refused as a possible decompression bomb"
        )
    if header.format == "jpeg":
        check_complete_jpeg(data)
    factor = reduction(header.width, header.height, min_long_side) if reduced else 1
    if header.alpha:
        image = _decode_transparent(data, header)
    elif header.format in _CV2_FORMATS:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED_FLAGS[factor])
        if image is None:
            raise DecodeError(f"corrupt or truncated {header.format.upper()} data")
    else:
        image = _decode_with_pillow(data, header)
    return DecodedImage(image, header.width, header.height, header.format)


def _decode_raw(
    data: bytes, fmt: str, min_long_side: int, reduced: bool, max_pixels: int
) -> DecodedImage:
    """A camera RAW, from its preview or a half-size decode (tagd.media.raw). Not
    reduced: at least half the sensor's resolution."""
    try:
        decoded = decode_raw(
            data, min_long_side=min_long_side, max_pixels=max_pixels, at_least_half=not reduced
        )
    except RawError as exc:
        raise DecodeError(f"{fmt.upper()}: {exc}") from None
    except OverflowError as exc:
        width, height = exc.args
        raise DecodeError(
            f"RAW image is {width}x{height} = {width * height:,} pixels, above "
            f"decode.max_pixels ({max_pixels:,}); refused as a possible decompression bomb"
        ) from None
    return DecodedImage(decoded.image, decoded.width, decoded.height, fmt)


def _decode_with_pillow(data: bytes, header: Header) -> np.ndarray:
    if header.format == "heif" and not _heif_ready():
        raise DecodeError("HEIC/HEIF image but pillow-heif is not installed")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.seek(0)  # animated GIF/WebP: the first frame stands for the file
            upright = ImageOps.exif_transpose(im.convert("RGB"))
            rgb = np.asarray(upright)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"corrupt or truncated {header.format.upper()} data: {exc}") from None
    return np.ascontiguousarray(rgb[:, :, ::-1])


def _decode_transparent(data: bytes, header: Header) -> np.ndarray:
    """An image with transparent parts, laid on the plain background that shows it.

    Decoders drop the alpha channel and keep whatever colour the transparent
    pixels hold, most often black: a black logo or caption on a transparent
    PNG turns into black on black, invisible to every model. So the visible
    pixels go over white when they are mostly dark and over black when they are
    mostly light: text and shapes keep their contrast, colours stay as drawn."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.seek(0)
            rgba = np.asarray(ImageOps.exif_transpose(im.convert("RGBA")))
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise DecodeError(f"corrupt or truncated {header.format.upper()} data: {exc}") from None
    alpha = rgba[:, :, 3:].astype(np.uint16)
    # Whether the visible pixels are mostly dark: Rec. 601 luma, each pixel counted
    # by its opacity, on a sample of rows (the decision needs no more).
    rows = rgba[:: max(1, rgba.shape[0] // 256)].astype(np.float32)
    weight = float(rows[:, :, 3].sum())
    luma = rows[:, :, :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    dark = weight > 0 and float((luma * rows[:, :, 3]).sum()) / weight < 128
    background = 255 if dark else 0
    # In 16-bit integers (rounded): a large PNG must not need float copies of itself.
    out = rgba[:, :, :3] * alpha + background * (255 - alpha) + 127
    out //= 255
    return np.ascontiguousarray(out.astype(np.uint8)[:, :, ::-1])


def check_complete_jpeg(data: bytes) -> None:
    """Raise unless the JPEG's marker chain reaches EOI.

    libjpeg pads a truncated file with grey and only warns; walking the marker
    chain (never the entropy data byte by byte) catches that in microseconds,
    and tolerates data appended after EOI (motion photos).
    """
    pos, n = 2, len(data)
    while pos + 2 <= n:
        if data[pos] != 0xFF:
            raise DecodeError("corrupt JPEG: broken marker chain")
        marker = data[pos + 1]
        if marker == 0xD9:
            return
        if marker == 0xFF or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            pos += 1 if marker == 0xFF else 2
            continue
        if pos + 4 > n:
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        pos += 2 + length
        if marker == 0xDA:  # start of scan: skip entropy-coded data to the next marker
            found = _MARKER.search(data, pos)
            if found is None:
                break
            pos = found.start()
    raise DecodeError("truncated JPEG (no end-of-image marker)")
