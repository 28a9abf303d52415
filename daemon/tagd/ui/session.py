"""Signing in to the web pages with an API key.

A browser cannot send `Authorization: Bearer` on a link or an <img>, so once a
key is checked the pages set a cookie instead: the key's sha256 (never the
key) and an HMAC of it under a secret kept in the state dir (mode 0600). It is
HttpOnly and SameSite=Strict; the key it names must still be in
`[api] api_keys`, so removing a key from the config signs its browsers out.
Without keys, clients on tagd's machine need no sign-in, as for the API.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

COOKIE = "tagd_session"
MAX_AGE = 30 * 24 * 3600  # seconds a sign-in lasts


def secret(state_dir: Path) -> bytes:
    """The signing secret, made once (0600, written exclusively) and kept."""
    path = state_dir / "ui-secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        pass
    state_dir.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    tmp = path.with_name(f".ui-secret.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value.hex())
    os.replace(tmp, path)
    return value


def sign(key: bytes, key_sha256: str) -> str:
    mac = hmac.new(key, key_sha256.encode(), hashlib.sha256).hexdigest()
    return f"{key_sha256}.{mac}"


def verify(key: bytes, cookie: str | None) -> str | None:
    """The key sha256 the cookie names when its signature holds, else None."""
    if not cookie or "." not in cookie:
        return None
    digest, _, mac = cookie.partition(".")
    expected = hmac.new(key, digest.encode(), hashlib.sha256).hexdigest()
    return digest if hmac.compare_digest(mac.encode(), expected.encode()) else None
