"""Bars and strategies for the paper-trading tests: two invented A-shares whose days we choose."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from quantdesk.market.models import Stock, StockPrice
from tests.support import Account, Api

# Codes outside the sample universe (market/providers/synthetic.py), so seeded data never mixes in.
SYMBOLS = ("600600.SH", "000999.SZ")
START = dt.date(2024, 1, 2)

# Counts its calls in ctx.state and asks for 100 more shares of each symbol on every call, so a
# step's signals, fills and book are easy to predict.
COUNTER = '''"""Buys 100 more shares of each symbol at every step; counts its calls in ctx.state."""
PARAMS = {"lot": 100}

def handle_bar(ctx, data):
    calls = ctx.state.get("calls", 0) + 1
    ctx.state["calls"] = calls
    seen = len(data.history(ctx.universe[0], "close", 1000))
    ctx.log("call", calls, "sees", seen, "bars")
    for symbol in ctx.universe:
        ctx.order_target(symbol, ctx.params["lot"] * calls)
'''

RAISES = """def handle_bar(ctx, data):
    ratio = 1 / (len(ctx.universe) - len(ctx.universe))
    ctx.log(ratio)
"""

SPINS = """def handle_bar(ctx, data):
    total = 0
    while True:
        total += 1
"""


def trading_days(count: int, start: dt.date = START) -> list[dt.date]:
    return [d.date() for d in pd.bdate_range(start, periods=count)]


def _price(symbol_index: int, day_index: int) -> float:
    return round(10.0 * (1 + symbol_index) + 0.05 * day_index, 2)


def add_bars(session: Session, days: Sequence[dt.date], symbols: Sequence[str] = SYMBOLS) -> None:
    """Store bars of `symbols` on `days` (after any stored ones), committed in the session."""
    for i, symbol in enumerate(symbols):
        if session.get(Stock, symbol) is None:
            session.add(
                Stock(
                    symbol=symbol,
                    name=f"Paper test {symbol}",
                    exchange=symbol[-2:],
                    board="main",
                    market="cn_a",
                    kind="stock",
                    currency="CNY",
                    listed_on=dt.date(2010, 1, 4),
                    source="test",
                )
            )
        stored = session.scalar(select(func.count()).where(StockPrice.symbol == symbol)) or 0
        for k, day in enumerate(days):
            n = stored + k
            close = _price(i, n)
            session.add(
                StockPrice(
                    symbol=symbol,
                    date=day,
                    open=round(close - 0.02, 2),
                    high=round(close + 0.05, 2),
                    low=round(close - 0.05, 2),
                    close=close,
                    volume=1_000_000,
                    amount=close * 1_000_000,
                    adj_close=close,
                    adj_factor=1.0,
                    prev_close=_price(i, n - 1) if n else close,
                )
            )
    session.commit()


def create_strategy(api: Api, account: Account, code: str = COUNTER, name: str = "Counter") -> int:
    response = api.post(
        "/api/strategies", headers=account.headers, json={"name": name, "code": code}
    )
    assert response.status_code == 201, response.get_json()
    return int(response.get_json()["id"])


def run(api: Api, account: Account, strategy_id: int, **body: object) -> dict:
    payload = {"symbols": list(SYMBOLS), "initial_capital": 100_000, **body}
    response = api.post(f"/api/strategies/{strategy_id}/run", headers=account.headers, json=payload)
    assert response.status_code == 202, response.get_json()
    return dict(response.get_json())


def logs(api: Api, account: Account, strategy_id: int, **query: object) -> list[dict]:
    response = api.get(
        f"/api/strategies/{strategy_id}/logs",
        headers=account.headers,
        query_string={"per_page": 100, "sort": "time", **query},
    )
    assert response.status_code == 200, response.get_json()
    return list(response.get_json()["items"])


def signals(api: Api, account: Account, strategy_id: int) -> list[dict]:
    response = api.get(
        f"/api/strategies/{strategy_id}/signals",
        headers=account.headers,
        query_string={"per_page": 100},
    )
    assert response.status_code == 200, response.get_json()
    return list(response.get_json()["items"])
