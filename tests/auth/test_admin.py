"""Roles and permissions: the admin's user endpoints, 403 for others, audited role changes."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.auth import permissions, service
from quantdesk.auth.models import AuditEvent, User
from quantdesk.extensions import Extensions
from tests.support import Account, Api, assert_error


@pytest.fixture
def admin(api: Api, ext: Extensions, db: Session) -> Account:
    account = api.register("root")
    service.ensure_admin(
        db, settings=ext.settings, username="root", email=account.email, password=None
    )
    response = api.login(account)
    account.access_token = response.get_json()["access_token"]
    assert response.get_json()["user"]["roles"] == ["admin", "user"]
    return account


def test_a_plain_user_gets_403_on_admin_endpoints(api: Api) -> None:
    user = api.logged_in()
    error = assert_error(api.get("/api/admin/users", headers=user.headers), 403, "forbidden")
    assert permissions.USERS_READ in error["message"]
    response = api.patch(
        f"/api/admin/users/{user.id}", headers=user.headers, json={"roles": ["user", "admin"]}
    )
    assert_error(response, 403)


def test_admin_endpoints_need_a_token(api: Api) -> None:
    assert_error(api.get("/api/admin/users"), 401)


def test_admin_lists_users_paginated_and_filtered(api: Api, admin: Account) -> None:
    for name in ("zed1", "zed2", "zed3"):
        api.register(name)
    page = api.get("/api/admin/users?per_page=2&page=1", headers=admin.headers).get_json()
    assert page["page"] == 1
    assert page["per_page"] == 2
    assert page["total"] == 4
    assert len(page["items"]) == 2
    found = api.get("/api/admin/users?q=ZED", headers=admin.headers).get_json()
    assert sorted(item["username"] for item in found["items"]) == ["zed1", "zed2", "zed3"]
    too_big = api.get("/api/admin/users?per_page=101", headers=admin.headers)
    assert "per_page" in assert_error(too_big, 422)["details"]


def test_role_change_takes_effect_and_is_audited(api: Api, admin: Account, db: Session) -> None:
    user = api.logged_in()
    response = api.patch(
        f"/api/admin/users/{user.id}", headers=admin.headers, json={"roles": ["admin", "user"]}
    )
    assert response.status_code == 200
    assert response.get_json()["roles"] == ["admin", "user"]
    # The promoted user's existing token now passes the permission check.
    assert api.get("/api/admin/users", headers=user.headers).status_code == 200
    event = db.scalars(
        select(AuditEvent).where(AuditEvent.event == "role_change", AuditEvent.user_id == user.id)
    ).one()
    assert event.actor_id == admin.id
    assert event.details == {"before": ["user"], "after": ["admin", "user"]}


def test_unknown_role_is_422(api: Api, admin: Account) -> None:
    user = api.register()
    response = api.patch(
        f"/api/admin/users/{user.id}", headers=admin.headers, json={"roles": ["wizard"]}
    )
    assert "roles" in assert_error(response, 422)["details"]


def test_admin_cannot_demote_or_deactivate_self(api: Api, admin: Account) -> None:
    for body in ({"roles": ["user"]}, {"is_active": False}):
        response = api.patch(f"/api/admin/users/{admin.id}", headers=admin.headers, json=body)
        assert_error(response, 409, "conflict")


def test_deactivated_user_is_refused_everywhere(api: Api, admin: Account, db: Session) -> None:
    user = api.logged_in()
    response = api.patch(
        f"/api/admin/users/{user.id}", headers=admin.headers, json={"is_active": False}
    )
    assert response.status_code == 200
    assert response.get_json()["is_active"] is False
    assert_error(api.get("/api/auth/profile", headers=user.headers), 401)
    # Reads that never load the account (market data) are refused too: deactivating revoked
    # every login session of the user, and the blocklist is checked on every request.
    error = assert_error(api.get("/api/data/stocks/600519.SH/history", headers=user.headers), 401)
    assert "revoked" in error["message"]
    assert_error(api.login(user), 403, "forbidden")
    assert_error(
        api.post("/api/auth/refresh", headers={"Authorization": f"Bearer {user.refresh_token}"}),
        401,
    )
    events = db.scalars(select(AuditEvent.event).where(AuditEvent.user_id == user.id)).all()
    assert "user_deactivated" in events
    # Reactivation lets the user log in again.
    api.patch(f"/api/admin/users/{user.id}", headers=admin.headers, json={"is_active": True})
    assert api.login(user).status_code == 200


def test_missing_user_is_404(api: Api, admin: Account) -> None:
    response = api.patch("/api/admin/users/999999", headers=admin.headers, json={"roles": []})
    assert_error(response, 404, "not_found")


def test_permission_check_by_name(db: Session, api: Api) -> None:
    account = api.register()
    user = db.get(User, account.id)
    assert user is not None
    assert not service.has_permission(user, permissions.USERS_MANAGE)
    assert permissions.granted(["*"], "anything.at.all")
    assert permissions.granted([permissions.AUDIT_READ], permissions.AUDIT_READ)
    assert not permissions.granted([permissions.AUDIT_READ], permissions.USERS_READ)
