"""Notification settings: events per channel, email, webhooks encrypted at rest and masked."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from sqlalchemy import select

from quantdesk import crypto
from quantdesk.extensions import extensions_of
from quantdesk.notifications.events import Channel, Event
from quantdesk.notifications.models import NotificationWebhook
from tests.notifications.conftest import put_settings
from tests.support import Api, assert_error

DINGTALK = "https://oapi.dingtalk.com/robot/send?access_token=0123456789abcdef0123456789abcdef"


def _stored(app: Flask) -> list[NotificationWebhook]:
    with extensions_of(app).db.session_factory() as session:
        return list(session.scalars(select(NotificationWebhook).order_by(NotificationWebhook.id)))


def test_defaults_everything_on_and_the_account_email(api: Api) -> None:
    account = api.logged_in()
    response = api.get("/api/notifications/settings", headers=account.headers)
    assert response.status_code == 200
    body = response.get_json()
    assert body["email"] is None
    assert body["effective_email"] == account.email
    assert body["language"] == "zh-CN"
    assert set(body["events"]) == {event.value for event in Event}
    assert all(
        channels == {channel.value: True for channel in Channel}
        for channels in body["events"].values()
    )
    assert body["webhooks"] == []


def test_events_are_merged_and_email_can_be_set_and_reset(api: Api) -> None:
    account = api.logged_in()
    body = put_settings(
        api,
        account,
        {"email": "Alerts@Example.com", "events": {"strategy_signal": {"email": False}}},
    )
    assert body["email"] == "alerts@example.com"
    assert body["effective_email"] == "alerts@example.com"
    assert body["events"]["strategy_signal"] == {"in_app": True, "email": False, "webhook": True}
    body = put_settings(api, account, {"events": {"price_alert": {"webhook": False}}})
    assert body["events"]["strategy_signal"]["email"] is False  # kept
    assert body["events"]["price_alert"]["webhook"] is False
    body = put_settings(api, account, {"email": None})
    assert body["email"] is None
    assert body["effective_email"] == account.email


@pytest.mark.parametrize(
    "body",
    [
        {"events": {"no_such_event": {"email": False}}},
        {"events": {"system": {"carrier_pigeon": True}}},
        {"events": {"system": {"email": "yes please"}}},
        {"email": "not an address"},
        {"webhooks": [{"url": "https://example.com/x"}]},  # a new one needs its kind
        {"webhooks": [{"kind": "slack", "url": "https://example.com/x"}]},
        {"webhooks": [{"id": 999999, "enabled": False}]},  # not one of theirs
        {"webhooks": [{"kind": "generic", "url": f"https://example.com/{n}"} for n in range(11)]},
    ],
)
def test_bad_settings_are_422(api: Api, body: dict) -> None:
    account = api.logged_in()
    response = api.put("/api/notifications/settings", headers=account.headers, json=body)
    assert_error(response, 422, "validation_error")


def test_webhook_urls_and_secrets_are_encrypted_and_masked(api: Api, app: Flask) -> None:
    account = api.logged_in()
    body = put_settings(
        api,
        account,
        {"webhooks": [{"kind": "dingtalk", "url": DINGTALK, "secret": "SECsupersecret1"}]},
    )
    (hook,) = body["webhooks"]
    assert hook["kind"] == "dingtalk"
    assert hook["name"] == "DingTalk"
    assert hook["url"] == "https://oapi.dingtalk.com/\u2026cdef"
    assert hook["has_secret"] is True
    assert hook["enabled"] is True
    shown = json.dumps(api.get("/api/notifications/settings", headers=account.headers).get_json())
    assert "0123456789abcdef0123" not in shown
    assert "supersecret" not in shown
    (row,) = _stored(app)
    assert "access_token" not in row.url_encrypted
    assert "supersecret" not in (row.secret_encrypted or "")
    settings = extensions_of(app).settings
    assert crypto.decrypt(settings, row.url_encrypted) == DINGTALK
    assert crypto.decrypt(settings, row.secret_encrypted or "") == "SECsupersecret1"


def test_webhooks_are_kept_changed_and_deleted_through_the_list(api: Api, app: Flask) -> None:
    account = api.logged_in()
    first, second = put_settings(
        api,
        account,
        {
            "webhooks": [
                {"kind": "dingtalk", "url": DINGTALK, "secret": "SECone", "name": "Team"},
                {"kind": "wecom", "url": "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k"},
            ]
        },
    )["webhooks"]
    # Rename the first and drop its secret; keep its URL (not sent); leave the second out.
    body = put_settings(
        api,
        account,
        {"webhooks": [{"id": first["id"], "name": "Quant team", "secret": None, "enabled": False}]},
    )
    (hook,) = body["webhooks"]
    assert hook["id"] == first["id"]
    assert (hook["name"], hook["has_secret"], hook["enabled"]) == ("Quant team", False, False)
    (row,) = _stored(app)
    assert crypto.decrypt(extensions_of(app).settings, row.url_encrypted) == DINGTALK
    assert row.id != second["id"]
    assert put_settings(api, account, {"webhooks": []})["webhooks"] == []


def test_another_users_webhook_cannot_be_touched(api: Api, app: Flask) -> None:
    alice, bob = api.logged_in(), api.logged_in()
    (hook,) = put_settings(api, alice, {"webhooks": [{"kind": "generic", "url": DINGTALK}]})[
        "webhooks"
    ]
    response = api.put(
        "/api/notifications/settings",
        headers=bob.headers,
        json={"webhooks": [{"id": hook["id"], "url": "https://evil.example.com/x"}]},
    )
    assert "webhooks" in assert_error(response, 422)["details"]
    assert api.get("/api/notifications/settings", headers=bob.headers).get_json()["webhooks"] == []
    (row,) = _stored(app)
    assert crypto.decrypt(extensions_of(app).settings, row.url_encrypted) == DINGTALK


def test_settings_need_a_login(api: Api) -> None:
    assert_error(api.get("/api/notifications/settings"), 401)
    assert_error(api.put("/api/notifications/settings", json={}), 401)


def test_an_explicit_key_encrypts_and_rotation_keeps_old_values_readable(
    make_app: Callable[..., Flask],
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    app = make_app(ENCRYPTION_KEY=old)
    api = Api(app)
    account = api.logged_in()
    put_settings(api, account, {"webhooks": [{"kind": "generic", "url": DINGTALK}]})
    (row,) = _stored(app)
    assert Fernet(old.encode()).decrypt(row.url_encrypted.encode()).decode() == DINGTALK
    settings = extensions_of(app).settings
    rotated = settings.model_copy(update={"ENCRYPTION_KEY": f"{new},{old}"})
    assert crypto.decrypt(rotated, row.url_encrypted) == DINGTALK
    assert Fernet(new.encode()).decrypt(crypto.encrypt(rotated, "x").encode()) == b"x"
    without = settings.model_copy(update={"ENCRYPTION_KEY": new})
    with pytest.raises(crypto.DecryptionFailed, match="ENCRYPTION_KEY"):
        crypto.decrypt(without, row.url_encrypted)


def test_a_bad_encryption_key_fails_fast(tmp_path) -> None:
    from pydantic import ValidationError

    from quantdesk.settings import Settings

    with pytest.raises(ValidationError, match="Fernet key"):
        Settings(_env_file=None, VAR_DIR=tmp_path, ENCRYPTION_KEY="too-short")  # type: ignore[call-arg]


def test_the_derived_key_comes_from_secret_key(tmp_path) -> None:
    from quantdesk.settings import Settings

    one = Settings(_env_file=None, VAR_DIR=tmp_path, SECRET_KEY="a" * 40)  # type: ignore[call-arg]
    two = Settings(_env_file=None, VAR_DIR=tmp_path, SECRET_KEY="b" * 40)  # type: ignore[call-arg]
    token = crypto.encrypt(one, "hello")
    assert crypto.decrypt(one, token) == "hello"
    with pytest.raises(crypto.DecryptionFailed):
        crypto.decrypt(two, token)
