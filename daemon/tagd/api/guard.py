"""Requests a browser was tricked into sending are refused before any route runs.

- Cross-site writes (CSRF): a page on another site can make the browser POST
  here (a form, a fetch) with the user's cookie, or from the user's machine
  where no key is needed. Browsers say where such a request comes from
  (`Origin`, `Sec-Fetch-Site`); a write from another origin is refused with
  403. Scripts and curl send neither and are not affected.
- DNS rebinding: a site whose name is made to point at 127.0.0.1 reaches a
  server that needs no key. Without keys, the `Host` a request names must be
  this machine (a loopback address or "localhost").
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from tagd.api.listen import is_loopback
from tagd.api.problems import Problem, problem_response

SAFE = {"GET", "HEAD", "OPTIONS"}


class Guard:
    def __init__(self, app: ASGIApp, keys_configured: Callable[[], bool]) -> None:
        self.app = app
        self.keys_configured = keys_configured

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refused = self.refusal(scope)
            if refused:
                await problem_response(Problem(403, "forbidden", refused))(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, scope: Scope) -> str | None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not self.keys_configured() and not _local_host(host):
            return (
                f"Host {host!r} is not this machine: without [api] api_keys tagd answers "
                "only requests to 127.0.0.1, [::1] or localhost"
            )
        if scope["method"] in SAFE:
            return None
        site = headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return f"a write from another site ({site}) is refused"
        origin = headers.get("origin")
        if origin is not None and origin != "null" and urlsplit(origin).netloc != host:
            return f"a write from another origin ({origin}) is refused"
        if origin == "null":
            return "a write from an opaque origin is refused"
        return None


def _local_host(host: str) -> bool:
    """ "127.0.0.1:8765", "localhost", "[::1]:8765" -> True."""
    name = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    return name == "localhost" or is_loopback(name)
