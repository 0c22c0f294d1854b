"""The in-app inbox: list (unread filter, pages), mark read, delete, and isolation between users."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.extensions import extensions_of
from quantdesk.mail import OutboxEmail
from quantdesk.notifications.models import Notification
from quantdesk.notifications.service import notify
from tests.notifications.conftest import BACKTEST, put_settings, raise_event
from tests.support import Api, assert_error


def test_a_notification_lands_in_the_inbox(api: Api, app: Flask) -> None:
    account = api.logged_in()
    notification_id = raise_event(app, account.id, "backtest_finished", BACKTEST)
    response = api.get("/api/notifications", headers=account.headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["total"] == 1
    (item,) = body["items"]
    assert item["id"] == notification_id
    assert item["event"] == "backtest_finished"
    assert item["title"] == "回测完成：MA cross 2020"  # noqa: RUF001
    assert "总收益 12.34%" in item["content"]
    assert item["data"] == BACKTEST
    assert item["is_read"] is False
    assert item["read_at"] is None
    assert item["created_at"].endswith("Z")
    one = api.get(f"/api/notifications/{notification_id}", headers=account.headers)
    assert one.get_json() == item


def test_unread_filter_mark_read_and_counts(api: Api, app: Flask) -> None:
    account = api.logged_in()
    ids = [raise_event(app, account.id, "system", {"message": f"m{n}"}) for n in range(3)]
    count = api.get("/api/notifications/unread-count", headers=account.headers)
    assert count.get_json() == {"unread": 3}
    response = api.post(
        "/api/notifications/mark-read", headers=account.headers, json={"ids": [ids[0], ids[0]]}
    )
    assert response.get_json() == {"updated": 1, "unread": 2}
    unread = api.get("/api/notifications?unread=true", headers=account.headers).get_json()
    assert [item["id"] for item in unread["items"]] == [ids[2], ids[1]]  # newest first
    read = api.get("/api/notifications?unread=false", headers=account.headers).get_json()
    assert [item["id"] for item in read["items"]] == [ids[0]]
    assert read["items"][0]["read_at"].endswith("Z")
    everything = api.post(
        "/api/notifications/mark-read", headers=account.headers, json={"all": True}
    )
    assert everything.get_json() == {"updated": 2, "unread": 0}
    again = api.post("/api/notifications/mark-read", headers=account.headers, json={"all": True})
    assert again.get_json() == {"updated": 0, "unread": 0}
    assert (
        api.get("/api/notifications?unread=true", headers=account.headers).get_json()["total"] == 0
    )


def test_pages_and_event_filter(api: Api, app: Flask) -> None:
    account = api.logged_in()
    for n in range(5):
        raise_event(app, account.id, "system", {"message": str(n)})
    raise_event(app, account.id, "test")
    page = api.get("/api/notifications?page=2&per_page=2", headers=account.headers).get_json()
    assert (page["page"], page["per_page"], page["total"], len(page["items"])) == (2, 2, 6, 2)
    tests = api.get("/api/notifications?event=test", headers=account.headers).get_json()
    assert [item["event"] for item in tests["items"]] == ["test"]
    assert_error(api.get("/api/notifications?event=nope", headers=account.headers), 422)
    assert_error(api.get("/api/notifications?per_page=101", headers=account.headers), 422)


def test_delete(api: Api, app: Flask) -> None:
    account = api.logged_in()
    keep = raise_event(app, account.id, "system", {"message": "keep"})
    drop = raise_event(app, account.id, "system", {"message": "drop"})
    assert api.delete(f"/api/notifications/{drop}", headers=account.headers).status_code == 204
    items = api.get("/api/notifications", headers=account.headers).get_json()["items"]
    assert [item["id"] for item in items] == [keep]
    assert_error(api.delete(f"/api/notifications/{drop}", headers=account.headers), 404)


def test_another_users_notifications_are_404_and_untouched(api: Api, app: Flask) -> None:
    alice, bob = api.logged_in(), api.logged_in()
    secret = raise_event(app, alice.id, "backtest_failed", {"name": "private", "error": "x"})
    for path in (f"/api/notifications/{secret}", f"/api/notifications/{secret}/deliveries"):
        assert_error(api.get(path, headers=bob.headers), 404, "not_found")
    assert_error(api.delete(f"/api/notifications/{secret}", headers=bob.headers), 404)
    assert api.get("/api/notifications", headers=bob.headers).get_json()["total"] == 0
    marked = api.post("/api/notifications/mark-read", headers=bob.headers, json={"ids": [secret]})
    assert marked.get_json() == {"updated": 0, "unread": 0}
    assert (
        api.post(
            "/api/notifications/mark-read", headers=bob.headers, json={"all": True}
        ).get_json()["updated"]
        == 0
    )
    mine = api.get(f"/api/notifications/{secret}", headers=alice.headers).get_json()
    assert mine["is_read"] is False


@pytest.mark.parametrize(
    "body", [{}, {"ids": []}, {"ids": [1], "all": True}, {"all": False}, {"ids": ["x"]}]
)
def test_mark_read_takes_ids_or_all(api: Api, body: dict) -> None:
    account = api.logged_in()
    response = api.post("/api/notifications/mark-read", headers=account.headers, json=body)
    assert_error(response, 422, "validation_error")


def test_the_inbox_needs_a_login(api: Api) -> None:
    assert_error(api.get("/api/notifications"), 401)
    assert_error(api.post("/api/notifications/mark-read", json={"all": True}), 401)
    assert_error(api.delete("/api/notifications/1"), 401)


def test_in_app_off_hides_it_but_email_still_goes(api: Api, app: Flask, db: Session) -> None:
    account = api.logged_in()
    put_settings(api, account, {"events": {"strategy_error": {"in_app": False}}})
    notification_id = raise_event(app, account.id, "strategy_error", {"strategy_name": "S"})
    assert api.get("/api/notifications", headers=account.headers).get_json()["total"] == 0
    assert_error(api.get(f"/api/notifications/{notification_id}", headers=account.headers), 404)
    mail = db.scalars(select(OutboxEmail).where(OutboxEmail.to_address == account.email)).one()
    assert mail.status == "logged"  # no SMTP_HOST in tests: written to the log
    assert "S" in mail.subject


def test_event_data_is_stored_as_json(api: Api, app: Flask, db: Session) -> None:
    account = api.logged_in()
    data = {"when": dt.date(2024, 5, 6), "sharpe_ratio": float("nan"), "tags": ("a", "b")}
    notification_id = raise_event(app, account.id, "system", data)
    stored = db.get(Notification, notification_id)
    assert stored is not None
    assert stored.data == {"when": "2024-05-06", "sharpe_ratio": None, "tags": ["a", "b"]}


def test_unknown_events_and_users(app: Flask) -> None:
    ext = extensions_of(app)
    with ext.db.session_scope() as session:
        with pytest.raises(ValueError, match="no_such_event"):
            notify(session, user_id=1, event="no_such_event", data={}, runtime=ext)
        assert notify(session, user_id=10**9, event="system", data={}, runtime=ext) is None
