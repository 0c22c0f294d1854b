"""The indicators endpoint equals TA-Lib (test-only oracle) on the stored, adjusted bars."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import talib
from sqlalchemy import select
from sqlalchemy.orm import Session

from quantdesk.market.models import StockPrice
from tests.support import Account, Api, assert_error

Arrays = dict[str, np.ndarray]


def adjusted_bars(db: Session, symbol: str, adjust: str) -> tuple[list[str], Arrays]:
    """Trading (not suspended) bars of `symbol`, adjusted as the API documents, from the rows."""
    rows = db.execute(
        select(
            StockPrice.date,
            StockPrice.high,
            StockPrice.low,
            StockPrice.close,
            StockPrice.volume,
            StockPrice.adj_factor,
            StockPrice.suspended,
        )
        .where(StockPrice.symbol == symbol)
        .order_by(StockPrice.date)
    ).all()
    factors = np.array([r.adj_factor for r in rows])
    anchor = {"qfq": factors[-1], "hfq": factors[0], "none": None}[adjust]
    scale = np.ones_like(factors) if anchor is None else factors / anchor
    keep = np.array([not r.suspended for r in rows])
    arrays = {
        "high": np.array([r.high for r in rows]) * scale,
        "low": np.array([r.low for r in rows]) * scale,
        "close": np.array([r.close for r in rows]) * scale,
        "volume": np.array([r.volume for r in rows], dtype=np.float64),
    }
    dates = [r.date.isoformat() for r, k in zip(rows, keep, strict=True) if k]
    return dates, {name: values[keep] for name, values in arrays.items()}


def _named(names: tuple[str, ...], outputs: tuple[np.ndarray, ...]) -> dict[str, np.ndarray]:
    return dict(zip(names, outputs, strict=True))


# (query, TA-Lib outputs keyed by our series names)
CASES: list[tuple[dict[str, Any], Callable[[Arrays], dict[str, np.ndarray]]]] = [
    ({"names": "sma", "sma_n": 20}, lambda b: {"sma": talib.SMA(b["close"], 20)}),
    ({"names": "sma", "sma_n": 5}, lambda b: {"sma": talib.SMA(b["close"], 5)}),
    ({"names": "ema", "ema_n": 12}, lambda b: {"ema": talib.EMA(b["close"], 12)}),
    ({"names": "wma", "wma_n": 10}, lambda b: {"wma": talib.WMA(b["close"], 10)}),
    (
        {"names": "macd"},
        lambda b: _named(("macd", "macd_signal", "macd_hist"), talib.MACD(b["close"], 12, 26, 9)),
    ),
    (
        {"names": "macd", "macd_fast": 5, "macd_slow": 35, "macd_signal": 5},
        lambda b: _named(("macd", "macd_signal", "macd_hist"), talib.MACD(b["close"], 5, 35, 5)),
    ),
    ({"names": "rsi", "rsi_n": 6}, lambda b: {"rsi": talib.RSI(b["close"], 6)}),
    ({"names": "rsi"}, lambda b: {"rsi": talib.RSI(b["close"], 14)}),
    (
        {"names": "boll", "boll_n": 20, "boll_k": 2.5},
        lambda b: _named(
            ("boll_upper", "boll_middle", "boll_lower"), talib.BBANDS(b["close"], 20, 2.5, 2.5, 0)
        ),
    ),
    (
        {"names": "kdj", "kdj_n": 9, "kdj_m1": 3, "kdj_m2": 3},
        # matype 13 = RMA (Wilder), TA-Lib's KDJ default, written out to pin it.
        lambda b: _named(
            ("kdj_k", "kdj_d", "kdj_j"), talib.KDJ(b["high"], b["low"], b["close"], 9, 3, 13, 3, 13)
        ),
    ),
    (
        {"names": "atr", "atr_n": 14},
        lambda b: {"atr": talib.ATR(b["high"], b["low"], b["close"], 14)},
    ),
    ({"names": "obv"}, lambda b: {"obv": talib.OBV(b["close"], b["volume"])}),
    (
        {"names": "cci", "cci_n": 20},
        lambda b: {"cci": talib.CCI(b["high"], b["low"], b["close"], 20)},
    ),
    ({"names": "roc", "roc_n": 12}, lambda b: {"roc": talib.ROC(b["close"], 12)}),
    ({"names": "stddev", "stddev_n": 10}, lambda b: {"stddev": talib.STDDEV(b["close"], 10, 1.0)}),
]


@pytest.mark.parametrize(("query", "oracle"), CASES, ids=[str(c[0]) for c in CASES])
@pytest.mark.parametrize(
    ("symbol", "adjust"), [("600519.SH", "qfq"), ("AAPL", "hfq"), ("000002.SZ", "none")]
)
def test_indicator_values_equal_talib(
    api: Api,
    user: Account,
    db: Session,
    query: dict[str, Any],
    oracle: Callable[[Arrays], dict],
    symbol: str,
    adjust: str,
) -> None:
    dates, bars = adjusted_bars(db, symbol, adjust)
    start, end = dates[-300], dates[-1]
    response = api.get(
        f"/api/data/stocks/{symbol}/indicators",
        headers=user.headers,
        query_string={**query, "start": start, "end": end, "adjust": adjust},
    )
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["dates"] == dates[-300:]
    expected = oracle(bars)
    assert set(body["series"]) == set(expected)
    for name, values in expected.items():
        got = np.array([np.nan if v is None else v for v in body["series"][name]], dtype=float)
        np.testing.assert_allclose(got, values[-300:], rtol=1e-9, atol=1e-9, err_msg=name)
        assert not np.isnan(got).any(), name  # 300 bars from the end: warm-up long past


def test_warm_up_is_null_and_the_window_cuts_after_computing(
    api: Api, user: Account, db: Session
) -> None:
    dates, bars = adjusted_bars(db, "300750.SZ", "qfq")  # listed inside the period
    response = api.get(
        "/api/data/stocks/300750.SZ/indicators",
        headers=user.headers,
        query_string={"names": "sma,rsi", "sma_n": 20, "start": dates[0], "end": dates[40]},
    )
    body = response.get_json()
    assert body["dates"] == dates[:41]
    assert body["series"]["sma"][:19] == [None] * 19
    assert body["series"]["sma"][19] == pytest.approx(float(np.mean(bars["close"][:20])))
    assert body["series"]["rsi"][:14] == [None] * 14
    assert body["params"] == {"sma": {"n": 20}, "rsi": {"n": 14}}
    later = api.get(
        "/api/data/stocks/300750.SZ/indicators",
        headers=user.headers,
        query_string={"names": "ema", "ema_n": 30, "start": dates[100], "end": dates[110]},
    ).get_json()
    assert later["series"]["ema"] == pytest.approx(list(talib.EMA(bars["close"], 30)[100:111]))


def test_default_indicator_set(api: Api, user: Account) -> None:
    body = api.get(
        "/api/data/stocks/600519.SH/indicators",
        headers=user.headers,
        query_string={"start": "2024-12-01"},
    ).get_json()
    assert set(body["params"]) == {"sma", "ema", "macd", "rsi", "boll", "kdj", "atr", "obv"}
    assert body["params"]["macd"] == {"fast": 12, "slow": 26, "signal": 9}
    assert body["end"] == "2024-12-31"
    assert all(len(values) == len(body["dates"]) for values in body["series"].values())


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"names": "sma,foo"}, "names"),
        ({"names": ""}, "names"),
        ({"sma_n": 0}, "sma_n"),
        ({"sma_n": 251}, "sma_n"),
        ({"macd_fast": "fast"}, "macd_fast"),
        ({"boll_k": -1}, "boll_k"),
        ({"start": "2024-02-30"}, "start"),
        ({"start": "2024-06-01", "end": "2024-05-01"}, "start"),
        ({"adjust": "both"}, "adjust"),
    ],
)
def test_bad_indicator_parameters_are_422(
    api: Api, user: Account, query: dict[str, Any], field: str
) -> None:
    response = api.get(
        "/api/data/stocks/600519.SH/indicators", headers=user.headers, query_string=query
    )
    error = assert_error(response, 422, "validation_error")
    assert field in error["details"], error
