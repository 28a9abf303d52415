"""File access confined to the library: no write follows a link out of its roots.

tagd often runs as root (a NAS container, `sudo tagd scan`) over folders that
other users own.  A link planted by one of them (``a.jpg.xmp -> /etc/x``, a photo
or a folder linked to a root-only place) must not make tagd create, modify or
hand over a file outside the library.  So every sidecar write:

1. resolves the path it would write (links inside the library are followed, as
   a person linking sidecars would expect) and refuses it unless the result
   lies inside one of the library roots;
2. walks from that root to the folder one component at a time with
   ``O_NOFOLLOW``, so a folder swapped for a link between the check and the
   write is caught, and then works on the folder's descriptor only (``openat``,
   ``renameat``): no later step looks a path up again;
3. opens existing files with ``O_NOFOLLOW | O_NONBLOCK`` and accepts only
   regular files (a FIFO would hang the daemon), and creates new ones with
   ``O_CREAT | O_EXCL | O_NOFOLLOW``;
4. gives a new file to the photo's owner only where that owner also owns the
   folder; elsewhere the folder's owner gets it, so nobody receives a file in a
   place they could not have created it themselves.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tagd.paths import within

__all__ = [
    "Folder",
    "OutsideLibrary",
    "anchors_for",
    "confined_target",
    "new_file_owner",
    "resolve",
]

# Sidecars are small; anything bigger than this is not one (and must not fill memory).
MAX_READ = 64 * 1024 * 1024

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW


class OutsideLibrary(Exception):
    """The path leads out of the library roots, or changed under us; nothing was written."""


def anchors_for(media: Path, roots: Sequence[str | os.PathLike[str]] | None) -> list[Path]:
    """The real folders writes may land in: the library roots (a root that is a file
    stands for its folder), or, with none given, the media file's own folder."""
    given = [Path(r) for r in roots] if roots else [Path(media).parent]
    anchors = []
    for root in given:
        real = Path(os.path.realpath(root))
        anchors.append(real.parent if real.is_file() else real)
    return anchors


def resolve(path: Path, anchors: Sequence[Path]) -> tuple[Path, Path]:
    """(the anchor, the real path) of `path`, or OutsideLibrary when it resolves
    outside every anchor."""
    real = Path(os.path.realpath(path))
    # The longest anchor wins, so a nested root walks the fewest components.
    for anchor in sorted(anchors, key=lambda a: len(a.parts), reverse=True):
        if within(real.parent, anchor):
            return anchor, real
    where = ", ".join(str(a) for a in anchors)
    via = f" (through a symbolic link, to {real})" if real != Path(path).absolute() else ""
    raise OutsideLibrary(f"{path} leads outside the library roots{via}; allowed: {where}")


@dataclass
class Folder:
    """An open folder inside the library; names are looked up relative to it only."""

    fd: int
    path: Path  # for messages and for callers that must name files

    def stat(self) -> os.stat_result:
        return os.fstat(self.fd)

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def read(self, name: str, limit: int = MAX_READ) -> bytes | None:
        """The content of regular file `name`, None when there is none; a link, a
        FIFO, a device or a folder under that name is refused."""
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(name, flags, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise OutsideLibrary(f"{self.path / name} became a symbolic link") from exc
            raise
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise OutsideLibrary(f"{self.path / name} is not a regular file")
            if st.st_size > limit:
                raise OutsideLibrary(f"{self.path / name} is too large ({st.st_size} bytes)")
            return fh.read(limit + 1)[:limit]

    def create(self, name: str, mode: int = 0o666) -> int:
        """A new file's descriptor; fails if anything at all has that name."""
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        return os.open(name, flags, mode, dir_fd=self.fd)

    def unlink(self, name: str) -> None:
        os.unlink(name, dir_fd=self.fd)

    def replace(self, src: str, dst: str) -> None:
        # rename(2) replaces the name `dst`, never the file a link there points at.
        os.replace(src, dst, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def fsync(self) -> None:
        # Makes a rename durable; some filesystems refuse fsync on directories.
        with contextlib.suppress(OSError):
            os.fsync(self.fd)


@contextlib.contextmanager
def confined_target(path: Path, anchors: Sequence[Path]) -> Iterator[tuple[Folder, str]]:
    """The folder and file name to work on for `path`: links are resolved, the
    result must be inside `anchors`, and the folder is opened without following
    any link from its anchor down, so nothing can redirect the work later."""
    anchor, real = resolve(path, anchors)
    fd = _walk(anchor, real.parent.relative_to(anchor).parts, path)
    try:
        folder = Folder(fd, real.parent)
        st = folder.lstat(real.name)
        if st is not None and stat.S_ISLNK(st.st_mode):
            # realpath() resolved every link a moment ago: one appeared since.
            raise OutsideLibrary(f"{path} was replaced by a symbolic link while tagd wrote it")
        yield folder, real.name
    finally:
        os.close(fd)


def _walk(anchor: Path, parts: Sequence[str], label: Path) -> int:
    fd = os.open(anchor, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts:
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                # O_NOFOLLOW met a link, or a file stands where a folder was.
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise OutsideLibrary(
                        f"a folder on the way to {label} changed into a link while tagd wrote"
                    ) from exc
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def new_file_owner(media: os.stat_result | None, folder: os.stat_result) -> tuple[int, int]:
    """(uid, gid) for a file tagd creates next to a photo.

    The photo's owner and group where the folder is theirs as well (the usual
    case: a daemon running as root leaves files the photo's owner can edit);
    otherwise the folder's, which could have created such a file anyway.
    """
    if media is None:
        return folder.st_uid, folder.st_gid
    uid = media.st_uid if media.st_uid == folder.st_uid else folder.st_uid
    gid = media.st_gid if media.st_gid == folder.st_gid else folder.st_gid
    return uid, gid
