"""XMP in JPEG: the standard XMP APP1 segment is replaced or inserted, nothing else.

A JPEG is SOI, header segments (APPn, COM, DQT, SOF, DHT, ...), then from the
first SOS the scans (entropy-coded data, and the tables between progressive
scans) up to EOI, and sometimes more bytes after EOI (MPF images, vendor
trailers).  Header segments are taken one by one; the scans are one opaque
part, walked only to find EOI (a file without one is truncated).  Extended
XMP segments (``http://ns.adobe.com/xmp/extension/``) are other segments here:
they stay as they are, and a packet too large for the standard segment is
refused rather than split.
"""

from __future__ import annotations

from dataclasses import dataclass

from tagd.sinks.xmp.container import Container, ContainerError, Part, same_parts

__all__ = ["JPEG", "MAX_PACKET"]

_SIGNATURE = b"http://ns.adobe.com/xap/1.0/\x00"
# Photos from some sharing sites carry this damaged form (same length); exiftool and
# Exiv2 read it as the XMP segment, so it is one here too, and a write replaces it
# with the standard form rather than adding a second XMP segment.
_MANGLED = b"XMP\x00://ns.adobe.com/xap/1.0/\x00"
# The XMP specification's limit for the packet in the standard segment.
MAX_PACKET = 65502

_APP0, _APP1, _SOI, _EOI, _SOS = 0xE0, 0xE1, 0xD8, 0xD9, 0xDA
# Markers that have no length field: TEM and RST0-7 (and SOI/EOI).
_STANDALONE = frozenset({0x01, _SOI, _EOI, *range(0xD0, 0xD8)})
_NAMES = {0xC4: "DHT", 0xCC: "DAC", 0xDB: "DQT", 0xDD: "DRI", 0xFE: "COM", _EOI: "EOI"}


@dataclass(frozen=True)
class _Segment:
    marker: int
    start: int  # its first 0xFF, fill bytes included
    body: int  # its payload, after the length field
    end: int

    @property
    def name(self) -> str:
        if 0xE0 <= self.marker <= 0xEF:
            return f"APP{self.marker - 0xE0}"
        if 0xC0 <= self.marker <= 0xCF and self.marker not in _NAMES:
            return f"SOF{self.marker - 0xC0}"
        return _NAMES.get(self.marker, f"marker 0x{self.marker:02X}")


@dataclass(frozen=True)
class _Layout:
    segments: tuple[_Segment, ...]  # between SOI and the first SOS
    scans: int  # where the first SOS starts
    end: int  # just after EOI


def _read(data: bytes) -> bytes | None:
    segment = _xmp_segment(data, _layout(data))
    if segment is None:
        return None
    return data[segment.body + len(_SIGNATURE) : segment.end]


def _write(data: bytes, packet: bytes) -> bytes:
    if len(packet) > MAX_PACKET:
        raise ContainerError(
            f"the XMP packet is {len(packet):,} bytes and a JPEG's XMP segment holds at most "
            f"{MAX_PACKET:,} (tagd does not write Extended XMP); take jpeg out of xmp.embed "
            "to get a sidecar instead"
        )
    layout = _layout(data)
    body = _SIGNATURE + packet
    segment = b"\xff\xe1" + (len(body) + 2).to_bytes(2, "big") + body
    old = _xmp_segment(data, layout)
    if old is not None:
        return data[: old.start] + segment + data[old.end :]
    at = _insert_at(data, layout)
    return data[:at] + segment + data[at:]


def _check(original: bytes, written: bytes) -> None:
    before, after = _layout(original), _layout(written)
    if _xmp_segment(written, after) is None:
        raise ContainerError("the written file has no XMP segment")
    same_parts("segment", _parts(original, before), _parts(written, after))


JPEG = Container(_read, _write, _check)


# --- structure ------------------------------------------------------------------------


