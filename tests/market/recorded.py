"""Recorded shapes of the sources' real answers, and a fake HTTP transport that serves them.

The shapes follow what akshare 1.19.5 and yfinance 1.7.0 parse (their source): Eastmoney's
kline JSON (`data.klines`, comma-joined strings, lots of 100 shares), its quote and list JSON
(`data.diff` rows whose key order is the column order akshare assigns names by), Tencent's
`kline_day...={json}` text with rows of ten fields (amounts in 10,000 yuan), and Yahoo's v8
chart JSON. Values are realistic but invented. The transport replaces `requests.Session.request`,
so akshare's own parsing code runs unchanged on them.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import requests

DAYS = ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05", "2024-01-08"]
# (open, close, high, low, volume in lots, amount in yuan) of a SH stock, unadjusted
RAW = [
    (1715.00, 1685.01, 1718.19, 1678.10, 32155, 5440082739.0),
    (1681.11, 1694.00, 1695.22, 1676.33, 20213, 3418520541.0),
    (1696.00, 1669.00, 1700.00, 1662.93, 21642, 3622373700.0),
    (1661.33, 1663.36, 1678.66, 1652.11, 22266, 3707542063.0),
    (1661.00, 1643.99, 1662.00, 1640.01, 22282, 3675215108.0),
]
HFQ_FACTOR = 8.4543  # back-adjusted / raw for this stock over these days


def em_kline_line(day: str, bar: tuple[float, ...], scale: float = 1.0) -> str:
    open_, close, high, low, volume, amount = bar
    prices = [round(p * scale, 2) for p in (open_, close, high, low)]
    return ",".join(
        [
            day,
            *(f"{p:.2f}" for p in prices),
            str(int(volume)),
            f"{amount:.2f}",
            "2.35",
            "-1.17",
            "-19.99",
            "0.26",
        ]
    )


def em_kline(code: str, lines: list[str] | None, *, market: int = 1) -> dict[str, Any]:
    """Eastmoney push2his kline answer; `lines=None` is its "no such data" answer."""
    head = {"rc": 0, "rt": 17, "svr": 181669437, "lt": 1, "full": 0, "dlmkts": ""}
    if lines is None:
        return {**head, "data": None}
    data = {
        "code": code,
        "market": market,
        "name": "贵州茅台",
        "decimal": 2,
        "dktotal": 5484,
        "preKPrice": 1705.0,
        "klines": lines,
    }
    return {**head, "data": data}


def em_stock(code: str, adjust: str) -> dict[str, Any]:
    scale = HFQ_FACTOR if adjust == "2" else 1.0
    return em_kline(code, [em_kline_line(d, b, scale) for d, b in zip(DAYS, RAW, strict=True)])


def em_index(code: str) -> dict[str, Any]:
    lines = [
        f"{d},{3431.43 + i},{3386.35 + i},{3433.62 + i},{3383.68 + i},113406577,"
        "177358434304.00,1.45"
        for i, d in enumerate(DAYS)
    ]
    return em_kline(code, lines)


def em_info(code: str, name: str, industry: str) -> dict[str, Any]:
    data = {
        "f43": 1643.99,
        "f57": code,
        "f58": name,
        "f84": 1256197800.0,
        "f85": 1256197800.0,
        "f116": 2065197866978.0,
        "f117": 2065197866978.0,
        "f127": industry,
        "f189": 20010827,
    }
    return {"rc": 0, "rt": 4, "svr": 177617938, "lt": 1, "full": 1, "dlmkts": "", "data": data}


def _diff_row(keys: list[int], values: dict[int, Any]) -> dict[str, Any]:
    return {f"f{k}": values.get(k, "-") for k in keys}


# Key order of the list rows: the requested fields in Eastmoney's (numeric) order, plus the
# ones it adds unasked; akshare names columns by position, so the count and order matter.
SPOT_KEYS = [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    20,
    21,
    22,
    23,
    24,
    25,
    62,
    115,
    128,
    136,
    140,
    141,
    152,
]
BOARD_KEYS = [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    20,
    21,
    22,
    23,
    24,
    25,
    26,
    33,
    62,
    104,
    105,
    107,
    115,
    124,
    128,
    136,
    140,
    141,
    152,
    207,
    208,
    209,
    222,
]
CONS_KEYS = [
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    20,
    21,
    22,
    23,
    24,
    25,
    45,
    62,
    115,
    128,
    136,
    140,
    141,
    152,
]


def em_list(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "rc": 0,
        "rt": 6,
        "svr": 181669437,
        "lt": 1,
        "full": 1,
        "dlmkts": "",
        "data": {"total": len(rows), "diff": rows},
    }


def em_spot(stocks: list[tuple[str, str, float]]) -> dict[str, Any]:
    return em_list(
        [
            _diff_row(SPOT_KEYS, {2: 10.0, 3: 0.5 * i, 12: code, 13: 1, 14: name, 20: cap})
            for i, (code, name, cap) in enumerate(stocks)
        ]
    )


def em_boards(boards: list[tuple[str, str]]) -> dict[str, Any]:
    return em_list(
        [
            _diff_row(BOARD_KEYS, {2: 1000.0, 3: 0.1 * i, 12: code, 14: name})
            for i, (code, name) in enumerate(boards)
        ]
    )


def em_members(codes: list[str]) -> dict[str, Any]:
    return em_list(
        [
            _diff_row(CONS_KEYS, {2: 10.0, 3: 0.1 * i, 12: code, 14: f"股票{code}"})
            for i, code in enumerate(codes)
        ]
    )


def tx_kline(symbol: str, adjust: str, year: int, *, lots: bool = True) -> str:
    """Tencent newfqkline text: `kline_day{adjust}{year}={json}`, ten fields a row."""
    scale = HFQ_FACTOR if adjust == "hfq" else 1.0
    rows = []
    for day, (open_, close, high, low, volume, amount) in zip(DAYS, RAW, strict=True):
        shown = volume if lots else volume * 100
        rows.append(
            [
                day,
                f"{open_ * scale:.2f}",
                f"{close * scale:.2f}",
                f"{high * scale:.2f}",
                f"{low * scale:.2f}",
                f"{shown:.2f}",
                {},
                "0.26",
                f"{amount / 1e4:.2f}",
                "",
            ]
        )
    key = {"": "day", "qfq": "qfqday", "hfq": "hfqday"}[adjust]
    body = {
        "code": 0,
        "msg": "",
        "data": {symbol: {key: rows, "qt": {}, "prec": "1705.00", "version": "16"}},
    }
    return f"kline_day{adjust}{year}=" + json.dumps(body, ensure_ascii=False)


def tx_start(symbol: str) -> str:
    return 'trend_qfq={"code":0,"msg":"","data":[["2001-08-27","35.55"],["2001-08-31","36.80"]]}'


# ---------------------------------------------------------------- Yahoo


def _ts(day: str) -> int:
    d = dt.date.fromisoformat(day)
    return int(dt.datetime(d.year, d.month, d.day, 14, 30, tzinfo=dt.UTC).timestamp())


def yahoo_chart(symbol: str, days: list[str] | None = None) -> dict[str, Any]:
    """Yahoo v8 chart JSON for daily bars with a dividend on the third day."""
    days = days if days is not None else DAYS[:4]
    closes = [185.64, 184.25, 181.91, 181.18][: len(days)]
    adjusted = [184.73, 183.35, 181.02, 180.29][: len(days)]
    meta = {
        "currency": "USD",
        "symbol": symbol,
        "exchangeName": "NMS",
        "fullExchangeName": "NasdaqGS",
        "instrumentType": "EQUITY",
        "firstTradeDate": 345479400,
        "regularMarketTime": 1704488400,
        "hasPrePostMarketData": True,
        "gmtoffset": -18000,
        "timezone": "EST",
        "exchangeTimezoneName": "America/New_York",
        "regularMarketPrice": 181.18,
        "longName": "Apple Inc.",
        "shortName": "Apple Inc.",
        "chartPreviousClose": 192.53,
        "priceHint": 2,
        "currentTradingPeriod": {
            name: {"timezone": "EST", "start": 1704465000, "end": 1704488400, "gmtoffset": -18000}
            for name in ("pre", "regular", "post")
        },
        "dataGranularity": "1d",
        "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }
    result: dict[str, Any] = {"meta": meta, "timestamp": [_ts(d) for d in days]}
    if len(days) > 2:
        result["events"] = {
            "dividends": {str(_ts(days[2])): {"amount": 0.24, "date": _ts(days[2])}}
        }
    result["indicators"] = {
        "quote": [
            {
                "open": [187.15, 184.22, 182.15, 181.99][: len(days)],
                "high": [188.44, 185.88, 183.09, 182.76][: len(days)],
                "low": [183.89, 183.43, 180.88, 180.17][: len(days)],
                "close": closes,
                "volume": [82488700, 58414500, 71983600, 62303300][: len(days)],
            }
        ],
        "adjclose": [{"adjclose": adjusted}],
    }
    return {"chart": {"result": [result], "error": None}}


def yahoo_not_found(symbol: str) -> dict[str, Any]:
    return {
        "chart": {
            "result": None,
            "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"},
        }
    }


class YahooResponse:
    """What yfinance reads of a curl_cffi response: status, text, json(), url."""

    def __init__(self, body: dict[str, Any], status: int = 200, url: str = "") -> None:
        self._body = copy.deepcopy(body)
        self.status_code = status
        self.text = json.dumps(body)
        self.url = url

    def json(self) -> Any:
        return copy.deepcopy(self._body)

    def raise_for_status(self) -> None:
        if self.status_code >= 400:
            raise RuntimeError(f"HTTP {self.status_code}")


# ---------------------------------------------------------------- the requests transport

Route = Callable[[str, dict[str, Any]], "tuple[int, str] | Exception"]


class Transport:
    """Routes `requests` calls by URL pattern; every call is recorded; no socket is opened."""

    def __init__(self) -> None:
        self.routes: list[tuple[re.Pattern[str], Route]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def add(self, pattern: str, route: Route) -> None:
        self.routes.insert(0, (re.compile(pattern), route))  # later routes win

    def json(self, pattern: str, body: Callable[[dict[str, Any]], Any]) -> None:
        self.add(pattern, lambda url, params: (200, json.dumps(body(params), ensure_ascii=False)))

    def request(self, method: str, url: str, params: Any = None, **_: Any) -> Any:
        """Stands in for `requests.Session.request` (set on the class: no session argument)."""
        params = dict(params or {})
        self.calls.append((url, params))
        for pattern, route in self.routes:
            if pattern.search(url):
                answer = route(url, params)
                if isinstance(answer, Exception):
                    raise answer
                status, text = answer
                return _response(method, url, params, status, text)
        raise requests.exceptions.ConnectionError(f"no route to {url} in this test")


def _response(method: str, url: str, params: dict[str, Any], status: int, text: str) -> Any:
    response = requests.Response()
    response.status_code = status
    response._content = text.encode("utf-8")
    response.encoding = "utf-8"
    response.url = f"{url}?{urlencode(params)}" if params else url
    response.headers["Content-Type"] = (
        "application/json" if text.startswith(("{", "[")) else "text/html"
    )
    response.request = requests.Request(method, url, params=params).prepare()
    return response
