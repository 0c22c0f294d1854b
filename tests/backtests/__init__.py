"""Backtest tests: strategies they run and the calls a client makes."""

from __future__ import annotations

import time
from typing import Any

from tests.support import Account, Api

# Trades every symbol of its universe on a moving-average cross, logs every 50th bar and
# records its cash: fills, refusals (lots, T+1), minimum commissions, logs and records.
SMA = """
PARAMS = {"fast": 5, "slow": 20}

def handle_bar(ctx, data):
    ctx.state["bars"] = ctx.state.get("bars", 0) + 1
    if ctx.state["bars"] % 50 == 0:
        ctx.log("bar", ctx.state["bars"], "value", round(ctx.total_value))
    for symbol in ctx.universe:
        close = data.history(symbol, "close", ctx.params["slow"])
        if len(close) < ctx.params["slow"]:
            continue
        if close[-ctx.params["fast"]:].mean() > close.mean():
            ctx.order_target_percent(symbol, 0.95 / len(ctx.universe))
        else:
            ctx.order_target_percent(symbol, 0)
    ctx.record(cash=ctx.cash)
"""

FAILING = """
PARAMS = {"fast": 5}

def helper(x):
    return 1 / x

def handle_bar(ctx, data):
    if ctx.now.month == 3:
        helper(0)
"""

SPINNING = """
def handle_bar(ctx, data):
    n = 0
    while True:
        n += 1
"""

CHATTY = """
def handle_bar(ctx, data):
    ctx.log("now", ctx.now)
"""

CN_BODY = {
    "symbols": ["600519.SH"],
    "start_date": "2019-01-01",
    "end_date": "2020-12-31",
    "initial_capital": 1_000_000,
}


def make_strategy(api: Api, account: Account, code: str = SMA, name: str = "sma") -> int:
    response = api.post(
        "/api/strategies", json={"name": name, "code": code}, headers=account.headers
    )
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["id"])


def start(api: Api, account: Account, strategy_id: int, **body: Any) -> dict[str, Any]:
    """POST a backtest (CN_BODY with `body` on top); asserts the 202."""
    response = api.post(
        "/api/backtests",
        json={**CN_BODY, "strategy_id": strategy_id, **body},
        headers=account.headers,
    )
    assert response.status_code == 202, response.get_json()
    created: dict[str, Any] = response.get_json()
    return created


def fetch(api: Api, account: Account, backtest_id: int, suffix: str = "") -> dict[str, Any]:
    response = api.get(f"/api/backtests/{backtest_id}{suffix}", headers=account.headers)
    assert response.status_code == 200, response.get_json()
    found: dict[str, Any] = response.get_json()
    return found


def wait_until(api: Api, account: Account, backtest_id: int, *statuses: str) -> dict[str, Any]:
    """Poll the backtest until its status is one of `statuses` (30 s at most)."""
    deadline = time.monotonic() + 30
    while True:
        found = fetch(api, account, backtest_id)
        if found["status"] in statuses:
            return found
        assert time.monotonic() < deadline, found
        time.sleep(0.05)


def notifications(api: Api, account: Account) -> list[dict[str, Any]]:
    response = api.get("/api/notifications", headers=account.headers)
    assert response.status_code == 200
    items: list[dict[str, Any]] = response.get_json()["items"]
    return items
