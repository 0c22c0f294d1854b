"""Email: a real SMTP server on loopback receives the HTML (autoescaped) and text mail; retries."""

from __future__ import annotations

from collections.abc import Callable
from email.message import Message

from aiosmtpd.controller import Controller
from flask import Flask
from sqlalchemy import select

from quantdesk.extensions import extensions_of
from quantdesk.mail import OutboxEmail
from tests.conftest import Inbox
from tests.notifications.conftest import (
    BACKTEST,
    FAST_RETRIES,
    deliveries,
    put_settings,
    raise_event,
)
from tests.support import Api


def _smtp_app(make_app: Callable[..., Flask], controller: Controller) -> Flask:
    return make_app(
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=controller.port,
        SMTP_USE_TLS=False,
        MAIL_FROM="QuantDesk <noreply@quantdesk.test>",
        **FAST_RETRIES,
    )


def _parts(message: Message) -> dict[str, str]:
    parts = {}
    for part in message.walk():
        if part.get_content_maintype() == "text":
            payload = part.get_payload(decode=True).decode()  # type: ignore[union-attr]
            parts[part.get_content_type()] = payload.replace("\r\n", "\n")
    return parts


def test_the_email_arrives_with_html_and_text(
    make_app: Callable[..., Flask], smtp_server: tuple[Controller, Inbox]
) -> None:
    controller, inbox = smtp_server
    api = Api(_smtp_app(make_app, controller))
    account = api.logged_in()
    api.put("/api/auth/profile", headers=account.headers, json={"language": "en"})
    data = {**BACKTEST, "strategy_name": "<script>alert(1)</script> & Co"}
    notification_id = raise_event(api.app, account.id, "backtest_finished", data)
    ((envelope, message),) = inbox.messages
    assert envelope.rcpt_tos == [account.email]
    assert message["Subject"] == "Backtest finished: MA cross 2020"
    assert message["From"] == "QuantDesk <noreply@quantdesk.test>"
    parts = _parts(message)
    html, text = parts["text/html"], parts["text/plain"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html  # autoescaped
    assert "<script>" not in html
    assert "<h2" in html  # the template's own markup is kept
    assert "Total return 12.34%" in html
    assert text.startswith("Backtest finished: MA cross 2020\n\nStrategy: <script>")  # plain text
    log = [row for row in deliveries(api, account, notification_id) if row["channel"] == "email"]
    assert [(row["attempt"], row["outcome"]) for row in log] == [(1, "sent")]
    assert log[0]["target"] == f"{account.email[0]}***@example.com"


def test_the_users_language_picks_the_template(
    make_app: Callable[..., Flask], smtp_server: tuple[Controller, Inbox]
) -> None:
    controller, inbox = smtp_server
    api = Api(_smtp_app(make_app, controller))
    account = api.logged_in()  # zh-CN by default
    raise_event(api.app, account.id, "strategy_error", {"strategy_name": "双均线", "error": "E"})
    ((_, message),) = inbox.messages
    assert message["Subject"] == "策略出错：双均线"  # noqa: RUF001
    assert "模拟交易因错误停止" in _parts(message)["text/html"]


def test_a_chosen_address_and_a_turned_off_event(
    make_app: Callable[..., Flask], smtp_server: tuple[Controller, Inbox]
) -> None:
    controller, inbox = smtp_server
    api = Api(_smtp_app(make_app, controller))
    account = api.logged_in()
    put_settings(
        api,
        account,
        {"email": "desk@example.org", "events": {"strategy_signal": {"email": False}}},
    )
    raise_event(api.app, account.id, "strategy_signal", {"strategy_name": "S", "signals": []})
    assert inbox.messages == []
    raise_event(api.app, account.id, "system", {"title": "Upgrade", "message": "tonight"})
    ((envelope, message),) = inbox.messages
    assert envelope.rcpt_tos == ["desk@example.org"]
    assert message["Subject"] == "Upgrade"


def test_smtp_down_is_retried_with_one_outbox_mail(make_app: Callable[..., Flask]) -> None:
    # Port 9 (discard) on loopback: nothing listens, every connection is refused.
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=9, SMTP_USE_TLS=False, **FAST_RETRIES)
    api = Api(app)
    account = api.logged_in()
    notification_id = raise_event(app, account.id, "system", {"message": "x"})
    log = [row for row in deliveries(api, account, notification_id) if row["channel"] == "email"]
    assert [row["outcome"] for row in log] == ["failed"] * 4  # the first try and 3 retries
    assert [row["attempt"] for row in log] == [1, 2, 3, 4]
    assert "ConnectionRefusedError" in log[-1]["error"]
    with extensions_of(app).db.session_factory() as session:
        (mail,) = session.scalars(select(OutboxEmail)).all()
    assert mail.status == "failed"
    assert mail.attempts == 4
    assert mail.html is not None