def _layout(data: bytes) -> _Layout:
    if not data.startswith(b"\xff\xd8"):
        raise ContainerError("not a JPEG: it does not start with the SOI marker")
    segments: list[_Segment] = []
    pos = 2
    while True:
        segment = _segment_at(data, pos)
        if segment.marker == _SOS:
            return _Layout(tuple(segments), segment.start, _end_of_image(data, segment.end))
        if segment.marker in (_SOI, _EOI):
            raise ContainerError(
                f"damaged JPEG: {segment.name} at byte {segment.start}, before any image data"
            )
        segments.append(segment)
        pos = segment.end


def _segment_at(data: bytes, pos: int) -> _Segment:
    start = pos
    if pos >= len(data):
        raise ContainerError("truncated JPEG: it ends before its image data")
    if data[pos] != 0xFF:
        raise ContainerError(f"damaged JPEG: no segment marker at byte {pos}")
    while pos < len(data) and data[pos] == 0xFF:  # fill bytes may precede a marker
        pos += 1
    if pos + 1 > len(data):
        raise ContainerError("truncated JPEG: it ends inside a segment marker")
    marker = data[pos]
    pos += 1
    if marker == 0:
        raise ContainerError(f"damaged JPEG: no segment marker at byte {start}")
    if marker in _STANDALONE:
        return _Segment(marker, start, pos, pos)
    length = int.from_bytes(data[pos : pos + 2], "big")
    segment = _Segment(marker, start, pos + 2, pos + length)
    if pos + 2 > len(data) or segment.end > len(data):
        raise ContainerError(
            f"truncated JPEG: the {segment.name} segment at byte {start} runs past the end"
        )
    if length < 2:
        raise ContainerError(
            f"damaged JPEG: the {segment.name} segment at byte {start} has length {length}"
        )
    return segment


def _end_of_image(data: bytes, pos: int) -> int:
    """Just after EOI, walking scans and the tables between them from `pos`."""
    while True:
        segment = _segment_at(data, _next_marker(data, pos))
        if segment.marker == _EOI:
            return segment.end
        pos = segment.end


def _next_marker(data: bytes, pos: int) -> int:
    # In entropy-coded data 0xFF is followed by 0x00 (a stuffed byte) or RSTn.
    while True:
        pos = data.find(b"\xff", pos)
        if pos < 0 or pos + 1 >= len(data):
            raise ContainerError("truncated JPEG: the image data has no EOI marker")
        following = data[pos + 1]
        if following == 0xFF:
            pos += 1
        elif following == 0 or 0xD0 <= following <= 0xD7:
            pos += 2
        else:
            return pos


def _is_xmp(data: bytes, segment: _Segment) -> bool:
    return segment.marker == _APP1 and data.startswith(
        (_SIGNATURE, _MANGLED), segment.body, segment.end
    )


def _xmp_segment(data: bytes, layout: _Layout) -> _Segment | None:
    found = [segment for segment in layout.segments if _is_xmp(data, segment)]
    if len(found) > 1:
        raise ContainerError(
            f"the JPEG holds {len(found)} XMP segments (at bytes "
            f"{', '.join(str(s.start) for s in found)}); tagd cannot tell which one counts"
        )
    return found[0] if found else None


def _insert_at(data: bytes, layout: _Layout) -> int:
    # Readers expect JFIF and Exif first and XMP right after them.  After Exif, also
    # when a COM or other segment precedes it: Exif then stays where it was.
    exif = [s for s in layout.segments if _is_exif(data, s)]
    if exif:
        return exif[0].end
    for segment in layout.segments:
        if segment.marker != _APP0:
            return segment.start
    return layout.scans


def _is_exif(data: bytes, segment: _Segment) -> bool:
    return segment.marker == _APP1 and data.startswith(b"Exif\x00", segment.body, segment.end)


def _parts(data: bytes, layout: _Layout) -> list[Part]:
    parts = [
        Part(segment.name, data[segment.start : segment.end])
        for segment in layout.segments
        if not _is_xmp(data, segment)
    ]
    parts.append(Part("image data", data[layout.scans : layout.end]))
    parts.append(Part("bytes after EOI", data[layout.end :]))
    return parts
