"""Price alerts: rules stored per user, checked by the data sync's call at each new close."""

from __future__ import annotations

import datetime as dt

import pytest
from flask import Flask

from quantdesk.extensions import extensions_of
from quantdesk.notifications.alerts import check_price_alerts, tripped
from tests.support import Account, Api, assert_error

DAY = dt.date(2024, 5, 6)


def _alert(api: Api, account: Account, **body: object) -> dict:
    response = api.post("/api/notifications/price-alerts", headers=account.headers, json=body)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def _check(app: Flask, symbol: str, last: float, previous: float | None, day=DAY) -> list[int]:
    ext = extensions_of(app)
    with ext.db.session_scope() as session:
        raised = check_price_alerts(
            session,
            symbol=symbol,
            last_close=last,
            previous_close=previous,
            bar_date=day,
            runtime=ext,
        )
        return [notification.user_id for notification in raised]


def test_crud_through_the_api(api: Api) -> None:
    account = api.logged_in()
    created = _alert(api, account, symbol="sh600519", condition="above", threshold=1700)
    assert created["symbol"] == "600519.SH"  # one spelling per instrument
    assert (created["condition"], created["threshold"], created["is_active"]) == (
        "above",
        1700.0,
        True,
    )
    assert created["last_triggered_at"] is None
    changed = api.put(
        f"/api/notifications/price-alerts/{created['id']}",
        headers=account.headers,
        json={"threshold": 1800, "note": "new high", "is_active": False},
    ).get_json()
    assert (changed["threshold"], changed["note"], changed["is_active"]) == (
        1800.0,
        "new high",
        False,
    )
    _alert(api, account, symbol="AAPL", condition="fall_pct", threshold=5)
    listed = api.get("/api/notifications/price-alerts", headers=account.headers).get_json()
    assert [item["symbol"] for item in listed["items"]] == ["AAPL", "600519.SH"]
    only = api.get(
        "/api/notifications/price-alerts?symbol=aapl", headers=account.headers
    ).get_json()
    assert [item["symbol"] for item in only["items"]] == ["AAPL"]
    deleted = api.delete(
        f"/api/notifications/price-alerts/{created['id']}", headers=account.headers
    )
    assert deleted.status_code == 204
    assert (
        api.get("/api/notifications/price-alerts", headers=account.headers).get_json()["total"] == 1
    )


@pytest.mark.parametrize(
    "body",
    [
        {"symbol": "not a symbol!", "condition": "above", "threshold": 10},
        {"symbol": "AAPL", "condition": "sideways", "threshold": 10},
        {"symbol": "AAPL", "condition": "above", "threshold": 0},
        {"symbol": "AAPL", "condition": "above", "threshold": -5},
        {"symbol": "AAPL", "condition": "above"},
    ],
)
def test_bad_alerts_are_422(api: Api, body: dict) -> None:
    account = api.logged_in()
    response = api.post("/api/notifications/price-alerts", headers=account.headers, json=body)
    assert_error(response, 422, "validation_error")


def test_another_users_alerts_are_404(api: Api) -> None:
    alice, bob = api.logged_in(), api.logged_in()
    alert = _alert(api, alice, symbol="AAPL", condition="above", threshold=200)
    path = f"/api/notifications/price-alerts/{alert['id']}"
    assert_error(api.put(path, headers=bob.headers, json={"threshold": 1}), 404)
    assert_error(api.delete(path, headers=bob.headers), 404)
    assert api.get("/api/notifications/price-alerts", headers=bob.headers).get_json()["total"] == 0


def test_a_crossing_notifies_the_owner_once_per_bar(api: Api, app: Flask) -> None:
    alice, bob = api.logged_in(), api.logged_in()
    _alert(api, alice, symbol="600519.SH", condition="above", threshold=1700, note="breakout")
    _alert(api, bob, symbol="600519.SH", condition="below", threshold=1600)
    _alert(api, bob, symbol="AAPL", condition="above", threshold=1)
    assert _check(app, "600519.SH", 1690, 1650) == []  # no crossing yet
    assert _check(app, "600519.SH", 1712.5, 1678.92) == [alice.id]
    assert _check(app, "600519.SH", 1712.5, 1678.92) == []  # the same bar synced again
    assert _check(app, "600519.SH", 1750, 1712.5, DAY + dt.timedelta(days=1)) == []  # still above
    items = api.get("/api/notifications", headers=alice.headers).get_json()["items"]
    (item,) = items
    assert item["event"] == "price_alert"
    assert item["data"]["symbol"] == "600519.SH"
    assert item["data"]["change_pct"] == pytest.approx(2.0, abs=0.001)
    assert item["data"]["date"] == "2024-05-06"
    assert "breakout" in item["content"]
    assert api.get("/api/notifications", headers=bob.headers).get_json()["total"] == 0
    alerts = api.get("/api/notifications/price-alerts", headers=alice.headers).get_json()
    assert alerts["items"][0]["last_triggered_at"].endswith("Z")


def test_inactive_alerts_and_first_bars_do_nothing(api: Api, app: Flask) -> None:
    account = api.logged_in()
    _alert(api, account, symbol="AAPL", condition="rise_pct", threshold=3, is_active=False)
    _alert(api, account, symbol="MSFT", condition="rise_pct", threshold=3)
    assert _check(app, "AAPL", 110, 100) == []
    assert _check(app, "MSFT", 110, None) == []  # no previous close: no change to compare
    assert _check(app, "MSFT", 110, 100) == [account.id]


@pytest.mark.parametrize(
    ("condition", "threshold", "last", "previous", "fires"),
    [
        ("above", 10, 10, 9.99, True),  # touching the line is crossing it
        ("above", 10, 11, 10, False),  # it was not below before
        ("above", 10, 9, 8, False),
        ("below", 10, 10, 10.5, True),
        ("below", 10, 9, 10, False),
        ("rise_pct", 5, 10.5, 10, True),
        ("rise_pct", 5, 10.49, 10, False),
        ("fall_pct", 5, 9.5, 10, True),
        ("fall_pct", 5, 10.5, 10, False),
        ("fall_pct", 10, 0.9, 1.0, True),  # -9.999999999999998 in binary floating point
    ],
)
def test_conditions(
    condition: str, threshold: float, last: float, previous: float, fires: bool
) -> None:
    assert tripped(condition, threshold, last, previous) is fires
