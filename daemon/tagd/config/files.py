"""Finding the config file and reading it safely."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tagd.config.errors import ConfigError

# A config file is a few KB; anything far larger is not one (a log, an image).
MAX_CONFIG_BYTES = 1 << 20

_FILE_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a named pipe"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """--config beats TAGD_CONFIG beats the usual places; None means defaults."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("TAGD_CONFIG")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    for candidate in (Path(xdg) / "tagd" / "config.toml", Path("/etc/tagd/config.toml")):
        # exists(), not is_file(): a pipe or folder there is reported, not skipped.
        if candidate.exists():
            return candidate
    return None


def read_config(file: Path) -> bytes:
    """The bytes of a regular file of at most MAX_CONFIG_BYTES.

    O_NONBLOCK: opening a named pipe for reading would otherwise wait for a
    writer forever (and /dev/zero never ends), so `tagd config check` or a
    SIGHUP reload would hang instead of saying what is wrong.
    """
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "something else")
            raise ConfigError(
                f"{file}: the config file is {kind}, not a regular file: "
                "give the path of a TOML file"
            )
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{file}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a tagd config file"
        )
    return data
