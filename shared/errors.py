"""Domain errors and RFC 9457 problem+json responses.

Services raise ``DomainError`` subclasses; one set of handlers turns them, and
every framework error, into ``application/problem+json``. No route builds an
error response by hand.
"""

from __future__ import annotations

import functools
import logging
import re
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.observability import request_id_var

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"

# Errors that mean the database connection went away or none is free right now.
DATABASE_UNAVAILABLE: tuple[type[Exception], ...] = (
    sa_exc.OperationalError,
    sa_exc.InterfaceError,
    sa_exc.DisconnectionError,
    sa_exc.TimeoutError,
    ConnectionError,
)
PROBLEM_BASE = "https://community-platform.dev/problems/"


class DomainError(Exception):
    """Base of every error a service raises on purpose; carries its HTTP shape."""

    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra
        self.headers: dict[str, str] = {}


class NotFound(DomainError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(DomainError):
    status, code, title = 409, "conflict", "Conflict"


class Unprocessable(DomainError):
    status, code, title = 422, "unprocessable", "Unprocessable request"


class Unauthorized(DomainError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.headers["WWW-Authenticate"] = 'Bearer realm="community"'


class Forbidden(DomainError):
    status, code, title = 403, "forbidden", "Forbidden"


class RateLimited(DomainError):
    status, code, title = 429, "rate-limited", "Too many requests"

    def __init__(self, retry_after_s: int, detail: str | None = None) -> None:
        super().__init__(detail or f"Rate limit exceeded; retry in {retry_after_s} s")
        self.headers["Retry-After"] = str(retry_after_s)


class ServiceUnavailable(DomainError):
    status, code, title = 503, "service-unavailable", "Service unavailable"


def problem(
    status: int,
    *,
    code: str | None = None,
    title: str | None = None,
    detail: str | None = None,
    instance: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + (code or phrase.lower().replace(" ", "-")),
        "title": title or phrase,
        "status": status,
        "detail": detail or title or phrase,
    }
    if instance:
        body["instance"] = instance
    request_id = request_id_var.get()
    if request_id:
        body["request_id"] = request_id
    body.update(extra)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_CONTENT_TYPE)


def domain_problem(exc: DomainError, instance: str) -> JSONResponse:
    """The problem+json answer for a domain error raised while serving ``instance``."""
    return problem(
        exc.status,
        code=exc.code,
        title=exc.title,
        detail=exc.detail,
        instance=instance,
        headers=exc.headers or None,
        **exc.extra,
    )


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    errors = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ())]
        errors.append(
            {"field": ".".join(loc), "message": err.get("msg", ""), "type": err.get("type")}
        )
    return errors


def install_error_handlers(app: FastAPI) -> None:
    async def on_domain_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, DomainError)
        return domain_problem(exc, request.url.path)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = _validation_errors(exc)
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5])
        return problem(
            422,
            code="validation-failed",
            title="Request validation failed",
            detail=summary or "The request is not valid",
            instance=request.url.path,
            errors=errors,
        )

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers) if exc.headers else {}
        if exc.status_code == 405 and (allowed := allowed_methods(request)):
            headers["Allow"] = ", ".join(allowed)
        return problem(
            exc.status_code,
            detail=str(exc.detail),
            instance=request.url.path,
            headers=headers or None,
        )

    async def on_database_unavailable(request: Request, exc: Exception) -> JSONResponse:
        # A dropped connection or an exhausted pool says "not now", not "bug": 503, retry soon.
        log.warning("database unavailable on %s %s: %r", request.method, request.url.path, exc)
        return problem(
            503,
            code="database-unavailable",
            title="Database unavailable",
            detail="The service's database is unreachable right now; retry shortly",
            instance=request.url.path,
            headers={"Retry-After": "1"},
        )

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, detail="An unexpected error occurred", instance=request.url.path)

    async def on_database_error(request: Request, exc: Exception) -> JSONResponse:
        if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
            return await on_database_unavailable(request, exc)
        if _is_data_error(exc):
            # Input the database cannot store (a NUL character in text, say): the client's to fix.
            return problem(
                422,
                code="unstorable-value",
                title="Value cannot be stored",
                detail="A value in the request cannot be stored (for example a NUL character)",
                instance=request.url.path,
            )
        return await on_unexpected(request, exc)

    app.add_exception_handler(DomainError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(sa_exc.DBAPIError, on_database_error)
    for unavailable in DATABASE_UNAVAILABLE:
        app.add_exception_handler(unavailable, on_database_unavailable)
    app.add_exception_handler(Exception, on_unexpected)


def allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document lists for this path (none: not a documented path).

    FastAPI makes one route per method, so Starlette's 405 names only the first
    route that matched the path; ``Allow`` must list them all (RFC 9110), and they
    are exactly what the document promises.
    """
    if not isinstance(request.app, FastAPI):
        return []
    paths: dict[str, dict[str, Any]] = request.app.openapi().get("paths", {})
    matching = [t for t in paths if _path_pattern(t).fullmatch(request.url.path)]
    # As in OpenAPI, a concrete path (``/x/preview``) wins over a template (``/x/{id}``).
    concrete = [t for t in matching if "{" not in t]
    methods = {m.upper() for t in concrete or matching for m in paths[t]}
    return sorted(methods & HTTP_METHODS)


HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"})


@functools.lru_cache(maxsize=1024)
def _path_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}]+\})", template)
    return re.compile("".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts))


def _is_data_error(exc: Exception) -> bool:
    """A value the database refuses to store: SQLAlchemy's DataError or SQLSTATE class 22."""
    if isinstance(exc, sa_exc.DataError):
        return True
    sqlstate = getattr(getattr(exc, "orig", None), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate.startswith("22")


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries for problem+json answers with these statuses."""
    return {
        status: {"description": HTTPStatus(status).phrase, "content": {PROBLEM_CONTENT_TYPE: {}}}
        for status in statuses
    }


# Every service route may answer these; a route adds its own others with ``problem_responses``.
# 503: any route answers it while its database (or a service it asks) is unreachable.
PROBLEM_RESPONSES = problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503)
