"""Templates: Jinja2 per event, channel and language, seeded on first use, editable, sandboxed."""

from __future__ import annotations

import pytest
from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quantdesk.notifications.channels.base import template_context
from quantdesk.notifications.defaults import DEFAULT_TEMPLATES
from quantdesk.notifications.events import LANGUAGES, Channel, Event
from quantdesk.notifications.models import NotificationTemplate
from quantdesk.notifications.rendering import num, pct, render, seed_default_templates, signed
from tests.notifications.conftest import BACKTEST, raise_event
from tests.support import Api


def test_every_event_has_a_template_per_channel_and_language() -> None:
    expected = {(e.value, c.value, lang) for e in Event for c in Channel for lang in LANGUAGES}
    assert set(DEFAULT_TEMPLATES) == expected


def test_defaults_are_seeded_on_first_use_and_edits_are_kept(
    api: Api, app: Flask, db: Session
) -> None:
    assert db.scalar(select(func.count()).select_from(NotificationTemplate)) == 0
    account = api.logged_in()
    raise_event(app, account.id, "system", {"message": "hello"})
    assert db.scalar(select(func.count()).select_from(NotificationTemplate)) == len(
        DEFAULT_TEMPLATES
    )
    row = db.scalars(
        select(NotificationTemplate).where(
            NotificationTemplate.event == "system",
            NotificationTemplate.channel == "in_app",
            NotificationTemplate.language == "zh-CN",
        )
    ).one()
    row.subject = "公告 {{ data.title | upper }}"
    row.body = "{{ user.name }}，{{ data.message }}"  # noqa: RUF001
    db.commit()
    assert seed_default_templates(db) == 0  # nothing missing, the edit stays
    notification_id = raise_event(app, account.id, "system", {"title": "v2", "message": "hi"})
    item = api.get(f"/api/notifications/{notification_id}", headers=account.headers).get_json()
    assert item["title"] == "公告 V2"
    assert item["content"] == f"{account.username}，hi"  # noqa: RUF001


@pytest.mark.parametrize(
    "body",
    [
        "{{ data.__class__.__mro__ }}",  # the sandbox refuses private attributes
        "{{ ''.__class__.__subclasses__() }}",
        "{% for x in %}",  # a syntax error
        "{{ 1 / 0 }}",
    ],
)
def test_a_broken_or_unsafe_template_falls_back_to_the_builtin(
    db: Session, app: Flask, api: Api, body: str
) -> None:
    account = api.logged_in()
    seed_default_templates(db)
    row = db.scalars(
        select(NotificationTemplate).where(
            NotificationTemplate.event == "test",
            NotificationTemplate.channel == "in_app",
            NotificationTemplate.language == "zh-CN",
        )
    ).one()
    row.body = body
    db.commit()
    notification_id = raise_event(app, account.id, "test")
    item = api.get(f"/api/notifications/{notification_id}", headers=account.headers).get_json()
    assert item["content"] == "看到这条消息，说明该通知渠道工作正常。"  # noqa: RUF001
    assert "class" not in item["content"]


def test_english_and_chinese_by_the_users_language(api: Api, app: Flask) -> None:
    account = api.logged_in()
    first = raise_event(app, account.id, "price_alert", _ALERT)
    api.put("/api/auth/profile", headers=account.headers, json={"language": "en"})
    second = raise_event(app, account.id, "price_alert", _ALERT)
    zh = api.get(f"/api/notifications/{first}", headers=account.headers).get_json()
    en = api.get(f"/api/notifications/{second}", headers=account.headers).get_json()
    assert zh["title"] == "价格提醒：600519.SH 收于 1,712.50"  # noqa: RUF001
    assert "向上突破 1,700.00" in zh["content"]
    assert en["title"] == "Price alert: 600519.SH closed at 1,712.50"
    assert en["content"].splitlines()[:2] == [
        "Crossed above 1,700.00.",
        "Change +2.00% from the previous close 1,678.92 on 2024-05-06.",
    ]


_ALERT = {
    "symbol": "600519.SH",
    "condition": "above",
    "threshold": 1700,
    "last_close": 1712.5,
    "previous_close": 1678.92,
    "change_pct": 2.0,
    "date": "2024-05-06",
}


def test_signal_lists_render_in_every_channel(db: Session, api: Api) -> None:
    account = api.logged_in()
    from quantdesk.auth.models import User

    user = db.get(User, account.id)
    assert user is not None
    data = {
        "strategy_name": "Rotation",
        "date": "2024-05-06",
        "signals": [
            {"symbol": "600519.SH", "action": "buy", "quantity": 100, "price": 1712.5},
            {"symbol": "000001.SZ", "action": "sell", "weight": 0.25},
        ],
    }
    context = template_context("strategy_signal", data, user)
    text = render(db, event="strategy_signal", channel="in_app", language="en", context=context)
    assert text.title == "Signal from Rotation"
    assert text.body == (
        "Date: 2024-05-06\n- BUY 600519.SH x 100 @ 1,712.50\n- SELL 000001.SZ (weight 25.00%)"
    )
    markdown = render(
        db, event="strategy_signal", channel="webhook", language="zh-CN", context=context
    )
    assert "- 买入 600519.SH 100 股，价格 1,712.50" in markdown.body  # noqa: RUF001
    assert markdown.body.startswith("#### 交易信号：Rotation")  # noqa: RUF001
    html = render(db, event="strategy_signal", channel="email", language="en", context=context)
    assert "- SELL 000001.SZ (weight 25.00%)" in html.body
    assert html.body.startswith("<!doctype html>")


def test_missing_data_renders_as_a_dash_not_an_error(db: Session, api: Api) -> None:
    from quantdesk.auth.models import User

    account = api.logged_in()
    user = db.get(User, account.id)
    assert user is not None
    context = template_context("backtest_finished", {"backtest_id": 3}, user)
    text = render(db, event="backtest_finished", channel="in_app", language="en", context=context)
    assert text.title == "Backtest finished: #3"
    assert "Total return \u2014, annual \u2014" in text.body


@pytest.mark.parametrize(
    ("fn", "value", "shown"),
    [
        (pct, 0.1234, "12.34%"),
        (pct, None, "\u2014"),
        (pct, float("nan"), "\u2014"),
        (num, 1234567.891, "1,234,567.89"),
        (num, True, "\u2014"),
        (signed, 2, "+2.00"),
        (signed, -0.5, "-0.50"),
        (signed, "x", "\u2014"),
    ],
)
def test_filters(fn, value, shown: str) -> None:
    assert fn(value) == shown


def test_subjects_are_one_line(db: Session, api: Api) -> None:
    from quantdesk.auth.models import User

    account = api.logged_in()
    user = db.get(User, account.id)
    assert user is not None
    context = template_context("system", {"title": "a\r\nBcc: x@example.com"}, user)
    text = render(db, event="system", channel="email", language="en", context=context)
    assert text.title == "a Bcc: x@example.com"  # no header injection


def test_backtest_finished_reaches_every_default_channel(api: Api, app: Flask) -> None:
    account = api.logged_in()
    notification_id = raise_event(app, account.id, "backtest_finished", BACKTEST)
    log = api.get(
        f"/api/notifications/{notification_id}/deliveries", headers=account.headers
    ).get_json()["items"]
    assert [(row["channel"], row["outcome"]) for row in log] == [
        ("in_app", "sent"),
        ("email", "logged"),  # no SMTP_HOST in the tests' settings
    ]
