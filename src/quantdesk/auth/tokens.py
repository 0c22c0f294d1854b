"""JWT encoding and checking (Flask-JWT-Extended), wired to our token families and blocklist.

Every token carries `fam`, the id of its login session; a token is refused when its own id
(jti) or its family is on the blocklist, when its user no longer exists, or is deactivated.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Response, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_current_user,
    get_jwt,
    verify_jwt_in_request,
)

from quantdesk.auth import service
from quantdesk.auth.models import User
from quantdesk.extensions import current_extensions
from quantdesk.settings import Settings
from quantdesk.web import error_response

F = TypeVar("F", bound=Callable[..., Any])

JWT_ALGORITHM = "HS256"


def jwt_config(settings: Settings) -> dict[str, Any]:
    return {
        "JWT_SECRET_KEY": settings.secret("JWT_SECRET_KEY"),
        "JWT_ALGORITHM": JWT_ALGORITHM,
        # Only HS256 is accepted, so "alg": "none" or RS/HS confusion tokens fail to decode.
        "JWT_DECODE_ALGORITHMS": [JWT_ALGORITHM],
        "JWT_ACCESS_TOKEN_EXPIRES": dt.timedelta(minutes=settings.ACCESS_TOKEN_MINUTES),
        "JWT_REFRESH_TOKEN_EXPIRES": dt.timedelta(days=settings.REFRESH_TOKEN_DAYS),
        "JWT_TOKEN_LOCATION": ["headers"],
        # Only views that opt in (login_required(query_token=True): event streams, which a
        # browser's EventSource opens without headers) read `?access_token=`.
        "JWT_QUERY_STRING_NAME": "access_token",
        "JWT_ERROR_MESSAGE_KEY": "message",
    }


def issue_tokens(settings: Settings, grant: service.TokenGrant) -> dict[str, Any]:
    identity = str(grant.user.id)
    access = create_access_token(
        identity, additional_claims={"jti": grant.access_jti, "fam": grant.family_id}
    )
    refresh = create_refresh_token(
        identity, additional_claims={"jti": grant.refresh_jti, "fam": grant.family_id}
    )
    return {
        "access_token": access,
        "refresh_token": refresh,
        "token_type": "Bearer",
        "expires_in": settings.ACCESS_TOKEN_MINUTES * 60,
        "refresh_expires_in": settings.REFRESH_TOKEN_DAYS * 86400,
        "user": grant.user,
    }


def _unauthorized(message: str) -> Response:
    return error_response(401, message, headers={"WWW-Authenticate": 'Bearer realm="quantdesk"'})


class _Warmup:
    """Loads revocations from the database into the key store once per process, lazily."""

    def __init__(self) -> None:
        self._done = False
        self._lock = threading.Lock()

    def ensure(self) -> None:
        if self._done:
            return
        with self._lock:
            if self._done:
                return
            ext = current_extensions()
            with ext.db.session_scope() as session:
                service.warm_keystore(session, ext.keystore)
            self._done = True


def build_jwt(app: Flask, settings: Settings) -> JWTManager:
    app.config.update(jwt_config(settings))
    jwt = JWTManager(app)
    warmup = _Warmup()

    @jwt.token_in_blocklist_loader
    def _is_revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        warmup.ensure()
        store = current_extensions().keystore
        family = payload.get("fam")
        return store.exists(service.jti_key(payload["jti"])) or bool(
            family and store.exists(service.family_key(family))
        )

    @jwt.user_lookup_loader
    def _load_user(_header: dict[str, Any], payload: dict[str, Any]) -> User | None:
        try:
            user_id = int(payload["sub"])
        except (KeyError, TypeError, ValueError):
            return None
        user = service.get_user(current_extensions().db.session, user_id)
        if user is None or not user.is_active:
            return None
        return user

    @jwt.unauthorized_loader
    def _missing(_reason: str) -> Response:
        return _unauthorized("Log in first: send Authorization: Bearer <access token>.")

    @jwt.invalid_token_loader
    def _invalid(reason: str) -> Response:
        return _unauthorized(f"The token is invalid: {reason}.")

    @jwt.expired_token_loader
    def _expired(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("The token has expired.")

    @jwt.revoked_token_loader
    def _revoked(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("The token has been revoked.")

    @jwt.user_lookup_error_loader
    def _no_user(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("The token's account no longer exists or is deactivated.")

    @jwt.needs_fresh_token_loader
    def _needs_fresh(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("Log in again for this.")

    @jwt.token_verification_failed_loader
    def _claims_failed(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("The token's claims are not accepted.")

    return jwt


def current_user() -> User:
    return cast(User, get_current_user())


def current_claims() -> dict[str, Any]:
    return get_jwt()


def login_required(*, refresh: bool = False, query_token: bool = False) -> Callable[[F], F]:
    """Require a valid access token (or, with refresh=True, a refresh token).

    `query_token=True` also accepts `?access_token=` (after the header): for server-sent
    event streams only, since a token in a URL can end up in proxy logs.
    """
    locations = ["headers", "query_string"] if query_token else None

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            verify_jwt_in_request(refresh=refresh, locations=locations)
            g.current_user_id = current_user().id
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


def permission_required(permission: str) -> Callable[[F], F]:
    """Require a valid access token whose user holds `permission` (403 otherwise)."""

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            verify_jwt_in_request()
            service.ensure_permission(current_user(), permission)
            return view(*args, **kwargs)

        return cast(F, wrapper)

    return decorator


def client_info() -> service.ClientInfo:
    return service.ClientInfo(
        ip=request.remote_addr,
        user_agent=request.headers.get("User-Agent"),
        request_id=g.get("request_id"),
    )
