"""The audit log for admins: GET /api/admin/audit, paginated and filtered."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session

from quantdesk.auth import permissions, service
from quantdesk.extensions import Extensions
from tests.support import Account, Api, assert_error


@pytest.fixture
def admin(api: Api, ext: Extensions, db: Session) -> Account:
    account = api.register("auditor")
    service.ensure_admin(
        db, settings=ext.settings, username="auditor", email=account.email, password=None
    )
    response = api.login(account)
    account.access_token = response.get_json()["access_token"]
    return account


def test_admin_reads_the_audit_log_newest_first_in_pages(api: Api, admin: Account) -> None:
    user = api.logged_in()
    assert api.login(user, password="wrong password").status_code == 401
    first = api.get("/api/admin/audit?per_page=2", headers=admin.headers)
    assert first.status_code == 200, first.get_json()
    page = first.get_json()
    assert set(page) == {"items", "page", "per_page", "total"}
    assert page["per_page"] == 2
    assert len(page["items"]) == 2
    assert page["total"] >= 5  # two registers, two log-ins, one failure
    newest = page["items"][0]
    assert newest["event"] == "login_failed"
    assert newest["user_id"] == user.id
    assert set(newest) >= {"id", "event", "ip", "user_agent", "request_id", "details", "created_at"}
    second = api.get("/api/admin/audit?per_page=2&page=2", headers=admin.headers).get_json()
    ids = [item["id"] for item in page["items"] + second["items"]]
    assert ids == sorted(ids, reverse=True)
    assert len(set(ids)) == 4


def test_audit_log_filters_by_event_and_user(api: Api, admin: Account) -> None:
    user = api.logged_in()
    mine = api.get(f"/api/admin/audit?user_id={user.id}", headers=admin.headers).get_json()
    assert {item["event"] for item in mine["items"]} == {"register", "login"}
    assert all(item["user_id"] == user.id for item in mine["items"])
    logins = api.get("/api/admin/audit?event=login", headers=admin.headers).get_json()
    assert logins["total"] == 2  # the admin's and the user's
    assert {item["event"] for item in logins["items"]} == {"login"}
    bad = api.get("/api/admin/audit?per_page=1000", headers=admin.headers)
    assert_error(bad, 422, "validation_error")


def test_audit_log_needs_the_audit_permission(api: Api) -> None:
    user = api.logged_in()
    error = assert_error(api.get("/api/admin/audit", headers=user.headers), 403, "forbidden")
    assert permissions.AUDIT_READ in error["message"]
    assert_error(api.get("/api/admin/audit"), 401)
