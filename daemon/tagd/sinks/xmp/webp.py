"""XMP in WebP: the ``XMP `` RIFF chunk, replaced in place or added.

Only the extended format (a ``VP8X`` chunk first) may carry XMP, and its VP8X
flags must say so.  A simple file (one ``VP8 `` or ``VP8L`` chunk) therefore gets a
VP8X chunk in front, with the canvas size read from the bitstream; an extended
file gets the XMP flag set in its VP8X.  The RIFF size is recomputed; every other
chunk, pad bytes included, stays byte for byte, and so do bytes after the RIFF
data.
"""

from __future__ import annotations

from dataclasses import dataclass

from tagd.sinks.xmp.container import Container, ContainerError, Part, same_parts

__all__ = ["WEBP"]

_XMP, _VP8X, _VP8, _VP8L = b"XMP ", b"VP8X", b"VP8 ", b"VP8L"
_XMP_FLAG, _ALPHA_FLAG = 0x04, 0x10
_MAX_SIZE = 2**32 - 2  # a RIFF size is 32 bits and chunks are padded to even sizes
# The chunks the extended format orders before XMP; anything else may follow it.
_BEFORE_XMP = frozenset({_VP8X, b"ICCP", b"ANIM", b"ANMF", b"ALPH", _VP8, _VP8L, b"EXIF"})


@dataclass(frozen=True)
class _Chunk:
    fourcc: bytes
    start: int
    size: int  # of its payload

    @property
    def name(self) -> str:
        return self.fourcc.decode("latin-1").strip()

    @property
    def end(self) -> int:  # after its pad byte
        return self.start + 8 + self.size + (self.size & 1)

    def payload(self, data: bytes) -> bytes:
        return data[self.start + 8 : self.start + 8 + self.size]


def _read(data: bytes) -> bytes | None:
    chunk = _xmp_chunk(_chunks(data)[0])
    return None if chunk is None else chunk.payload(data)


def _write(data: bytes, packet: bytes) -> bytes:
    chunks, end = _chunks(data)
    raw = [data[chunk.start : chunk.end] for chunk in chunks]
    xmp = _XMP + len(packet).to_bytes(4, "little") + packet + b"\x00" * (len(packet) & 1)
    old = _xmp_chunk(chunks)
    if old is not None:
        raw[chunks.index(old)] = xmp
    else:
        last = max(i for i, chunk in enumerate(chunks) if chunk.fourcc in _BEFORE_XMP)
        raw.insert(last + 1, xmp)
    if chunks[0].fourcc == _VP8X:
        raw[0] = _vp8x_with_xmp(data, chunks)
    else:
        raw.insert(0, _vp8x_with_xmp(data, chunks))
    body = b"WEBP" + b"".join(raw)
    if len(body) > _MAX_SIZE:
        raise ContainerError(f"the XMP packet is {len(packet):,} bytes, too large for a WebP")
    return b"RIFF" + len(body).to_bytes(4, "little") + body + data[end:]


def _check(original: bytes, written: bytes) -> None:
    before, before_end = _chunks(original)
    after, after_end = _chunks(written)
    if _xmp_chunk(after) is None:
        raise ContainerError("the written file has no XMP chunk")
    vp8x = _vp8x_with_xmp(original, before)
    if after[0].fourcc != _VP8X or written[after[0].start : after[0].end] != vp8x:
        raise ContainerError(
            "the written file's VP8X chunk is not the original's plus the XMP flag"
        )
    same_parts("chunk", _parts(original, before, before_end), _parts(written, after, after_end))


WEBP = Container(_read, _write, _check)


# --- structure ------------------------------------------------------------------------


