"""Every error of the API as RFC 9457 problem details (application/problem+json):
{type, title, status, detail}, the detail saying what to do about it. FastAPI's
own errors (validation, unknown routes, wrong methods) are reworded here too,
so a client meets one error shape."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagd.catalog.connect import CatalogError, DatabaseError

log = logging.getLogger(__name__)
MEDIA_TYPE = "application/problem+json"
# Where the problem types are described: the API's own documentation.
TYPE_BASE = "/api/docs#problem-"


class Problem(Exception):
    """An error a route reports; `slug` names its kind in `type`."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = dict(headers or {})
        self.extra = extra


def problem_response(problem: Problem) -> JSONResponse:
    body = {
        "type": TYPE_BASE + problem.slug,
        "title": HTTPStatus(problem.status).phrase,
        "status": problem.status,
        "detail": problem.detail,
        **problem.extra,
    }
    return JSONResponse(body, problem.status, headers=problem.headers, media_type=MEDIA_TYPE)


def _where(loc: Sequence[int | str]) -> str:
    """('query', 'limit') -> "query parameter 'limit'"."""
    if not loc:
        return "the request"
    kind, *rest = loc
    name = ".".join(map(str, rest))
    if kind in ("query", "path", "header", "cookie"):
        return f"{kind} parameter {name!r}"
    return f"{kind} {name!r}" if name else str(kind)


def validation_problem(errors: Sequence[Mapping[str, Any]]) -> Problem:
    parts = []
    for e in errors:
        given = e.get("input")
        shown = f" (got {given!r})" if isinstance(given, str | int | float) else ""
        parts.append(f"{_where(e.get('loc', ()))}: {e.get('msg', 'invalid')}{shown}")
    return Problem(
        422,
        "invalid-parameter",
        "; ".join(parts) + "; see /api/docs for what each parameter takes",
        errors=[
            {"parameter": _where(e.get("loc", ())), "message": e.get("msg", "")} for e in errors
        ],
    )


def install(app: FastAPI) -> None:
    """Register the handlers that turn every error into a problem."""

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return problem_response(validation_problem(exc.errors()))

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        where = f"{request.method} {request.url.path}"
        if exc.status_code == 404:
            # Routes report their own 404s as Problems: this one is an unknown route.
            problem = Problem(
                404,
                "unknown-route",
                f"no route {where}: the API's routes are under /api/v1, listed at /api/docs",
            )
        elif exc.status_code == 405:
            allowed = (exc.headers or {}).get("Allow", "")
            problem = Problem(
                405,
                "method-not-allowed",
                f"{where}: this route answers {allowed or 'other methods'} only",
                headers=exc.headers,
            )
        else:
            problem = Problem(exc.status_code, "http-error", str(exc.detail), headers=exc.headers)
        return problem_response(problem)

    async def on_catalog(request: Request, exc: Exception) -> JSONResponse:
        # The daemon may be migrating or the disk failing: worth a retry, not a crash.
        log.warning("API: the catalog cannot be read: %s", exc)
        return problem_response(
            Problem(
                503,
                "catalog-unavailable",
                f"the catalog cannot be read right now ({exc}); try again, and see "
                "`tagd doctor` if it persists",
            )
        )

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("API: %s %s failed", request.method, request.url.path)
        return problem_response(
            Problem(
                500,
                "internal-error",
                "tagd failed to answer this request; the reason is in tagd serve's log",
            )
        )

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(CatalogError, on_catalog)
    app.add_exception_handler(DatabaseError, on_catalog)
    app.add_exception_handler(Exception, on_crash)
