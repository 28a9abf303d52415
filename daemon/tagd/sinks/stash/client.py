"""A small GraphQL client for Stash (stdlib only).

Why not `stashapp-tools`: its StashInterface posts without a timeout (a hung
Stash would hang the daemon), contacts the server in its constructor and raises
bare `Exception`s, so the outbox could not tell "retry later" from "our bug".
This is ~100 lines over urllib with exactly what the sink needs: the `ApiKey`
header, a timeout per request, a few quick retries with exponential backoff on
the errors that pass (connection refused/reset, timeouts, 5xx), and one error
type per kind of failure.

The API key goes to Stash's origin only: a redirect to another host, port or
scheme is refused (urllib would follow it with every header), one within the
origin is followed with the same POST. Every answer is checked against the
query's fields (shape.py), so the readers can index it safely.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tagd.sinks.stash import shape


class StashError(RuntimeError):
    """Anything that kept a Stash call from succeeding."""


class StashUnavailable(StashError):
    """Stash could not be reached, timed out or answered 5xx: try again later."""


class StashProtocolError(StashError):
    """Stash answered something that is not a GraphQL JSON answer (a proxy page...)."""


class StashAnswerError(StashProtocolError, StashUnavailable):
    """Stash answered JSON without what the query asked for (a field missing, null
    or of another type): retried later like a 5xx (a proxy or a Stash being
    upgraded passes)."""


class StashTimeout(StashUnavailable):
    """Stash did not answer in time. A write may still have gone in (Stash runs
    the update's plugin hooks before it answers): tagd's writes are idempotent."""


class StashRefused(StashError):
    """Stash refused tagd itself (HTTP 401/403: the API key, or Stash's
    public-exposure lock): every request would fail the same way until the user
    fixes it, so a delivery stops at the first one and keeps its queue."""


class StashRedirectError(StashUnavailable):
    """Stash's URL redirects to another origin: not followed (the API key would
    go along); retried later, and the message says which URL to configure."""


class StashGraphQLError(StashError):
    """Stash answered with GraphQL `errors` (invalid query, failed mutation)."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages) or "GraphQL error")
        self.messages = messages


class StashClient:
    def __init__(
        self,
        url: str,
        api_key: str = "",
        *,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
    ) -> None:
        # Users give the server ("http://nas:9999") or the endpoint; both work.
        self.url = (
            url.rstrip("/")
            if url.rstrip("/").endswith("/graphql")
            else (url.rstrip("/") + "/graphql")
        )
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._opener = urllib.request.build_opener(_SameOriginRedirects)

    def call(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        *,
        retry_timeouts: bool = True,
    ) -> dict[str, Any]:
        """The `data` of one GraphQL operation; raises a StashError subclass.
        `retry_timeouts=False`: a timeout is raised at once (the caller sends a
        smaller request instead of the same one again)."""
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        for attempt in range(self.retries + 1):
            try:
                return _checked(query, self._once(body))
            except StashUnavailable as exc:
                if attempt >= self.retries or (
                    isinstance(exc, StashTimeout) and not retry_timeouts
                ):
                    raise
                # Bounded: retries is small and validated; the outbox does the long waits.
                time.sleep(self.backoff * 2**attempt)
        raise AssertionError("unreachable")

    def _once(self, body: bytes) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["ApiKey"] = self.api_key
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                raise StashUnavailable(f"Stash answered HTTP {exc.code}") from None
            if exc.code in (401, 403):
                raise _refused(exc.code, exc.read(), bool(self.api_key)) from None
            # Stash answers GraphQL errors with 422 and a JSON body; keep its message.
            raw = exc.read()
            if not raw:
                raise StashError(f"Stash answered HTTP {exc.code}") from None
        except TimeoutError:
            raise StashTimeout(f"Stash did not answer within {self.timeout:g} s") from None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError | socket.timeout):
                raise StashTimeout(f"Stash did not answer within {self.timeout:g} s") from None
            raise StashUnavailable(f"cannot reach Stash at {self.url}: {reason}") from None
        except (ConnectionError, http.client.HTTPException, OSError) as exc:
            raise StashUnavailable(f"connection to Stash failed: {exc}") from None
        return _parse(raw)


# What Stash answers (HTTP 403) once it found itself on the internet without a
# login (internal/api/authentication.go): it then refuses every request.
_EXPOSED = (b"exposed to the public internet", b"access Stash over the internet")


def _refused(code: int, body: bytes, sent_key: bool) -> StashRefused:
    """What to fix, in words, for a 401 or 403 from Stash."""
    if code == 403 and any(mark in body for mark in _EXPOSED):
        return StashRefused(
            "Stash refuses every request (HTTP 403): it found itself reachable from the "
            "internet without a login and locked itself; set a username and password in "
            "Stash (Settings > Security), put its API key in [stash] api_key, and restart "
            "Stash (see Stash's log)"
        )
    if code == 401 and sent_key:
        return StashRefused(
            "Stash refused tagd's API key (HTTP 401): copy the key from Stash's Settings > "
            "Security into [stash] api_key (a new key replaces the old one); if Stash has "
            "no login set up, leave api_key empty"
        )
    if code == 401:
        return StashRefused(
            "Stash asks for a login (HTTP 401): put the API key from Stash's Settings > "
            "Security into [stash] api_key"
        )
    return StashRefused(f"Stash refused the request (HTTP {code}): check [stash] api_key")


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        answer = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        snippet = raw[:80].decode("utf-8", "replace")
        raise StashProtocolError(
            f"Stash answered something that is not JSON: {snippet!r}"
        ) from None
    if not isinstance(answer, dict):
        raise StashProtocolError("Stash answered JSON that is not a GraphQL answer")
    errors = answer.get("errors")
    if errors:
        messages = [str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors]
        raise StashGraphQLError(messages)
    data = answer.get("data")
    if not isinstance(data, dict):
        raise StashAnswerError("Stash's answer holds no data (and no errors)")
    return data


def _checked(query: str, data: dict[str, Any]) -> dict[str, Any]:
    found = shape.problem(query, data)
    if found:
        raise StashAnswerError(
            f"Stash's answer {found} (not what tagd asked for: is [stash] url a Stash "
            "GraphQL endpoint, with nothing in between that rewrites answers?)"
        )
    return data


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # a port that is no number: no origin matches it
        port = -1
    return scheme, (parts.hostname or "").lower(), port


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects within Stash's origin are followed with the same POST (GraphQL
    needs the body, which urllib drops for 301/302/303); others are refused
    before anything, the ApiKey header above all, is sent there."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request:
        if _origin(newurl) != _origin(req.full_url):
            fp.close()
            raise StashRedirectError(
                f"Stash at {req.full_url} redirects (HTTP {code}) to {newurl}, another "
                "server: not followed, so the API key is not sent there; set [stash] url "
                "to the address Stash answers at"
            )
        return urllib.request.Request(newurl, data=req.data, headers=req.headers, method="POST")
