"""Rate limits (Flask-Limiter): in-process by default, in Redis when REDIS_URL is set.

Two application-wide limits count every request, whatever the endpoint: one per client address
(API_RATE_LIMIT_PER_ADDRESS) and one per user of a valid bearer token (API_RATE_LIMIT_PER_USER;
anonymous requests skip it). Health, metrics and the API docs are exempt from both.

When Redis is unreachable the limits are counted in process memory until it answers again
(Flask-Limiter's in-memory fallback), so a Redis outage neither fails nor unlimits requests.

Views may also opt in to a limit of their own with a marker; `build_limiter` applies the
configured limit to every marked view of this app. (A limiter decorator applied at import time
would bind the views to one limiter instance, shared by every app in the process.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, g, request
from flask_jwt_extended import decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from flask_limiter import ApplicationLimit, Limiter
from jwt import PyJWTError

from quantdesk.kvstore import redis_options
from quantdesk.settings import Settings

F = TypeVar("F", bound=Callable[..., Any])

_AUTH_MARK = "_quantdesk_auth_rate_limited"
_SETTING_MARK = "_quantdesk_rate_limit_setting"


def auth_rate_limited(view: F) -> F:
    """Mark an auth endpoint for the AUTH_RATE_LIMIT per client address."""
    setattr(view, _AUTH_MARK, True)
    return view


def rate_limited(setting: str) -> Callable[[F], F]:
    """Mark a view for the limit named by `setting` (e.g. "NOTIFY_TEST_RATE_LIMIT"), per address."""

    def mark(view: F) -> F:
        setattr(view, _SETTING_MARK, setting)
        return view

    return mark


def client_address() -> str:
    return request.remote_addr or "unknown"


# Paths no API-wide limit counts: probes, scrapers and documentation.
_EXEMPT_PATHS = frozenset({"/api/health", "/metrics", "/api/docs", "/api/openapi.json"})
_EXEMPT_PREFIXES = ("/api/health/", "/api/docs/")


def _exempt_path() -> bool:
    path = request.path
    return path in _EXEMPT_PATHS or path.startswith(_EXEMPT_PREFIXES)


def bearer_user_key() -> str | None:
    """`user:<id>` of the request's bearer token when it is valid (signature, expiry), else None.

    Decoded once per request, without a database query: the view still checks the token fully
    (blocklist, active user) and answers 401 for a bad one, which then counts per address only.
    """
    if "_ratelimit_user_key" in g:
        key: str | None = g._ratelimit_user_key
        return key
    key = None
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        try:
            subject = decode_token(token.strip()).get("sub")
        except (PyJWTError, JWTExtendedException):
            subject = None
        if subject:
            key = f"user:{subject}"
    g._ratelimit_user_key = key
    return key


def _user_key() -> str:
    return bearer_user_key() or "anonymous"  # never used: anonymous requests are exempt


def _no_user_limit() -> bool:
    return _exempt_path() or bearer_user_key() is None


def build_limiter(app: Flask, settings: Settings) -> Limiter:
    """Create this app's limiter; call after the blueprints are registered."""
    app.config.update(
        RATELIMIT_ENABLED=settings.RATELIMIT_ENABLED,
        RATELIMIT_STORAGE_URI=settings.REDIS_URL or "memory://",
        RATELIMIT_STORAGE_OPTIONS=redis_options() if settings.REDIS_URL else {},
        # Redis down: count in this process's memory (the same limits, per process) instead of
        # failing every request; Flask-Limiter goes back to Redis once it answers again.
        RATELIMIT_IN_MEMORY_FALLBACK_ENABLED=bool(settings.REDIS_URL),
        RATELIMIT_STRATEGY="moving-window",
        # Off: it would put Retry-After on every response; web.py sets it on 429s only.
        RATELIMIT_HEADERS_ENABLED=False,
        RATELIMIT_KEY_PREFIX="quantdesk",
    )
    limiter = Limiter(
        key_func=client_address,
        app=app,
        application_limits=[
            ApplicationLimit(
                settings.API_RATE_LIMIT_PER_ADDRESS,
                key_function=client_address,
                scope="api-address",
                exempt_when=_exempt_path,
            ),
            ApplicationLimit(
                settings.API_RATE_LIMIT_PER_USER,
                key_function=_user_key,
                scope="api-user",
                exempt_when=_no_user_limit,
            ),
        ],
    )
    auth_limit = limiter.limit(settings.AUTH_RATE_LIMIT, per_method=False)
    for endpoint, view in list(app.view_functions.items()):
        if getattr(view, _AUTH_MARK, False):
            app.view_functions[endpoint] = auth_limit(view)  # type: ignore[assignment]
        setting = getattr(view, _SETTING_MARK, None)
        if setting:
            limit = limiter.limit(getattr(settings, setting), per_method=False)
            app.view_functions[endpoint] = limit(view)  # type: ignore[assignment]
    return limiter
