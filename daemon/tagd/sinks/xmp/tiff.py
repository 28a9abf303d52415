"""XMP in classic TIFF: tag 700 of IFD0, pointed at a packet appended to the file.

Nothing in the file moves.  The new packet goes at the end (word-aligned); an
existing XMP entry gets the new count and offset, and an IFD0 without one is
copied to the end with the entry inserted in tag order, the header then
pointing at the copy.  So only those 8 (or 4) bytes of the original change; the
old packet or IFD0 stays behind as unused bytes, because other tags or tools
may point into them.  BigTIFF and IFDs tagd cannot fully account for are
refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from tagd.sinks.xmp.container import Container, ContainerError

__all__ = ["TIFF"]

_XMP_TAG = 700
_BYTE, _UNDEFINED = 1, 7
# Bytes per value of the classic TIFF field types (TIFF 6.0 and the IFD type).
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_SHORT, _LONG = 3, 4
# (offsets, byte counts) of the image data: strips or tiles.
_IMAGE_DATA = ((273, 279), (324, 325))
_MAX_OFFSET = 2**32 - 1


@dataclass(frozen=True)
class _Entry:
    at: int  # where its 12 bytes are
    tag: int
    type: int
    count: int
    value: int  # the value field read as an offset (a value itself when it fits)

    @property
    def size(self) -> int:
        return _TYPE_SIZES[self.type] * self.count

    @property
    def data_at(self) -> int:  # where the value's bytes are
        return self.at + 8 if self.size <= 4 else self.value


@dataclass(frozen=True)
class _Ifd:
    order: str  # "little" or "big", as int.from_bytes wants it
    at: int
    entries: tuple[_Entry, ...]

    @property
    def end(self) -> int:  # after the next-IFD offset
        return self.at + 2 + 12 * len(self.entries) + 4

    def xmp(self) -> _Entry | None:
        return next((e for e in self.entries if e.tag == _XMP_TAG), None)


def _read(data: bytes) -> bytes | None:
    entry = _ifd0(data).xmp()
    return None if entry is None else data[entry.data_at : entry.data_at + entry.size]


def _write(data: bytes, packet: bytes) -> bytes:
    ifd = _ifd0(data)
    if len(packet) <= 4:  # would have to be stored in the entry itself
        raise ContainerError(f"the XMP packet is only {len(packet)} bytes")
    out = bytearray(data)
    at = _append(out, packet)
    entry = ifd.xmp()
    if entry is not None:
        out[entry.at + 4 : entry.at + 12] = _u32(len(packet), ifd) + _u32(at, ifd)
    else:
        out[4:8] = _u32(_append(out, _ifd_with_xmp(data, ifd, at, len(packet))), ifd)
    if len(out) > _MAX_OFFSET:
        raise ContainerError("the file would grow past the 4 GiB a classic TIFF can address")
    return bytes(out)


def _check(original: bytes, written: bytes) -> None:
    before, after = _ifd0(original), _ifd0(written)
    if written[:4] != original[:4]:
        raise ContainerError("the written file's TIFF header differs")
    entry = after.xmp()
    if entry is None or entry.data_at < len(original):
        raise ContainerError("the written file's XMP is not appended after the original bytes")
    if _others(original, before) != _others(written, after):
        raise ContainerError("the written file's IFD0 entries other than XMP differ")
    if after.at == before.at:
        old = before.xmp()
        changed = [] if old is None else [(old.at + 4, old.at + 12)]
    elif after.at >= len(original):
        changed = [(4, 8)]
    else:
        raise ContainerError("the written file's IFD0 moved inside the original bytes")
    _same_bytes(original, written, changed)


TIFF = Container(_read, _write, _check)


# --- structure ------------------------------------------------------------------------


def _ifd0(data: bytes) -> _Ifd:
    order = _byte_order(data)
    at = int.from_bytes(data[4:8], order)
    if at < 8 or at + 2 > len(data):
        raise ContainerError(f"truncated TIFF: IFD0 at byte {at:,} is not inside the file")
    count = int.from_bytes(data[at : at + 2], order)
    if count == 0 or at + 2 + 12 * count + 4 > len(data):
        raise ContainerError(
            f"truncated TIFF: IFD0 at byte {at:,} with {count} entries is cut short"
        )
    entries = tuple(_entry(data, order, at + 2 + 12 * i) for i in range(count))
    ifd = _Ifd(order, at, entries)
    _check_entries(data, ifd)
    return ifd


def _byte_order(data: bytes) -> str:
    if data[:4] in (b"II+\x00", b"MM\x00+"):
        raise ContainerError("BigTIFF files are not supported for embedded XMP; use a sidecar")
    if data[:4] == b"II*\x00" and len(data) >= 8:
        return "little"
    if data[:4] == b"MM\x00*" and len(data) >= 8:
        return "big"
    raise ContainerError("not a classic TIFF: it does not start with a TIFF header")


def _entry(data: bytes, order: str, at: int) -> _Entry:
    def field(start: int, size: int) -> int:
        return int.from_bytes(data[at + start : at + start + size], order)

    return _Entry(at, field(0, 2), field(2, 2), field(4, 4), field(8, 4))


def _check_entries(data: bytes, ifd: _Ifd) -> None:
    for entry in ifd.entries:
        if entry.type not in _TYPE_SIZES:
            raise ContainerError(
                f"unusual TIFF: IFD0 tag {entry.tag} has field type {entry.type}, "
                "which classic TIFF does not define"
            )
        if entry.data_at + entry.size > len(data):
            raise ContainerError(f"truncated TIFF: the value of IFD0 tag {entry.tag} is cut off")
    xmp = [entry for entry in ifd.entries if entry.tag == _XMP_TAG]
    if len(xmp) > 1:
        raise ContainerError(f"unusual TIFF: IFD0 holds {len(xmp)} XMP entries (tag 700)")
    if xmp and xmp[0].type not in (_BYTE, _UNDEFINED):
        raise ContainerError(
            f"unusual TIFF: the XMP entry (tag 700) has field type {xmp[0].type}, "
            "not BYTE or UNDEFINED"
        )
    for offsets, counts in _IMAGE_DATA:
        starts, sizes = _numbers(data, ifd, offsets), _numbers(data, ifd, counts)
        if len(starts) != len(sizes):
            raise ContainerError(f"damaged TIFF: tags {offsets} and {counts} do not match")
        if any(start + size > len(data) for start, size in zip(starts, sizes, strict=True)):
            raise ContainerError("truncated TIFF: its image data runs past the end of the file")


def _numbers(data: bytes, ifd: _Ifd, tag: int) -> list[int]:
    entry = next((e for e in ifd.entries if e.tag == tag), None)
    if entry is None:
        return []
    if entry.type not in (_SHORT, _LONG):
        raise ContainerError(f"unusual TIFF: IFD0 tag {tag} has field type {entry.type}")
    width = _TYPE_SIZES[entry.type]
    raw = data[entry.data_at : entry.data_at + entry.size]
    return [int.from_bytes(raw[i : i + width], ifd.order) for i in range(0, len(raw), width)]


# --- writing --------------------------------------------------------------------------


def _u32(value: int, ifd: _Ifd) -> bytes:
    return value.to_bytes(4, ifd.order)


def _append(out: bytearray, data: bytes) -> int:
    """Append `data` at the next word boundary (TIFF offsets should be even); its offset."""
    if len(out) % 2:
        out.append(0)
    out += data
    return len(out) - len(data)


def _ifd_with_xmp(data: bytes, ifd: _Ifd, at: int, size: int) -> bytes:
    """A copy of IFD0 with an XMP entry (BYTE, `size` bytes at `at`) in tag order."""
    raws = [data[entry.at : entry.at + 12] for entry in ifd.entries]
    index = next((i for i, e in enumerate(ifd.entries) if e.tag > _XMP_TAG), len(raws))
    entry = (
        _XMP_TAG.to_bytes(2, ifd.order)
        + _BYTE.to_bytes(2, ifd.order)
        + _u32(size, ifd)
        + _u32(at, ifd)
    )
    raws.insert(index, entry)
    next_ifd = data[ifd.end - 4 : ifd.end]
    return len(raws).to_bytes(2, ifd.order) + b"".join(raws) + next_ifd


# --- checking -------------------------------------------------------------------------


def _others(data: bytes, ifd: _Ifd) -> list[bytes]:
    """IFD0's entries other than XMP, raw, and its next-IFD offset."""
    raws = [data[e.at : e.at + 12] for e in ifd.entries if e.tag != _XMP_TAG]
    return [*raws, data[ifd.end - 4 : ifd.end]]


def _same_bytes(original: bytes, written: bytes, changed: list[tuple[int, int]]) -> None:
    """Raise unless `written` starts with `original`, but for the `changed` ranges."""
    if len(written) < len(original):
        raise ContainerError("the written file is shorter than the original")
    pos = 0
    for start, end in [*sorted(changed), (len(original), len(original))]:
        if written[pos:start] != original[pos:start]:
            first = next(i for i in range(pos, start) if written[i] != original[i])
            raise ContainerError(f"the written file differs from the original at byte {first:,}")
        pos = end
