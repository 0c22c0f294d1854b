"""HTTP plumbing shared by every route: the error shape, request ids, security headers, 415s.

Every error leaves the API as `{"error": {"code", "message", "details"}}` (API.md), whatever
raised it: a domain error from a service, a werkzeug HTTP exception, a schema validation error
from webargs, a rate limit, or a bug (500, logged with the request id, no stack trace sent).
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, Response, g, jsonify, request
from flask_limiter.errors import RateLimitExceeded
from kombu.exceptions import OperationalError as BrokerError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter, Map

from quantdesk.errors import APIError, Invalid, UnsupportedMediaType
from quantdesk.logs import request_id_var

log = logging.getLogger("quantdesk.http")
access_log = logging.getLogger("quantdesk.access")

REQUEST_ID_HEADER = "X-Request-ID"
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Stable codes for the statuses API.md names; anything else falls back to a slug of its name.
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "service_unavailable",
}

F = TypeVar("F", bound=Callable[..., Any])

# Seconds a client is told to wait after a 503 for a backend that is down.
BACKEND_RETRY_AFTER_SECONDS = 5
_BACKEND_TEXT = {
    "database": "The database is temporarily unavailable",
    "redis": "The session and cache store (Redis) is temporarily unavailable",
    "broker": "The task queue is temporarily unavailable",
}


class BoundedIntConverter(IntegerConverter):
    """`<int:...>` URL parts up to the largest id a primary key holds (PostgreSQL INTEGER):
    a bigger number matches no route (404) instead of overflowing the database driver
    (SQLite raises OverflowError, a 500; PostgreSQL a DataError)."""

    def __init__(self, url_map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", 2**31 - 1)
        super().__init__(url_map, *args, **kwargs)


def requires_json(view: F) -> F:
    """Mark a view whose body must be JSON: any other content type with a body gives 415."""
    view._requires_json = True  # type: ignore[attr-defined]
    return view


def error_response(
    status: int,
    message: str,
    *,
    code: str | None = None,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    body = {
        "error": {
            "code": code or _CODES.get(status, "error"),
            "message": message,
            "details": details or {},
        }
    }
    response = jsonify(body)
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _webargs_details(exc: HTTPException) -> dict[str, Any]:
    """Field messages from a webargs/marshmallow error, keyed by field, without the location."""
    data = getattr(exc, "data", None) or {}
    messages = data.get("messages") if isinstance(data, dict) else None
    if not isinstance(messages, dict):
        return {}
    if len(messages) == 1:
        (inner,) = messages.values()
        if isinstance(inner, dict):
            return inner
    return messages


def _handle_api_error(exc: APIError) -> Response:
    return error_response(
        exc.status, exc.message, code=exc.code, details=exc.details, headers=exc.headers
    )


def _handle_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    headers = dict(exc.get_headers())  # keeps Allow on 405 and Retry-After where set
    headers.pop("Content-Type", None)
    details = _webargs_details(exc)
    message = exc.description or exc.name
    if status == 422:
        message = "The request has invalid fields."
    elif status == 400 and details:
        message = "The request body is not valid JSON."
    elif status == 405:
        message = f"Method {request.method} is not allowed here."
    if isinstance(exc, RateLimitExceeded):
        retry_after = _retry_after_seconds(exc)
        headers["Retry-After"] = str(retry_after)
        message = f"Too many requests: limit is {exc.limit.limit}. Retry in {retry_after} s."
        details = {"retry_after": retry_after}
    return error_response(status, message, details=details, headers=headers)


def _retry_after_seconds(exc: RateLimitExceeded) -> int:
    """Seconds until the limit admits a request again; at most the limit's window."""
    from quantdesk.extensions import current_extensions

    window = max(1, int(exc.limit.limit.get_expiry()))
    current = current_extensions().limiter.current_limit
    if current is None:
        return window
    return min(window, max(1, math.ceil(current.reset_at - time.time())))


def _handle_unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return _handle_http_exception(exc)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(
        500,
        "Internal server error. Quote the request id when reporting it.",
        details={"request_id": request_id_var.get()},
    )


def _assign_request_id() -> None:
    incoming = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    g.request_id = request_id
    g.request_started = time.perf_counter()
    g.request_id_token = request_id_var.set(request_id)


def _check_content_type() -> None:
    if request.method not in {"POST", "PUT", "PATCH"}:
        return
    view = _current_view()
    if not getattr(view, "_requires_json", False):
        return
    has_body = (request.content_length or 0) > 0 or "chunked" in request.headers.get(
        "Transfer-Encoding", ""
    )
    if has_body and not request.is_json:
        raise UnsupportedMediaType(
            "This endpoint takes a JSON body: send Content-Type: application/json.",
            details={"content_type": request.mimetype or None},
        )


