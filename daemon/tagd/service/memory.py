"""Give memory back after models are unloaded, and measure it."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

import psutil

log = logging.getLogger(__name__)

_libc: ctypes.CDLL | None = None


def _malloc_trim() -> bool:
    """glibc keeps freed heap pages; malloc_trim(0) returns what it can to the OS."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(_libc.malloc_trim(0))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return False


# mallopt(3) parameters
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


def tune_malloc(mmap_threshold: int = 512 * 1024, arenas: int = 2) -> bool:
    """Make glibc give big buffers back to the system as soon as they are freed.

    Decoded photos (a 12 MP frame is 36 MB) and model tensors are large; by
    default glibc raises its mmap threshold after the first such buffer is
    freed and serves the next ones from the heap, which then stays as big as
    the largest batch ever was. A fixed threshold keeps large buffers in their
    own mappings (unmapped on free), and fewer arenas keep the decode threads
    from each growing a heap of their own. Call before threads start.
    """
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = _libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1
        return _libc.mallopt(M_ARENA_MAX, arenas) == 1 and ok
    except (OSError, AttributeError):  # not glibc
        return False


def release_memory() -> None:
    gc.collect()
    _malloc_trim()


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20
