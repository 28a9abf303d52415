"""Camera RAW files: told apart by their content, read through LibRaw (rawpy).

Most RAW formats (NEF, ARW, DNG, PEF, SRW, CR2...) are TIFF files underneath,
so the TIFF magic alone says nothing: a RAW is recognised by Canon's CR2
marker, a DNGVersion tag, or a first directory that is a reduced-size preview
with the sensor data in sub-directories (what camera makers do and ordinary
TIFFs do not). The others have magics of their own (ORF, RW2, RAF, CR3...).

Decoding takes the camera's embedded JPEG preview when it is at least as
large as the models need (about 10 ms), else a LibRaw half-size decode (about
0.2 s for 10-20 MP). Both come out upright: LibRaw's `flip` is applied to the
preview, which cameras store unrotated.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass
from pathlib import PurePath

import cv2
import numpy as np
from PIL import Image

from tagd.media.sniff import RAW_EXTENSIONS, RAW_SIGNATURES

# The Make of a TIFF-based RAW -> its usual extension (for uploads and messages).
_MAKES = {
    b"NIKON": "nef",
    b"SONY": "arw",
    b"PENTAX": "pef",
    b"RICOH": "pef",
    b"SAMSUNG": "srw",
    b"HASSELBLAD": "3fr",
    b"PHASE ONE": "iiq",
    b"LEAF": "mos",
    b"KODAK": "kdc",
    b"EASTMAN KODAK": "kdc",
    b"SEIKO EPSON": "erf",
}
# Bytes read to tell a RAW from a TIFF: the first directory sits near the start.
HEAD = 65536

_NEW_SUBFILE_TYPE, _MAKE, _SUB_IFDS, _DNG_VERSION = 0x00FE, 0x010F, 0x014A, 0xC612


class RawError(Exception):
    """A RAW file LibRaw cannot read; the message says why."""


def raw_format(head: bytes, name: str | None = None) -> str | None:
    """The RAW format of a file from its first bytes (HEAD of them to recognise
    TIFF-based ones by content), as an extension ("nef", "dng"), or None.

    `name` only decides for a TIFF-based file whose first directory does not tell
    (some cameras keep the full image there): then a RAW extension makes it RAW."""
    for offset, magic, fmt in RAW_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return fmt
    if head[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    if head[8:10] == b"CR":
        return "cr2"
    tags = _first_directory(head)
    ext = PurePath(name).suffix.lower().lstrip(".") if name else ""
    if _DNG_VERSION in tags:
        return "dng"
    preview_first = tags.get(_NEW_SUBFILE_TYPE, (0, 0, 0))[2] == 1 and _SUB_IFDS in tags
    if preview_first or ext in RAW_EXTENSIONS:
        make = _make(head, tags)
        return next((e for m, e in _MAKES.items() if make.upper().startswith(m)), ext or "dng")
    return None


Directory = dict[int, tuple[int, int, int]]


def _first_directory(head: bytes) -> Directory:
    """Tag -> (type, count, value or offset) of a TIFF's first directory, as far
    as `head` holds it; {} when it is not there."""
    order = "<" if head[:2] == b"II" else ">"
    tags = {}
    try:
        (offset,) = struct.unpack_from(order + "I", head, 4)
        (count,) = struct.unpack_from(order + "H", head, offset)
        for i in range(min(count, 512)):
            tag, kind, n, value = struct.unpack_from(order + "HHII", head, offset + 2 + 12 * i)
            if kind == 3 and n == 1 and order == ">":  # a SHORT fills the first two bytes
                value >>= 16
            elif kind == 3 and n == 1:
                value &= 0xFFFF
            tags[tag] = (kind, n, value)
    except struct.error:
        pass  # what was read before the end of `head` still tells
    return tags


def _make(head: bytes, tags: Directory) -> bytes:
    """The Make tag's text (b"" when absent or beyond `head`)."""
    if _MAKE not in tags:
        return b""
    _, n, value = tags[_MAKE]
    text = head[value : value + n] if n > 4 else struct.pack("<I", value)[:n]
    return text.split(b"\x00", 1)[0].strip()


@dataclass(frozen=True)
class RawImage:
    image: np.ndarray  # BGR uint8, upright
    width: int  # upright size of the sensor's visible area
    height: int


