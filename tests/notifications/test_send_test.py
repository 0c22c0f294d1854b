"""POST /api/notifications/test: one message through each enabled channel, an outcome for each."""

from __future__ import annotations

from collections.abc import Callable

from aiosmtpd.controller import Controller
from flask import Flask

from tests.conftest import Inbox
from tests.notifications.conftest import Receiver, put_settings
from tests.support import Api, assert_error


def test_each_enabled_channel_reports_its_outcome(
    make_app: Callable[..., Flask], receiver: Receiver, smtp_server: tuple[Controller, Inbox]
) -> None:
    controller, inbox = smtp_server
    api = Api(
        make_app(
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=controller.port,
            SMTP_USE_TLS=False,
            NOTIFY_BACKOFF_SECONDS=30,  # the test send never waits for a retry
        )
    )
    account = api.logged_in()
    put_settings(
        api,
        account,
        {
            "webhooks": [
                {"kind": "feishu", "url": receiver.url("/ok"), "name": "ok"},
                {"kind": "generic", "url": receiver.url("/broken"), "name": "broken"},
                {"kind": "generic", "url": receiver.url("/off"), "name": "off", "enabled": False},
            ]
        },
    )
    receiver.answer((200, {"code": 0}), (500, {}))
    response = api.post(
        "/api/notifications/test", headers=account.headers, json={"message": "ping 42"}
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    results = {row["target"].split(" ")[0]: row for row in body["results"]}
    assert set(results) == {"in-app", f"{account.email[0]}***@example.com", "ok", "broken"}
    assert results["in-app"]["outcome"] == "sent"
    assert results["ok"] == {
        "channel": "webhook",
        "target": results["ok"]["target"],
        "webhook_id": results["ok"]["webhook_id"],
        "outcome": "sent",
        "status_code": 200,
        "error": None,
    }
    assert results["broken"]["outcome"] == "failed"
    assert results["broken"]["status_code"] == 500
    email = next(row for row in body["results"] if row["channel"] == "email")
    assert email["outcome"] == "sent"
    assert len(inbox.messages) == 1
    assert "ping 42" in receiver.to("/ok")[0].json()["content"]["text"]
    assert len(receiver.to("/broken")) == 1  # one try: the answer is immediate
    assert receiver.to("/off") == []
    inbox_items = api.get("/api/notifications", headers=account.headers).get_json()["items"]
    assert [(item["id"], item["event"]) for item in inbox_items] == [
        (body["notification_id"], "test")
    ]


def test_only_channels_enabled_for_test_are_used(api: Api) -> None:
    account = api.logged_in()
    put_settings(api, account, {"events": {"test": {"email": False, "webhook": False}}})
    response = api.post("/api/notifications/test", headers=account.headers)
    assert response.status_code == 200, response.get_json()
    assert [(row["channel"], row["outcome"]) for row in response.get_json()["results"]] == [
        ("in_app", "sent")
    ]


def test_the_test_send_is_rate_limited(make_app: Callable[..., Flask]) -> None:
    api = Api(make_app(NOTIFY_TEST_RATE_LIMIT="2 per minute"))
    account = api.logged_in()
    for _ in range(2):
        assert api.post("/api/notifications/test", headers=account.headers).status_code == 200
    error = assert_error(api.post("/api/notifications/test", headers=account.headers), 429)
    assert error["details"]["retry_after"] >= 1


def test_the_test_send_needs_a_login(api: Api) -> None:
    assert_error(api.post("/api/notifications/test", json={}), 401)