def _refuse_nul_characters() -> None:
    """Refuse text with NUL characters: PostgreSQL cannot store them (it would be a 500)."""
    bad = sorted(name for name, value in request.args.items(multi=True) if "\x00" in value)
    if request.is_json and b"\\u0000" in request.get_data(cache=True):
        body = request.get_json(silent=True)
        bad += sorted(_paths_with_nul(body, ""))
    if bad:
        raise Invalid(
            "Text may not contain NUL characters.",
            details={name or "_body": ["Contains a NUL character."] for name in bad},
        )


def _paths_with_nul(value: Any, path: str) -> list[str]:
    if isinstance(value, str):
        return [path] if "\x00" in value else []
    if isinstance(value, list):
        return [found for item in value for found in _paths_with_nul(item, path)]
    if not isinstance(value, dict):
        return []
    found: list[str] = []
    for key, item in value.items():
        child = f"{path}.{key}" if path else str(key)
        if "\x00" in str(key):
            found.append(child)
        found += _paths_with_nul(item, child)
    return found


def backend_unavailable(service: str) -> Response:
    """503 for a backend (`database`, `redis`, `broker`) that cannot be reached right now."""
    seconds = BACKEND_RETRY_AFTER_SECONDS
    return error_response(
        503,
        f"{_BACKEND_TEXT[service]}. Nothing was changed by this request unless it says "
        f"otherwise; retry in {seconds} s.",
        details={"service": service, "retry_after": seconds},
        headers={"Retry-After": str(seconds)},
    )


def _handle_database_unavailable(exc: DBAPIError | PoolTimeoutError) -> Response:
    if (
        isinstance(exc, DBAPIError)
        and not isinstance(exc, OperationalError | InterfaceError)
        and not exc.connection_invalidated
    ):
        return _handle_unexpected(exc)  # another driver error: a bug, not an outage
    # One line, no traceback: an outage fails many requests and the cause is the same.
    cause = getattr(exc, "orig", None) or exc
    log.warning(
        "database unavailable on %s %s: %s: %s",
        request.method,
        request.path,
        type(cause).__name__,
        str(cause).strip().splitlines()[0] if str(cause).strip() else "",
    )
    return backend_unavailable("database")


def _handle_redis_unavailable(exc: RedisConnectionError | RedisTimeoutError) -> Response:
    log.warning(
        "redis unavailable on %s %s: %s: %s", request.method, request.path, type(exc).__name__, exc
    )
    return backend_unavailable("redis")


def _handle_broker_unavailable(exc: BrokerError) -> Response:
    log.warning("task broker unavailable on %s %s: %s", request.method, request.path, exc)
    return backend_unavailable("broker")


def _handle_integrity_error(exc: IntegrityError) -> Response:
    # Services check uniqueness first; this catches the race between two equal requests.
    log.warning("integrity error turned into 409: %s", exc.orig)
    return error_response(409, "The request conflicts with existing data.")


def _handle_data_error(exc: DataError) -> Response:
    log.warning("data error turned into 422: %s", exc.orig)
    return error_response(422, "A value is out of range or of the wrong kind for storage.")


def _current_view() -> Any:
    from flask import current_app

    if request.url_rule is None:
        return None
    return current_app.view_functions.get(request.url_rule.endpoint)


_DOCS_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'"
)
_API_CSP = "default-src 'none'; frame-ancestors 'none'"


def _finish_response(response: Response) -> Response:
    request_id = g.get("request_id")
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    is_docs = request.path.startswith("/api/docs")
    headers.setdefault("Content-Security-Policy", _DOCS_CSP if is_docs else _API_CSP)
    if request.is_secure:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if request.path.startswith("/api/auth"):
        headers["Cache-Control"] = "no-store"
    started = g.get("request_started")
    if started is not None:
        access_log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "remote_addr": request.remote_addr,
            },
        )
    return response


def _reset_request_id(_exc: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        request_id_var.reset(token)


def install_request_hooks(app: Flask) -> None:
    """Request id, 415 check, security headers, access log; call before other extensions."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.before_request(_assign_request_id)
    app.before_request(_check_content_type)
    app.before_request(_refuse_nul_characters)
    app.after_request(_finish_response)
    app.teardown_request(_reset_request_id)


def install_error_handlers(app: Flask) -> None:
    """The one error shape; call after every extension's own init_app so ours win."""
    app.register_error_handler(APIError, _handle_api_error)
    app.register_error_handler(IntegrityError, _handle_integrity_error)
    app.register_error_handler(DataError, _handle_data_error)
    for db_error in (OperationalError, InterfaceError, DBAPIError, PoolTimeoutError):
        app.register_error_handler(db_error, _handle_database_unavailable)
    app.register_error_handler(RedisConnectionError, _handle_redis_unavailable)
    app.register_error_handler(RedisTimeoutError, _handle_redis_unavailable)
    app.register_error_handler(BrokerError, _handle_broker_unavailable)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
