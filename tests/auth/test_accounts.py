"""Register, log in, profile: the account life of API.md's auth module, on both backends."""

from __future__ import annotations

import jwt as pyjwt
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.auth.models import AuditEvent, User
from quantdesk.extensions import Extensions
from tests.support import PASSWORD, Api, assert_error


def test_register_returns_the_user_without_secrets(api: Api, db: Session) -> None:
    response = api.post(
        "/api/auth/register",
        json={"username": "Alice", "email": "Alice@Example.com", "password": PASSWORD},
    )
    assert response.status_code == 201
    body = response.get_json()
    assert body["username"] == "Alice"
    assert body["email"] == "alice@example.com"
    assert body["roles"] == ["user"]
    assert body["created_at"].endswith("Z")
    assert "password" not in body
    assert "password_hash" not in body
    stored = db.scalars(select(User).where(User.id == body["id"])).one()
    assert stored.password_hash.startswith("$argon2id$")
    assert PASSWORD not in stored.password_hash


@pytest.mark.parametrize(
    ("username", "email"),
    [("alice", "other@example.com"), ("ALICE", "other@example.com"), ("bob", "ALICE@example.com")],
)
def test_duplicate_username_or_email_is_409(api: Api, username: str, email: str) -> None:
    api.post(
        "/api/auth/register",
        json={"username": "alice", "email": "alice@example.com", "password": PASSWORD},
    )
    response = api.post(
        "/api/auth/register", json={"username": username, "email": email, "password": PASSWORD}
    )
    error = assert_error(response, 409, "conflict")
    assert set(error["details"]) <= {"username", "email"}
    assert error["details"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "al", "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "al ice", "email": "a@example.com", "password": PASSWORD}, "username"),
        ({"username": "alice", "email": "not-an-email", "password": PASSWORD}, "email"),
        ({"username": "alice", "email": "a@example.com", "password": "short"}, "password"),
        ({"username": "alice", "email": "a@example.com", "password": " " * 12}, "password"),
        ({"username": "alice", "email": "a@example.com"}, "password"),
        ({"username": "alice", "email": "a@example.com", "password": 12345678}, "password"),
        ({"username": "alice", "email": "a@example.com", "password": "x" * 129}, "password"),
    ],
)
def test_invalid_registration_is_422_naming_the_field(api: Api, body: dict, field: str) -> None:
    error = assert_error(api.post("/api/auth/register", json=body), 422, "validation_error")
    assert field in error["details"]


def test_login_by_username_or_email_gives_working_tokens(api: Api, ext: Extensions) -> None:
    account = api.register("carol")
    for login in ({"username": "carol"}, {"username": "CAROL"}, {"email": account.email}):
        response = api.post("/api/auth/login", json={**login, "password": PASSWORD})
        assert response.status_code == 200, response.get_json()
        body = response.get_json()
        assert body["token_type"] == "Bearer"
        assert body["expires_in"] == 3600
        assert body["refresh_expires_in"] == 30 * 86400
        assert body["user"]["username"] == "carol"
        claims = pyjwt.decode(
            body["access_token"], ext.settings.JWT_SECRET_KEY, algorithms=["HS256"]
        )
        assert claims["exp"] - claims["iat"] == 3600
        assert claims["type"] == "access"
        refresh = pyjwt.decode(
            body["refresh_token"], ext.settings.JWT_SECRET_KEY, algorithms=["HS256"]
        )
        assert refresh["exp"] - refresh["iat"] == 30 * 86400
        assert refresh["fam"] == claims["fam"]
        profile = api.get(
            "/api/auth/profile", headers={"Authorization": f"Bearer {body['access_token']}"}
        )
        assert profile.status_code == 200
        assert profile.get_json()["username"] == "carol"


def test_wrong_password_and_unknown_user_look_the_same(api: Api, db: Session) -> None:
    account = api.register("dave")
    wrong = api.post("/api/auth/login", json={"username": "dave", "password": "wrong-password"})
    unknown = api.post("/api/auth/login", json={"username": "nobody", "password": PASSWORD})
    assert assert_error(wrong, 401)["message"] == assert_error(unknown, 401)["message"]
    events = db.scalars(select(AuditEvent.event).where(AuditEvent.user_id == account.id)).all()
    assert "login_failed" in events


def test_login_needs_an_identifier(api: Api) -> None:
    error = assert_error(api.post("/api/auth/login", json={"password": PASSWORD}), 422)
    assert "username" in error["details"]


def test_profile_shape_and_partial_update(api: Api) -> None:
    account = api.logged_in("erin")
    profile = api.get("/api/auth/profile", headers=account.headers).get_json()
    assert set(profile) >= {
        "id",
        "username",
        "email",
        "full_name",
        "avatar_url",
        "phone",
        "roles",
        "created_at",
    }
    response = api.put(
        "/api/auth/profile",
        headers=account.headers,
        json={"full_name": "Erin Q", "phone": "+86 138 0000 0000"},
    )
    assert response.status_code == 200
    updated = response.get_json()
    assert updated["full_name"] == "Erin Q"
    assert updated["phone"] == "+86 138 0000 0000"
    assert updated["email"] == account.email  # untouched
    again = api.get("/api/auth/profile", headers=account.headers).get_json()
    assert again["full_name"] == "Erin Q"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"avatar_url": "javascript:alert(1)"}, "avatar_url"),
        ({"phone": "call me"}, "phone"),
        ({"email": "nope"}, "email"),
        ({"full_name": "x" * 101}, "full_name"),
        ({"username": "renamed"}, "username"),
    ],
)
def test_profile_update_validates(api: Api, body: dict, field: str) -> None:
    account = api.logged_in()
    error = assert_error(api.put("/api/auth/profile", headers=account.headers, json=body), 422)
    assert field in error["details"]


def test_profile_email_taken_is_409(api: Api) -> None:
    first = api.register()
    second = api.logged_in()
    response = api.put("/api/auth/profile", headers=second.headers, json={"email": first.email})
    assert_error(response, 409, "conflict")


def test_security_events_are_audited_with_address_and_request_id(api: Api, db: Session) -> None:
    account = api.register("frank")
    api.post(
        "/api/auth/login",
        json={"username": "frank", "password": "wrong password"},
        headers={"X-Request-ID": "audit-fail-1", "User-Agent": "pytest-agent"},
        environ_base={"REMOTE_ADDR": "203.0.113.7"},
    )
    api.post(
        "/api/auth/login",
        json={"username": "frank", "password": PASSWORD},
        headers={"X-Request-ID": "audit-ok-1"},
    )
    events = db.scalars(
        select(AuditEvent).where(AuditEvent.user_id == account.id).order_by(AuditEvent.id)
    ).all()
    assert [event.event for event in events] == ["register", "login_failed", "login"]
    failed = events[1]
    assert failed.ip == "203.0.113.7"
    assert failed.user_agent == "pytest-agent"
    assert failed.request_id == "audit-fail-1"
    assert events[2].request_id == "audit-ok-1"
    assert events[2].created_at.tzinfo is not None
