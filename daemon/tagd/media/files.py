"""Opening a media file for reading without ever hanging on it."""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO


class NotRegularFile(OSError):
    """The path names a FIFO, a device or a folder, not a file to read."""

    def __init__(self) -> None:
        super().__init__(errno.EINVAL, "not a regular file")


@contextmanager
def open_regular(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """The file, opened for reading. O_NONBLOCK and the regular-file check: a file
    swapped for a FIFO (or a device) since it was indexed must not hang a scan or
    a request."""
    with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise NotRegularFile()
        yield fh
