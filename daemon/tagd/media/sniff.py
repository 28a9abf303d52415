"""What a file really holds, from its first bytes, whatever its extension says."""

from __future__ import annotations

# (offset, magic, format); checked in order.
_SIGNATURES: list[tuple[int, bytes, str]] = [
    (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"),
    (0, b"GIF87a", "gif"),
    (0, b"GIF89a", "gif"),
    (0, b"II*\x00", "tiff"),
    (0, b"MM\x00*", "tiff"),
    (0, b"BM", "bmp"),
    (0, b"\x1a\x45\xdf\xa3", "matroska"),  # mkv and webm
]
# Camera RAW formats with a magic of their own, with their usual extension
# (TIFF-based ones sniff as "tiff"; tagd.media.raw tells them apart by content).
RAW_SIGNATURES: list[tuple[int, bytes, str]] = [
    (0, b"IIRO", "orf"),
    (0, b"IIRS", "orf"),
    (0, b"MMOR", "orf"),
    (0, b"IIU\x00", "rw2"),
    (0, b"FUJIFILMCCD-RAW", "raf"),
    (0, b"II\x1a\x00\x00\x00HEAPCCDR", "crw"),
    (0, b"\x00MRM", "mrw"),
    (0, b"FOVb", "x3f"),
    (4, b"ftypcrx ", "cr3"),
]
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1", b"avif"}

# Camera RAW extensions (the walker's default), lower case, without the dot.
RAW_EXTENSIONS = (
    "3fr", "arw", "cr2", "cr3", "crw", "dng", "erf", "iiq", "kdc", "mos", "mrw",
    "nef", "nrw", "orf", "pef", "raf", "rw2", "rwl", "sr2", "srf", "srw", "x3f",
)  # fmt: skip
IMAGE_FORMATS = {"jpeg", "png", "gif", "tiff", "bmp", "webp", "heif", "raw"}
VIDEO_FORMATS = {"matroska", "mp4", "avi"}


def sniff(head: bytes) -> str | None:
    """A format name for the first bytes of a file, or None when unknown."""
    for offset, magic, _ in RAW_SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return "raw"
    for offset, magic, name in _SIGNATURES:
        if head[offset : offset + len(magic)] == magic:
            return name
    if head[:4] == b"RIFF":
        return {b"WEBP": "webp", b"AVI ": "avi"}.get(head[8:12])
    if head[4:8] == b"ftyp":
        return "heif" if head[8:12] in _HEIF_BRANDS else "mp4"
    return None


def kind_of_format(fmt: str | None) -> str | None:
    if fmt in IMAGE_FORMATS:
        return "image"
    if fmt in VIDEO_FORMATS:
        return "video"
    return None


def describe(head: bytes) -> str:
    """A short human description of unknown content, for error messages."""
    if not head:
        return "empty"
    sample = head[:16]
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in sample)
    if printable == len(sample):
        return f"text starting {sample.decode('ascii', 'replace')!r}"
    return f"unknown bytes {sample[:8].hex(' ')}"
