"""Tokens: lifetimes, rotation with re-use detection, logout, and every kind of bad token -> 401."""

from __future__ import annotations

import base64
import datetime as dt
import json

import jwt as pyjwt
import pytest
import redis
import time_machine
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from quantdesk.auth import service
from quantdesk.auth.models import AuditEvent, TokenFamily, User
from quantdesk.auth.tokens import VerifiedTokenCache
from quantdesk.extensions import Extensions
from quantdesk.kvstore import MemoryKeyStore
from tests.support import Api, assert_error, bearer


def _refresh(api: Api, token: str):
    return api.post("/api/auth/refresh", headers=bearer(token))


def test_refresh_rotates_and_old_refresh_token_is_refused(api: Api) -> None:
    account = api.logged_in()
    first = _refresh(api, account.refresh_token)
    assert first.status_code == 200, first.get_json()
    rotated = first.get_json()
    assert rotated["refresh_token"] != account.refresh_token
    assert rotated["access_token"] != account.access_token
    assert api.get("/api/auth/profile", headers=bearer(rotated["access_token"])).status_code == 200
    second = _refresh(api, rotated["refresh_token"])
    assert second.status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_the_whole_family(api: Api, db: Session) -> None:
    account = api.logged_in()
    rotated = _refresh(api, account.refresh_token).get_json()
    # An attacker replays the stolen first refresh token:
    error = assert_error(_refresh(api, account.refresh_token), 401, "unauthorized")
    assert "already used" in error["message"]
    # ... and now the legitimate holder's newer tokens are dead too.
    assert_error(_refresh(api, rotated["refresh_token"]), 401)
    assert_error(api.get("/api/auth/profile", headers=bearer(rotated["access_token"])), 401)
    assert_error(api.get("/api/auth/profile", headers=account.headers), 401)
    family = db.scalars(select(TokenFamily).where(TokenFamily.user_id == account.id)).one()
    assert family.revoked_reason == "refresh_token_reuse"
    events = db.scalars(select(AuditEvent.event).where(AuditEvent.user_id == account.id)).all()
    assert "refresh_token_reuse" in events


def test_reuse_detection_spares_other_sessions(api: Api) -> None:
    account = api.logged_in()
    other = api.login(account).get_json()  # a second device
    _refresh(api, account.refresh_token)
    _refresh(api, account.refresh_token)  # re-use on the first device's family
    assert api.get("/api/auth/profile", headers=bearer(other["access_token"])).status_code == 200
    assert _refresh(api, other["refresh_token"]).status_code == 200


def test_logout_revokes_access_and_its_refresh_token(api: Api, db: Session) -> None:
    account = api.logged_in()
    other = api.login(account).get_json()
    response = api.post("/api/auth/logout", headers=account.headers)
    assert response.status_code == 200
    error = assert_error(api.get("/api/auth/profile", headers=account.headers), 401)
    assert "revoked" in error["message"]
    assert_error(_refresh(api, account.refresh_token), 401)
    # Logging out one session leaves the other alone.
    assert api.get("/api/auth/profile", headers=bearer(other["access_token"])).status_code == 200
    events = db.scalars(select(AuditEvent.event).where(AuditEvent.user_id == account.id)).all()
    assert "logout" in events


def test_refresh_token_is_not_an_access_token_and_vice_versa(api: Api) -> None:
    account = api.logged_in()
    assert_error(api.get("/api/auth/profile", headers=bearer(account.refresh_token)), 401)
    assert_error(_refresh(api, account.access_token), 401)


def test_missing_or_malformed_authorization_is_401(api: Api) -> None:
    assert_error(api.get("/api/auth/profile"), 401, "unauthorized")
    assert_error(api.get("/api/auth/profile", headers={"Authorization": "Bearer"}), 401)
    assert_error(api.get("/api/auth/profile", headers={"Authorization": "Basic abc"}), 401)
    assert_error(api.get("/api/auth/profile", headers=bearer("not.a.jwt")), 401)
    response = api.get("/api/auth/profile")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_alg_none_token_is_refused(api: Api, ext: Extensions) -> None:
    account = api.logged_in()
    claims = pyjwt.decode(account.access_token, ext.settings.JWT_SECRET_KEY, algorithms=["HS256"])
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    assert_error(api.get("/api/auth/profile", headers=bearer(unsigned)), 401)


