"""Change password (revokes other sessions) and reset by a mailed single-use token (30 minutes)."""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Callable

import pytest
import time_machine
from aiosmtpd.controller import Controller
from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.auth.models import AuditEvent, PasswordResetToken
from quantdesk.extensions import extensions_of
from quantdesk.mail import OutboxEmail
from tests.conftest import Inbox
from tests.support import Api, assert_error, bearer

NEW = "a brand new passphrase"


def test_change_password_revokes_other_sessions_but_not_this_one(api: Api, db: Session) -> None:
    account = api.logged_in()
    laptop = api.login(account).get_json()
    response = api.post(
        "/api/auth/change-password",
        headers=account.headers,
        json={"old_password": account.password, "new_password": NEW},
    )
    assert response.status_code == 200, response.get_json()
    assert "1 other session" in response.get_json()["message"]
    assert api.get("/api/auth/profile", headers=account.headers).status_code == 200
    assert api.post("/api/auth/refresh", headers=bearer(account.refresh_token)).status_code == 200
    assert_error(api.get("/api/auth/profile", headers=bearer(laptop["access_token"])), 401)
    assert_error(api.post("/api/auth/refresh", headers=bearer(laptop["refresh_token"])), 401)
    assert_error(api.login(account), 401)
    assert api.login(account, NEW).status_code == 200
    events = db.scalars(select(AuditEvent.event).where(AuditEvent.user_id == account.id)).all()
    assert "password_change" in events


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("wrong old password", NEW, "old_password"),
        (None, "short", "new_password"),
        (None, None, "new_password"),  # the same as the old one
    ],
)
def test_change_password_refusals(api: Api, old: str | None, new: str | None, field: str) -> None:
    account = api.logged_in()
    body = {"old_password": old or account.password, "new_password": new or account.password}
    error = assert_error(
        api.post("/api/auth/change-password", headers=account.headers, json=body), 422
    )
    assert field in error["details"]
    assert api.login(account).status_code == 200  # nothing changed


def _token_from(body: str) -> str:
    match = re.search(r"Reset token: (\S+)", body)
    assert match, body
    return match.group(1)


def test_reset_without_smtp_goes_to_outbox_and_log(
    api: Api, db: Session, caplog: pytest.LogCaptureFixture
) -> None:
    account = api.logged_in()
    with caplog.at_level(logging.INFO, logger="quantdesk.mail"):
        response = api.post("/api/auth/reset-password", json={"email": account.email.upper()})
    assert response.status_code == 202
    mail = db.scalars(select(OutboxEmail).where(OutboxEmail.to_address == account.email)).one()
    assert mail.status == "logged"
    token = _token_from(mail.body)
    assert token in caplog.text
    stored = db.scalars(select(PasswordResetToken)).one()
    assert token not in stored.token_hash  # only the digest is kept
    response = api.post("/api/auth/reset-password", json={"token": token, "new_password": NEW})
    assert response.status_code == 200, response.get_json()
    assert api.login(account, NEW).status_code == 200
    assert_error(api.login(account), 401)
    # Every earlier session is gone.
    assert_error(api.get("/api/auth/profile", headers=account.headers), 401)
    events = db.scalars(select(AuditEvent.event).where(AuditEvent.user_id == account.id)).all()
    assert {"password_reset_request", "password_reset"} <= set(events)
    # Single use.
    again = api.post("/api/auth/reset-password", json={"token": token, "new_password": NEW + "!"})
    assert "token" in assert_error(again, 422)["details"]


def test_reset_for_unknown_email_is_202_and_sends_nothing(api: Api, db: Session) -> None:
    response = api.post("/api/auth/reset-password", json={"email": "nobody@example.com"})
    assert response.status_code == 202
    assert db.scalars(select(OutboxEmail)).all() == []


def test_reset_token_expires_after_30_minutes(api: Api, db: Session) -> None:
    account = api.register()
    start = dt.datetime.now(dt.UTC)
    with time_machine.travel(start, tick=False) as clock:
        api.post("/api/auth/reset-password", json={"email": account.email})
        token = _token_from(db.scalars(select(OutboxEmail)).one().body)
        clock.shift(dt.timedelta(minutes=30, seconds=1))
        response = api.post("/api/auth/reset-password", json={"token": token, "new_password": NEW})
        assert_error(response, 422)
    assert api.login(account).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{}, {"email": "a@example.com", "token": "x" * 20}, {"token": "x" * 20}, {"email": "nope"}],
)
def test_reset_body_must_be_one_of_the_two_forms(api: Api, body: dict) -> None:
    assert_error(api.post("/api/auth/reset-password", json=body), 422, "validation_error")


def test_wrong_reset_token_is_422(api: Api) -> None:
    response = api.post("/api/auth/reset-password", json={"token": "y" * 43, "new_password": NEW})
    assert "token" in assert_error(response, 422)["details"]


def test_reset_mail_is_sent_over_smtp(
    make_app: Callable[..., Flask], smtp_server: tuple[Controller, Inbox]
) -> None:
    controller, inbox = smtp_server
    app = make_app(
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=controller.port,
        SMTP_USE_TLS=False,
        MAIL_FROM="QuantDesk <noreply@quantdesk.test>",
    )
    api = Api(app)
    account = api.register()
    response = api.post("/api/auth/reset-password", json={"email": account.email})
    assert response.status_code == 202
    assert len(inbox.messages) == 1
    envelope, message = inbox.messages[0]
    assert envelope.rcpt_tos == [account.email]
    assert message["Subject"] == "Reset your QuantDesk password"
    assert message["From"] == "QuantDesk <noreply@quantdesk.test>"
    token = _token_from(message.get_payload(decode=True).decode())  # type: ignore[union-attr]
    assert (
        api.post("/api/auth/reset-password", json={"token": token, "new_password": NEW}).status_code
        == 200
    )
    assert api.login(account, NEW).status_code == 200


def test_smtp_failure_is_recorded_and_still_202(make_app: Callable[..., Flask]) -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    app = make_app(SMTP_HOST="127.0.0.1", SMTP_PORT=9, SMTP_USE_TLS=False)
    api = Api(app)
    account = api.register()
    assert api.post("/api/auth/reset-password", json={"email": account.email}).status_code == 202
    with extensions_of(app).db.session_factory() as session:
        mail = session.scalars(select(OutboxEmail)).one()
    assert mail.status == "failed"
    assert mail.attempts == 1
    assert "ConnectionRefusedError" in (mail.error or "")