def _chunks(data: bytes) -> tuple[list[_Chunk], int]:
    """The chunks inside the RIFF data, and where that data ends."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise ContainerError("not a WebP: it does not start with a RIFF WEBP header")
    end = 8 + int.from_bytes(data[4:8], "little")
    if end > len(data):
        raise ContainerError(
            f"truncated WebP: its RIFF header announces {end:,} bytes, the file has {len(data):,}"
        )
    chunks: list[_Chunk] = []
    pos = 12
    while pos < end:
        if pos + 8 > end:
            raise ContainerError(f"damaged WebP: a chunk header at byte {pos} is cut short")
        chunk = _Chunk(data[pos : pos + 4], pos, int.from_bytes(data[pos + 4 : pos + 8], "little"))
        if chunk.end > end:
            raise ContainerError(
                f"truncated WebP: the {chunk.name} chunk at byte {pos} runs past the RIFF data"
            )
        chunks.append(chunk)
        pos = chunk.end
    _check_layout(chunks)
    return chunks, end


def _check_layout(chunks: list[_Chunk]) -> None:
    if not chunks or chunks[0].fourcc not in (_VP8X, _VP8, _VP8L):
        first = chunks[0].name if chunks else "none"
        raise ContainerError(f"damaged WebP: its first chunk is {first}, not VP8X, VP8 or VP8L")
    if chunks[0].fourcc == _VP8X and chunks[0].size < 10:
        raise ContainerError("damaged WebP: its VP8X chunk is cut short")
    others = [c.name for c in chunks[1:] if c.fourcc != _XMP]
    if chunks[0].fourcc != _VP8X and others:
        # Without VP8X these chunks are not part of the format; guessing flags could
        # change how readers show the image.
        raise ContainerError(
            f"unusual WebP: a simple {chunks[0].name} file with more chunks ({', '.join(others)})"
        )


def _xmp_chunk(chunks: list[_Chunk]) -> _Chunk | None:
    found = [chunk for chunk in chunks if chunk.fourcc == _XMP]
    if len(found) > 1:
        raise ContainerError(
            f"the WebP holds {len(found)} XMP chunks (at bytes "
            f"{', '.join(str(c.start) for c in found)}); tagd cannot tell which one counts"
        )
    return found[0] if found else None


def _vp8x_with_xmp(data: bytes, chunks: list[_Chunk]) -> bytes:
    """The VP8X chunk the file has once it holds XMP."""
    first = chunks[0]
    if first.fourcc == _VP8X:
        raw = data[first.start : first.end]
        return raw[:8] + bytes([raw[8] | _XMP_FLAG]) + raw[9:]
    width, height, alpha = _canvas(first.payload(data), first.name)
    flags = _XMP_FLAG | (_ALPHA_FLAG if alpha else 0)
    payload = bytes([flags, 0, 0, 0])
    payload += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return _VP8X + len(payload).to_bytes(4, "little") + payload


def _canvas(bitstream: bytes, name: str) -> tuple[int, int, bool]:
    """Width, height and whether alpha is used, from a VP8 or VP8L bitstream header."""
    if name == "VP8":
        # A key frame: frame tag (bit 0 clear), start code, then 14-bit sizes.
        if len(bitstream) < 10 or bitstream[0] & 1 or bitstream[3:6] != b"\x9d\x01\x2a":
            raise ContainerError("damaged WebP: the VP8 bitstream has no key frame header")
        width = int.from_bytes(bitstream[6:8], "little") & 0x3FFF
        height = int.from_bytes(bitstream[8:10], "little") & 0x3FFF
        if not width or not height:
            raise ContainerError(f"damaged WebP: the VP8 bitstream says {width}x{height} pixels")
        return width, height, False
    # Signature 0x2f, then width-1 and height-1 (14 bits each), alpha (1), version (3).
    if len(bitstream) < 5 or bitstream[0] != 0x2F:
        raise ContainerError("damaged WebP: the VP8L bitstream has no header")
    bits = int.from_bytes(bitstream[1:5], "little")
    if bits >> 29:
        raise ContainerError(f"unusual WebP: VP8L version {bits >> 29}")
    return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, bool(bits >> 28 & 1)


def _parts(data: bytes, chunks: list[_Chunk], end: int) -> list[Part]:
    parts = [
        Part(chunk.name, data[chunk.start : chunk.end])
        for chunk in chunks
        if chunk.fourcc not in (_XMP, _VP8X)
    ]
    parts.append(Part("bytes after the RIFF data", data[end:]))
    return parts
