"""Who may call the API: keys from `[api] api_keys`, stored as sha256 hashes.

With no key configured only clients on this machine get in (as admin: they
could run `tagd` themselves); `tagd serve` refuses a non-loopback address then.
With keys, every request sends `Authorization: Bearer <key>`, whichever client.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tagd.api.listen import is_loopback
from tagd.api.problems import Problem
from tagd.config import ApiKey, ApiRole
from tagd.ui.session import COOKIE, verify

# What each role may do, by rank: a route needing "read" takes an admin key too.
RANK: dict[str, int] = {"read": 0, "admin": 1}
# auto_error off: a missing header becomes tagd's 401 problem, not FastAPI's 403.
bearer = HTTPBearer(auto_error=False, description="A key made by `tagd api-key new`")


@dataclass(frozen=True)
class Caller:
    role: ApiRole
    name: str  # the key's name, "" for an unnamed key, "local" without keys


def new_key() -> str:
    return secrets.token_urlsafe(32)


def key_sha256(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def match_key(keys: Sequence[ApiKey], presented: str) -> ApiKey | None:
    """The configured key whose hash is the presented key's, if any.

    Every stored hash is compared, in constant time, with no early exit: how long
    the answer takes says neither which key matched nor how far the search got.
    """
    digest = key_sha256(presented).encode()
    found = None
    for key in keys:
        same = hmac.compare_digest(digest, key.sha256.lower().encode())
        if same and found is None:
            found = key
    return found


def key_by_sha256(keys: Sequence[ApiKey], digest: str) -> ApiKey | None:
    """The configured key with this sha256 (a signed-in browser's), in constant time."""
    found = None
    for key in keys:
        same = hmac.compare_digest(digest.lower().encode(), key.sha256.lower().encode())
        if same and found is None:
            found = key
    return found


def authorize(
    keys: Sequence[ApiKey],
    token: str | None,
    client_host: str | None,
    needed: ApiRole,
    session: str | None = None,
) -> Caller:
    """The caller, or the Problem (401, 403) to answer. `session`: the key sha256
    a signed-in browser's cookie names (tagd.ui.session), when no token is sent."""
    challenge = {"WWW-Authenticate": "Bearer"}
    if not keys:
        if client_host is not None and is_loopback(client_host):
            return Caller("admin", "local")
        raise Problem(
            401,
            "unauthorized",
            "no API key is configured, so only clients on tagd's own machine may connect; "
            "add one with `tagd api-key new` to [api] api_keys",
            headers=challenge,
        )
    if not token and session:
        key = key_by_sha256(keys, session)
        if key is None:
            raise Problem(401, "unauthorized", "this sign-in's key was removed from [api] api_keys")
        return _allowed(key, needed)
    if not token:
        raise Problem(
            401,
            "unauthorized",
            "send an API key as 'Authorization: Bearer <key>' (`tagd api-key new` makes one)",
            headers=challenge,
        )
    key = match_key(keys, token)
    if key is None:
        raise Problem(
            401,
            "unauthorized",
            "this API key is not one of [api] api_keys (compare its sha256 with the config)",
            headers=challenge,
        )
    return _allowed(key, needed)


def _allowed(key: ApiKey, needed: ApiRole) -> Caller:
    if RANK[key.role] < RANK[needed]:
        raise Problem(
            403,
            "forbidden",
            f"the key {key.name or '(unnamed)'} may only read; this needs an admin key "
            '(role = "admin" in [api] api_keys)',
        )
    return Caller(key.role, key.name)


def require(needed: ApiRole) -> Callable[..., Caller]:
    """A route dependency admitting callers with at least the role `needed`."""

    # async: it never blocks, and a sync dependency costs each request a hop to
    # a worker thread and back.
    async def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Security(bearer),  # noqa: B008
    ) -> Caller:
        state = request.app.state.tagd
        keys = state.settings.api.api_keys
        client = request.client.host if request.client else None
        token = credentials.credentials if credentials else None
        signed_in = verify(state.ui_secret, request.cookies.get(COOKIE)) if keys else None
        return authorize(keys, token, client, needed, signed_in)

    return dependency
