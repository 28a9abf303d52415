"""XMP in PNG: the ``iTXt`` chunk with keyword ``XML:com.adobe.xmp``, replaced in
place or inserted before the first IDAT; every other chunk stays byte for byte.

Every chunk's CRC is checked on the way: a file that fails one is damaged, and
tagd does not write into damaged files.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from tagd.sinks.xmp.container import Container, ContainerError, Part, same_parts

__all__ = ["PNG"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_KEYWORD = b"XML:com.adobe.xmp\x00"
_MAX_LENGTH = 2**31 - 1  # the PNG specification's limit for one chunk


@dataclass(frozen=True)
class _Chunk:
    type: bytes
    start: int
    end: int  # after its CRC

    @property
    def name(self) -> str:
        return self.type.decode("ascii")

    def payload(self, data: bytes) -> bytes:
        return data[self.start + 8 : self.end - 4]


def _read(data: bytes) -> bytes | None:
    chunks, _ = _chunks(data)
    chunk = _xmp_chunk(data, chunks)
    if chunk is None:
        return None
    fields = chunk.payload(data)[len(_KEYWORD) :]
    # compression flag, compression method, language tag\0, translated keyword\0, text
    parts = fields[2:].split(b"\x00", 2)
    if len(fields) < 2 or len(parts) != 3:
        raise ContainerError(f"damaged PNG: the XMP chunk at byte {chunk.start} is cut short")
    if fields[0] == 0:
        return parts[2]
    try:
        return zlib.decompress(parts[2])
    except zlib.error as exc:
        raise ContainerError(
            f"damaged PNG: the XMP chunk at byte {chunk.start} does not decompress ({exc})"
        ) from exc


def _write(data: bytes, packet: bytes) -> bytes:
    chunks, _ = _chunks(data)
    # Uncompressed, no language: what exiftool and Adobe write, and what every reader reads.
    body = b"iTXt" + _KEYWORD + b"\x00\x00\x00\x00" + packet
    if len(body) - 4 > _MAX_LENGTH:
        raise ContainerError(f"the XMP packet is {len(packet):,} bytes, too large for a PNG")
    chunk = (len(body) - 4).to_bytes(4, "big") + body + zlib.crc32(body).to_bytes(4, "big")
    old = _xmp_chunk(data, chunks)
    if old is not None:
        return data[: old.start] + chunk + data[old.end :]
    at = next(c.start for c in chunks if c.type == b"IDAT")
    return data[:at] + chunk + data[at:]


def _check(original: bytes, written: bytes) -> None:
    chunks, end = _chunks(written)
    if _xmp_chunk(written, chunks) is None:
        raise ContainerError("the written file has no XMP chunk")
    same_parts("chunk", _parts(original, *_chunks(original)), _parts(written, chunks, end))


PNG = Container(_read, _write, _check)


# --- structure ------------------------------------------------------------------------


def _chunks(data: bytes) -> tuple[list[_Chunk], int]:
    """The chunks from IHDR to IEND, and where IEND ends."""
    if not data.startswith(_SIGNATURE):
        raise ContainerError("not a PNG: it does not start with the PNG signature")
    chunks: list[_Chunk] = []
    pos = len(_SIGNATURE)
    while not chunks or chunks[-1].type != b"IEND":
        chunks.append(_chunk_at(data, pos))
        pos = chunks[-1].end
    if chunks[0].type != b"IHDR" or not any(c.type == b"IDAT" for c in chunks):
        raise ContainerError("damaged PNG: it lacks an IHDR chunk first or any IDAT chunk")
    return chunks, pos


def _chunk_at(data: bytes, pos: int) -> _Chunk:
    if pos + 12 > len(data):
        raise ContainerError("truncated PNG: it ends before its IEND chunk")
    length = int.from_bytes(data[pos : pos + 4], "big")
    chunk = _Chunk(data[pos + 4 : pos + 8], pos, pos + 12 + length)
    if length > _MAX_LENGTH or not chunk.type.isalpha():
        raise ContainerError(f"damaged PNG: no valid chunk header at byte {pos}")
    if chunk.end > len(data):
        raise ContainerError(
            f"truncated PNG: the {chunk.name} chunk at byte {pos} runs past the end"
        )
    crc = int.from_bytes(data[chunk.end - 4 : chunk.end], "big")
    if zlib.crc32(data[pos + 4 : chunk.end - 4]) != crc:
        raise ContainerError(f"damaged PNG: the {chunk.name} chunk at byte {pos} fails its CRC")
    return chunk


def _is_xmp(data: bytes, chunk: _Chunk) -> bool:
    return chunk.type == b"iTXt" and data.startswith(_KEYWORD, chunk.start + 8, chunk.end)


def _xmp_chunk(data: bytes, chunks: list[_Chunk]) -> _Chunk | None:
    found = [chunk for chunk in chunks if _is_xmp(data, chunk)]
    if len(found) > 1:
        raise ContainerError(
            f"the PNG holds {len(found)} XMP chunks (at bytes "
            f"{', '.join(str(c.start) for c in found)}); tagd cannot tell which one counts"
        )
    return found[0] if found else None


def _parts(data: bytes, chunks: list[_Chunk], end: int) -> list[Part]:
    parts = [Part(c.name, data[c.start : c.end]) for c in chunks if not _is_xmp(data, c)]
    parts.append(Part("bytes after IEND", data[end:]))
    return parts
