"""The market endpoints through HTTP on both backends: search, detail, price, history, lists."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.engine.rules import limit_prices
from quantdesk.market.models import StockPrice
from quantdesk.market.providers import synthetic
from tests.support import Account, Api, assert_error

D = "/api/data"


def get(api: Api, user: Account, path: str, **query: object) -> dict:
    response = api.get(path, headers=user.headers, query_string=query)
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def test_every_market_endpoint_needs_a_token(api: Api, market_data: object) -> None:
    for path in (
        f"{D}/stocks",
        f"{D}/stocks/600519.SH",
        f"{D}/stocks/600519.SH/price",
        f"{D}/stocks/600519.SH/history",
        f"{D}/stocks/600519.SH/indicators",
        f"{D}/market/indices",
        f"{D}/market/sectors",
        f"{D}/watchlist",
    ):
        assert_error(api.get(path), 401, "unauthorized")


def test_search_by_symbol_or_name_with_filters(api: Api, user: Account) -> None:
    page = get(api, user, f"{D}/stocks", q="60051")
    assert [item["symbol"] for item in page["items"]] == ["600519.SH"]
    banks = get(api, user, f"{D}/stocks", q="银行", per_page=100)
    assert {item["industry"] for item in banks["items"]} == {"银行"}
    assert banks["total"] == 3
    assert all(item["synthetic"] for item in banks["items"])
    spelled = get(api, user, f"{D}/stocks", q="sh600519")
    assert [item["symbol"] for item in spelled["items"]] == ["600519.SH"]
    us = get(api, user, f"{D}/stocks", exchange="nasdaq")
    assert {item["symbol"] for item in us["items"]} == {"AAPL", "GOOG", "MSFT"}
    assert not any(item["synthetic"] for item in us["items"])
    star = get(api, user, f"{D}/stocks", q="688", per_page=100)
    assert {item["board"] for item in star["items"]} == {"star"}
    health = get(api, user, f"{D}/stocks", sector="医药卫生", per_page=100)
    assert health["total"] == 7
    assert {item["sector"] for item in health["items"]} == {"医药卫生"}
    indices = get(api, user, f"{D}/stocks", kind="index")
    assert {item["symbol"] for item in indices["items"]} == {"000300.SH", "000001.SH"}
    biggest = get(api, user, f"{D}/stocks", sort="-market_cap", market="cn_a", per_page=5)
    caps = [item["market_cap"] for item in biggest["items"]]
    assert caps == sorted(caps, reverse=True)
    assert get(api, user, f"{D}/stocks", q="no such thing")["total"] == 0
    everything = get(api, user, f"{D}/stocks", per_page=100)
    assert everything["total"] == 62  # 56 synthetic stocks, 2 indices, 4 US stocks
    assert everything["per_page"] == 100


def test_search_rejects_bad_parameters(api: Api, user: Account) -> None:
    for query in ({"per_page": 101}, {"sort": "price"}, {"kind": "bond"}, {"market": "hk"}):
        error = assert_error(api.get(f"{D}/stocks", headers=user.headers, query_string=query), 422)
        assert set(error["details"]) == set(query)


def test_detail_of_an_instrument_in_any_spelling(api: Api, user: Account) -> None:
    stock = get(api, user, f"{D}/stocks/600519.sh")
    assert stock["symbol"] == "600519.SH"
    assert stock["name"].startswith("模拟")
    assert stock["exchange"] == "SH"
    assert stock["board"] == "main"
    assert stock["listed_on"] == "2001-08-27"
    assert stock["first_date"] == "2015-01-05"
    assert stock["last_date"] == "2024-12-31"
    assert stock["source"] == "sample"
    st = get(api, user, f"{D}/stocks/000792")
    assert st["symbol"] == "000792.SZ"
    assert st["is_st"] is True
    assert st["name"].startswith("*ST")
    apple = get(api, user, f"{D}/stocks/aapl")
    assert apple["currency"] == "USD"
    assert apple["last_date"] == "2013-03-01"


@pytest.mark.parametrize(
    "symbol", ["XXXX.SH", "999999.SH", "NOPE", "600519.HK", "user:someone", "a" * 60]
)
def test_unknown_symbols_are_404_on_every_endpoint(api: Api, user: Account, symbol: str) -> None:
    for suffix in ("", "/price", "/history", "/indicators"):
        response = api.get(f"{D}/stocks/{symbol}{suffix}", headers=user.headers)
        assert_error(response, 404, "not_found")


def test_latest_price_with_change_and_limits(api: Api, user: Account, db: Session) -> None:
    price = get(api, user, f"{D}/stocks/600519.SH/price")
    last = db.scalars(
        select(StockPrice).where(StockPrice.symbol == "600519.SH").order_by(StockPrice.date.desc())
    ).first()
    assert last is not None
    assert price["date"] == last.date.isoformat() == "2024-12-31"
    assert price["close"] == last.close
    assert price["prev_close"] == last.prev_close
    assert price["change"] == pytest.approx(last.close - last.prev_close, abs=1e-9)
    assert price["change_pct"] == pytest.approx((last.close / last.prev_close - 1) * 100, abs=1e-4)
    up, down = limit_prices(np.array([last.prev_close]), np.array([0.10]))
    assert (price["limit_up"], price["limit_down"]) == (up[0], down[0])
    st = get(api, user, f"{D}/stocks/000792.SZ/price")
    assert st["is_st"] is True
    assert st["limit_up"] == pytest.approx(round(st["prev_close"] * 1.05, 2), abs=0.011)
    index = get(api, user, f"{D}/stocks/000300.SH/price")
    assert index["limit_up"] is None
    apple = get(api, user, f"{D}/stocks/AAPL/price")
    assert apple["limit_up"] is None
    assert apple["currency"] == "USD"


def test_history_window_adjustment_and_resampling(api: Api, user: Account) -> None:
    # AAPL split 2:1 on 2005-02-28: raw prices halve, adjusted ones do not.
    path = f"{D}/stocks/AAPL/history"
    raw = get(api, user, path, start="2005-02-24", end="2005-03-02", adjust="none")
    assert [bar["date"] for bar in raw["bars"]] == [
        "2005-02-24",
        "2005-02-25",
        "2005-02-28",
        "2005-03-01",
        "2005-03-02",
    ]
    assert raw["bars"][1]["close"] == 88.99
    assert raw["bars"][2]["close"] == 44.86
    assert raw["bars"][2]["change_pct"] == pytest.approx(0.8203, abs=1e-4)  # not -50%
    qfq = get(api, user, path, start="2005-02-24", end="2005-03-02")
    assert qfq["adjust"] == "qfq"
    ratio = qfq["bars"][2]["close"] / qfq["bars"][1]["close"]
    assert ratio == pytest.approx(1 + 0.8203 / 100, abs=1e-4)
    hfq = get(api, user, path, start="2005-02-24", end="2005-03-02", adjust="hfq")
    assert hfq["bars"][2]["close"] / hfq["bars"][1]["close"] == pytest.approx(ratio, rel=1e-5)
    latest = get(api, user, path, start="2013-03-01", end="2013-03-01")
    assert latest["bars"][0]["close"] == 430.47  # qfq leaves the latest bar unchanged
    first = get(api, user, path, start="2000-03-01", end="2000-03-01", adjust="hfq")
    assert first["bars"][0]["close"] == 130.31  # hfq leaves the first bar unchanged

    year = get(api, user, f"{D}/stocks/600519.SH/history")
    assert year["end"] == "2024-12-31"
    assert year["start"] == "2024-01-01"  # 365 days back (2024 is a leap year)
    assert len(year["bars"]) == 242
    weekly = get(api, user, f"{D}/stocks/600519.SH/history", start="2024-01-01", freq="weekly")
    assert 50 <= len(weekly["bars"]) <= 53
    days = [dt.date.fromisoformat(bar["date"]) for bar in weekly["bars"]]
    assert all(
        later - earlier >= dt.timedelta(days=3) for earlier, later in itertools.pairwise(days)
    )
    monthly = get(api, user, f"{D}/stocks/600519.SH/history", start="2024-01-01", freq="monthly")
    assert [bar["date"][:7] for bar in monthly["bars"]] == [f"2024-{m:02d}" for m in range(1, 13)]
    daily_2024 = [b for b in year["bars"] if b["date"].startswith("2024-03")]
    march = next(bar for bar in monthly["bars"] if bar["date"].startswith("2024-03"))
    assert march["high"] == max(b["high"] for b in daily_2024)
    assert march["low"] == min(b["low"] for b in daily_2024)
    assert march["volume"] == sum(b["volume"] for b in daily_2024)
    assert march["close"] == daily_2024[-1]["close"]
    assert march["open"] == daily_2024[0]["open"]


def test_history_marks_suspended_and_st_days(api: Api, user: Account) -> None:
    _, start, end = synthetic.SUSPENSION
    bars = get(api, user, f"{D}/stocks/000002.SZ/history", start=start, end=end)["bars"]
    assert len(bars) > 40
    assert all(bar["suspended"] and bar["volume"] == 0 for bar in bars)
    assert len({bar["close"] for bar in bars}) == 1
    weekly = get(api, user, f"{D}/stocks/000002.SZ/history", start=start, end=end, freq="weekly")
    assert weekly["bars"] == []  # no trade, no weekly bar
    st = get(api, user, f"{D}/stocks/000792.SZ/history", start="2019-04-25", end="2019-05-08")
    flags = {bar["date"]: bar["is_st"] for bar in st["bars"]}
    assert flags["2019-04-29"] is False
    assert flags["2019-04-30"] is True


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"start": "2024-13-01"}, "start"),
        ({"end": "yesterday"}, "end"),
        ({"start": "2024-12-01", "end": "2024-01-01"}, "start"),
        ({"start": "1900-01-01"}, "start"),
        ({"adjust": "forward"}, "adjust"),
        ({"freq": "hourly"}, "freq"),
    ],
)
def test_history_bad_parameters_are_422(
    api: Api, user: Account, query: dict[str, str], field: str
) -> None:
    response = api.get(f"{D}/stocks/600519.SH/history", headers=user.headers, query_string=query)
    error = assert_error(response, 422, "validation_error")
    assert field in error["details"]


def test_history_outside_the_data_is_empty_not_an_error(api: Api, user: Account) -> None:
    early = get(api, user, f"{D}/stocks/300750.SZ/history", start="2015-01-01", end="2018-06-01")
    assert early["bars"] == []  # listed 2018-06-11
    ipo = get(api, user, f"{D}/stocks/300750.SZ/history", start="2018-06-01", end="2018-06-20")
    assert ipo["bars"][0]["date"] == "2018-06-11"


def test_indices_with_their_latest_values(api: Api, user: Account) -> None:
    page = get(api, user, f"{D}/market/indices")
    assert page["total"] == 2
    by_symbol = {item["symbol"]: item for item in page["items"]}
    csi = by_symbol["000300.SH"]
    assert csi["name"] == "沪深300(模拟)"
    assert csi["synthetic"] is True
    assert csi["date"] == "2024-12-31"
    price = get(api, user, f"{D}/stocks/000300.SH/price")
    assert csi["close"] == price["close"]
    assert csi["change_pct"] == price["change_pct"]
    assert get(api, user, f"{D}/market/indices", market="us")["total"] == 0


def test_sectors_count_stocks_and_average_the_change(api: Api, user: Account) -> None:
    page = get(api, user, f"{D}/market/sectors", market="cn_a", per_page=100)
    sectors = {item["sector"]: item for item in page["items"]}
    assert sum(item["stock_count"] for item in page["items"]) == 56
    stocks = get(api, user, f"{D}/stocks", sector="金融", kind="stock", per_page=100)["items"]
    finance = sectors["金融"]
    assert finance["stock_count"] == len(stocks)
    expected = sum(s["change_pct"] for s in stocks) / len(stocks)
    assert finance["avg_change_pct"] == pytest.approx(expected, abs=1e-4)
    assert finance["advancers"] == sum(1 for s in stocks if s["change_pct"] > 0)
    assert finance["date"] == "2024-12-31"
    changes = [item["avg_change_pct"] for item in page["items"]]
    assert changes == sorted(changes, reverse=True)
    us = get(api, user, f"{D}/market/sectors", market="us")["items"]
    assert [(s["sector"], s["stock_count"]) for s in us] == [("Information Technology", 4)]


def test_openapi_documents_the_market_endpoints(api: Api) -> None:
    paths = api.get("/api/openapi.json").get_json()["paths"]
    for path in (
        "/api/data/stocks",
        "/api/data/stocks/{symbol}",
        "/api/data/stocks/{symbol}/price",
        "/api/data/stocks/{symbol}/history",
        "/api/data/stocks/{symbol}/indicators",
        "/api/data/market/indices",
        "/api/data/market/sectors",
        "/api/data/watchlist",
        "/api/data/watchlist/{symbol}",
    ):
        assert path in paths, path
    parameters = {
        p["name"] for p in paths["/api/data/stocks/{symbol}/indicators"]["get"]["parameters"]
    }
    assert {
        "names",
        "sma_n",
        "macd_fast",
        "boll_k",
        "kdj_m1",
        "start",
        "end",
        "adjust",
    } <= parameters
