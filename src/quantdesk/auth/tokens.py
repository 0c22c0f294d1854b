"""JWT encoding and checking (Flask-JWT-Extended), wired to our token families and blocklist.

Every token carries `fam`, the id of its login session; a token is refused when its own id
(jti) or its family is on the blocklist, when its user no longer exists, or is deactivated.

The blocklist is checked on every request (one key-store round trip). The account itself is
loaded only when a view asks for it (`current_user()`), so that reads of shared data (market
history, indicators) cost no database query for the caller: deactivating an account through
the service revokes all its login sessions, so its tokens are refused everywhere at once, and
every view that touches the caller's own rows loads the account and refuses a deleted or
deactivated one even if it was changed behind the service's back.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, Response, current_app, g, request
from flask_jwt_extended import (
    JWTManager,
    create_access_token,
    create_refresh_token,
    get_jwt,
    verify_jwt_in_request,
)

from quantdesk.auth import service
from quantdesk.auth.models import User
from quantdesk.errors import Unauthorized
from quantdesk.extensions import current_extensions
from quantdesk.kvstore import KeyStore
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


WWW_AUTHENTICATE = 'Bearer realm="quantdesk"'


def _unauthorized(message: str) -> Response:
    return error_response(401, message, headers={"WWW-Authenticate": WWW_AUTHENTICATE})


def _refusal(message: str) -> Unauthorized:
    """The same 401 as `_unauthorized`, for code that raises rather than returns."""
    return Unauthorized(message, headers={"WWW-Authenticate": WWW_AUTHENTICATE})


class _Warmup:
    """Loads revocations from the database into the key store when it has none (a new store,
    or Redis restarted without its data), once at a time per process; every process that finds
    the store cold loads the same rows, so doing it twice is harmless."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    def ensure(self, store: KeyStore) -> None:
        with self._lock:
            if store.is_warm():
                return
            with current_extensions().db.session_scope() as session:
                service.warm_keystore(session, store)
            store.mark_warm()  # last: no token is believed on a half-loaded copy


class VerifiedTokenCache(JWTManager):
    """Flask-JWT-Extended's manager, remembering the tokens it has verified.

    A client sends the same access token with every request, and PyJWT (2.15) checks each
    base64 segment character by character in Python, four times per request: about a third
    of a cached market read's CPU. The same bytes under the same key verify the same way every
    time, so the claims of a verified token are kept (a bounded LRU, per app) and only their
    expiry is checked again, as PyJWT checks it (`exp` after now, less the leeway). A token
    that fails is never kept; revocation is not cached (the blocklist is asked every time).
    """

    SIZE = 4096

    def __init__(self, app: Flask) -> None:
        self._verified: OrderedDict[tuple[str, Any, bool], dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()
        super().__init__(app)

    def _decode_jwt_from_config(
        self, encoded_token: str, csrf_value: Any = None, allow_expired: bool = False
    ) -> dict[str, Any]:
        key = (encoded_token, csrf_value, allow_expired)
        with self._lock:
            claims = self._verified.get(key)
            if claims is not None:
                self._verified.move_to_end(key)
        leeway = float(current_app.config["JWT_DECODE_LEEWAY"])
        if claims is not None and (allow_expired or claims["exp"] > time.time() - leeway):
            return dict(claims)
        claims = super()._decode_jwt_from_config(encoded_token, csrf_value, allow_expired)
        if "exp" in claims:  # every token we issue has one; keep no token that never expires
            with self._lock:
                self._verified[key] = dict(claims)
                while len(self._verified) > self.SIZE:
                    self._verified.popitem(last=False)
        return claims


def build_jwt(app: Flask, settings: Settings) -> JWTManager:
    app.config.update(jwt_config(settings))
    jwt = VerifiedTokenCache(app)
    warmup = _Warmup()

    @jwt.token_in_blocklist_loader
    def _is_revoked(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        keys = [service.jti_key(payload["jti"])]
        if payload.get("fam"):
            keys.append(service.family_key(payload["fam"]))
        store = current_extensions().keystore
        revoked = store.lookup(*keys)
        if revoked is None:
            warmup.ensure(store)
            revoked = store.lookup(*keys)
        return revoked is not False  # still unknown (the store lost its keys again): refuse

    @jwt.token_verification_loader
    def _has_user_id(_header: dict[str, Any], payload: dict[str, Any]) -> bool:
        return _user_id(payload) is not None

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

    @jwt.needs_fresh_token_loader
    def _needs_fresh(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("Log in again for this.")

    @jwt.token_verification_failed_loader
    def _claims_failed(_header: dict[str, Any], _payload: dict[str, Any]) -> Response:
        return _unauthorized("The token's claims are not accepted.")

    return jwt


def _user_id(payload: dict[str, Any]) -> int | None:
    try:
        return int(payload["sub"])
    except (KeyError, TypeError, ValueError):
        return None


def current_user() -> User:
    """The caller's account, loaded once per request; 401 if it is gone or deactivated."""
    user = g.get("_current_user")
    if user is None:
        user = service.get_user(current_extensions().db.session, current_user_id())
        if user is None or not user.is_active:
            raise _refusal("The token's account no longer exists or is deactivated.")
        g._current_user = user
    return cast(User, user)


def current_user_id() -> int:
    """The caller's account id, from the verified token (no database query)."""
    user_id = _user_id(get_jwt())
    if user_id is None:  # token_verification_loader refuses such tokens before any view runs
        raise _refusal("The token's claims are not accepted.")
    return user_id


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
            g.current_user_id = current_user_id()
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
