"""Where tagd keeps its state (catalog, caches) and finds its models, and how
it shows a path to a person."""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from tagd.config import Settings

# In a checkout (daemon/tagd/paths.py), the folder beside it that offline machines
# fill with weights and eval media; `tagd models fetch` looks there by default.
SHARED_BESIDE_CHECKOUT = Path(__file__).resolve().parents[3] / "shared"

# The error handler of tagd's stdout and stderr (see escape_streams).
ESCAPE = "tagd-escape"


def state_dir(settings: Settings) -> Path:
    """TAGD_STATE_DIR, then the config, then systemd's StateDirectory=, then XDG."""
    env = os.environ.get("TAGD_STATE_DIR")
    if env:
        return Path(env)
    if settings.daemon.state_dir:
        return Path(settings.daemon.state_dir)
    # systemd sets STATE_DIRECTORY when the unit has StateDirectory=tagd.
    systemd = os.environ.get("STATE_DIRECTORY")
    if systemd:
        return Path(systemd.split(":")[0])
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg) / "tagd"


def models_dir(settings: Settings) -> Path:
    """runtime.models_dir, then TAGD_MODELS_DIR, then <state dir>/models (writable
    under the systemd unit, unlike the installed package)."""
    if settings.runtime.models_dir:
        return Path(settings.runtime.models_dir)
    env = os.environ.get("TAGD_MODELS_DIR")
    if env:
        return Path(env)
    return state_dir(settings) / "models"


def within(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> bool:
    """Whether `path` is `root` or lies below it, compared as written (resolve both
    first where links matter): /srv is not /srvother."""
    inner, outer = Path(os.path.normpath(path)), Path(os.path.normpath(root))
    return inner == outer or outer in inner.parents


def root_of(path: str | os.PathLike[str], roots: Sequence[str]) -> str | None:
    """The deepest of `roots` that holds `path` (absolute, as written), or None."""
    real = os.path.abspath(path)
    inside = [os.path.abspath(r) for r in roots if within(real, os.path.abspath(r))]
    return max(inside, key=len) if inside else None


def shown(text: str | os.PathLike[str]) -> str:
    """A path (or a message quoting one) as people read it and UTF-8 text can carry it.

    Linux file names are bytes; Python gives a name that is not UTF-8 (a Latin-1
    b"caf\\xe9.jpg") as a str with lone surrogates, which no UTF-8 file, JSON
    reader or terminal takes. Those bytes are written as \\xNN (caf\\xe9.jpg), the
    way `ls -b` shows them; every other character stays as it is.
    """
    text = os.fspath(text)
    try:
        raw = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate no file name gives: escape it whole
        raw = text.encode("utf-8", "backslashreplace")
    return raw.decode("utf-8", "backslashreplace")


def _escape(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: a byte of a non-UTF-8 file name as \\xNN (as `shown`
    writes it), any other character the stream's encoding lacks as \\uNNNN."""
    if not isinstance(exc, UnicodeEncodeError):
        raise exc
    out = []
    for char in exc.object[exc.start : exc.end]:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape's stand-in for byte code - 0xDC00
            out.append(f"\\x{code - 0xDC00:02x}")
        else:
            out.append(char.encode("ascii", "backslashreplace").decode("ascii"))
    return "".join(out), exc.end


def escape_streams() -> None:
    """Make stdout and stderr write file names that are not UTF-8 escaped, as
    `shown` does, instead of failing the command (and every log line) on them."""
    codecs.register_error(ESCAPE, _escape)
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors=ESCAPE)


def library_roots(settings: Settings, extra: Sequence[str] = ()) -> list[str]:
    """Where tagd may write: library.roots, the local side of the Stash path mappings
    (files Stash lists are scanned there) and `extra` (paths given to `tagd scan`)."""
    mapped = [m.local for m in settings.stash.path_mappings] if settings.stash.enabled else []
    return [*settings.library.roots, *mapped, *extra]
