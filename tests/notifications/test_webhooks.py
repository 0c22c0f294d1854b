"""Webhooks: each format reaches a real HTTP server, signed as the platforms check; retries."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from flask import Flask
from sqlalchemy import select

from quantdesk.extensions import extensions_of
from quantdesk.notifications.channels.base import Target
from quantdesk.notifications.delivery import deliver
from quantdesk.notifications.events import Channel
from quantdesk.notifications.models import NotificationDelivery
from tests.notifications.conftest import (
    BACKTEST,
    Receiver,
    deliveries,
    put_settings,
    raise_event,
)
from tests.support import Account, Api


def _only_webhooks(api: Api, account: Account, *hooks: dict) -> list[dict]:
    """Webhooks on, email off (so only the receiver matters); returns the stored webhooks."""
    events = {"backtest_finished": {"email": False}, "test": {"email": False}}
    return put_settings(api, account, {"events": events, "webhooks": list(hooks)})["webhooks"]


def _b64_hmac(key: bytes, message: bytes) -> str:
    return base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def test_dingtalk_markdown_signed_in_the_query(napi: Api, receiver: Receiver) -> None:
    account = napi.logged_in()
    secret = "SEC0123456789abcdef"
    _only_webhooks(
        napi,
        account,
        {
            "kind": "dingtalk",
            "url": receiver.url("/robot/send?access_token=tok123"),
            "secret": secret,
        },
    )
    before = int(time.time() * 1000)
    raise_event(napi.app, account.id, "backtest_finished", BACKTEST)
    (request,) = receiver.to("/robot/send")
    assert request.query["access_token"] == ["tok123"]
    timestamp = request.query["timestamp"][0]
    assert before <= int(timestamp) <= int(time.time() * 1000)
    expected = _b64_hmac(secret.encode(), f"{timestamp}\n{secret}".encode())
    assert request.query["sign"] == [expected]
    body = request.json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "回测完成：MA cross 2020"  # noqa: RUF001 (zh-CN default)
    text = body["markdown"]["text"]
    assert text.startswith("#### 回测完成：MA cross 2020")  # noqa: RUF001
    assert "12.34%" in text
    assert "1,123,400.00" in text
    assert "QuantDesk" in text  # a DingTalk keyword check passes
    assert request.headers["content-type"].startswith("application/json")


def test_wecom_markdown(napi: Api, receiver: Receiver) -> None:
    account = napi.logged_in()
    napi.put("/api/auth/profile", headers=account.headers, json={"language": "en"})
    _only_webhooks(
        napi, account, {"kind": "wecom", "url": receiver.url("/cgi-bin/webhook/send?key=k-1")}
    )
    raise_event(napi.app, account.id, "backtest_finished", BACKTEST)
    (request,) = receiver.to("/cgi-bin/webhook/send")
    assert request.query == {"key": ["k-1"]}
    body = request.json()
    assert set(body) == {"msgtype", "markdown"}
    assert body["msgtype"] == "markdown"
    content = body["markdown"]["content"]
    assert content.startswith("#### Backtest finished: MA cross 2020")
    assert "Sharpe 1.23" in content
    assert len(content.encode()) <= 4096


def test_feishu_text_signed_in_the_body(napi: Api, receiver: Receiver) -> None:
    account = napi.logged_in()
    napi.put("/api/auth/profile", headers=account.headers, json={"language": "en"})
    secret = "feishu-secret"
    _only_webhooks(
        napi,
        account,
        {"kind": "feishu", "url": receiver.url("/open-apis/bot/v2/hook/abc"), "secret": secret},
    )
    before = int(time.time())
    raise_event(napi.app, account.id, "backtest_finished", BACKTEST)
    (request,) = receiver.to("/open-apis/bot/v2/hook/abc")
    body = request.json()
    assert body["msg_type"] == "text"
    assert body["content"]["text"].startswith("Backtest finished: MA cross 2020\nStrategy: Dual MA")
    timestamp = body["timestamp"]
    assert before <= int(timestamp) <= int(time.time())
    # Feishu's documented check: key = "{timestamp}\n{secret}", empty message.
    assert body["sign"] == _b64_hmac(f"{timestamp}\n{secret}".encode(), b"")


def test_generic_json_with_hmac_signature(napi: Api, receiver: Receiver) -> None:
    account = napi.logged_in()
    _only_webhooks(
        napi, account, {"kind": "generic", "url": receiver.url("/in"), "secret": "s3cret"}
    )
    notification_id = raise_event(napi.app, account.id, "backtest_finished", BACKTEST)
    (request,) = receiver.to("/in")
    body = request.json()
    assert body["event"] == "backtest_finished"
    assert body["notification_id"] == notification_id
    assert body["data"] == BACKTEST
    assert body["title"] == "回测完成：MA cross 2020"  # noqa: RUF001
    assert body["created_at"].endswith("Z")
    assert request.headers["x-quantdesk-event"] == "backtest_finished"
    timestamp = request.headers["x-quantdesk-timestamp"]
    digest = hmac.new(b"s3cret", f"{timestamp}.".encode() + request.body, hashlib.sha256)
    assert request.headers["x-quantdesk-signature"] == "sha256=" + digest.hexdigest()


def test_unsigned_generic_webhook_has_no_signature(napi: Api, receiver: Receiver) -> None:
    account = napi.logged_in()
    _only_webhooks(napi, account, {"kind": "generic", "url": receiver.url("/plain")})
    raise_event(napi.app, account.id, "system", {"title": "Maintenance", "message": "at 22:00"})
    (request,) = receiver.to("/plain")
    assert "x-quantdesk-signature" not in request.headers
    assert request.json()["text"] == "at 22:00"


def test_a_failing_webhook_is_retried_with_backoff_and_logged(
    napi: Api, receiver: Receiver
) -> None:
    account = napi.logged_in()
    _only_webhooks(napi, account, {"kind": "generic", "url": receiver.url("/flaky")})
    receiver.answer((500, {"error": "boom"}), (500, {"error": "boom"}), (200, {}))
    started = time.monotonic()
    notification_id = raise_event(napi.app, account.id, "backtest_finished", BACKTEST)
    assert len(receiver.to("/flaky")) == 3
    assert time.monotonic() - started >= 0.01 + 0.02  # two waits, the second twice the first
    log = [row for row in deliveries(napi, account, notification_id) if row["channel"] == "webhook"]
    assert [(row["attempt"], row["outcome"], row["status_code"]) for row in log] == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "sent", 200),
    ]
    assert log[0]["error"].startswith("HTTP 500")
    assert "/flaky" not in log[0]["target"]  # the URL is masked in the log


def test_retries_stop_after_notify_retries(make_app, receiver: Receiver) -> None:
    api = Api(make_app(NOTIFY_BACKOFF_SECONDS=0, NOTIFY_RETRIES=1))
    account = api.logged_in()
    _only_webhooks(api, account, {"kind": "generic", "url": receiver.url("/down")})
    receiver.answer(*[(503, {})] * 5)
    notification_id = raise_event(api.app, account.id, "backtest_finished", BACKTEST)
    assert len(receiver.to("/down")) == 2
    outcomes = [row["outcome"] for row in deliveries(api, account, notification_id)]
    assert outcomes == ["sent", "failed", "failed"]  # in-app, then two webhook attempts


def test_client_errors_and_redirects_are_not_retried(napi: Api, receiver: Receiver) -> None:
    account = napi.logged_in()
    _only_webhooks(
        napi,
        account,
        {"kind": "generic", "url": receiver.url("/gone"), "name": "gone"},
        {"kind": "generic", "url": receiver.url("/moved"), "name": "moved"},
    )
    receiver.answer((404, {}), (302, {}, {"Location": receiver.url("/elsewhere")}))
    notification_id = raise_event(napi.app, account.id, "backtest_finished", BACKTEST)
    assert len(receiver.to("/gone")) + len(receiver.to("/moved")) == 2
    assert receiver.to("/elsewhere") == []  # the redirect was not followed
    log = {row["target"].split(" ")[0]: row for row in deliveries(napi, account, notification_id)}
    assert {log["gone"]["status_code"], log["moved"]["status_code"]} == {404, 302}
    errors = {log["gone"]["error"], log["moved"]["error"]}
    assert any("redirects are not followed" in error for error in errors)
    assert all(log[name]["attempt"] == 1 for name in ("gone", "moved"))


def test_a_bot_refusing_in_a_200_is_a_failure(napi: Api, receiver: Receiver) -> None:
    account = napi.logged_in()
    _only_webhooks(napi, account, {"kind": "dingtalk", "url": receiver.url("/robot/send")})
    receiver.answer(*[(200, {"errcode": 310000, "errmsg": "sign not match"})] * 4)
    notification_id = raise_event(napi.app, account.id, "backtest_finished", BACKTEST)
    last = deliveries(napi, account, notification_id)[-1]
    assert last["outcome"] == "failed"
    assert "310000" in last["error"]
    assert "sign not match" in last["error"]


def test_a_failing_channel_never_blocks_the_others(
    napi: Api, receiver: Receiver, smtp_server, make_app
) -> None:
    controller, inbox = smtp_server
    api = Api(
        make_app(
            NOTIFY_BACKOFF_SECONDS=0,
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=controller.port,
            SMTP_USE_TLS=False,
        )
    )
    account = api.logged_in()
    put_settings(
        api,
        account,
        {
            "webhooks": [
                {"kind": "generic", "url": "http://127.0.0.1:9/refused", "name": "dead"},
                {"kind": "generic", "url": receiver.url("/alive"), "name": "alive"},
            ]
        },
    )
    notification_id = raise_event(api.app, account.id, "strategy_error", {"strategy_name": "X"})
    assert len(receiver.to("/alive")) == 1
    assert len(inbox.messages) == 1
    log = deliveries(api, account, notification_id)
    by_target = {}
    for row in log:
        by_target.setdefault(row["target"].split(" ")[0], []).append(row["outcome"])
    assert by_target["dead"] == ["failed"] * 4  # connection refused, retried, given up
    assert by_target["alive"] == ["sent"]
    assert by_target["in-app"] == ["sent"]
    assert "sent" in [row["outcome"] for row in log if row["channel"] == "email"]
    assert (
        "ConnectionError" in next(row for row in log if row["target"].startswith("dead"))["error"]
    )


def test_a_delivery_that_already_succeeded_is_not_sent_again(
    napi: Api, napp: Flask, receiver: Receiver
) -> None:
    account = napi.logged_in()
    (hook,) = _only_webhooks(napi, account, {"kind": "generic", "url": receiver.url("/once")})
    notification_id = raise_event(napp, account.id, "backtest_finished", BACKTEST)
    assert len(receiver.to("/once")) == 1
    # The same task delivered a second time (a Celery worker died after sending).
    ext = extensions_of(napp)
    target = Target(Channel.WEBHOOK, "again", hook["id"])
    result = deliver(ext, notification_id=notification_id, target=target, retries=3)
    assert result.outcome == "sent"
    assert len(receiver.to("/once")) == 1
    with ext.db.session_factory() as session:
        rows = session.scalars(
            select(NotificationDelivery).where(NotificationDelivery.channel == "webhook")
        ).all()
    assert len(rows) == 1


def test_disabled_webhooks_and_events_send_nothing(napi: Api, receiver: Receiver) -> None:
    account = napi.logged_in()
    put_settings(
        napi,
        account,
        {
            "events": {"strategy_signal": {"webhook": False}},
            "webhooks": [
                {"kind": "generic", "url": receiver.url("/off"), "enabled": False},
                {"kind": "generic", "url": receiver.url("/on")},
            ],
        },
    )
    raise_event(napi.app, account.id, "strategy_signal", {"strategy_name": "S", "signals": []})
    assert receiver.requests == []
    raise_event(napi.app, account.id, "strategy_error", {"strategy_name": "S", "error": "x"})
    assert [request.path for request in receiver.requests] == ["/on"]


def test_token_bearing_urls_never_reach_the_log(napi: Api) -> None:
    account = napi.logged_in()
    put_settings(
        napi,
        account,
        {
            "events": {"system": {"email": False}},
            "webhooks": [
                {"kind": "wecom", "url": "http://127.0.0.1:9/cgi-bin/webhook/send?key=SECRETKEY1"}
            ],
        },
    )
    notification_id = raise_event(napi.app, account.id, "system", {"message": "hi"})
    log = deliveries(napi, account, notification_id)
    assert "SECRETKEY1" not in json.dumps(log)
    assert any(row["outcome"] == "failed" for row in log)