def decode_raw(
    data: bytes, *, min_long_side: int, max_pixels: int, at_least_half: bool = False
) -> RawImage:
    """The RAW upright, from its preview when that covers min_long_side (and, with
    `at_least_half`, half the sensor's long side), else demosaiced at half size.
    RawError when LibRaw cannot read it; OverflowError (with the size) above
    max_pixels."""
    import rawpy

    raw = _open(data)
    with raw:
        width, height = upright_size(raw)
        if width * height > max_pixels:
            raise OverflowError(width, height)
        if at_least_half:
            min_long_side = max(min_long_side, max(width, height) // 2)
        flip = raw.sizes.flip
        preview = _preview(raw, min_long_side, flip, landscape=width >= height)
        if preview is not None:
            return RawImage(preview, width, height)
        try:
            rgb = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8)
            ends_early = _ends_early(raw.raw_image)
        except (rawpy.LibRawError, MemoryError, ValueError) as exc:
            raise RawError(f"corrupt or truncated RAW data: {_reason(exc)}") from None
        if ends_early:
            raise RawError("truncated RAW data: the sensor data ends early")
    return RawImage(np.ascontiguousarray(rgb[:, :, ::-1]), width, height)


def _ends_early(sensor: np.ndarray) -> bool:
    """LibRaw fills the rows a truncated file lacks with zeros, and says nothing.
    A sensor never reads exactly 0 over whole rows (its black level is above),
    so the last 2 % of rows all zero is a file that stops short."""
    tail = sensor[-max(1, sensor.shape[0] // 50) :]
    return bool(tail.size) and not tail.any()


def _open(data: bytes):  # type: ignore[no-untyped-def]
    import rawpy

    try:
        return rawpy.imread(io.BytesIO(data))
    except (rawpy.LibRawError, ValueError) as exc:
        raise RawError(f"not a RAW file LibRaw reads: {_reason(exc)}") from None


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def upright_size(raw) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """The upright (width, height) of an open RAW (LibRaw's flip applied)."""
    sizes = raw.sizes
    if sizes.flip in (5, 6):  # a quarter turn swaps the axes
        return sizes.height, sizes.width
    return sizes.width, sizes.height


def _preview(raw, min_long_side: int, flip: int, landscape: bool) -> np.ndarray | None:  # type: ignore[no-untyped-def]
    """The embedded preview, upright, when it covers min_long_side; else None."""
    import rawpy

    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawError, ValueError):
        return None  # no preview, or one LibRaw cannot hand out: decode the RAW
    if thumb.format == rawpy.ThumbFormat.JPEG:
        image = _jpeg(bytes(thumb.data), min_long_side)
    else:
        image = np.ascontiguousarray(np.asarray(thumb.data)[:, :, ::-1])
    if image is None or max(image.shape[:2]) < min_long_side:
        return None
    return _upright(image, flip, landscape)


def _jpeg(data: bytes, min_long_side: int) -> np.ndarray | None:
    """The preview JPEG at the smallest DCT scale that covers min_long_side, its
    own EXIF orientation ignored (the RAW's is applied after); None when it is
    damaged or cut short (libjpeg would pad it with grey and say nothing)."""
    from tagd.media.image import REDUCED_FLAGS, DecodeError, check_complete_jpeg, reduction

    try:
        check_complete_jpeg(data)
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
    except (OSError, SyntaxError, ValueError, DecodeError):
        return None
    flags = REDUCED_FLAGS[reduction(width, height, min_long_side)]
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags | cv2.IMREAD_IGNORE_ORIENTATION)


def _upright(image: np.ndarray, flip: int, landscape: bool) -> np.ndarray:
    """LibRaw's flip (3: half turn, 5: quarter turn left, 6: quarter turn right)
    applied to an unrotated preview; one already upright is left as it is."""
    if flip == 3:
        return cv2.rotate(image, cv2.ROTATE_180)
    if flip in (5, 6):
        h, w = image.shape[:2]
        if (w >= h) == landscape and w != h:
            return image  # the camera stored it upright
        turn = cv2.ROTATE_90_COUNTERCLOCKWISE if flip == 5 else cv2.ROTATE_90_CLOCKWISE
        return cv2.rotate(image, turn)
    return image
