"""Embedded XMP: tagd's keywords written into JPEG, TIFF, PNG and WebP files.

Opt-in per format (``xmp.embed``).  The packet is planned by
:func:`tagd.sinks.xmp.sidecar.plan_packet`, so ownership and merge rules are exactly those
of sidecars; only the container differs.  When a file's format is embedded, tagd
writes into the file *instead of* a sidecar and leaves an existing sidecar as it
is (digiKam and Lightroom read both; tagd never deletes what it cannot prove is
only its own).

Rewriting a photo is riskier than rewriting a sidecar, so every write follows a
protocol that leaves either the old or the new file at the path, whenever the
process dies:

1. read the original bytes and hash its decoded pixels;
2. write a backup ``.NAME.tagd-backup`` next to it (complete before it gets that
   name, fsynced);
3. build the new bytes into ``.NAME.tagd-tmp``, fsync: only the bytes that hold
   the XMP change (:mod:`tagd.sinks.xmp.container` and one module per format);
4. verify the temp file: it parses as the same format, every other segment or
   chunk is byte-identical and in the same order, tagd's XMP reads back, pixels
   hash the same;
5. copy the original's times onto it (``preserve_mtime``), ``os.replace``, fsync
   the folder;
6. remove the backup.

:func:`recover` runs before every write: leftover temp files go; a leftover
backup is dropped when the file's pixels equal it, otherwise restored.

Test hook: the environment variable ``TAGD_TEST_KILL_AFTER_STEP=N`` makes the
process SIGKILL itself right after step N (tests only; read nowhere else).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from tagd.media.raw import HEAD as RAW_HEAD
from tagd.media.raw import raw_format
from tagd.media.sniff import sniff
from tagd.sinks.confined import OutsideLibrary, anchors_for, resolve
from tagd.sinks.xmp.container import Container, ContainerError
from tagd.sinks.xmp.jpeg import JPEG
from tagd.sinks.xmp.png import PNG
from tagd.sinks.xmp.sidecar import (
    FaceRegion,
    PacketUpdate,
    XmpChange,
    XmpWriteError,
    _cause,
    _copy_metadata,
    _fsync_dir,
    plan_packet,
    refuse_read_only,
)
from tagd.sinks.xmp.tiff import TIFF
from tagd.sinks.xmp.webp import WEBP

__all__ = ["EMBED_FORMATS", "KILL_ENV", "embedded_format", "recover", "sync_embedded"]

# By sniffed format: the code that finds and replaces the XMP in that container.
_CONTAINERS: dict[str, Container] = {"jpeg": JPEG, "tiff": TIFF, "png": PNG, "webp": WEBP}
EMBED_FORMATS = frozenset(_CONTAINERS)
KILL_ENV = "TAGD_TEST_KILL_AFTER_STEP"

# Enough for every signature media.sniff knows (WebP's is at offset 8).
_HEAD = 16


def embedded_format(media: Path, formats: Sequence[str]) -> str | None:
    """The sniffed format of `media` when it is one of `formats` (else None, also for
    files that cannot be read: the caller then writes a sidecar as before)."""
    if not formats:
        return None
    try:
        with open(media, "rb") as fh:
            head = fh.read(RAW_HEAD)
    except OSError:
        return None
    if raw_format(head, str(media)):
        return None  # most RAWs are TIFFs: never rewritten, their XMP is a sidecar
    fmt = sniff(head[:_HEAD])
    return fmt if fmt in EMBED_FORMATS and fmt in formats else None


def sync_embedded(
    media: Path,
    tags: Sequence[str],
    *,
    root: str = "AI",
    dry_run: bool = False,
    faces: Sequence[FaceRegion] | None = None,
    dims: tuple[int, int] | None = None,
    preserve_mtime: bool = True,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    rating: int | None = None,
) -> XmpChange:
    """Make the XMP inside `media` hold exactly `tags` (and `faces`) as tagd's part,
    like :func:`tagd.sinks.xmp.sidecar.sync_sidecar` does for a sidecar.

    A photo that resolves outside `roots` (the library roots; None: its own folder),
    a link to a file elsewhere, is refused: tagd never rewrites a file there."""
    label = Path(media)
    # Write the file a symlink points at, not the link; leftovers sit next to it.
    path = _confined(label, roots)
    if not dry_run:
        recover(path)
    original = _read(path, label)
    fmt = sniff(original[:_HEAD])
    if raw_format(original[:RAW_HEAD], str(label)):
        raise XmpWriteError(f"cannot embed XMP in {label}: a camera RAW is never rewritten")
    if fmt not in _CONTAINERS:
        raise XmpWriteError(f"cannot embed XMP in {label}: unsupported format {fmt}")
    container = _CONTAINERS[fmt]
    packet = _packet(label, container, original)
    update = plan_packet(label, packet, tags, root=root, faces=faces, dims=dims, rating=rating)
    if update.data is None or dry_run:
        return update.change
    # The file itself, and its folder (the temp file and backup are created there).
    refuse_read_only(f"cannot embed XMP in {label}", [("folder", path.parent), ("file", path)])
    try:
        _embed(path, label, container, original, update, preserve_mtime)
    except OSError as exc:
        raise XmpWriteError(f"cannot embed XMP in {label}: {_cause(exc)}") from exc
    return update.change


def _confined(media: Path, roots: Sequence[str | os.PathLike[str]] | None) -> Path:
    """The real file behind `media`, when it lies inside the library."""
    try:
        return resolve(media, anchors_for(media, roots))[1]
    except OutsideLibrary as exc:
        raise XmpWriteError(f"refusing to embed XMP: {exc}") from exc


def recover(media: Path) -> None:
    """Finish what a killed write left: the file ends as the old or the new version,
    with no temp or backup beside it."""
    path = Path(os.path.realpath(media))
    tmp, part, backup = _temp_path(path), _part_path(path), _backup_path(path)
    try:
        # A temp or half-written backup never replaced anything; the file is intact.
        for leftover in (tmp, part):
            leftover.unlink(missing_ok=True)
        if not backup.exists():
            return
        saved = _pixel_hash(backup.read_bytes())
        if saved is None:
            # The backup only gets its name once complete, so this is not ours to fix.
            raise XmpWriteError(f"cannot recover {media}: backup {backup} does not decode")
        if _current_hash(path) == saved:
            backup.unlink()  # Crash before or after the replace: either file is good.
        else:
            os.replace(backup, path)  # The file is damaged or gone: the backup wins.
        _fsync_dir(path.parent)
    except OSError as exc:
        raise XmpWriteError(f"cannot recover {media}: {_cause(exc)}") from exc


# --- the protocol ---------------------------------------------------------------------


def _embed(
    path: Path,
    label: Path,
    container: Container,
    original: bytes,
    update: PacketUpdate,
    preserve_mtime: bool,
) -> None:
    assert update.data is not None
    ref = os.stat(path)
    pixels = _pixel_hash(original)
    if pixels is None:
        raise XmpWriteError(f"cannot embed XMP in {label}: the image does not decode")
    _step(1)
    backup = _backup_path(path)
    _write_synced(_part_path(path), original, ref)
    os.replace(_part_path(path), backup)
    _fsync_dir(path.parent)
    _step(2)
    tmp = _temp_path(path)
    try:
        _write_synced(tmp, _with_packet(label, container, original, update.data), ref)
        _step(3)
        _verify(label, container, tmp.read_bytes(), original, pixels, update)  # what is on disk
        _step(4)
        if preserve_mtime:
            os.utime(tmp, ns=(ref.st_atime_ns, ref.st_mtime_ns))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        # The original was never touched: drop both copies.
        with contextlib.suppress(OSError):
            tmp.unlink()
        with contextlib.suppress(OSError):
            backup.unlink()
        raise
    _step(5)
    backup.unlink()
    _fsync_dir(path.parent)


def _with_packet(label: Path, container: Container, original: bytes, packet: bytes) -> bytes:
    try:
        return container.write(original, packet)
    except ContainerError as exc:
        raise XmpWriteError(f"cannot embed XMP in {label}: {exc}") from exc


def _verify(
    label: Path,
    container: Container,
    data: bytes,
    original: bytes,
    pixels: str,
    update: PacketUpdate,
) -> None:
    if sniff(data[:_HEAD]) != sniff(original[:_HEAD]):
        raise XmpWriteError(f"verification of {label} failed: the file format changed")
    try:
        container.check(original, data)
        packet = container.read(data)
    except ContainerError as exc:
        raise XmpWriteError(f"verification of {label} failed: {exc}") from exc
    if packet is None:
        raise XmpWriteError(f"verification of {label} failed: no XMP in the written file")
    update.verify(packet)
    if _pixel_hash(data) != pixels:
        raise XmpWriteError(f"verification of {label} failed: the pixels changed")


# --- helpers --------------------------------------------------------------------------


def _step(done: int) -> None:
    # Test hook (see module docstring): die like a power cut would, without cleanup.
    if os.environ.get(KILL_ENV) == str(done):
        os.kill(os.getpid(), signal.SIGKILL)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tagd-tmp")


def _part_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tagd-backup.part")


def _backup_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tagd-backup")


def _read(path: Path, label: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise XmpWriteError(f"cannot read {label}: {_cause(exc)}") from exc


def _packet(label: Path, container: Container, data: bytes) -> bytes | None:
    """The file's XMP packet, or None when it has none."""
    try:
        packet = container.read(data)
    except ContainerError as exc:
        raise XmpWriteError(f"cannot embed XMP in {label}: {exc}") from exc
    # Only padding is no packet: tagd then plans a new one.
    return packet if packet is not None and packet.strip() else None


def _pixel_hash(data: bytes) -> str | None:
    """sha256 of the decoded pixels (with shape and type), or None if they do not decode.

    IMREAD_UNCHANGED: no EXIF rotation, alpha and bit depth kept, so metadata edits
    cannot hide a pixel change and cannot fake one."""
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        return None
    digest = hashlib.sha256(f"{pixels.shape}{pixels.dtype}".encode())
    digest.update(np.ascontiguousarray(pixels).tobytes())
    return digest.hexdigest()


def _current_hash(path: Path) -> str | None:
    try:
        return _pixel_hash(path.read_bytes())
    except FileNotFoundError:
        return None


def _write_synced(dest: Path, data: bytes, ref: os.stat_result) -> None:
    # O_EXCL: recover() removed our leftovers, so an existing file is someone else's.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(dest, flags, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            # Owner and mode of the photo, so root does not leave files its owner can't edit.
            _copy_metadata(fh.fileno(), ref, keep_mode=True)
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            dest.unlink()
        raise
