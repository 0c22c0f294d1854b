"""The `akshare` provider: A-share listings, daily bars with adjustment factors, the main indices.

akshare is imported on first use (about 0.6 s). Its Eastmoney endpoints are the richest and the
most fragile (they change fields and ban busy clients), so every kind of data has a chain of
sources tried in turn: Eastmoney, then Tencent. A source that fails, times out, answers with
changed columns or, suspiciously, with nothing, hands over to the next; only when all fail does
the call raise, with the most hopeful error (a retryable one) for the sync to act on.

Bars are fetched unadjusted and back-adjusted (hfq) from the same source; their ratio is the
cumulative adjustment factor stored beside the raw prices.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from quantdesk.engine.rules import board_of
from quantdesk.market import symbols as sym
from quantdesk.market.providers.base import (
    Listing,
    NotCovered,
    Pacer,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    SchemaChanged,
    call_with_deadline,
    empty_bars,
)

log = logging.getLogger(__name__)

INDEX_LISTINGS = {
    s: Listing(s, name, s[-2:], "index", "cn_a", kind="index")
    for s, name in (
        ("000001.SH", "上证指数"),
        ("000300.SH", "沪深300"),
        ("000905.SH", "中证500"),
        ("000688.SH", "科创50"),
        ("399001.SZ", "深证成指"),
        ("399006.SZ", "创业板指"),
        ("899050.BJ", "北证50"),
    )
}
# Eastmoney's industry boards, folded into a few sectors by keyword (first match wins).
_SECTOR_KEYWORDS = (
    ("金融", ("银行", "证券", "保险", "多元金融")),
    ("房地产", ("房地产",)),
    ("医药卫生", ("医", "药", "生物")),
    ("信息技术", ("电子", "半导体", "软件", "计算机", "互联网", "光学", "元件", "IT")),
    ("通信服务", ("通信", "传媒", "游戏", "广告", "出版")),
    ("能源", ("石油", "煤炭", "燃气", "能源")),
    ("公用事业", ("电力", "公用", "水务", "环保")),
    (
        "原材料",
        (
            "钢铁",
            "有色",
            "化工",
            "化学",
            "化纤",
            "建材",
            "水泥",
            "玻璃",
            "塑料",
            "造纸",
            "金属",
            "材料",
        ),
    ),
    (
        "消费",
        (
            "酒",
            "食品",
            "饮料",
            "家电",
            "汽车",
            "纺织",
            "服装",
            "旅游",
            "酒店",
            "商业",
            "零售",
            "美容",
            "农",
            "牧",
            "渔",
            "家居",
            "珠宝",
            "教育",
        ),
    ),
)
# Eastmoney's kline columns as akshare names them, and ours.
_EM_COLUMNS = {
    "日期": "date",
    "开盘": "open",
    "收盘": "close",
    "最高": "high",
    "最低": "low",
    "成交量": "volume",
    "成交额": "amount",
}
_BAN_HINTS = ("429", "too many", "频繁", "forbidden", "denied", "captcha", "验证")


def sector_of_industry(industry: str | None) -> str | None:
    if not industry:
        return None
    for sector, words in _SECTOR_KEYWORDS:
        if any(word in industry for word in words):
            return sector
    return "工业"


def classify(exc: BaseException, source: str) -> ProviderError:
    """Turn whatever a source raised into one of our provider errors."""
    import requests

    if isinstance(exc, ProviderError):
        return exc
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, requests.exceptions.Timeout):
        return ProviderTimeout(f"{source}: {text}")
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status in (403, 429):
            return RateLimited(f"{source}: HTTP {status}")
        return ProviderUnavailable(f"{source}: HTTP {status}")
    if isinstance(exc, requests.exceptions.ConnectionError):
        if "RemoteDisconnected" in text or "Connection aborted" in text:
            # Eastmoney drops the connection of clients it has banned.
            return RateLimited(f"{source}: connection dropped (a ban?): {text}")
        return ProviderUnavailable(f"{source}: {text}")
    # json's, requests' and akshare's own demjson's: a page where data was expected
    if type(exc).__name__ == "JSONDecodeError" or isinstance(exc, json.JSONDecodeError):
        body = str(getattr(exc, "doc", "") or exc).lower()[:500]
        if any(hint in body for hint in _BAN_HINTS):
            return RateLimited(f"{source}: refused with a non-JSON page")
        return ProviderUnavailable(f"{source}: the answer is not JSON: {body[:80]!r}")
    if isinstance(exc, requests.exceptions.RequestException | OSError):
        return ProviderUnavailable(f"{source}: {text}")
    if isinstance(exc, KeyError | IndexError | ValueError | TypeError | AttributeError):
        return SchemaChanged(f"{source}: the answer changed shape: {text}")
    return ProviderUnavailable(f"{source}: {text}")


def _number(value: object) -> float | None:
    try:
        number = float(str(value))
    except ValueError:
        return None
    return number if number == number else None  # NaN is no number


def _date_of(yyyymmdd: str) -> dt.date | None:
    if len(yyyymmdd) != 8 or not yyyymmdd.isdigit():
        return None
    return dt.date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:]))


def _ymd(day: dt.date) -> str:
    return day.strftime("%Y%m%d")


def _renamed(frame: pd.DataFrame, columns: dict[str, str], source: str) -> pd.DataFrame:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaChanged(f"{source}: columns {missing} are gone (got {list(frame.columns)})")
    return frame.loc[:, list(columns)].rename(columns=columns)


def _with_factor(raw: pd.DataFrame, hfq: pd.DataFrame, source: str) -> pd.DataFrame:
    """Raw bars plus adj_factor = hfq close / raw close, matched by date."""
    if hfq.empty:
        raise SchemaChanged(f"{source}: raw bars came without their back-adjusted twins")
    factors = pd.Series(hfq["close"].to_numpy(dtype="float64"), index=pd.Index(hfq["date"]))
    out = raw.copy()
    closes = out["close"].to_numpy(dtype="float64")
    matched = pd.Series(out["date"]).map(factors).to_numpy(dtype="float64")
    out["adj_factor"] = pd.Series(matched / closes).ffill().bfill().to_numpy()
    return out


class AkshareProvider:
    """A-shares and their indices through akshare, Eastmoney first, Tencent second."""

    name = "akshare"

    def __init__(self, *, timeout: float, interval: float, pacer: Pacer | None = None) -> None:
        self.timeout = timeout
        self.pacer = pacer or Pacer(interval)

    # ------------------------------------------------------------------ plumbing

    def _call(self, source: str, fn: Callable[..., Any], /, **kwargs: Any) -> Any:
        self.pacer.wait()
        try:
            return call_with_deadline(lambda: fn(**kwargs), timeout=self.timeout + 1.0, what=source)
        except Exception as exc:
            raise classify(exc, source) from exc

    def _first_answer(
        self, what: str, sources: list[tuple[str, Callable[[], pd.DataFrame]]]
    ) -> pd.DataFrame:
        """The first source's non-empty answer; empty if every source answered empty."""
        errors: list[ProviderError] = []
        empty = 0
        for source, fetch in sources:
            try:
                frame = fetch()
            except ProviderError as exc:
                log.warning("akshare %s: %s failed: %s", what, source, exc)
                errors.append(exc)
                continue
            if not frame.empty:
                return frame
            empty += 1
            log.info("akshare %s: %s answered with no rows; trying the next source", what, source)
        if errors and not empty:
            retryable = [e for e in errors if e.retryable]
            raise (retryable or errors)[0]
        return empty_bars()

    # ------------------------------------------------------------------ interface

    def covers(self, symbol: str) -> bool:
        return sym.market_of(symbol) is sym.Market.CN_A

    def listings(self, symbols: Sequence[str] | None = None) -> list[Listing]:
        if symbols is None:
            return [*self._all_stocks(), *INDEX_LISTINGS.values()]
        return [self._listing(symbol) for symbol in symbols]

    def bars(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        if not self.covers(symbol):
            raise NotCovered(f"akshare has A-shares only, not {symbol}")
        if sym.is_cn_index(symbol):
            sources = [
                ("eastmoney", lambda: self._index_em(symbol, start, end)),
                ("tencent", lambda: self._index_tx(symbol, start, end)),
            ]
        else:
            sources = [
                ("eastmoney", lambda: self._stock_em(symbol, start, end)),
                ("tencent", lambda: self._stock_tx(symbol, start, end)),
            ]
        return self._first_answer(f"bars of {symbol}", sources)

    # ------------------------------------------------------------------ listings

    def _listing(self, symbol: str) -> Listing:
        if symbol in INDEX_LISTINGS:
            return INDEX_LISTINGS[symbol]
        if sym.is_cn_index(symbol):
            return Listing(symbol, symbol, sym.split(symbol)[1], "index", "cn_a", kind="index")
        if not self.covers(symbol):
            raise NotCovered(f"akshare has A-shares only, not {symbol}")
        from akshare.stock.stock_info_em import stock_individual_info_em

        code, exchange = sym.split(symbol)
        frame = self._call("eastmoney", stock_individual_info_em, symbol=code, timeout=self.timeout)
        try:
            items = dict(zip(frame["item"], frame["value"], strict=True))
            name = str(items["股票简称"])
        except (KeyError, ValueError) as exc:
            raise SchemaChanged(f"eastmoney: stock info of {symbol} changed: {exc}") from exc
        industry = str(items.get("行业") or "") or None
        listed = str(items.get("上市时间") or "")
        cap = _number(items.get("总市值"))
        return Listing(
            symbol=symbol,
            name=name,
            exchange=exchange,
            board=board_of(symbol).value,
            market="cn_a",
            sector=sector_of_industry(industry),
            industry=industry,
            market_cap=cap,
            listed_on=_date_of(listed),
            is_st="ST" in name.upper(),
        )

    def _all_stocks(self) -> list[Listing]:
        from akshare.stock_feature.stock_hist_em import stock_zh_a_spot_em

        spot = _renamed(
            self._call("eastmoney", stock_zh_a_spot_em),
            {"代码": "code", "名称": "name", "总市值": "market_cap"},
            "eastmoney",
        )
        industries = self._industries()
        out = []
        for code, name, cap in spot.itertuples(index=False):
            symbol = sym.normalise(str(code))
            if symbol is None or sym.market_of(symbol) is not sym.Market.CN_A:
                continue
            industry = industries.get(symbol)
            out.append(
                Listing(
                    symbol=symbol,
                    name=str(name),
                    exchange=sym.split(symbol)[1],
                    board=board_of(symbol).value,
                    market="cn_a",
                    sector=sector_of_industry(industry),
                    industry=industry,
                    market_cap=float(cap) if pd.notna(cap) else None,
                    is_st="ST" in str(name).upper(),
                )
            )
        return out

    def _industries(self) -> dict[str, str]:
        """Symbol -> Eastmoney industry board; partial or empty when boards fail (logged)."""
        from akshare.stock.stock_board_industry_em import (
            stock_board_industry_cons_em,
            stock_board_industry_name_em,
        )

        found: dict[str, str] = {}
        try:
            boards = self._call("eastmoney", stock_board_industry_name_em)
            pairs = list(zip(boards["板块名称"], boards["板块代码"], strict=True))
        except (ProviderError, KeyError) as exc:
            log.warning("akshare: no industry boards, stocks keep no industry: %s", exc)
            return found
        for board_name, board_code in pairs:
            try:
                members = self._call("eastmoney", stock_board_industry_cons_em, symbol=board_code)
                codes = members["代码"]
            except (ProviderError, KeyError) as exc:
                log.warning("akshare: industry %s failed: %s", board_name, exc)
                continue
            for code in codes:
                symbol = sym.normalise(str(code))
                if symbol:
                    found.setdefault(symbol, str(board_name))
        return found

    # ------------------------------------------------------------------ bars

    def _stock_em(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        from akshare.stock_feature.stock_hist_em import stock_zh_a_hist

        code = sym.split(symbol)[0]

        def fetch(adjust: str) -> pd.DataFrame:
            frame = self._call(
                "eastmoney",
                stock_zh_a_hist,
                symbol=code,
                period="daily",
                start_date=_ymd(start),
                end_date=_ymd(end),
                adjust=adjust,
                timeout=self.timeout,
            )
            if frame.empty:
                return empty_bars()
            bars = _renamed(frame, _EM_COLUMNS, "eastmoney")
            bars["volume"] = bars["volume"] * 100  # Eastmoney counts lots of 100 shares
            return bars

        raw = fetch("")
        return raw if raw.empty else _with_factor(raw, fetch("hfq"), "eastmoney")

    def _stock_tx(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        from akshare.stock_feature.stock_hist_tx import stock_zh_a_hist_tx

        columns = {c: c for c in ("date", "open", "close", "high", "low", "volume", "amount")}

        def fetch(adjust: str) -> pd.DataFrame:
            frame = self._call(
                "tencent",
                stock_zh_a_hist_tx,
                symbol=sym.prefixed(symbol),
                start_date=_ymd(start),
                end_date=_ymd(end),
                adjust=adjust,
                timeout=self.timeout,
            )
            if frame.empty:
                return empty_bars()
            bars = _renamed(frame, columns, "tencent")
            if sym.prefixed(symbol).startswith("sz000"):
                # akshare leaves "sz000" volumes in lots, meaning indices; 000xxx.SZ are stocks.
                bars["volume"] = bars["volume"] * 100
            return bars

        raw = fetch("")
        return raw if raw.empty else _with_factor(raw, fetch("hfq"), "tencent")

    def _index_em(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        from akshare.index.index_stock_zh import stock_zh_index_daily_em

        frame = self._call(
            "eastmoney",
            stock_zh_index_daily_em,
            symbol=sym.prefixed(symbol),
            start_date=_ymd(start),
            end_date=_ymd(end),
        )
        if frame.empty:
            return empty_bars()
        columns = {c: c for c in ("date", "open", "close", "high", "low", "volume", "amount")}
        bars = _renamed(frame, columns, "eastmoney")
        bars["volume"] = bars["volume"] * 100  # lots, as for stocks
        bars["adj_factor"] = 1.0
        return bars

    def _index_tx(self, symbol: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        from akshare.index.index_stock_zh import stock_zh_index_daily_tx

        frame = self._call(
            "tencent",
            stock_zh_index_daily_tx,
            symbol=sym.prefixed(symbol),
            start_date=_ymd(start),
            end_date=_ymd(end),
        )
        if frame.empty:
            return empty_bars()
        # akshare names Tencent's sixth field "amount"; it is the volume, in lots.
        columns = {
            "date": "date",
            "open": "open",
            "close": "close",
            "high": "high",
            "low": "low",
            "amount": "volume",
        }
        bars = _renamed(frame, columns, "tencent")
        bars["volume"] = bars["volume"] * 100
        bars["adj_factor"] = 1.0
        return bars
