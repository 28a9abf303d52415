"""One tagd per state directory: an exclusive flock on STATE/tagd.lock.

`tagd run` holds it for its lifetime and `tagd scan` while it scans, so two
writers never analyse the same files or write the same sidecars. The kernel
drops the lock when the process ends, however it ends (even kill -9), so a
stale lock file is impossible; its content (pid and command) is only there to
say who holds it.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tagd.catalog.connect import DiskFullError, disk_full

LOCK_NAME = "tagd.lock"


class InstanceLockError(RuntimeError):
    """Another tagd holds the state directory."""


def lock_path(state_dir: Path) -> Path:
    return state_dir / LOCK_NAME


class InstanceLock:
    def __init__(self, state_dir: Path, what: str) -> None:
        self.path = lock_path(state_dir)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise _full_or(exc, self.path) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise InstanceLockError(_busy_message(self.path, holder, self.what)) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {self.what}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)  # also drops the lock: this process cannot work here
            raise _full_or(exc, self.path) from None
        self._fd = fd

    def note(self, line: str) -> None:
        """Add a `key=value` line for others to read (the control socket's path)."""
        if self._fd is not None:
            end = os.fstat(self._fd).st_size
            try:
                os.pwrite(self._fd, f"{line}\n".encode("utf-8", "surrogateescape"), end)
            except OSError as exc:
                raise _full_or(exc, self.path) from None

    def release(self) -> None:
        if self._fd is not None:
            # Closing drops the flock; the file stays (removing it would race
            # with a process that just opened it).
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> InstanceLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def instance_lock(state_dir: Path, what: str) -> Iterator[InstanceLock]:
    with InstanceLock(state_dir, what) as lock:
        yield lock


def holder(state_dir: Path) -> tuple[int, str] | None:
    """(pid, command) of the process holding the lock, or None when it is free."""
    text = _held_text(state_dir)
    if text is None:
        return None
    pid, _, what = text.partition("\n")[0].partition(" ")
    return (int(pid) if pid.isdigit() else 0, what.strip() or "tagd")


def holder_notes(state_dir: Path) -> dict[str, str]:
    """The `key=value` lines the lock's holder added (empty when the lock is free)."""
    lines = (_held_text(state_dir) or "").splitlines()[1:]
    return dict(line.partition("=")[::2] for line in lines if "=" in line)


def _held_text(state_dir: Path) -> str | None:
    """The lock file's text while someone holds the lock, else None."""
    try:
        fd = os.open(lock_path(state_dir), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read(fd: int) -> str:
    try:
        # surrogateescape: a socket path noted from a state dir whose name is not
        # UTF-8 must read back as the same path.
        return os.pread(fd, 4096, 0).decode("utf-8", "surrogateescape").strip()
    except OSError:
        return ""


def _full_or(exc: OSError, path: Path) -> OSError | DiskFullError:
    """A full disk as the one clear error tagd gives for it (naming the state
    directory); any other failure as it was."""
    return DiskFullError(path.parent) if disk_full(exc) else exc


def _busy_message(path: Path, holder_text: str, what: str) -> str:
    pid, _, cmd = holder_text.partition("\n")[0].partition(" ")
    who = f"{cmd.strip() or 'tagd'} (pid {pid})" if pid.isdigit() else "another tagd"
    hint = (
        "the daemon scans library.roots itself (on its schedule, and within seconds of a "
        "change when watching); to scan now: `tagd scan` without a PATH (asks the daemon), "
        f"`systemctl kill -s USR1 tagd` or `kill -USR1 {pid}`"
        if "run" in cmd
        else "wait for it to finish"
    )
    return f"{who} already uses the state directory {path.parent} ({path} is locked); " + (
        f"{what} would compete with it. {hint[0].upper()}{hint[1:]}"
    )
