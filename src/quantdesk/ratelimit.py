"""Rate limits (Flask-Limiter): in-process by default, in Redis when REDIS_URL is set.

Views opt in with a marker; `build_limiter` applies the configured limit to every marked view
of this app. (A limiter decorator applied at import time would bind the views to one limiter
instance, shared by every app in the process.)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, request
from flask_limiter import Limiter

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


def build_limiter(app: Flask, settings: Settings) -> Limiter:
    """Create this app's limiter; call after the blueprints are registered."""
    app.config.update(
        RATELIMIT_ENABLED=settings.RATELIMIT_ENABLED,
        RATELIMIT_STORAGE_URI=settings.REDIS_URL or "memory://",
        RATELIMIT_STORAGE_OPTIONS={"socket_connect_timeout": 2, "socket_timeout": 2}
        if settings.REDIS_URL
        else {},
        RATELIMIT_STRATEGY="moving-window",
        # Off: it would put Retry-After on every response; web.py sets it on 429s only.
        RATELIMIT_HEADERS_ENABLED=False,
        RATELIMIT_KEY_PREFIX="quantdesk",
    )
    limiter = Limiter(key_func=client_address, app=app)
    auth_limit = limiter.limit(settings.AUTH_RATE_LIMIT, per_method=False)
    for endpoint, view in list(app.view_functions.items()):
        if getattr(view, _AUTH_MARK, False):
            app.view_functions[endpoint] = auth_limit(view)  # type: ignore[assignment]
        setting = getattr(view, _SETTING_MARK, None)
        if setting:
            limit = limiter.limit(getattr(settings, setting), per_method=False)
            app.view_functions[endpoint] = limit(view)  # type: ignore[assignment]
    return limiter