def test_wrong_signature_is_refused(api: Api, ext: Extensions) -> None:
    account = api.logged_in()
    claims = pyjwt.decode(account.access_token, ext.settings.JWT_SECRET_KEY, algorithms=["HS256"])
    forged = pyjwt.encode(claims, "an attacker's key that is long enough", algorithm="HS256")
    assert_error(api.get("/api/auth/profile", headers=bearer(forged)), 401)
    # The real header and claims with a signature that is not theirs.
    tampered = account.access_token.rsplit(".", 1)[0] + ".AAAA"
    assert_error(api.get("/api/auth/profile", headers=bearer(tampered)), 401)


def test_expired_access_token_is_401_and_refresh_still_works(api: Api) -> None:
    account = api.logged_in()
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=61), tick=False):
        error = assert_error(api.get("/api/auth/profile", headers=account.headers), 401)
        assert "expired" in error["message"]
        assert _refresh(api, account.refresh_token).status_code == 200


def test_refresh_token_expires_after_30_days(api: Api) -> None:
    account = api.logged_in()
    with time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(days=30, minutes=1)):
        assert_error(_refresh(api, account.refresh_token), 401)


def test_token_of_a_deleted_user_is_401(api: Api, db: Session) -> None:
    account = api.logged_in()
    db.execute(delete(User).where(User.id == account.id))
    db.commit()
    error = assert_error(api.get("/api/auth/profile", headers=account.headers), 401)
    assert "no longer exists" in error["message"]


@pytest.mark.parametrize("path", ["/api/auth/profile", "/api/auth/logout"])
def test_token_of_a_deactivated_user_is_401(api: Api, db: Session, path: str) -> None:
    account = api.logged_in()
    user = db.get(User, account.id)
    assert user is not None
    user.is_active = False
    db.commit()
    method = api.get if path.endswith("profile") else api.post
    assert_error(method(path, headers=account.headers), 401)
    assert_error(_refresh(api, account.refresh_token), 401)


def test_a_revocation_survives_the_key_store_losing_its_keys(api: Api, ext: Extensions) -> None:
    """Redis keeps nothing on disk: after a restart the blocklist is empty. The next token
    check finds the store cold (its warm marker is gone too) and loads the revocations from the
    database again before believing any token."""
    account = api.logged_in()
    kept = api.login(account).get_json()["access_token"]
    assert api.post("/api/auth/logout", headers=account.headers).status_code == 200
    assert_error(api.get("/api/auth/profile", headers=account.headers), 401)
    original = ext.keystore
    if ext.settings.REDIS_URL:
        redis.Redis.from_url(ext.settings.REDIS_URL).flushdb()  # a restart without persistence
    else:
        ext.keystore = MemoryKeyStore()  # the embedded store lost: a new, cold one
    try:
        assert ext.keystore.lookup(service.jti_key("anything")) is None  # cold
        error = assert_error(api.get("/api/auth/profile", headers=account.headers), 401)
        assert "revoked" in error["message"]
        assert api.get("/api/auth/profile", headers=bearer(kept)).status_code == 200
        assert ext.keystore.lookup(service.jti_key("anything")) is False  # warm again
    finally:
        ext.keystore = original


def test_a_verified_token_is_remembered_but_its_expiry_is_checked_again(
    api: Api, ext: Extensions
) -> None:
    """Verified tokens are kept (PyJWT's checks cost a third of a cached read); a kept token
    still expires on time, and a forged variant of it is not taken for it."""
    account = api.logged_in()
    assert api.get("/api/auth/profile", headers=account.headers).status_code == 200
    manager = ext.jwt
    assert isinstance(manager, VerifiedTokenCache)
    assert any(key[0] == account.access_token for key in manager._verified)
    header, _, signature = account.access_token.split(".")
    forged_claims = pyjwt.decode(account.access_token, options={"verify_signature": False})
    forged_claims["sub"] = "999"
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged_claims).encode()).rstrip(b"=")
    forged = f"{header}.{forged_payload.decode()}.{signature}"
    assert_error(api.get("/api/auth/profile", headers=bearer(forged)), 401)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=61)
    with time_machine.travel(later, tick=False):
        error = assert_error(api.get("/api/auth/profile", headers=account.headers), 401)
        assert "expired" in error["message"]


def test_the_verified_token_cache_is_bounded(api: Api, ext: Extensions) -> None:
    manager = ext.jwt
    assert isinstance(manager, VerifiedTokenCache)
    account = api.logged_in()
    size = manager.SIZE
    try:
        manager.SIZE = 2
        for _ in range(3):
            token = api.login(account).get_json()["access_token"]
            assert api.get("/api/auth/profile", headers=bearer(token)).status_code == 200
        assert len(manager._verified) == 2
        assert any(key[0] == token for key in manager._verified)  # the newest stays
    finally:
        manager.SIZE = size
