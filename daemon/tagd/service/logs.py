"""Logging to stderr in a form journald understands.

Under systemd, stderr is a stream to journald and $JOURNAL_STREAM holds its
"device:inode". journald reads a "<N>" prefix on each line as the syslog
priority (sd-daemon(3)), so `journalctl -p warning` filters by tagd's levels,
and it adds its own timestamps. Elsewhere (a terminal, a pipe) lines read
"LEVEL name: message", with the time for `tagd run`.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import TextIO

# logging level -> syslog priority
PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class JournalFormatter(logging.Formatter):
    """Every line (tracebacks too) starts with the record's "<priority>"."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines())


def priority(levelno: int) -> int:
    for level in sorted(PRIORITY, reverse=True):
        if levelno >= level:
            return PRIORITY[level]
    return 7


def stream_is_journal(stream: TextIO) -> bool:
    """True when `stream` is the journald stream systemd connected us to."""
    value = os.environ.get("JOURNAL_STREAM", "")
    dev, _, ino = value.partition(":")
    try:
        st = os.fstat(stream.fileno())
        return dev.isdigit() and ino.isdigit() and (st.st_dev, st.st_ino) == (int(dev), int(ino))
    except (OSError, ValueError, AttributeError):
        return False


def configure(level: str, *, timestamps: bool = False, stream: TextIO | None = None) -> None:
    """Send tagd's log records to stderr at `level` ("debug" ... "error")."""
    stream = stream or sys.stderr
    handler = logging.StreamHandler(stream)
    if stream_is_journal(stream):
        handler.setFormatter(JournalFormatter())
    else:
        fmt = "%(levelname)s %(name)s: %(message)s"
        if timestamps:
            fmt = "%(asctime)s " + fmt
        handler.setFormatter(logging.Formatter(fmt, "%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_tagd", False)]:
        root.removeHandler(old)
    handler._tagd = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    set_level(level)


def set_level(level: str) -> None:
    """tagd's own loggers at `level`; libraries (onnxruntime's quantizer logs
    every tensor at INFO on the root logger) only from WARNING up, unless debugging."""
    value = getattr(logging, level.upper())
    logging.getLogger().setLevel(logging.DEBUG if value <= logging.DEBUG else logging.WARNING)
    for name in ("tagd", "tagd_export"):
        logging.getLogger(name).setLevel(value)
