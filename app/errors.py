"""The application's error tree and the one handler that turns it into JSON.

AppError (500, "internal")
├── NotFound (404)
├── Conflict (409)
│   ├── HostBusy            host still has active runs
│   ├── TargetIneligible    target_host_id cannot take the run
│   └── IllegalTransition   a state move the table forbids
├── InvalidField (422)      one field named, same shape as FastAPI's validation errors
├── Unauthorized (401)
├── PayloadTooLarge (413)   a request body over the limit, refused before it is parsed
├── NoAvailableHosts (503)
├── DatabaseUnavailable (503)  the database refused or timed out (locked, full, gone)
└── EngineError (502)       raised by app.engine at the Docker/SSH boundary
    ├── HostUnreachable     cannot connect, refused, timed out, tunnel failed
    ├── ImageUnavailable    missing and the pull failed
    │   └── PullTimedOut    the pull did not finish within DOCKFLEET_PULL_TIMEOUT_SECONDS
    ├── ContainerStartFailed
    └── DockerCallFailed    any other Docker API error
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.limits import EXCERPT

log = logging.getLogger("dockfleet")


class AppError(Exception):
    """Base of every error dockfleet raises on purpose."""

    status = 500
    code = "internal"

    def __init__(self, detail: Any = None, **extra: Any) -> None:
        self.detail = detail if detail is not None else self.code
        self.extra = extra
        super().__init__(str(self.detail))

    def body(self) -> dict[str, Any]:
        """The JSON body of the response."""
        return {"detail": self.detail, "code": self.code, **self.extra}


class NotFound(AppError):
    status, code = 404, "not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


class HostBusy(Conflict):
    code = "host_busy"


class TargetIneligible(Conflict):
    code = "target_ineligible"


class IllegalTransition(Conflict):
    code = "illegal_transition"


class Unauthorized(AppError):
    status, code = 401, "unauthorized"


class NoAvailableHosts(AppError):
    status, code = 503, "no_available_hosts"


class PayloadTooLarge(AppError):
    status, code = 413, "payload_too_large"


class DatabaseUnavailable(AppError):
    """503 `{"detail": "database unavailable", "reason": ...}`: try again, nothing was lost."""

    status, code = 503, "database_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__("database unavailable", reason=reason)


class InvalidField(AppError):
    """A 422 naming one field, shaped like FastAPI's own validation errors."""

    status, code = 422, "invalid"

    def __init__(self, field: str | Sequence[str | int], message: str) -> None:
        parts = [field] if isinstance(field, str) else list(field)
        loc = parts if parts[0] in ("query", "path", "header") else ["body", *parts]
        super().__init__([{"loc": loc, "msg": message, "type": "value_error"}])


class EngineError(AppError):
    status, code = 502, "docker_error"


class HostUnreachable(EngineError):
    code = "host_unreachable"


class ImageUnavailable(EngineError):
    code = "image_unavailable"


class PullTimedOut(ImageUnavailable):
    code = "pull_timed_out"


class ContainerStartFailed(EngineError):
    code = "container_start_failed"


class DockerCallFailed(EngineError):
    code = "docker_call_failed"


def not_found(kind: str, key: object) -> NotFound:
    """A 404 in the one shape used everywhere."""
    return NotFound(f"{kind} {key} not found")


async def _app_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return JSONResponse(exc.body(), status_code=exc.status)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return JSONResponse({"detail": "internal server error", "code": "internal"}, status_code=500)


async def _database(request: Request, exc: Exception) -> JSONResponse:
    from app.db import unavailable_reason

    reason = unavailable_reason(exc)
    if reason is None:
        return await _unexpected(request, exc)
    log.warning("database unavailable on %s %s: %s", request.method, request.url.path, reason)
    response = await _app_error(request, DatabaseUnavailable(reason))
    response.headers["Retry-After"] = "1"  # nothing was written: the same request may be sent again
    return response


def excerpt(value: Any) -> Any:
    """A short, JSON-safe stand-in for a bad value echoed in a 422 (never the whole of it)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, int):
        return value if abs(value) < 2**63 else f"{str(value)[:EXCERPT]}..."
    if isinstance(value, str):
        return value if len(value) <= EXCERPT else value[:EXCERPT] + "..."
    if isinstance(value, dict):
        return f"an object with {len(value)} keys"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)} items"
    text = str(value)
    return text if len(text) <= EXCERPT else text[:EXCERPT] + "..."


def _clean(error: Any) -> dict[str, Any]:
    out = {k: v for k, v in dict(error).items() if k not in ("url", "input", "ctx")}
    out["loc"] = [excerpt(part) for part in out.get("loc", [])]
    if "input" in error:
        out["input"] = excerpt(error["input"])
    if error.get("ctx"):
        out["ctx"] = {k: excerpt(v) for k, v in error["ctx"].items()}
    return out


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = jsonable_encoder([_clean(e) for e in exc.errors()])
    return JSONResponse({"detail": detail, "code": InvalidField.code}, status_code=422)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own HTTP errors (no route, wrong method) as JSON; a body that cannot be
    decoded at all (not UTF-8) is invalid input like any other: a 422 naming the body."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400 and "parsing the body" in str(exc.detail):
        error = {
            "loc": ["body"],
            "msg": "the body is not valid JSON (UTF-8)",
            "type": "json_invalid",
        }
        return JSONResponse({"detail": [error], "code": InvalidField.code}, status_code=422)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def install(app: FastAPI) -> None:
    """Map the whole tree (and anything unexpected) to JSON responses."""
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(DBAPIError, _database)
    app.add_exception_handler(PoolTimeout, _database)
    app.add_exception_handler(Exception, _unexpected)
